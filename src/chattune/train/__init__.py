"""`chattune train`: one job config → one fine-tuned adapter or model in a run folder.

Owns choosing the method's recipe (sft.py, dpo.py, orpo.py: one readable `run` each, on TRL), checking the
inputs exist before anything heavy loads, and turning how the run ended into an exit code. The run folder's
files are `run_folder.py`'s, the shared trainer settings `trainer_args.py`'s, the callbacks `callbacks.py`'s.

>>> from chattune.config import load_config
>>> from chattune.train import train
>>> train(load_config("examples/quickstart.yaml"))  # doctest: +SKIP
0
"""

from __future__ import annotations

import importlib

from chattune.config import JobConfig
from chattune.errors import UserError
from chattune.train.run_folder import RunFolder


def _check_inputs(cfg: JobConfig) -> None:
    if cfg.data.train is None:
        raise UserError("data.train: not set; name the training data file in the job config")
    for key, path in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        if path is not None and not path.exists():
            raise UserError(f"{key}: {path}: no such file or folder")


def train(cfg: JobConfig) -> int:
    """Train as the job config says. Returns the exit code: 0 when the run completed, 1 when it stopped early
    (the monitor found leakage) or its loss diverged. Mistakes in the config or data raise UserError; a crash
    during training is recorded as `failed` in summary.json and re-raised."""
    _check_inputs(cfg)
    folder = RunFolder(cfg)
    method = importlib.import_module(f"chattune.train.{cfg.training.method}")
    try:
        status = method.run(cfg, folder)
    except BaseException as e:
        folder.fail(e)
        raise
    if folder.is_main:
        print(f"chattune: {status}{f' ({folder.reason})' if folder.reason else ''}; run folder: {folder.path}")
    return 0 if status == "completed" else 1
