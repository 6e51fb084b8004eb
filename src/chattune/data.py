"""Read training data into normalised examples.

Owns: the input formats (JSONL, JSON, Parquet, `datasets` folders) read chunk by chunk (so worker
processes read their own share), the example shapes (`messages`, `prompt`+`completion`, `text`, and
`prompt`+`chosen`+`rejected` for preferences) and the one-line errors naming file:line. Knows
nothing about tokenizers or templates.

A normalised SFT example is either
    {"messages": [{"role", "content", "train": bool, ...}, ...]}   # `train` always resolved
or  {"text": str}.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chattune.errors import UserError

ROLES = ("system", "user", "assistant", "tool")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


class InvalidExample(ValueError):
    """One example is malformed; `str(e)` is the reason (without its place)."""


@dataclass(frozen=True)
class Chunk:
    """A piece of a source that can be read on its own, in any process: bytes [start, stop) of a JSONL
    file, or rows [start, stop) of Parquet row group `part` (of the whole list otherwise). `first` is
    the number of its first line (JSONL) or row, for error messages."""

    start: int
    stop: int
    first: int
    part: int = 0


class Source:
    """A data file or `datasets` folder, read chunk by chunk.

    Picklable: worker processes read their own chunks, and the main process only finds where chunks
    start (line ends of a JSONL file, row counts otherwise). A JSON list, a memory-mapped `datasets`
    folder or a Parquet row group is loaded once per process that reads it."""

    MIN_CHUNK_BYTES, MAX_CHUNK_BYTES = 1 << 16, 1 << 20  # JSONL: about 8 chunks per part, within these
    CHUNK_ROWS = 256  # other sources

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: no such data file")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise UserError(f"{self.path}: the file is empty")
        if self.path.is_file() and self.path.suffix not in FILE_SUFFIXES:
            raise UserError(f"{self.path}: unsupported data file; use {', '.join(FILE_SUFFIXES)} or a datasets folder")
        self._loaded: tuple[int, object] | None = None  # (part, rows) last loaded by this process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def chunks(self, parts: int = 1) -> list[Chunk]:
        """Chunks covering the source in order; about 8 per part when the source is big enough."""
        if self.path.suffix == ".jsonl":
            size = self.path.stat().st_size // (8 * parts)
            return self._line_chunks(max(self.MIN_CHUNK_BYTES, min(self.MAX_CHUNK_BYTES, size)))
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(self.path).metadata
            groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        else:
            groups = [len(self._rows(0))]
        out, first = [], 0
        for part, n in enumerate(groups):
            out += [Chunk(i, min(i + self.CHUNK_ROWS, n), first + i, part) for i in range(0, n, self.CHUNK_ROWS)]
            first += n
        return out

    def _line_chunks(self, size: int) -> list[Chunk]:
        out, offset, line = [], 0, 1
        with self.path.open("rb") as f:
            while block := f.read(size):
                block += f.readline()  # chunks end at line ends
                out.append(Chunk(offset, offset + len(block), line))
                line += block.count(b"\n")
                offset += len(block)
        return out

    def records(self, chunk: Chunk) -> Iterator[tuple[str, object]]:
        """(place, raw record) for each example of the chunk, place being "file:line", "file:[i]" or
        "file:row i"; a line that is not JSON comes as an InvalidExample."""
        if self.path.suffix == ".jsonl":
            with self.path.open("rb") as f:
                f.seek(chunk.start)
                lines = f.read(chunk.stop - chunk.start).split(b"\n")
            for n, line in enumerate(lines, chunk.first):
                if line.strip():
                    yield f"{self.path}:{n}", _json_line(line)
            return
        name = "[{}]" if self.path.suffix == ".json" else "row {}"
        for i, row in enumerate(self._rows(chunk.part)[chunk.start : chunk.stop], chunk.first):
            yield f"{self.path}:{name.format(i)}", row

    def __iter__(self) -> Iterator[tuple[str, object]]:
        for chunk in self.chunks():
            yield from self.records(chunk)

    def _rows(self, part: int):
        """The rows of a JSON list, a `datasets` folder or one Parquet row group (sliceable)."""
        if self._loaded is None or self._loaded[0] != part:
            self._loaded = (part, self._load(part))
        return self._loaded[1]

    def _load(self, part: int):
        if self.path.is_dir():
            return _DatasetRows(_dataset_folder(self.path))
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).read_row_group(part).to_pylist()
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{self.path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise UserError(f"{self.path}: expected a JSON list of examples")
        return rows


def _json_line(line: bytes):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        return InvalidExample(f"not valid JSON ({e.msg} at column {e.colno})")
    except UnicodeDecodeError:
        return InvalidExample("not valid UTF-8")


class _DatasetRows:
    """A memory-mapped `datasets.Dataset`, sliced into lists of row dicts."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, rows: slice) -> list[dict]:
        batch = self.ds[rows]
        return [dict(zip(batch, values)) for values in zip(*batch.values())]


