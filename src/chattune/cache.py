"""The pre-tokenization cache: keys, atomic writes, lookup, list and clear.

Owns: where cached datasets live (`<root>/datasets/<key>/`), what makes an entry complete (its
`manifest.json`, written last inside a temporary folder that is then renamed into place), and
refusing entries written under another masking version. Knows nothing about what is inside an
entry: the key is computed by the caller from everything that changes the labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from chattune.masking import MASKING_VERSION

MANIFEST = "manifest.json"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where chattune keeps converted models and pre-tokenized datasets."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("CHATTUNE_CACHE_DIR") or Path.home() / ".cache" / "chattune")


def make_key(inputs: dict) -> str:
    """A key over every input that can change the labels (masking version included)."""
    blob = json.dumps({**inputs, "masking_version": MASKING_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def entry_dir(root: Path, key: str) -> Path:
    return root / "datasets" / key


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def lookup(root: Path, key: str) -> Path | None:
    """A complete entry for `key` written by this masking version, else None. An entry lists its Arrow
    `files`; one written before entries did (with a `dataset` folder instead) is rebuilt."""
    folder = entry_dir(root, key)
    manifest = read_manifest(folder)
    if (manifest and manifest.get("masking_version") == MASKING_VERSION and "files" in manifest
            and "labels" in manifest.get("columns", [])):
        return folder
    return None


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling of `final`; on success it replaces `final`, on failure it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({**manifest, "masking_version": MASKING_VERSION}, indent=2))


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def entries(root: Path) -> list[tuple[Path, dict | None]]:
    base = root / "datasets"
    if not base.is_dir():
        return []
    return [(d, read_manifest(d)) for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def print_entries(root: Path) -> None:
    found = entries(root)
    if not found:
        print(f"{root}: no cached datasets")
        return
    for folder, m in found:
        if m is None:
            print(f"{folder.name}  (incomplete: no manifest; never used)")
            continue
        stale = "" if m.get("masking_version") == MASKING_VERSION else "  (older masking version: never used)"
        inp = m.get("inputs", {})
        print(f"{folder.name}  {m.get('rows', '?'):>8} rows  {_size(folder) / 2**20:8.1f} MiB  "
              f"{inp.get('data_path', '?')}  {inp.get('model', '?')}  max_length={inp.get('max_length')}{stale}")


def clear(root: Path) -> None:
    found = entries(root)
    for folder, _ in found:
        shutil.rmtree(folder)
    for leftover in (root / "datasets").glob(".tmp-*") if (root / "datasets").is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)
    print(f"removed {len(found)} cached datasets from {root / 'datasets'}")
