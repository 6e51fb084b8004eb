"""The run folder: what it writes, when, and which checkpoint a resumed run continues from."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from chattune.config import parse_config
from chattune.errors import UserError
from chattune.train.run_folder import RunFolder


def _cfg(tmp_path, **training):
    training = {"output_dir": str(tmp_path / "run"), **training}
    return parse_config({"data": {"train": "data/x.jsonl"}, "training": training})


def _trainer(steps):
    return SimpleNamespace(state=SimpleNamespace(global_step=steps), args=SimpleNamespace(world_size=1))


MAIN = SimpleNamespace(process_index=0)


def test_writes_config_audit_metrics_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = RunFolder(_cfg(tmp_path))
    folder.start(MAIN, {"examples": 3})
    folder.log({"step": 1, "epoch": 0.5, "loss": 2.0})
    folder.log({"step": 1, "epoch": 0.5, "eval_loss": 2.5})
    assert folder.finish(_trainer(1)) == "completed"

    run = tmp_path / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["train"] == str(tmp_path / "data" / "x.jsonl"), "paths absolute"
    assert json.loads((run / "audit.json").read_text()) == {"examples": 3}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary == {**summary, "status": "completed", "reason": None, "steps": 1, "final_loss": 2.0}


def test_other_processes_write_nothing(tmp_path):
    folder = RunFolder(_cfg(tmp_path))
    folder.start(SimpleNamespace(process_index=1), {})
    folder.log({"step": 1, "loss": 1.0})
    folder.finish(_trainer(1))
    assert not (tmp_path / "run").exists()


def test_a_stop_and_a_diverged_loss_are_not_completed(tmp_path):
    folder = RunFolder(_cfg(tmp_path))
    folder.start(MAIN, {})
    folder.stop("stopped_on_leakage", "step 5: prompt echo")
    assert folder.finish(_trainer(5)) == "stopped_on_leakage"

    folder = RunFolder(_cfg(tmp_path, output_dir=str(tmp_path / "nan")))
    folder.start(MAIN, {})
    folder.log({"step": 1, "loss": float("nan")})
    assert folder.finish(_trainer(1)) == "failed"
    assert "nan" in json.loads((tmp_path / "nan" / "summary.json").read_text())["reason"]


def test_a_run_that_never_started_leaves_no_summary(tmp_path):
    RunFolder(_cfg(tmp_path)).fail(RuntimeError("boom"))
    assert not (tmp_path / "run").exists()


def _checkpoint(run, step):
    (run / f"checkpoint-{step}").mkdir(parents=True)
    (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_resume_continues_from_the_newest_checkpoint_and_trims_later_metrics(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, 2)
    _checkpoint(run, 10)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (5, 10, 15)))
    with pytest.raises(UserError, match="pass --resume"):
        RunFolder(_cfg(tmp_path))
    folder = RunFolder(_cfg(tmp_path, resume=True))
    assert folder.resume_from == str(run / "checkpoint-10")
    folder.start(MAIN, {})
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [5, 10]
