"""`chattune inspect`: look at what will be trained.

Owns: showing a few examples with the trained tokens highlighted (colour on a terminal, `[[...]]`
otherwise) followed by the audit summary of the whole dataset. Knows nothing about how labels are
made: it shows the cached dataset the trainer would use.
"""

from __future__ import annotations

import sys

from chattune.config import JobConfig
from chattune.masking import IGNORE_INDEX

_ON, _OFF = "\x1b[30;42m", "\x1b[0m"


def highlight(tokenizer, input_ids: list[int], labels: list[int], color: bool) -> str:
    """The decoded example with each run of trained tokens wrapped in colour or [[...]]."""
    out, run, trained = [], [], None
    for tok, label in zip(input_ids, labels):
        is_trained = label != IGNORE_INDEX
        if run and is_trained != trained:
            out.append(_wrap(tokenizer.decode(run), trained, color))
            run = []
        run.append(tok)
        trained = is_trained
    if run:
        out.append(_wrap(tokenizer.decode(run), trained, color))
    return "".join(out)


def _wrap(text: str, trained: bool, color: bool) -> str:
    if not trained:
        return text
    return f"{_ON}{text}{_OFF}" if color else f"[[{text}]]"


def inspect(cfg: JobConfig, n: int = 3, color: str = "auto") -> None:
    from chattune.models import load_tokenizer
    from chattune.pretokenize import build_sft_dataset

    tokenizer = load_tokenizer(cfg.model, cfg.chat_template, cfg.cache_dir)
    ds, summary = build_sft_dataset(cfg, tokenizer, cfg.data.train, use_cache=cfg.training.pretokenize)
    use_color = color == "always" or (color == "auto" and sys.stdout.isatty())
    legend = "highlighted" if use_color else "inside [[...]]"
    for i, row in enumerate(ds.select(range(min(n, len(ds))))):
        print(f"── example {i} ({len(row['input_ids'])} tokens; trained tokens {legend}) ──")
        print(highlight(tokenizer, row["input_ids"], row["labels"], use_color))
    print("── summary ──")
    print(summary.format())
