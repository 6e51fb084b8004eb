"""ORPO on preference pairs, through TRL's experimental ORPOTrainer (the only place chattune imports it).

Owns the ORPO recipe: config → data → model → trainer → train → save. ORPO needs no reference model: its loss
is the chosen reply's NLL plus `training.beta` (λ) times an odds-ratio term. TRL renders each pair with the
tokenizer's chat template, tokenizes it in memory, and labels the prompt -100. Note that TRL appends the EOS
token to each reply even when the template already ended the turn with it plus a newline.
Knows nothing about chat templates.
"""

from __future__ import annotations

import warnings

import torch

from chattune.config import JobConfig
from chattune.models import load_model, load_tokenizer
from chattune.train.callbacks import callbacks
from chattune.train.preference import load_preferences, preference_audit
from chattune.train.run_folder import RunFolder, Status
from chattune.train.trainer_args import lora_config, require_one_step, trainer_args

with warnings.catch_warnings():  # chattune pins TRL and tests ORPO; the "experimental" notice is for us, not users
    warnings.simplefilter("ignore")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer


def build_trainer(cfg: JobConfig, folder: RunFolder) -> ORPOTrainer:
    """Config → data → model → trainer. Writes the config and the audit into the run folder."""
    args = trainer_args(
        cfg, ORPOConfig, beta=cfg.training.beta, max_length=cfg.data.max_length, remove_unused_columns=False
    )
    tokenizer = load_tokenizer(cfg.model, chat_template=cfg.chat_template, cache_dir=cfg.cache_dir)
    train_data = load_preferences(cfg, cfg.data.train)
    eval_data = load_preferences(cfg, cfg.data.eval) if cfg.data.eval else None
    require_one_step(len(train_data), args, cfg.data.train)
    trainer = ORPOTrainer(
        model=load_model(cfg.model, cache_dir=cfg.cache_dir, dtype=torch.float32),
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks(cfg, folder),
    )
    prepared = trainer.train_dataset
    lengths = [
        (c.count(-100), len(c) - c.count(-100), len(r) - r.count(-100))
        for c, r in zip(prepared["chosen_labels"], prepared["rejected_labels"], strict=True)
    ]
    folder.start(args, preference_audit(lengths, 0, cfg.data.max_length))
    return trainer


def run(cfg: JobConfig, folder: RunFolder) -> Status:
    trainer = build_trainer(cfg, folder)
    trainer.train(resume_from_checkpoint=folder.resume_from)
    trainer.save_model()  # the adapter (or model) and the tokenizer, into the run folder
    return folder.finish(trainer)
