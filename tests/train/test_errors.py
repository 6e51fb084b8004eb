"""Mistakes a user makes: one line on stderr, exit code 2, no traceback, nothing trained."""

from __future__ import annotations

import pytest
import yaml

from chattune.cli import main

from .conftest import conversation, preference, write_jsonl


def _run_cli(tmp_path, capsys, job_dict) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict))
    with pytest.raises(SystemExit) as exit_code:
        main(["train", str(path)])
    assert exit_code.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert not (tmp_path / "run" / "summary.json").exists()
    errors = [line for line in stderr.splitlines() if line.startswith("chattune: error: ")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0])  # one line, the last (progress bars before it)
    return errors[0]


def _job(tmp_path, model, train, **training):
    return {"model": str(model), "cache_dir": str(tmp_path / "cache"), "data": {"train": str(train), "max_length": 64},
            "training": {"output_dir": str(tmp_path / "run"), "batch_size": 4, **training},
            "monitor": {"enabled": False}}


def test_wrong_model_path(tmp_path, capsys, chat_data):
    err = _run_cli(tmp_path, capsys, _job(tmp_path, tmp_path / "no-such-model", chat_data))
    assert "no-such-model" in err


def test_missing_data_file(tmp_path, capsys, tiny_model):
    err = _run_cli(tmp_path, capsys, _job(tmp_path, tiny_model, tmp_path / "missing.jsonl"))
    assert err == f"chattune: error: data.train: {tmp_path / 'missing.jsonl'}: no such file or folder"


def test_no_assistant_turns(tmp_path, capsys, tiny_model):
    data = write_jsonl(tmp_path / "users.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}] * 8)
    err = _run_cli(tmp_path, capsys, _job(tmp_path, tiny_model, data))
    assert "users.jsonl:1" in err and "assistant" in err


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
def test_dataset_too_small_for_one_batch(tmp_path, capsys, tiny_model, method):
    rows = [conversation(i) for i in range(3)] if method == "sft" else [preference(i) for i in range(3)]
    data = write_jsonl(tmp_path / "small.jsonl", rows)
    err = _run_cli(tmp_path, capsys, _job(tmp_path, tiny_model, data, method=method, gradient_accumulation_steps=2))
    assert "3 usable examples, fewer than one training step needs" in err and "= 8" in err
