"""DPO on preference pairs, through TRL's DPOTrainer.

Owns the DPO recipe: config → data → model → trainer → train → save. TRL renders each pair with the
tokenizer's chat template (chattune's override applied by `load_tokenizer`), tokenizes it in memory (TRL
re-tokenizes any pre-tokenized columns, so there is nothing to cache), and puts the loss on the replies only.
With LoRA the reference model is the base model with the adapter disabled; with full fine-tuning TRL loads a
frozen copy. Knows nothing about chat templates.
"""

from __future__ import annotations

from trl import DPOConfig, DPOTrainer

from chattune.config import JobConfig
from chattune.train.preference import build_preference_trainer, preference_audit
from chattune.train.run_folder import RunFolder, Status
from chattune.train.trainer_args import require_one_step, trainer_args


def build_trainer(cfg: JobConfig, folder: RunFolder) -> DPOTrainer:
    """Config → data → model → trainer. Writes the config and the audit into the run folder."""
    args = trainer_args(cfg, DPOConfig, beta=cfg.training.beta, max_length=cfg.data.max_length)
    trainer, pairs = build_preference_trainer(cfg, folder, DPOTrainer, args)
    prepared = trainer.train_dataset  # TRL drops pairs whose prompt alone fills max_length
    require_one_step(len(prepared), args, cfg.data.train)
    lengths = [
        (len(p), len(c), len(r))
        for p, c, r in zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"], strict=True)
    ]
    folder.start(args, preference_audit(lengths, pairs - len(prepared), cfg.data.max_length))
    return trainer


def run(cfg: JobConfig, folder: RunFolder) -> Status:
    trainer = build_trainer(cfg, folder)
    trainer.train(resume_from_checkpoint=folder.resume_from)
    trainer.save_model()  # the adapter (or model) and the tokenizer, into the run folder
    return folder.finish(trainer)
