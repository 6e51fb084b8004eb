"""The same job config under torchrun: 2 CPU processes (gloo), data-parallel, one run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_run(job, chat_data, tmp_path):
    cfg = job(chat_data, batch_size=2, max_steps=3, save_steps=2)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "chattune.cli", "train", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary == {**summary, "status": "completed", "steps": 3, "processes": 2}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3], "only the main process writes"
    assert lines[-1]["epoch"] == 0.5, "3 steps × 2 processes × 2 examples = half of the 24 examples"
    assert (run / "adapter_model.safetensors").is_file()
