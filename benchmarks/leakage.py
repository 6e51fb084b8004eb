"""The background story, end to end: the same model trained twice on the same data, prompts masked and not.

    python benchmarks/leakage.py                    # ~10 minutes on 2 CPU cores
    python benchmarks/leakage.py --steps 30         # shorter; see docs/monitoring.md for what that shows

Trains the embedded SmolLM2-135M-Instruct with `chattune train` twice, with identical data, steps, seed and
settings: once as chattune trains by default (`data.masking: assistant`), once with `data.masking: none`,
the switch that trains every token, prompts included (the bug of the background story). The prediction monitor
watches both runs on the same held-out prompts. Prints the monitor's mean scores over steps for both runs side
by side and writes each run folder's report.html.

The data is written by this script (deterministic): a help desk whose prompts are long and alike (a fixed system
prompt, and customer messages wrapped in the same ticket header), with short replies, in conversations of one to
three turns. Most tokens are prompt, as in many real SFT sets; that is what a model trained on prompts learns.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from chattune.config import JobConfig
from chattune.monitor.score import FLAGS
from chattune.report import write_report
from chattune.train import train

SEED = 7
SYSTEM = ("You are the help desk assistant of Northwind Shipping. Read the customer's ticket and reply in one "
          "short, polite sentence that says what happens next. Do not repeat the ticket, do not add a greeting or "
          "a signature, and do not write the customer's next message.")
TICKET = "Ticket {n} from the {channel} channel, priority {priority}. The customer writes: {text} What happens next?"
CHANNELS = ["web form", "email", "phone", "chat"]
PRIORITIES = ["low", "normal", "high", "urgent"]
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
    ticket = TICKET.format(n=rng.randint(10000, 99999), channel=rng.choice(CHANNELS),
                           priority=rng.choice(PRIORITIES), text=text.format(**fill))
    return ticket, reply.format(**fill)


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
                     "save_steps": 10_000, "eval_steps": 10_000, "output_dir": str(out / f"masking-{masking}"),
                     "seed": SEED},
        "monitor": {"every_steps": args.every, "num_prompts": args.prompts, "max_new_tokens": args.max_new_tokens},
    })


def step_means(run: Path) -> dict[int, dict]:
    """step → mean score per flag, and the share of predictions flagged per flag, from predictions.jsonl."""
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    out = {}
    for step in sorted({r["step"] for r in rows}):
        group = [r for r in rows if r["step"] == step]
        out[step] = {f: sum(r["scores"].get(f, 0.0) for r in group) / len(group) for f in FLAGS}
        out[step]["flagged"] = sum(not r["healthy"] for r in group) / len(group)
    return out


def print_table(masked: dict[int, dict], unmasked: dict[int, dict]) -> None:
    cols = ["prompt_echo", "format_leakage", "repetition", "flagged"]
    head = "  ".join(f"{c[:14]:>14}" for c in cols)
    print(f"\n{'':>6}  {'masking: assistant':^{16 * len(cols) - 2}}  |  {'masking: none':^{16 * len(cols) - 2}}")
    print(f"{'step':>6}  {head}  |  {head}")
    for step in sorted(masked.keys() | unmasked.keys()):
        cells = ["  ".join(f"{run[step][c]:>14.2f}" if step in run else f"{'-':>14}" for c in cols)
                 for run in (masked, unmasked)]
        print(f"{step:>6}  {cells[0]}  |  {cells[1]}")
    print("mean scores over the monitored prompts; `flagged`: share of predictions with any flag")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/leakage"), help="where the two run folders go")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--every", type=int, default=10, help="monitor every N steps")
    parser.add_argument("--prompts", type=int, default=4, help="monitored prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    train_data, eval_data = write_data(args.out / "data")
    results = {}
    for masking in ("assistant", "none"):
        cfg = job(args.out, masking, train_data, eval_data, args)
        print(f"\n=== training with data.masking: {masking} → {cfg.training.output_dir}", flush=True)
        train(cfg)
        results[masking] = step_means(cfg.training.output_dir)
        print(f"report: {write_report(cfg.training.output_dir)}")
    print_table(results["assistant"], results["none"])


if __name__ == "__main__":
    main()
