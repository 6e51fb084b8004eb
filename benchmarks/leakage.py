"""The background story, end to end: the same model trained twice on the same data, prompts masked and not.

    python benchmarks/leakage.py                    # about 10 minutes on 2 CPU cores
    python benchmarks/leakage.py --steps 40 --every 10 --full --lr 1e-4   # other settings (docs/monitoring.md)

Trains the embedded SmolLM2-135M-Instruct with `chattune train` twice, with identical data, steps, seed and
settings: once as chattune trains by default (`data.masking: assistant`), once with `data.masking: none`, the
switch that trains every token, prompts included (the bug of the background story; chattune warns loudly). The
prediction monitor watches both runs on the same held-out prompts, and each run keeps a checkpoint at every
monitored step. Then prints, for both runs side by side:

1. the monitor's scores over steps (replies end at the template's end-of-turn token, as the monitor generates);
2. the same prompts answered by each checkpoint *without* stopping at the end-of-turn token, as a sampler whose
   eos is not the template's end-of-turn does: what a model writes after its reply shows what it learned of the
   prompts.

and writes each run folder's report.html. docs/monitoring.md explains the figures.

The data is written by this script (deterministic): a help desk whose prompts are long and alike (a fixed system
prompt, and customer messages behind the same ticket header), with short replies, in conversations of one to
three turns. Most tokens are prompt, as in many real SFT sets.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import peft
import torch

from chattune.config import JobConfig
from chattune.models import load_model, load_tokenizer
from chattune.monitor.generate import generate, load_prompts
from chattune.monitor.score import FLAGS, score_prediction
from chattune.report import write_report
from chattune.train import train

SEED = 7
SYSTEM = ("You are the help desk assistant of Northwind Shipping. Read the customer's ticket and reply in one "
          "short, polite sentence that says what happens next. Do not repeat the ticket, do not add a greeting or "
          "a signature, and do not write the customer's next message.")
TICKET = ("New ticket for the Northwind Shipping help desk. Please read the customer's message below and tell them "
          "what happens next. Customer message: {text}")
# (customer message with {item} {city} {days}, reply)
ISSUES = [
    ("My {item} has not arrived in {city} after {days} days.", "We have opened a trace on your {item} and will email you within a day."),
    ("The {item} I received in {city} is broken.", "We will send a replacement {item} to {city} at no cost."),
    ("I was charged twice for the {item} shipped to {city}.", "We will refund the second charge within five working days."),
    ("Can I change the delivery address of my {item} to {city}?", "Yes, we have updated the address, and the {item} will go to {city}."),
    ("I want to return the {item} I bought {days} days ago.", "We have emailed you a free return label for the {item}."),
    ("The tracking page for my {item} has not changed in {days} days.", "We have asked the {city} depot for an update and will write back today."),
    ("The courier left my {item} outside in the rain in {city}.", "We are sorry; we will replace the {item} if it was damaged."),
    ("How much does it cost to ship a {item} to {city}?", "Shipping a {item} to {city} costs twelve euros with standard delivery."),
]
ITEMS = ["parcel", "lamp", "bicycle helmet", "coffee grinder", "laptop", "winter coat", "desk chair", "camera",
         "blender", "guitar", "rug", "printer"]
CITIES = ["Lyon", "Porto", "Gdansk", "Leeds", "Turin", "Ghent", "Malmo", "Graz", "Cork", "Bilbao"]


def _turn(rng: random.Random) -> tuple[str, str]:
    text, reply = rng.choice(ISSUES)
    fill = {"item": rng.choice(ITEMS), "city": rng.choice(CITIES), "days": rng.randint(3, 21)}
    return TICKET.format(text=text.format(**fill)), reply.format(**fill)


def write_data(folder: Path, n_train: int = 600, n_eval: int = 8) -> tuple[Path, Path]:
    """Help-desk conversations of 1-3 turns (train) and single tickets (eval, the monitored prompts)."""
    rng = random.Random(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n, turns in (("train", n_train, (1, 3)), ("eval", n_eval, (1, 1))):
        lines = []
        for _ in range(n):
            messages = [{"role": "system", "content": SYSTEM}]
            for _ in range(rng.randint(*turns)):
                ticket, reply = _turn(rng)
                messages += [{"role": "user", "content": ticket}, {"role": "assistant", "content": reply}]
            lines.append(json.dumps({"messages": messages}) + "\n")
        path = folder / f"helpdesk_{name}.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def job(out: Path, masking: str, train_data: Path, eval_data: Path, args) -> JobConfig:
    return JobConfig.model_validate({
        "model": "smollm2-135m-instruct",
        "data": {"train": str(train_data), "eval": str(eval_data), "max_length": 256, "masking": masking},
        "training": {"use_lora": not args.full, "learning_rate": args.lr, "max_steps": args.steps,
                     "batch_size": args.batch_size, "lr_scheduler": "constant", "logging_steps": 5,
                     "save_steps": args.every, "save_total_limit": None, "eval_steps": 10_000,
                     "output_dir": str(out / f"masking-{masking}"), "seed": SEED},
        "monitor": {"every_steps": args.every, "num_prompts": args.prompts, "max_new_tokens": args.max_new_tokens},
    })


def monitor_scores(run: Path) -> dict[int, dict]:
    """step → mean score per flag and the share of flagged predictions, from the monitor's predictions.jsonl."""
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return {step: _means([r for r in rows if r["step"] == step]) for step in sorted({r["step"] for r in rows})}


