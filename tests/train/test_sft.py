"""SFT trains on exactly the labels the masker produced: collated batches, the run folder, errors, stop status."""

from __future__ import annotations

import json

import datasets
import pytest
from transformers import TrainerCallback

from chattune.errors import UserError
from chattune.pretokenize import build_sft_dataset
from chattune.train import sft, train
from chattune.train.run_folder import RunFolder


@pytest.mark.parametrize(("pretokenize", "group_by_length"), [(True, False), (False, False), (True, True)])
def test_collated_labels_are_the_cached_labels(job, chat_data, pretokenize, group_by_length):
    cfg = job(chat_data, pretokenize=pretokenize, group_by_length=group_by_length)
    trainer = sft.build_trainer(cfg, RunFolder(cfg))
    cached, _ = build_sft_dataset(cfg, trainer.processing_class, chat_data, use_cache=True)
    labels_of = {tuple(row["input_ids"]): row["labels"] for row in cached}

    rows = 0
    for batch in trainer.get_train_dataloader():  # the real trainer's collator and sampler
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"], strict=True):
            n = int(mask.sum())
            assert mask[:n].all(), "padding goes on the right"
            assert labels[n:].eq(-100).all(), "padding is never trained"
            assert labels[:n].tolist() == labels_of[tuple(ids[:n].tolist())]
            rows += 1
    assert rows == len(cached)
    trained = sum(label != -100 for row in cached for label in row["labels"])
    assert 0 < trained < sum(len(row["input_ids"]) for row in cached), "prompts are masked, replies trained"


def test_a_tokenized_dataset_without_labels_is_refused(job, tmp_path, smollm2_tokenizer):
    """The background story: input_ids without labels would train every prompt token."""
    texts = [smollm2_tokenizer.apply_chat_template([{"role": "user", "content": f"q{i}"},
                                                    {"role": "assistant", "content": f"a{i}"}], tokenize=False)
             for i in range(8)]
    folder = tmp_path / "tokenized"
    datasets.Dataset.from_dict(dict(smollm2_tokenizer(texts))).save_to_disk(str(folder))
    with pytest.raises(UserError, match=str(folder)):
        train(job(folder))
    assert not (tmp_path / "run").exists(), "nothing trained, no run folder"


def test_run_folder_holds_adapter_tokenizer_config_metrics_audit_summary(job, chat_data, tmp_path):
    cfg = job(chat_data, eval=chat_data, max_steps=5, save_steps=2, eval_steps=2, save_total_limit=2)
    assert train(cfg) == 0
    run = tmp_path / "run"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja",
                 "config.yaml", "metrics.jsonl", "audit.json", "summary.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]  # save_total_limit

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["reason"] is None and summary["steps"] == 5
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in lines if "loss" in m]
    assert [m["step"] for m in train_lines] == [1, 2, 3, 4, 5]
    assert all({"step", "epoch", "loss", "learning_rate", "grad_norm"} <= m.keys() for m in train_lines)
    assert [m["step"] for m in lines if "eval_loss" in m] == [2, 4, 5]
    assert summary["final_loss"] == train_lines[-1]["loss"]

    audit = json.loads((run / "audit.json").read_text())
    assert audit["examples"] == 24 and audit["roles"]["user"]["trained"] == 0
    config = (run / "config.yaml").read_text()
    assert f"train: {chat_data}" in config and "method: sft" in config  # paths absolute: usable from anywhere


def test_full_fine_tuning_saves_the_model(job, chat_data, tmp_path):
    assert train(job(chat_data, use_lora=False, max_steps=2)) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "adapter_config.json").exists()


class _StopAt(TrainerCallback):
    """Stands in for the prediction monitor finding leakage."""

    def __init__(self, folder, step):
        self.folder, self.step = folder, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.folder.stop("stopped_on_leakage", f"step {self.step}: test")
            control.should_training_stop = True


def test_a_run_stopped_by_a_callback_exits_non_zero(job, chat_data, tmp_path, monkeypatch):
    monkeypatch.setattr(sft, "callbacks", lambda cfg, folder: [_StopAt(folder, 2)])
    assert train(job(chat_data, max_steps=5)) == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped_on_leakage" and summary["reason"] == "step 2: test"
    assert summary["steps"] == 2


def test_output_dir_with_checkpoints_needs_resume(job, chat_data):
    assert train(job(chat_data, max_steps=2)) == 0
    with pytest.raises(UserError, match="--resume"):
        train(job(chat_data, max_steps=2))


def test_tensorboard_logs_when_asked(job, chat_data, tmp_path):
    assert train(job(chat_data, max_steps=1, report_to=["tensorboard"])) == 0
    assert list((tmp_path / "run" / "runs").rglob("events.out.tfevents.*"))


def test_a_json_job_config_in_the_background_story_shape_trains(tmp_path, tiny_model, chat_data):
    from chattune.cli import main

    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({
        "model": str(tiny_model), "cache_dir": str(tmp_path / "cache"),
        "data": {"train": str(chat_data), "max_length": 64},
        "training": {"method": "sft", "use_lora": True, "pretokenize": True, "max_steps": 1, "batch_size": 4},
        "monitor": {"enabled": False},
    }))
    with pytest.raises(SystemExit) as exit_code:
        main(["train", str(job_file), "--output-dir", str(tmp_path / "json-run")])
    assert exit_code.value.code == 0
    assert json.loads((tmp_path / "json-run" / "summary.json").read_text())["status"] == "completed"
