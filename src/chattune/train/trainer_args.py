"""Job config → TRL trainer arguments, LoRA config and precision: the settings every method shares.

Owns the mapping from `training.*` keys to `transformers.TrainingArguments` fields (through each method's
TRL config class), the automatic precision choice, and the "enough data for one step" check.
Knows nothing about data formats or how a method computes its loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import peft
import torch
from transformers import TrainingArguments

from chattune.config import JobConfig
from chattune.errors import UserError

Args = TypeVar("Args", bound=TrainingArguments)


def precision_flags(precision: str) -> dict[str, bool]:
    """`auto`: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU.

    Weights stay fp32 either way; bf16/fp16 is autocast."""
    if precision == "auto":
        if not torch.cuda.is_available():
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("training.precision: fp16 needs a GPU; use auto, fp32 or bf16 on CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def trainer_args(cfg: JobConfig, config_class: type[Args], **method_args) -> Args:
    """The TRL config (SFTConfig, DPOConfig, ORPOConfig) for this job; `method_args` are the method's own fields."""
    t = cfg.training
    return config_class(
        output_dir=str(t.output_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps or -1,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a share of the steps
        seed=t.seed,
        activation_checkpointing=t.gradient_checkpointing,
        **precision_flags(t.precision),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if cfg.data.eval else "no",
        eval_steps=t.eval_steps or t.save_steps,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        report_to=t.report_to or "none",
        use_cpu=not torch.cuda.is_available(),  # also makes torchrun/accelerate on CPU use gloo
        **method_args,
    )


def lora_config(cfg: JobConfig) -> peft.LoraConfig | None:
    """The adapter to train, or None for full fine-tuning."""
    if not cfg.training.use_lora:
        return None
    lora = cfg.training.lora
    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def require_one_step(examples: int, args: TrainingArguments, source: Path) -> None:
    """Refuse data too small for one optimizer step on every process (TRL would train on nothing or crash)."""
    need = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if examples < need:
        raise UserError(
            f"{source}: {examples} usable examples, fewer than one training step needs "
            f"(training.batch_size {args.per_device_train_batch_size} × gradient_accumulation_steps "
            f"{args.gradient_accumulation_steps} × {args.world_size} process(es) = {need}); "
            "add examples or lower those settings"
        )
