"""The cache root. (Pre-tokenization cache functions are added below.)"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where chattune keeps converted models and pre-tokenized datasets."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("CHATTUNE_CACHE_DIR") or Path.home() / ".cache" / "chattune")
