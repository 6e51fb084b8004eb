"""Job config → TRL arguments, precision and LoRA: the settings every method shares (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trl import DPOConfig, SFTConfig

from chattune.config import parse_config
from chattune.errors import UserError
from chattune.train.trainer_args import lora_config, precision_flags, require_one_step, trainer_args


def _cfg(tmp_path, **training):
    return parse_config({"data": {"train": "x.jsonl"}, "training": {"output_dir": str(tmp_path / "run"), **training}})


def test_training_keys_reach_the_trainer_arguments(tmp_path):
    cfg = _cfg(tmp_path, learning_rate=3e-4, batch_size=2, gradient_accumulation_steps=4, max_steps=7,
               lr_scheduler="linear", warmup_ratio=0.25, seed=7, logging_steps=3, save_steps=5,
               save_total_limit=1, group_by_length=True)
    args = trainer_args(cfg, SFTConfig)
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3e-4, 2, 4)
    assert (args.max_steps, args.lr_scheduler_type.value, args.seed) == (7, "linear", 7)
    assert args.get_warmup_steps(8) == 2  # a share of the steps
    assert (args.logging_steps, args.save_steps, args.save_total_limit) == (3, 5, 1)
    assert args.train_sampling_strategy == "group_by_length"
    assert args.eval_strategy.value == "no" and args.report_to == []
    assert args.activation_checkpointing is False  # TRL's default is on; ours is off unless asked
    assert Path(args.output_dir) == tmp_path / "run"


def test_epochs_apply_when_max_steps_is_unset_and_eval_follows_eval_data(tmp_path):
    cfg = parse_config({"data": {"train": "x.jsonl", "eval": "y.jsonl"},
                        "training": {"output_dir": str(tmp_path), "num_epochs": 2, "save_steps": 30}})
    args = trainer_args(cfg, DPOConfig, beta=0.2)
    assert (args.max_steps, args.num_train_epochs, args.beta) == (-1, 2, 0.2)
    assert args.eval_strategy.value == "steps" and args.eval_steps == 30  # eval_steps defaults to save_steps


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU choice")
def test_precision_auto_is_fp32_on_cpu_and_fp16_needs_a_gpu():
    assert precision_flags("auto") == {"bf16": False, "fp16": False}
    assert precision_flags("bf16") == {"bf16": True, "fp16": False}
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        precision_flags("fp16")


def test_lora_or_full(tmp_path):
    lora = lora_config(_cfg(tmp_path, lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}))
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (4, 8, 0.0, {"q_proj"})
    assert lora_config(_cfg(tmp_path, use_lora=False)) is None


def test_one_step_needs_a_full_batch_on_every_process(tmp_path):
    args = trainer_args(_cfg(tmp_path, batch_size=4, gradient_accumulation_steps=2), SFTConfig)
    require_one_step(8, args, Path("d.jsonl"))
    with pytest.raises(UserError, match=r"d.jsonl: 7 usable examples.*= 8"):
        require_one_step(7, args, Path("d.jsonl"))
