"""From a data file to a masked, audited, cached dataset: the one path every SFT run takes.

Owns: the pipeline read → normalise → render/tokenize/mask → audit → cache, and the `chattune
pretokenize` command. `num_proc` datasets.map workers each read their own chunks of the source
(data.Source) and write one Arrow table per chunk, so memory does not grow with the data.
Pre-tokenized (cached on disk) or not (kept in memory), the labels come from the same function; the
cache only stores them.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import weakref
from collections import Counter
from dataclasses import fields
from itertools import chain
from pathlib import Path

import datasets
import multiprocess
import numpy as np
import pyarrow as pa

from chattune import cache
from chattune.audit import AuditSummary, audit_tokenized, enforce
from chattune.chat_template import TemplateError
from chattune.config import DataConfig, JobConfig
from chattune.data import Chunk, InvalidExample, Source, fingerprint, invalid, parse
from chattune.errors import UserError
from chattune.masking import IGNORE_INDEX, MASKING_VERSION, ROLE_NAMES, Encoded, Masker
from chattune.models import tokenizer_fingerprint

COLUMNS = ["input_ids", "attention_mask", "labels", "assistant_masks"]


def cache_inputs(cfg: JobConfig, tokenizer, path: Path) -> dict:
    """Everything that changes the labels, for the cache key (plus readable names, not keyed)."""
    d = cfg.data
    template = tokenizer.chat_template or ""
    return {
        "data": fingerprint(path),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "chat_template": hashlib.sha256(template.encode()).hexdigest(),
        # Templates that print today's date (Llama 3.2, gpt-oss) render differently tomorrow.
        "date": time.strftime("%Y-%m-%d") if "strftime_now" in template else None,
        "train_on": d.train_on,
        "masking": d.masking,
        "max_length": d.max_length,
        "skip_invalid": d.skip_invalid,
    }


# Forked worker processes find the tokenizer in the memory they inherit instead of unpickling it:
# ~0.5 s per worker for a 150k-token vocabulary, after ~0.15 s of pickling per worker here. Under
# another start method (spawn, forkserver) it is pickled as usual.
_FORKED_TOKENIZERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class _Encode:
    """The datasets.map function: chunks of the source in, one Arrow table of encoded examples out.
    Picklable, so each worker process reads its own chunks and builds one Masker."""

    def __init__(self, source: Source, tokenizer, data: DataConfig):
        self.source, self.tokenizer, self.data = source, tokenizer, data
        self.masker: Masker | None = None
        _FORKED_TOKENIZERS[id(tokenizer)] = tokenizer

    def __getstate__(self) -> dict:
        forked = multiprocess.get_start_method() == "fork"
        return {**self.__dict__, "masker": None, "tokenizer": id(self.tokenizer) if forked else self.tokenizer}

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["tokenizer"], int):
            state["tokenizer"] = _FORKED_TOKENIZERS[state["tokenizer"]]
        self.__dict__.update(state)

    def __call__(self, batch: dict) -> pa.Table:
        if self.masker is None:
            self.masker = Masker(self.tokenizer, self.data.max_length, self.data.masking)
        return encoded_table([r for row in zip(*batch.values()) for r in self._encode_chunk(Chunk(*row))])

    def _encode_chunk(self, chunk: Chunk) -> list[Encoded | str]:
        """Each example of the chunk encoded, or why it was dropped (UserError if it is invalid and
        invalid examples are not skipped)."""
        d = self.data
        results: list[Encoded | str] = []
        places, examples, slots = [], [], []
        for place, record in self.source.records(chunk):
            try:
                examples.append(parse(record, train_on=d.train_on))
            except InvalidExample as e:
                if not d.skip_invalid:
                    raise invalid(place, e) from None
                results.append(f"invalid: {e}")
                continue
            places.append(place)
            slots.append(len(results))
            results.append("")
        for place, slot, enc in zip(places, slots, self.masker.encode_batch(examples)):
            if isinstance(enc, TemplateError) and not d.skip_invalid:
                raise invalid(place, enc)
            results[slot] = f"invalid: {enc}" if isinstance(enc, TemplateError) else enc.dropped or enc
        return results


def encoded_table(results: list[Encoded | str]) -> pa.Table:
    """The COLUMNS of a batch of examples, plus what the audit needs: tokens and trained tokens per role,
    and `dropped` (why an example is not kept; it then has no tokens). Built from flat arrays."""
    kept = [r for r in results if isinstance(r, Encoded)]
    lengths = np.array([len(r.input_ids) if isinstance(r, Encoded) else 0 for r in results], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())
    ids = np.fromiter(chain.from_iterable(r.input_ids for r in kept), np.int32, count=int(lengths.sum()))
    trained = np.concatenate([r.trained for r in kept]) if kept else np.zeros(0, bool)
    roles = np.concatenate([r.token_roles for r in kept]) if kept else np.zeros(0, np.int8)
    cell = np.repeat(np.arange(len(results)) * len(ROLE_NAMES), lengths) + roles  # (example, role)
    per_role = lambda c: pa.FixedSizeListArray.from_arrays(  # noqa: E731
        np.bincount(c, minlength=len(results) * len(ROLE_NAMES)).astype(np.int32), len(ROLE_NAMES))
    lists = lambda values: pa.ListArray.from_arrays(offsets, values)  # noqa: E731
    return pa.table({
        "input_ids": lists(ids),
        "attention_mask": lists(np.ones(len(ids), np.int8)),
        "labels": lists(np.where(trained, ids, np.int32(IGNORE_INDEX))),
        "assistant_masks": lists(trained.astype(np.int8)),
        "role_tokens": per_role(cell),
        "role_trained": per_role(cell[trained]),
        "dropped": [r if isinstance(r, str) else "" for r in results],
    })


def _summarise(ds: datasets.Dataset, cfg: JobConfig, path: Path) -> AuditSummary:
    if len(ds) == 0:
        raise UserError(f"{path}: no examples in it")
    table = ds.select_columns(["dropped", "role_tokens", "role_trained"]).with_format("arrow")[:]
    dropped = np.asarray(table["dropped"].to_pylist(), dtype=object)
    kept = dropped == ""
    per_role = lambda c: table[c].combine_chunks().flatten().to_numpy().reshape(-1, len(ROLE_NAMES))[kept]  # noqa: E731
    summary = AuditSummary(masking=cfg.data.masking, dropped=Counter(dropped[~kept].tolist()))
    summary.add_counts(per_role("role_tokens"), per_role("role_trained"))
    if summary.role_tokens["text"]:
        print("note: plain-text examples: every token is trained, no masking applies to them")
    return summary


def _build(cfg: JobConfig, tokenizer, path: Path, workdir: Path, in_memory: bool):
    source = Source(path)
    chunks = source.chunks(cfg.data.num_proc)
    plan = datasets.Dataset.from_dict({f.name: [getattr(c, f.name) for c in chunks] for f in fields(Chunk)})
    files = lambda name: {} if in_memory else {"cache_file_name": str(workdir / f"{name}.arrow")}  # noqa: E731
    num_proc = min(cfg.data.num_proc, len(chunks))
    encoded = plan.map(
        _Encode(source, tokenizer, cfg.data),
        batched=True,
        batch_size=1,
        num_proc=num_proc if num_proc > 1 else None,
        remove_columns=plan.column_names,
        keep_in_memory=in_memory,
        new_fingerprint=f"encode-{workdir.name}",
        desc="render · tokenize · mask (chunks)",
        **files("encoded"),
    )
    summary = _summarise(encoded, cfg, path)
    enforce(summary, str(path))
    if summary.examples < len(encoded):  # drop what can't be trained (a second pass, only then)
        kept = [i for i, why in enumerate(encoded["dropped"]) if not why]
        encoded = encoded.select(kept, keep_in_memory=True).flatten_indices(
            keep_in_memory=in_memory, new_fingerprint=f"keep-{workdir.name}", **files("kept"))
    return encoded.select_columns(COLUMNS), summary


def build_sft_dataset(cfg: JobConfig, tokenizer, path: Path, *, use_cache: bool = True):
    """The masked, audited dataset for `path`: (datasets.Dataset with COLUMNS, AuditSummary).

    With use_cache, a complete cache entry with the same key is reused (and said so), otherwise one
    is built and written atomically. Without, the same pipeline runs in memory."""
    path = Path(path)
    if (path / cache.MANIFEST).is_file() or _is_tokenized_folder(path):
        return _load_tokenized(path, tokenizer)
    if cfg.data.masking == "none":
        print("WARNING: masking is `none`: every token is trained, PROMPTS INCLUDED. "
              "This is the bug chattune exists to prevent; use it only as a deliberate experiment.")
    if not use_cache:
        with tempfile.TemporaryDirectory() as tmp:
            ds, summary = _build(cfg, tokenizer, path, Path(tmp), in_memory=True)
        return ds, summary

    root = cache.cache_root(cfg.cache_dir)
    inputs = cache_inputs(cfg, tokenizer, path)
    key = cache.make_key(inputs)
    hit = cache.lookup(root, key)
    if hit is None:
        t0 = time.perf_counter()
        with cache.atomic_dir(cache.entry_dir(root, key)) as tmp:
            ds, summary = _build(cfg, tokenizer, path, tmp, in_memory=False)
            # The entry is the Arrow files the workers wrote (after the keep pass, if one ran), as they are.
            files = [Path(f["filename"]).name for f in ds.cache_files]
            for scratch in tmp.glob("*.arrow"):
                if scratch.name not in files:
                    scratch.unlink()
            cache.write_manifest(tmp, {
                "format": "chattune-pretokenized", "key": key, "rows": len(ds), "columns": COLUMNS, "files": files,
                "inputs": {**inputs, "data_path": str(path), "model": cfg.model,
                           "chat_template_file": str(cfg.chat_template) if cfg.chat_template else None},
                "audit": summary.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
        hit = cache.entry_dir(root, key)
        print(f"pre-tokenized {len(ds):,} examples in {time.perf_counter() - t0:.1f}s → cache {hit}")
    else:
        print(f"reusing cache {hit} (same data, tokenizer, template and masking options)")
    summary = AuditSummary.from_dict(cache.read_manifest(hit)["audit"])
    enforce(summary, str(hit))
    return load_labelled_dataset(hit), summary


def _is_tokenized_folder(path: Path) -> bool:
    try:
        return path.is_dir() and "input_ids" in datasets.load_from_disk(str(path)).column_names
    except (FileNotFoundError, AttributeError):  # not a folder of save_to_disk, or a DatasetDict
        return False


def _load_tokenized(path: Path, tokenizer):
    """An already tokenized folder (`chattune pretokenize --output`, or another tool's with labels): used as
    it is, after the same audit against the template."""
    ds = load_labelled_dataset(path)
    manifest = cache.read_manifest(path)
    if manifest is not None and manifest["inputs"]["tokenizer"] != tokenizer_fingerprint(tokenizer):
        raise UserError(f"{path}: pre-tokenized with another tokenizer ({manifest['inputs'].get('model')}); "
                        "re-run `chattune pretokenize` with this model")
    summary = AuditSummary.from_dict(manifest["audit"]) if manifest else audit_tokenized(ds, tokenizer)
    enforce(summary, str(path))
    print(f"using the pre-tokenized dataset {path} as it is (labels audited)")
    return ds, summary


def load_labelled_dataset(path: Path) -> datasets.Dataset:
    """A pre-tokenized dataset for masked training. A folder without `labels` is refused: training
    it would copy input_ids into labels and train every prompt token."""
    path = Path(path)
    manifest = cache.read_manifest(path)
    if manifest is not None and manifest.get("masking_version") != MASKING_VERSION:
        raise UserError(f"{path}: written by masking version {manifest.get('masking_version')}, this chattune uses "
                        f"{MASKING_VERSION}; re-run `chattune pretokenize`")
    try:
        if manifest is not None and "files" in manifest:  # a cache entry
            ds = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path / f)) for f in manifest["files"]])
            ds = ds.select_columns(manifest["columns"])
        else:  # a datasets.save_to_disk folder (`chattune pretokenize --output`, or another tool's)
            ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: not a pre-tokenized dataset folder") from None
    if "labels" not in ds.column_names:
        raise UserError(f"{path}: has input_ids but no labels: training it would train every prompt token. "
                        "Re-create it with `chattune pretokenize`, or check it with `chattune audit`")
    return ds


def pretokenize(cfg: JobConfig, output: Path | None = None) -> Path:
    """`chattune pretokenize`: build (or reuse) the cache entry, print the audit, copy to `output`."""
    from chattune.models import load_tokenizer

    tokenizer = load_tokenizer(cfg.model, cfg.chat_template, cfg.cache_dir)
    ds, summary = build_sft_dataset(cfg, tokenizer, cfg.data.train, use_cache=True)
    print(summary.format())
    source = Path(ds.cache_files[0]["filename"]).parent
    if output is not None:
        manifest = cache.read_manifest(source)
        del manifest["files"]  # the copy is a plain datasets folder
        with cache.atomic_dir(Path(output)) as tmp:
            ds.save_to_disk(str(tmp))
            cache.write_manifest(tmp, manifest)
        print(f"saved {len(ds):,} examples to {output}")
    return source
