"""A run stopped after a checkpoint continues with --resume and ends where an uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from chattune.train import sft, train


class _Crash(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 3:  # checkpoint-3 is on disk
            raise RuntimeError("power cut")


def _losses(run):
    lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return {m["step"]: m["loss"] for m in lines if "loss" in m}


def test_resume_ends_at_the_same_loss(job, chat_data, tmp_path, monkeypatch):
    settings = {"max_steps": 6, "save_steps": 3, "logging_steps": 1}
    assert train(job(chat_data, output_dir=str(tmp_path / "straight"), **settings)) == 0

    original = sft.callbacks
    monkeypatch.setattr(sft, "callbacks", lambda cfg, folder: [*original(cfg, folder), _Crash()])
    with pytest.raises(RuntimeError, match="power cut"):
        train(job(chat_data, output_dir=str(tmp_path / "resumed"), **settings))
    failed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert failed["status"] == "failed" and "power cut" in failed["reason"]

    monkeypatch.setattr(sft, "callbacks", original)
    assert train(job(chat_data, output_dir=str(tmp_path / "resumed"), resume=True, **settings)) == 0

    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert list(resumed) == [1, 2, 3, 4, 5, 6], "each step logged once, the re-trained ones not twice"
    assert resumed == pytest.approx(straight, rel=1e-4)
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("straight", "resumed")]
    assert summaries[1]["status"] == "completed" and summaries[1]["steps"] == 6
    assert summaries[1]["final_loss"] == pytest.approx(summaries[0]["final_loss"], rel=1e-4)


def test_resume_without_a_checkpoint_is_a_user_error(job, chat_data):
    from chattune.errors import UserError

    with pytest.raises(UserError, match="no checkpoint"):
        train(job(chat_data, resume=True))
