"""Training throughput: `chattune train` on the quickstart against TRL's SFTTrainer set up by hand.

Prints, for the same model, data, LoRA settings, batch size and steps, in the same process:
- training tokens/s (non-padding tokens per second of `trainer.train()`) of chattune's SFT trainer, and of a
  plain TRL SFTTrainer given the quickstart's JSONL (TRL tokenizes it itself), runs interleaved A/B/A/B...;
  chattune's overhead is the relative drop of its median against TRL's (target: at most 5%);
- the share of padding tokens per batch over one epoch, with random and with length-grouped batches;
- tokens/s of chattune with `group_by_length`.

    python benchmarks/train.py                 # 20 steps a run, 2 rounds
    python benchmarks/train.py --steps 12 --rounds 3 --threads 1

Not a test: figures vary with the machine, and with anything else running on it. Torch's busy-waiting
threads make a shared CPU much slower; give it the machine, or pass `--threads 1`.
The TRL baseline trains every token (SmolLM2's template has no `{% generation %}` markers for TRL's own
assistant mask); the loss mask does not change the work per token, so the throughput compares like with like.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from chattune.config import load_config  # noqa: E402
from chattune.models import load_model, load_tokenizer  # noqa: E402
from chattune.train import sft  # noqa: E402
from chattune.train.run_folder import RunFolder  # noqa: E402
from chattune.train.trainer_args import lora_config  # noqa: E402


def quickstart(steps: int, out: Path, group_by_length: bool = False):
    cfg = load_config(REPO / "examples" / "quickstart.yaml")
    cfg.data.train = REPO / cfg.data.train
    cfg.data.eval = None
    cfg.monitor.enabled = False  # prediction monitoring has its own cost, reported in its own summary
    cfg.training.max_steps = steps
    cfg.training.save_steps = 10 * steps  # no checkpoint inside the timed loop, in either trainer
    cfg.training.group_by_length = group_by_length
    cfg.training.output_dir = out
    return cfg


TOKENS: dict[str, set[int]] = {}  # variant → non-padding tokens per run: equal when the batches are the same


def tokens_per_second(trainer, variant: str) -> float:
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = trainer._total_train_tokens  # non-padding tokens, counted by TRL's SFTTrainer in both cases
    TOKENS.setdefault(variant, set()).add(tokens)
    return tokens / seconds


def chattune_run(cfg) -> float:
    variant = "chattune, group_by_length" if cfg.training.group_by_length else "chattune"
    return tokens_per_second(sft.build_trainer(cfg, RunFolder(cfg)), variant)


def trl_run(cfg) -> float:
    """What a user would write with TRL alone for the same job."""
    args = SFTConfig(
        output_dir=str(cfg.training.output_dir),
        per_device_train_batch_size=cfg.training.batch_size,
        learning_rate=cfg.training.learning_rate,
        max_steps=cfg.training.max_steps,
        lr_scheduler_type=cfg.training.lr_scheduler,
        warmup_steps=cfg.training.warmup_ratio,
        seed=cfg.training.seed,
        max_length=cfg.data.max_length,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=cfg.training.logging_steps,
        save_steps=cfg.training.save_steps,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = SFTTrainer(
        model=load_model(cfg.model, dtype=torch.float32),
        args=args,
        train_dataset=load_dataset("json", data_files=str(cfg.data.train), split="train"),
        processing_class=load_tokenizer(cfg.model),
        peft_config=lora_config(cfg),
    )
    return tokens_per_second(trainer, "TRL")


def padding_shares(cfg) -> list[float]:
    trainer = sft.build_trainer(cfg, RunFolder(cfg))
    return [1 - b["attention_mask"].sum().item() / b["attention_mask"].numel() for b in trainer.get_train_dataloader()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timed run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, each: chattune, TRL, chattune with group_by_length")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = iter(range(1000))
        fresh = lambda **kw: quickstart(opts.steps, tmp / f"run{next(runs)}", **kw)  # noqa: E731
        ours, theirs, grouped = [], [], []
        for _ in range(opts.rounds):  # interleaved, so a slow spell of the machine hits every variant alike
            ours.append(chattune_run(fresh()))
            theirs.append(trl_run(fresh()))
            grouped.append(chattune_run(fresh(group_by_length=True)))
        random_pad = padding_shares(fresh())
        grouped_pad = padding_shares(fresh(group_by_length=True))

    cfg = quickstart(opts.steps, Path("unused"))
    ours_m, theirs_m, grouped_m = (statistics.median(x) for x in (ours, theirs, grouped))
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(f"\nquickstart: {cfg.model}, LoRA r={cfg.training.lora.r}, batch {cfg.training.batch_size}, "
          f"max_length {cfg.data.max_length}, {opts.steps} steps a run, {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"  chattune train        {ours_m:8.1f} tokens/s   (median; runs: {runs(ours)})")
    print(f"  TRL SFTTrainer, hand  {theirs_m:8.1f} tokens/s   (median; runs: {runs(theirs)})")
    print(f"  chattune overhead     {100 * (theirs_m - ours_m) / theirs_m:8.1f} %   (target: at most 5%)")
    print(f"  group_by_length       {grouped_m:8.1f} tokens/s   ({grouped_m / ours_m:.2f}x random batches; "
          f"runs: {runs(grouped)})")
    print(f"  tokens per run        {', '.join(f'{k}: {sorted(v)}' for k, v in TOKENS.items())}")
    for name, shares in (("random batches", random_pad), ("length-grouped", grouped_pad)):
        print(f"  padding, {name:15s} mean {100 * statistics.mean(shares):5.1f}%  "
              f"median {100 * statistics.median(shares):5.1f}%  max {100 * max(shares):5.1f}%  "
              f"({len(shares)} batches)")


if __name__ == "__main__":
    main()
