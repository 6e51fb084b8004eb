"""ORPO on preference pairs, through TRL's experimental ORPOTrainer (the only place chattune imports it).

Owns the ORPO recipe: config → data → model → trainer → train → save. ORPO needs no reference model: its loss
is the chosen reply's NLL plus `training.beta` (λ) times an odds-ratio term. TRL renders each pair with the
tokenizer's chat template, tokenizes it in memory, and labels the prompt -100. Note that TRL appends the EOS
token to each reply even when the template already ended the turn with it plus a newline.
Knows nothing about chat templates.
"""

from __future__ import annotations

import warnings

from chattune.config import JobConfig
from chattune.train.preference import build_preference_trainer, preference_audit
from chattune.train.run_folder import RunFolder, Status
from chattune.train.trainer_args import trainer_args

with warnings.catch_warnings():  # chattune pins TRL and tests ORPO; the "experimental" notice is for us, not users
    warnings.simplefilter("ignore")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer


def build_trainer(cfg: JobConfig, folder: RunFolder) -> ORPOTrainer:
    """Config → data → model → trainer. Writes the config and the audit into the run folder."""
    args = trainer_args(
        cfg, ORPOConfig, beta=cfg.training.beta, max_length=cfg.data.max_length, remove_unused_columns=False
    )
    trainer, _ = build_preference_trainer(cfg, folder, ORPOTrainer, args)
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