def _means(rows: list[dict]) -> dict:
    """Mean scores, and for each flag the share of predictions carrying it (`<flag> flagged`)."""
    out = {f: sum(r["scores"].get(f, 0.0) for r in rows) / len(rows) for f in FLAGS}
    out |= {f"{f} flagged": sum(f in r["flags"] for r in rows) / len(rows) for f in FLAGS}
    return out


def past_end_of_turn(cfg: JobConfig, max_new_tokens: int) -> tuple[dict[int, dict], dict[int, str]]:
    """Each checkpoint (and the untrained model, step 0) generating past its end-of-turn token, scored.
    Returns step → mean scores, and step → the first prompt's text (to show)."""
    tokenizer = load_tokenizer(cfg.model)
    prompts, _ = load_prompts(cfg)
    special = tuple(tokenizer.all_special_tokens)
    run = Path(cfg.training.output_dir)
    checkpoints = {0: None} | {int(p.name.split("-")[1]): p for p in run.glob("checkpoint-*")}
    scores, shown = {}, {}
    for step, folder in sorted(checkpoints.items()):
        model = load_model(cfg.model, dtype=torch.float32)
        if folder is not None and (folder / "adapter_config.json").exists():
            model = peft.PeftModel.from_pretrained(model, folder)
        elif folder is not None:
            model = load_model(str(folder), dtype=torch.float32)
        preds = generate(model, tokenizer, prompts, max_new_tokens, stop_at_end_of_turn=False)
        rows = []
        for p, pred in zip(prompts, preds):
            r = score_prediction(p.messages, pred.text, p.reference, thresholds=cfg.monitor.thresholds,
                                 special_tokens=special)
            rows.append({"scores": r.scores, "flags": r.flags})
        scores[step], shown[step] = _means(rows), preds[0].text
    return scores, shown


COLUMNS = {"prompt_echo": "echo", "prompt_echo flagged": "echo flagged", "format_leakage flagged": "format flagged",
           "repetition": "repetition"}


def print_table(title: str, masked: dict[int, dict], unmasked: dict[int, dict]) -> None:
    width = 16 * len(COLUMNS) - 2
    head = "  ".join(f"{c:>14}" for c in COLUMNS.values())
    print(f"\n{title}\n{'':>6}  {'masking: assistant':^{width}}  |  {'masking: none':^{width}}")
    print(f"{'step':>6}  {head}  |  {head}")
    for step in sorted(masked.keys() | unmasked.keys()):
        cells = ["  ".join(f"{run[step][c]:>14.2f}" if step in run else f"{'-':>14}" for c in COLUMNS)
                 for run in (masked, unmasked)]
        print(f"{step:>6}  {cells[0]}  |  {cells[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/leakage"), help="where the two run folders go")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--every", type=int, default=5, help="monitor (and save a checkpoint) every N steps")
    parser.add_argument("--prompts", type=int, default=4, help="monitored prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="for the monitor")
    parser.add_argument("--past-tokens", type=int, default=96, help="for generating past the end-of-turn token")
    args = parser.parse_args()
    started = time.time()
    train_data, eval_data = write_data(args.out / "data")
    monitored, past, shown = {}, {}, {}
    for masking in ("assistant", "none"):
        cfg = job(args.out, masking, train_data, eval_data, args)
        print(f"\n=== training with data.masking: {masking} → {cfg.training.output_dir}", flush=True)
        train(cfg)
        monitored[masking] = monitor_scores(cfg.training.output_dir)
        past[masking], shown[masking] = past_end_of_turn(cfg, args.past_tokens)
        print(f"report: {write_report(cfg.training.output_dir)}")
    print_table("The monitor (replies end at the end-of-turn token)", monitored["assistant"], monitored["none"])
    print_table("Past the end-of-turn token (each checkpoint generating all its tokens, as a sampler with the wrong "
                "eos does)", past["assistant"], past["none"])
    print("echo, repetition: mean score over the monitored prompts; ... flagged: share of them with that flag")
    last = max(past["none"])
    for masking in ("assistant", "none"):
        print(f"\nstep {last}, masking: {masking}, prompt 0 past its end-of-turn:\n  {shown[masking][last]!r}")
    print(f"\n{time.time() - started:.0f}s in all")


if __name__ == "__main__":
    main()
