"""Trainer callbacks shared by every method, and the one list they are gathered in.

Owns `callbacks(cfg, folder)`: SFT, DPO and ORPO all pass its list to their TRL trainer, so a callback added
there (the prediction monitor, for one) runs for every method. Knows nothing about data or models.
"""

from __future__ import annotations

from transformers import TrainerCallback

from chattune.config import JobConfig
from chattune.monitor.callback import PredictionMonitor
from chattune.train.run_folder import RunFolder

# Logged once at the end of training; the summary holds what matters of it.
_END_OF_TRAINING_KEYS = {"train_runtime", "train_loss", "train_samples_per_second", "train_steps_per_second"}


class MetricsLogger(TrainerCallback):
    """One JSON line per logging step in `metrics.jsonl`: step, epoch, loss, learning_rate, grad_norm, ...
    (eval lines carry eval_loss). The last step is always logged, so the summary's final loss is the last step's."""

    def __init__(self, folder: RunFolder):
        self.folder = folder

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or _END_OF_TRAINING_KEYS & logs.keys():
            return
        self.folder.log({"step": state.global_step, "epoch": state.epoch, **logs})


def callbacks(cfg: JobConfig, folder: RunFolder) -> list[TrainerCallback]:
    """The callbacks every trainer gets. Append new ones here."""
    return [MetricsLogger(folder)] + ([PredictionMonitor(cfg, folder)] if cfg.monitor.enabled else [])
