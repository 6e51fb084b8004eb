"""Read training data into normalised examples.

Owns: the input formats (JSONL, JSON, Parquet, `datasets` folders), the example shapes
(`messages`, `prompt`+`completion`, `text`, and `prompt`+`chosen`+`rejected` for preferences)
and the one-line errors naming file:line. Knows nothing about tokenizers or templates.

A normalised SFT example is either
    {"messages": [{"role", "content", "train": bool, ...}, ...]}   # `train` always resolved
or  {"text": str}.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from chattune.errors import UserError

ROLES = ("system", "user", "assistant", "tool")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


class InvalidExample(ValueError):
    """One example is malformed; `str(e)` is the reason (without its place)."""


def _records(path: Path) -> Iterator[tuple[str, object]]:
    """Yield (place, raw record) from any supported source; place is "file:line" or "file:row N"."""
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise UserError(f"{path}: not a `datasets` folder (save_to_disk) nor a data file") from None
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise UserError(f"{path}: a DatasetDict without a `train` split ({', '.join(ds)})")
            ds = ds["train"]
        for i, row in enumerate(ds):
            yield f"{path}:row {i}", row
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{n}", InvalidExample(f"not valid JSON ({e.msg} at column {e.colno})")
    elif path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of examples")
        for i, row in enumerate(rows):
            yield f"{path}:[{i}]", row
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {i}", row
    else:
        raise UserError(f"{path}: unsupported data file; use {', '.join(FILE_SUFFIXES)} or a datasets folder")


def _check_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such data file")
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")


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


def iter_examples(path: Path, *, train_on: str = "all_assistant", skip_invalid: bool = False,
                  skipped: Counter | None = None, preferences: bool = False) -> Iterator[tuple[str, dict]]:
    """Yield (place, normalised example). Invalid examples raise UserError("file:line: reason"),
    or with skip_invalid are counted in `skipped` by reason."""
    path = Path(path)
    _check_path(path)
    seen = False
    for place, record in _records(path):
        seen = True
        try:
            yield place, _normalize_preference(record) if preferences else normalize(record, train_on)
        except InvalidExample as e:
            if not skip_invalid:
                raise UserError(f"{place}: {e} (fix it, or pass --skip-invalid to skip such examples)") from None
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
    _check_path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
