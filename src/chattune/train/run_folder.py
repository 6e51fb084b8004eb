"""The run folder: everything a run leaves behind besides what TRL writes itself.

Owns the files `config.yaml` (the resolved job config), `audit.json` (what is trained), `metrics.jsonl`
(written by `callbacks.MetricsLogger`) and `summary.json` (how the run ended), the run's status, and the
choice of checkpoint to resume from. TRL writes the adapter or model, the tokenizer and `checkpoint-N/`
folders into the same folder. Knows nothing about methods, data or models.

In a multi-process run every process keeps a RunFolder, but only the main one writes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

import yaml
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from chattune.config import JobConfig
from chattune.errors import UserError

Status = Literal["completed", "stopped_on_leakage", "failed"]


class RunFolder:
    """One run's folder and how the run ended.

    A callback that decides to end the run early (the prediction monitor) calls `stop(status, reason)` and sets
    `control.should_training_stop`; the summary then records that status and `train()` exits non-zero.
    """

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self.path = Path(cfg.training.output_dir)
        self.status: Status = "completed"
        self.reason: str | None = None
        self.final_loss: float | None = None
        self.is_main = False  # until start(): nothing is written for a run that never began
        self._started = time.time()
        self.resume_from = self._checkpoint_to_resume()

    def _checkpoint_to_resume(self) -> str | None:
        last = get_last_checkpoint(self.path) if self.path.is_dir() else None
        if self.cfg.training.resume and last is None:
            raise UserError(f"training.resume: no checkpoint-N folder in {self.path} to continue from")
        if not self.cfg.training.resume and last is not None:
            raise UserError(
                f"training.output_dir: {self.path} holds checkpoints of an earlier run; "
                "pass --resume to continue it, or choose another output_dir"
            )
        return last

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def start(self, args: TrainingArguments, audit: dict) -> None:
        """Write the config (paths made absolute) and the audit; start (or, on resume, trim) the metrics file."""
        self.is_main = args.process_index == 0
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        config = _absolute_paths(self.cfg.model_dump())
        if Path(self.cfg.model).is_dir():
            config["model"] = str(Path(self.cfg.model).resolve())
        (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (self.path / "audit.json").write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
        kept = []
        if self.resume_from is not None and self.metrics_file.is_file():
            # Steps after the checkpoint are trained again; drop their old lines so each step appears once.
            step = json.loads((Path(self.resume_from) / "trainer_state.json").read_text())["global_step"]
            kept = [line for line in self.metrics_file.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.metrics_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def log(self, record: dict) -> None:
        if "loss" in record:
            self.final_loss = record["loss"]
        if self.is_main:
            with self.metrics_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def stop(self, status: Status, reason: str) -> None:
        """Record why training ends early (the caller also sets `control.should_training_stop`)."""
        self.status, self.reason = status, reason

    def fail(self, error: BaseException) -> None:
        self.stop("failed", f"{type(error).__name__}: {error}".splitlines()[0])
        self._write_summary(steps=None)

    def finish(self, trainer: Trainer) -> Status:
        """After training: judge the final loss and write the summary. Returns the status."""
        if self.status == "completed" and self.final_loss is not None and not math.isfinite(self.final_loss):
            self.stop("failed", f"the training loss became {self.final_loss}")
        self._write_summary(steps=trainer.state.global_step, processes=trainer.args.world_size)
        return self.status

    def _write_summary(self, steps: int | None, processes: int | None = None) -> None:
        if not self.is_main:
            return
        summary = {
            "status": self.status,
            "reason": self.reason,
            "steps": steps,
            "final_loss": self.final_loss,
            "processes": processes,
            "runtime_s": round(time.time() - self._started, 1),
        }
        (self.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _absolute_paths(value):
    """The config as plain data, every path made absolute: the run folder stays usable from anywhere."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, dict):
        return {k: _absolute_paths(v) for k, v in value.items()}
    return value
