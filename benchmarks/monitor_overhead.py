"""How much the prediction monitor slows training: one job trained with the monitor off, then on.

    python benchmarks/monitor_overhead.py                     # the quickstart, as shipped (40 steps)
    python benchmarks/monitor_overhead.py --max-steps 20      # shorter

Prints, per run, the seconds inside `trainer.train()` and, for the monitored run, the seconds the monitor
spent generating and scoring. The overhead is given two ways: the monitor's own share of the monitored run
(insensitive to other load on the machine), and the difference between the two runs (what a user waits).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from chattune.config import load_config
from chattune.monitor.callback import PredictionMonitor
from chattune.train import sft
from chattune.train.run_folder import RunFolder


def timed_train(cfg) -> tuple[float, float]:
    """(seconds in trainer.train(), seconds of them spent by the monitor)."""
    trainer = sft.build_trainer(cfg, RunFolder(cfg))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    monitors = [c for c in trainer.callback_handler.callbacks if isinstance(c, PredictionMonitor)]
    return seconds, sum(m.seconds for m in monitors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("examples/quickstart.yaml"))
    parser.add_argument("--max-steps", type=int, help="override training.max_steps")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="chattune-overhead-") as tmp:
        for enabled in (False, True):
            cfg = load_config(args.config)
            cfg.monitor.enabled = enabled
            cfg.training.output_dir = Path(tmp) / ("monitored" if enabled else "plain")
            if args.max_steps:
                cfg.training.max_steps = args.max_steps
            results[enabled] = timed_train(cfg)
    (plain, _), (monitored, spent) = results[False], results[True]
    m = cfg.monitor
    print(f"\n{args.config}: monitor every {m.every_steps} steps, {m.num_prompts} prompts, "
          f"max_new_tokens {m.max_new_tokens}")
    print(f"  {'run':<12}{'train s':>10}{'monitor s':>12}")
    print(f"  {'monitor off':<12}{plain:>10.1f}{'-':>12}")
    print(f"  {'monitor on':<12}{monitored:>10.1f}{spent:>12.1f}")
    print(f"overhead: monitor's share of the monitored run {spent / (monitored - spent):.1%} "
          f"(monitor s / the rest); run against run {(monitored - plain) / plain:+.1%}")


if __name__ == "__main__":
    main()
