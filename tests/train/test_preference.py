"""DPO and ORPO through TRL's trainers on chat-template-rendered preference pairs."""

from __future__ import annotations

import json

import pytest

from chattune.train import train
from chattune.train.preference import preference_audit


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_methods_train_and_fill_the_run_folder(job, pref_data, tmp_path, method):
    assert train(job(pref_data, eval=pref_data, method=method, max_steps=2, eval_steps=2)) == 0
    run = tmp_path / "run"
    assert (run / "adapter_model.safetensors").is_file() and (run / "tokenizer.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2]
    assert any("eval_loss" in m for m in lines)
    audit = json.loads((run / "audit.json").read_text())
    assert audit["examples"] == 16 and audit["roles"]["prompt"]["trained"] == 0
    assert 0 < audit["trained_tokens"] < audit["tokens"]


def test_dpo_full_fine_tuning_uses_a_frozen_reference(job, pref_data, tmp_path):
    assert train(job(pref_data, method="dpo", use_lora=False, max_steps=1)) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_preference_audit_counts_what_the_objective_trains():
    # Two pairs; the second is cut at max_length 10 (prompt 6 + chosen 4 of 5; prompt 6 + rejected 3).
    audit = preference_audit([(3, 2, 1), (6, 5, 3)], dropped=1, max_length=10)
    assert audit["examples"] == 2
    assert audit["roles"]["prompt"] == {"tokens": 2 * 3 + 2 * 6, "trained": 0}
    assert audit["pairs"] == {"chosen_tokens": 2 + 4, "rejected_tokens": 1 + 3}
    assert audit["trained_tokens"] == 10 and audit["tokens"] == 28
    assert audit["dropped"] == {"prompt fills max_length": 1}