def _dataset_folder(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: not a `datasets` folder (save_to_disk) nor a data file") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"{path}: a DatasetDict without a `train` split ({', '.join(ds)})")
        ds = ds["train"]
    return ds


def _message_list(value, field: str, default_train: bool) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant" if default_train else "user", "content": value, "train": default_train}]
    if not isinstance(value, list) or not value:
        raise InvalidExample(f"`{field}` must be a non-empty list of messages or a string")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise InvalidExample(f"{field}[{i}] is not an object with `role` and `content`")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise InvalidExample(f"{field}[{i}]: unknown role {role!r} (use one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise InvalidExample(f"{field}[{i}]: content must be a string, got {type(content).__name__}")
        train = m.get("train")
        if train is not None and not isinstance(train, bool):
            raise InvalidExample(f"{field}[{i}]: `train` must be true or false")
        msg = {k: v for k, v in m.items() if v is not None}
        msg["train"] = (role == "assistant" and default_train) if train is None else train
        if msg["train"] and role != "assistant":
            raise InvalidExample(f"{field}[{i}]: only assistant messages can be trained (role is {role})")
        out.append(msg)
    return out


def normalize(record, train_on: str = "all_assistant") -> dict:
    """One raw record → a normalised SFT example. Raises InvalidExample with the reason."""
    if isinstance(record, InvalidExample):
        raise record
    if not isinstance(record, dict):
        raise InvalidExample("expected a JSON object")
    if "messages" in record and record["messages"] is not None:
        messages = _message_list(record["messages"], "messages", default_train=True)
    elif "prompt" in record and "completion" in record:
        prompt = _message_list(record["prompt"], "prompt", default_train=False)
        for m in prompt:
            m["train"] = False
        messages = prompt + _message_list(record["completion"], "completion", default_train=True)
    elif "text" in record:
        if not isinstance(record["text"], str) or not record["text"]:
            raise InvalidExample("`text` must be a non-empty string")
        return {"text": record["text"]}
    else:
        raise InvalidExample("needs `messages`, `prompt` + `completion`, or `text`")
    assistants = [m for m in messages if m["role"] == "assistant"]
    if not assistants:
        raise InvalidExample("no assistant message: nothing to train")
    if train_on == "last_assistant":
        last = max(i for i, m in enumerate(messages) if m["train"]) if any(m["train"] for m in messages) else -1
        for i, m in enumerate(messages):
            m["train"] = m["train"] and i == last
    if not any(m["train"] for m in messages):
        raise InvalidExample("no assistant message is trained (all have `train: false`)")
    return {"messages": messages}


def _normalize_preference(record) -> dict:
    if isinstance(record, InvalidExample):
        raise record
    if not isinstance(record, dict) or not all(k in record for k in ("prompt", "chosen", "rejected")):
        raise InvalidExample("a preference example needs `prompt`, `chosen` and `rejected`")
    strip = lambda ms: [{k: v for k, v in m.items() if k != "train"} for m in ms]  # noqa: E731
    return {
        "prompt": strip(_message_list(record["prompt"], "prompt", default_train=False)),
        "chosen": strip(_message_list(record["chosen"], "chosen", default_train=True)),
        "rejected": strip(_message_list(record["rejected"], "rejected", default_train=True)),
    }


def parse(record, *, train_on: str = "all_assistant", preferences: bool = False) -> dict:
    """A raw record → a normalised SFT or preference example. Raises InvalidExample with the reason."""
    return _normalize_preference(record) if preferences else normalize(record, train_on)


def invalid(place: str, reason) -> UserError:
    """The one-line error for an example that can't be used."""
    return UserError(f"{place}: {reason} (fix it, or pass --skip-invalid to skip such examples)")


def iter_examples(path: Path, *, train_on: str = "all_assistant", skip_invalid: bool = False,
                  skipped: Counter | None = None, preferences: bool = False) -> Iterator[tuple[str, dict]]:
    """Yield (place, normalised example). Invalid examples raise UserError("file:line: reason"),
    or with skip_invalid are counted in `skipped` by reason."""
    seen = False
    for place, record in Source(path):
        seen = True
        try:
            yield place, parse(record, train_on=train_on, preferences=preferences)
        except InvalidExample as e:
            if not skip_invalid:
                raise invalid(place, e) from None
            if skipped is not None:
                skipped[f"invalid: {e}"] += 1
    if not seen:
        raise UserError(f"{path}: no examples in it")


def read_examples(path: Path, **kw) -> list[dict]:
    return [ex for _, ex in iter_examples(path, **kw)]


def read_preferences(path: Path, skip_invalid: bool = False) -> list[dict]:
    """Preference data for DPO/ORPO: dicts with `prompt`, `chosen`, `rejected` message lists."""
    return [ex for _, ex in iter_examples(path, skip_invalid=skip_invalid, preferences=True)]


def fingerprint(path: Path) -> str:
    """sha256 of the data's bytes (every file of a folder, by relative name), for cache keys."""
    path = Path(path)
    Source(path)  # the same errors for a missing or empty path
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
