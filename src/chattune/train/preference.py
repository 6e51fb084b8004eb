"""Preference data for DPO and ORPO: read it, build TRL's trainer on it, and say what the objective trains.

Owns turning `chattune.data.read_preferences` rows (prompt, chosen, rejected: message lists) into a
`datasets.Dataset` for TRL, the trainer both recipes build on it, and the audit of a preference run: TRL renders each pair with the tokenizer's
chat template and puts the loss on the chosen and rejected replies only (the prompt is context), so the audit
counts those tokens after TRL's own tokenization and truncation. Knows nothing about the objectives themselves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset

from chattune.config import JobConfig
from chattune.data import read_preferences
from chattune.models import load_model, load_tokenizer
from chattune.train.callbacks import callbacks
from chattune.train.run_folder import RunFolder
from chattune.train.trainer_args import lora_config, require_one_step


def load_preferences(cfg: JobConfig, path: Path) -> Dataset:
    return Dataset.from_list(read_preferences(path, skip_invalid=cfg.data.skip_invalid))


def build_preference_trainer(cfg: JobConfig, folder: RunFolder, trainer_cls, args):
    """`trainer_cls` (TRL's DPOTrainer or ORPOTrainer) on the job's pairs, model and LoRA settings, and how
    many training pairs were read (TRL may drop some while it tokenizes them)."""
    tokenizer = load_tokenizer(cfg.model, chat_template=cfg.chat_template, cache_dir=cfg.cache_dir)
    train_data = load_preferences(cfg, cfg.data.train)
    eval_data = load_preferences(cfg, cfg.data.eval) if cfg.data.eval else None
    require_one_step(len(train_data), args, cfg.data.train)
    trainer = trainer_cls(
        model=load_model(cfg.model, cache_dir=cfg.cache_dir, dtype=torch.float32),
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks(cfg, folder),
    )
    return trainer, len(train_data)


def preference_audit(lengths: list[tuple[int, int, int]], dropped: int, max_length: int) -> dict:
    """The audit (same keys as `AuditSummary.to_dict()`) from each pair's (prompt, chosen, rejected) token counts.

    Each of the two sequences (prompt + chosen, prompt + rejected) is cut at `max_length` from the end.
    """
    prompt = chosen = rejected = 0
    for p, c, r in lengths:
        p_kept = min(p, max_length)
        prompt += 2 * p_kept
        chosen += min(p + c, max_length) - p_kept
        rejected += min(p + r, max_length) - p_kept
    return {
        "examples": len(lengths),
        "tokens": prompt + chosen + rejected,
        "trained_tokens": chosen + rejected,
        "dropped": {"prompt fills max_length": dropped} if dropped else {},
        # Same role names as SFT audits: anything but `assistant` with trained tokens means a leaked prompt.
        "roles": {
            "prompt": {"tokens": prompt, "trained": 0},
            "assistant": {"tokens": chosen + rejected, "trained": chosen + rejected},
        },
        "pairs": {"chosen_tokens": chosen, "rejected_tokens": rejected},
        "masking": "preference: the loss covers the chosen and rejected replies, never the prompt",
        "warnings": [],
    }
