"""SFT on exactly the labels the masker produced and the audit checked.

Owns the SFT recipe: config → data → model → trainer → train → save. The data arrives tokenized from
`chattune.pretokenize` with `labels` (-100 on everything but the assistant replies and their end-of-turn
token), pre-tokenized into the cache or not: the labels are the same. TRL's SFTTrainer is told to skip its own
dataset preparation, so it neither re-tokenizes, re-masks, truncates nor drops examples; its collator pads
`labels` with -100 and otherwise passes them through. Knows nothing about chat templates or masking.
"""

from __future__ import annotations

import torch
from trl import SFTConfig, SFTTrainer

from chattune.config import JobConfig
from chattune.models import load_model, load_tokenizer
from chattune.pretokenize import build_sft_dataset
from chattune.train.callbacks import callbacks
from chattune.train.run_folder import RunFolder, Status
from chattune.train.trainer_args import lora_config, require_one_step, trainer_args


def build_trainer(cfg: JobConfig, folder: RunFolder) -> SFTTrainer:
    """Config → data → model → trainer. Writes the config and the audit into the run folder."""
    args = trainer_args(cfg, SFTConfig, dataset_kwargs={"skip_prepare_dataset": True})
    tokenizer = load_tokenizer(cfg.model, chat_template=cfg.chat_template, cache_dir=cfg.cache_dir)
    with args.main_process_first(desc="pre-tokenizing"):  # one process fills the cache, the others read it
        train_data, audit = build_sft_dataset(cfg, tokenizer, cfg.data.train, use_cache=cfg.training.pretokenize)
        eval_data = None
        if cfg.data.eval:
            eval_data, _ = build_sft_dataset(cfg, tokenizer, cfg.data.eval, use_cache=cfg.training.pretokenize)
    if args.process_index == 0:
        print(audit.format())
    require_one_step(len(train_data), args, cfg.data.train)
    model = load_model(cfg.model, cache_dir=cfg.cache_dir, dtype=torch.float32)
    folder.start(args, audit.to_dict())
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks(cfg, folder),
    )


def run(cfg: JobConfig, folder: RunFolder) -> Status:
    trainer = build_trainer(cfg, folder)
    trainer.train(resume_from_checkpoint=folder.resume_from)
    trainer.save_model()  # the adapter (or model) and the tokenizer, into the run folder
    return folder.finish(trainer)
