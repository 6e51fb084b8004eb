"""From a data file to a masked, audited, cached dataset: the one path every SFT run takes.

Owns: the pipeline read → normalise → render/tokenize/mask (masking.py, in `num_proc` processes,
streamed through Arrow so memory does not grow with the data) → audit → cache, and the
`chattune pretokenize` command. Pre-tokenized (cached on disk) or not (kept in memory), the labels
come from the same function; the cache only stores them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

from chattune import cache
from chattune.audit import AuditSummary, audit_tokenized, enforce, role_counts
from chattune.config import JobConfig
from chattune.data import fingerprint, iter_examples
from chattune.errors import UserError
from chattune.masking import MASKING_VERSION, Masker
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


class _Encode:
    """The datasets.map function (a picklable object, so worker processes each build one Masker)."""

    def __init__(self, tokenizer, max_length: int, masking: str):
        self.args = (tokenizer, max_length, masking)
        self.masker: Masker | None = None

    def __call__(self, batch: dict) -> dict:
        if self.masker is None:
            self.masker = Masker(*self.args)
        out = {c: [] for c in COLUMNS + ["role_tokens", "role_trained", "error", "dropped"]}
        for enc in self.masker.encode_batch([json.loads(s) for s in batch["example"]]):
            failed = isinstance(enc, Exception)
            ids = [] if failed else enc.input_ids
            labels = [] if failed else enc.labels
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["attention_mask"].append([1] * len(ids))
            out["assistant_masks"].append((np.asarray(labels) != -100).astype(np.int8))
            tokens, trained = ([], []) if failed else role_counts(enc.token_roles, labels)
            out["role_tokens"].append(tokens)
            out["role_trained"].append(trained)
            out["error"].append(str(enc) if failed else "")
            out["dropped"].append("" if failed else enc.dropped or "")
        return out


def _read(path: Path, cfg: JobConfig, workdir: Path, skipped: Counter) -> datasets.Dataset:
    def rows():
        for place, ex in iter_examples(path, train_on=cfg.data.train_on, skip_invalid=cfg.data.skip_invalid,
                                       skipped=skipped):
            yield {"place": place, "example": json.dumps(ex, ensure_ascii=False)}

    try:
        return datasets.Dataset.from_generator(rows, cache_dir=str(workdir / "read"))
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        raise cause if cause is not None else e from None


def _summarise(ds: datasets.Dataset, cfg: JobConfig, skipped: Counter) -> AuditSummary:
    summary = AuditSummary(masking=cfg.data.masking, dropped=Counter(skipped))
    first_error = None
    for batch in ds.select_columns(["place", "error", "dropped", "role_tokens", "role_trained"]).iter(batch_size=2000):
        for place, error, dropped, tokens, trained in zip(*batch.values()):
            if error:
                first_error = first_error or f"{place}: {error}"
                summary.dropped[f"invalid: {error}"] += 1
            elif dropped:
                summary.dropped[dropped] += 1
            else:
                summary.add_counts(tokens, trained)
    if first_error and not cfg.data.skip_invalid:
        raise UserError(f"{first_error} (fix it, or pass --skip-invalid to skip such examples)")
    if summary.role_tokens["text"]:
        print("note: plain-text examples: every token is trained, no masking applies to them")
    return summary


def _build(cfg: JobConfig, tokenizer, path: Path, workdir: Path, in_memory: bool):
    skipped: Counter = Counter()
    raw = _read(path, cfg, workdir, skipped)
    files = lambda name: {} if in_memory else {"cache_file_name": str(workdir / f"{name}.arrow")}  # noqa: E731
    encoded = raw.map(
        _Encode(tokenizer, cfg.data.max_length, cfg.data.masking),
        batched=True,
        batch_size=256,
        num_proc=cfg.data.num_proc if cfg.data.num_proc > 1 else None,
        remove_columns=["example"],
        keep_in_memory=in_memory,
        new_fingerprint=f"encode-{workdir.name}",
        desc="render · tokenize · mask",
        **files("encoded"),
    )
    summary = _summarise(encoded, cfg, skipped)
    enforce(summary, str(path))
    if summary.examples == len(encoded):  # nothing dropped: no second pass over the data
        return encoded.select_columns(COLUMNS), summary
    kept = encoded.filter(lambda e, d: [not x and not y for x, y in zip(e, d)], input_columns=["error", "dropped"],
                          batched=True, keep_in_memory=in_memory, new_fingerprint=f"keep-{workdir.name}",
                          desc="keep", **files("kept"))
    return kept.select_columns(COLUMNS), summary


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
            ds.save_to_disk(str(tmp / "dataset"))
            for scratch in ("read", "encoded", "kept"):
                for f in tmp.glob(f"{scratch}*"):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
            cache.write_manifest(tmp, {
                "format": "chattune-pretokenized", "key": key, "rows": len(ds), "columns": COLUMNS,
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
        ds = datasets.load_from_disk(str(path / "dataset" if (path / "dataset").is_dir() else path))
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
    source = Path(ds.cache_files[0]["filename"]).parent.parent
    if output is not None:
        with cache.atomic_dir(Path(output)) as tmp:
            shutil.copytree(source / "dataset", tmp, dirs_exist_ok=True)
            shutil.copy2(source / cache.MANIFEST, tmp / cache.MANIFEST)
        print(f"saved {len(ds):,} examples to {output}")
    return source
