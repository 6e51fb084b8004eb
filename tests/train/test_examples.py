"""Every shipped example config is valid, its data is what examples/make_data.py writes, and it trains."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from chattune.config import load_config
from chattune.train import train

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_the_examples_are_there():
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "dpo.yaml", "orpo.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid_and_its_data_exists(path, monkeypatch):
    monkeypatch.chdir(REPO)  # data paths are relative to the repository root, where the docs run them
    cfg = load_config(path)
    for data in (cfg.data.train, cfg.data.eval):
        assert data is not None and data.is_file(), data


def test_bundled_data_is_small_and_regenerates_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("make_data", REPO / "examples" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    make_data.main(tmp_path)
    committed = sorted((REPO / "examples" / "data").glob("*.jsonl"))
    assert [p.name for p in committed] == sorted(p.name for p in tmp_path.glob("*.jsonl"))
    for path in committed:
        assert path.read_bytes() == (tmp_path / path.name).read_bytes(), f"{path.name}: run examples/make_data.py"
    assert sum(p.stat().st_size for p in committed) < 300_000
    chat = [json.loads(line) for line in (REPO / "examples" / "data" / "pirate_chat.jsonl").open()]
    assert len(chat) >= 300
    replies = [m["content"] for row in chat for m in row["messages"] if m["role"] == "assistant"]
    assert all(r.endswith("⚓") for r in replies), "the distinctive style is in every reply"


@pytest.mark.integration
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_trains_a_couple_of_steps(path, tmp_path, monkeypatch):
    """The real SmolLM2-135M-Instruct, two steps of each example, with the monitor on."""
    monkeypatch.chdir(REPO)
    cfg = load_config(path)
    cfg.training.output_dir = tmp_path / "run"
    cfg.training.max_steps = 2
    cfg.training.batch_size = 2
    cfg.data.max_length = 128
    cfg.data.eval = None  # evaluation is covered on the tiny model; here it would only add minutes
    cfg.monitor.num_prompts = 1
    cfg.monitor.max_new_tokens = 8
    assert train(cfg) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "predictions.jsonl").is_file()
