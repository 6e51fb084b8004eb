"""chattune.monitor.callback: the monitor inside real `chattune train` runs of the embedded model (integration:
a few steps, tiny max_length), its stop on leakage and the report of the stopped run; and its pure parts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import TrainerState

from chattune.cli import main
from chattune.config import JobConfig
from chattune.models import SMOLLM2
from chattune.monitor.callback import PredictionMonitor, format_summary
from chattune.monitor.score import FLAGS
from chattune.report import render_report
from chattune.train.run_folder import RunFolder

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"
CONTRACT = {"step", "prompt_id", "messages", "prediction", "reference", "scores", "flags", "healthy", "spans"}
# The untrained model already does as told here: it echoes the prompt, a real prompt_echo at every step.
ECHO = "Repeat this sentence exactly: the old lighthouse keeper counted seven ships in the harbour at dawn."


def _job(tmp_path: Path, max_steps: int, **monitor) -> Path:
    job = {
        "model": SMOLLM2,
        "data": {"train": str(EXAMPLES / "pirate_chat.jsonl"), "max_length": 64},
        "training": {"max_steps": max_steps, "batch_size": 2, "logging_steps": 1, "save_steps": 100,
                     "output_dir": str(tmp_path / "run")},
        "monitor": {"every_steps": 2, "num_prompts": 2, "max_new_tokens": 12, **monitor},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def _train(job: Path) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(job)])
    return exit_.value.code


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.integration
def test_predictions_at_step_0_every_n_steps_and_the_last(tmp_path, capsys):
    assert _train(_job(tmp_path, max_steps=5)) == 0
    rows = _lines(tmp_path / "run")
    assert [(r["step"], r["prompt_id"]) for r in rows] == [(s, p) for s in (0, 2, 4, 5) for p in (0, 1)]
    for r in rows:
        assert CONTRACT <= r.keys() and set(r["scores"]) == set(FLAGS)
        assert r["healthy"] == (not r["flags"]) and set(r["spans"]) <= set(r["flags"])
        assert all(set(m) == {"role", "content"} for m in r["messages"]) and r["messages"][-1]["role"] == "user"
        assert isinstance(r["reference"], str) and isinstance(r["prediction"], str)
    # The same prompts at every step: the first train conversations, up to their last assistant reply.
    first = json.loads((EXAMPLES / "pirate_chat.jsonl").read_text(encoding="utf-8").splitlines()[0])["messages"]
    assert rows[0]["messages"] == first[:-1] and rows[0]["reference"] == first[-1]["content"]
    assert {json.dumps(r["messages"]) for r in rows if r["prompt_id"] == 1} == {json.dumps(rows[1]["messages"])}
    out = capsys.readouterr().out
    table = out[out.index("chattune monitor: 2 prompts from"):]
    assert "(train data: these prompts are trained on)" in table
    assert [line.split()[0] for line in table.splitlines()[2:6]] == ["0", "2", "4", "5"]
    assert "chattune: completed" in out


@pytest.mark.integration
def test_stop_on_leakage_stops_saves_and_exits_non_zero_then_the_report_shows_it(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": ECHO}]}) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    assert _train(_job(tmp_path, max_steps=6, prompts=str(prompts), stop_on_leakage=True)) == 1

    out, err = capsys.readouterr()
    assert "WARNING: step 0 (the baseline, before any training" in err  # warned, but step 0 never stops a run
    assert "WARNING: step 2: 1 of 1 predictions UNHEALTHY" in err and "lighthouse keeper" in err
    assert "chattune: stopped_on_leakage (monitor.stop_on_leakage: step 2: 1 of 1 predictions unhealthy" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped_on_leakage" and summary["steps"] == 2
    assert "prompt_echo 1" in summary["reason"]
    assert (run / "checkpoint-2").is_dir()  # the last checkpoint is kept
    assert [(r["step"], r["flags"]) for r in _lines(run)] == [(0, ["prompt_echo"]), (2, ["prompt_echo"])]

    main(["report", str(run)])
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<span class="status stopped_on_leakage">stopped_on_leakage</span>' in page
    assert "1 monitored prompt(s) unhealthy at step 2" in page and 'class="f-prompt_echo"' in page


@pytest.mark.integration
def test_two_processes_write_once_and_stop_together(tmp_path):
    """Under torchrun both processes generate and reach the same verdict, so both stop at step 2 (neither hangs
    waiting for the other); only the main process writes predictions.jsonl."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": ECHO}]}) + "\n", encoding="utf-8")
    job = _job(tmp_path, max_steps=6, prompts=str(prompts), stop_on_leakage=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), "-m", "chattune.cli", "train", str(job)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped_on_leakage" and summary["steps"] == 2 and summary["processes"] == 2
    assert [r["step"] for r in _lines(tmp_path / "run")] == [0, 2]
    assert done.stderr.count("WARNING: step 2:") == 1


# --- the parts without a model ---------------------------------------------------------------------------

def test_resume_keeps_the_lines_up_to_the_checkpoint_and_their_baseline(tmp_path):
    cfg = JobConfig.model_validate({"data": {"train": str(EXAMPLES / "pirate_chat.jsonl")},
                                    "training": {"output_dir": str(tmp_path / "run")}})
    monitor = PredictionMonitor(cfg, RunFolder(cfg))
    monitor.path.parent.mkdir()
    monitor.path.write_text("".join(json.dumps({"step": s, "prompt_id": 0, "prediction": f"at {s}"}) + "\n"
                                    for s in (0, 50, 100)))
    monitor.on_train_begin(None, TrainerState(global_step=50), None)
    assert [r["step"] for r in _lines(tmp_path / "run")] == [0, 50]
    assert monitor.baseline == {0: "at 0"}


def test_summary_table_lists_every_step_and_the_last_flagged_predictions():
    healthy = {"predictions": 2, "unhealthy_share": 0.0, "mean": dict.fromkeys(FLAGS, 0.0), "healthy": True}
    sick = {"predictions": 2, "unhealthy_share": 1.0, "healthy": False,
            "mean": {"prompt_echo": 0.9, "repetition": 0.7, "script_drift": 0.0, "format_leakage": 0.5}}
    flagged = [{"prompt_id": 1, "flags": ["prompt_echo", "repetition"], "prediction": "What is 2+2? " * 40}]
    text = format_summary([(0, healthy), (50, sick)], flagged, "eval.jsonl", 3.31)
    lines = text.splitlines()
    assert lines[0] == "chattune monitor: 2 prompts from eval.jsonl; 2 monitored steps, 3.3s generating"
    assert lines[2].split() == ["0", "2/2", "0.00", "0.00", "0.00", "0.00", "0.00", "ok"]
    assert lines[3].split() == ["50", "0/2", "0.90", "0.70", "0.00", "0.50", "-", "UNHEALTHY"]
    assert lines[4] == "  flagged at step 50:"
    assert lines[5].startswith('    prompt 1 [prompt_echo, repetition]: "What is 2+2? What') and lines[5].endswith('…"')
