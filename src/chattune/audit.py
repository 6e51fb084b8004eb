"""The label audit: what a dataset trains, per role, and a refusal when it trains the wrong thing.

Owns: the summary every run prints and stores (`audit.json`), the rules that make a run fail
(a trained system/user/tool/template token, an example with nothing trained), and `chattune audit`,
which checks a pre-tokenized dataset written by any tool against the chat template. Knows nothing
about how labels are made: it reads `labels` (or, when they are absent, what a default collator
would train: every token) and compares them with where the template puts assistant replies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chattune.chat_template import TemplateError, generation_prompt, skeleton
from chattune.errors import UserError
from chattune.masking import IGNORE_INDEX, ROLE_NAMES, end_marker, markers_pattern

PROMPT_ROLES = ("template", "system", "user", "tool")


def role_counts(token_roles: np.ndarray, labels) -> tuple[list[int], list[int]]:
    """Tokens and trained tokens per role id."""
    trained = np.asarray(labels) != IGNORE_INDEX
    n = len(ROLE_NAMES)
    return (np.bincount(token_roles, minlength=n).tolist(), np.bincount(token_roles[trained], minlength=n).tolist())


@dataclass
class AuditSummary:
    masking: str = "assistant"
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    untrained_examples: int = 0
    dropped: Counter = field(default_factory=Counter)
    role_tokens: Counter = field(default_factory=Counter)
    role_trained: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def add(self, token_roles: np.ndarray, labels) -> None:
        """Count one kept example from its per-token role ids and labels."""
        self.add_counts(*role_counts(token_roles, labels))

    def add_counts(self, tokens, trained) -> None:
        """Count kept examples from their tokens and trained tokens per role: one example's counts
        (indexed like ROLE_NAMES), or an array of them, one row per example."""
        tokens, trained = np.atleast_2d(tokens), np.atleast_2d(trained)
        self.examples += len(tokens)
        self.tokens += int(tokens.sum())
        self.trained_tokens += int(trained.sum())
        self.untrained_examples += int((trained.sum(axis=1) == 0).sum())
        for name, n, t in zip(ROLE_NAMES, tokens.sum(axis=0).tolist(), trained.sum(axis=0).tolist()):
            self.role_tokens[name] += n
            self.role_trained[name] += t

    def prompt_trained(self) -> int:
        return sum(self.role_trained[r] for r in PROMPT_ROLES)

    def problems(self) -> list[str]:
        """What makes this dataset unfit for training (empty when it is fine)."""
        out = []
        if self.masking == "assistant" and self.prompt_trained():
            roles = ", ".join(f"{r} {self.role_trained[r]}" for r in PROMPT_ROLES if self.role_trained[r])
            out.append(f"{self.prompt_trained()} prompt tokens would be trained ({roles}): the prompts would be learned")
        if self.untrained_examples:
            out.append(f"{self.untrained_examples} examples have no trained token")
        if self.examples == 0:
            out.append("no example is left to train on" + (f" (dropped: {dict(self.dropped)})" if self.dropped else ""))
        return out

    def to_dict(self) -> dict:
        roles = {r: {"tokens": self.role_tokens[r], "trained": self.role_trained[r]} for r in ROLE_NAMES
                 if self.role_tokens[r]}
        return {"examples": self.examples, "tokens": self.tokens, "trained_tokens": self.trained_tokens,
                "untrained_examples": self.untrained_examples, "dropped": dict(self.dropped), "roles": roles,
                "masking": self.masking, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> AuditSummary:
        return cls(masking=d["masking"], examples=d["examples"], tokens=d["tokens"],
                   trained_tokens=d["trained_tokens"], untrained_examples=d["untrained_examples"],
                   dropped=Counter(d["dropped"]),
                   role_tokens=Counter({r: v["tokens"] for r, v in d["roles"].items()}),
                   role_trained=Counter({r: v["trained"] for r, v in d["roles"].items()}),
                   warnings=list(d["warnings"]))

    def format(self) -> str:
        pct = lambda a, b: f"{100 * a / b:5.1f}%" if b else "    -"  # noqa: E731
        lines = [f"examples {self.examples:,}   tokens {self.tokens:,}   trained {self.trained_tokens:,} "
                 f"({pct(self.trained_tokens, self.tokens).strip()})",
                 f"  {'role':<10}{'tokens':>12}{'trained':>12}{'share':>8}"]
        for r in ROLE_NAMES:  # the chat roles always (a 0 says "not trained"); plain text when present
            if self.role_tokens[r] or r != "text":
                lines.append(f"  {r:<10}{self.role_tokens[r]:>12,}{self.role_trained[r]:>12,}"
                             f"{pct(self.role_trained[r], self.role_tokens[r]):>8}")
        for reason, n in sorted(self.dropped.items()):
            lines.append(f"  dropped {n:,}: {reason}")
        if self.role_tokens["text"]:
            lines.append("  plain-text examples: every token is trained (no masking applies to `text`)")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def enforce(summary: AuditSummary, where: str) -> None:
    """Refuse silent nonsense: raise a UserError when the audit finds a problem."""
    warning = "masking is `none`: prompts (system, user, template text) ARE TRAINED"
    if summary.masking == "none" and warning not in summary.warnings:
        summary.warnings.append(warning)
    problems = summary.problems()
    if problems:
        raise UserError(f"{where}: label audit failed: " + "; ".join(problems))


# --- auditing datasets made by any tool ---------------------------------------------------------


def assistant_markers(tokenizer) -> tuple[str, str]:
    """(header, end) texts that open and close an assistant reply in this template's rendering."""
    skel = skeleton(tokenizer, [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])
    if 1 not in skel.order:
        raise TemplateError("the chat template does not render assistant messages")
    slot = skel.order.index(1)
    header = generation_prompt(tokenizer) or skel.literals[slot]
    return header, end_marker(skel.literals[slot + 1], markers_pattern(tokenizer))


def audit_tokens(ids: list[int], labels: list[int] | None, tokenizer, header: str, end: str,
                 summary: AuditSummary) -> None:
    """Count one tokenized example: tokens inside an assistant reply (header → end marker) are
    `assistant`, the rest `template` (the prompt, as far as a token stream can tell)."""
    pieces = tokenizer.batch_decode([[i] for i in ids])
    bounds = np.cumsum([0] + [len(p) for p in pieces])
    text = "".join(pieces)
    roles = np.zeros(len(text) + 1, dtype=np.int8)
    pos = text.find(header) if header else -1
    while pos >= 0:
        start = pos + len(header)
        stop = text.find(end, start) if end else -1
        stop = len(text) if stop < 0 else stop + len(end)
        roles[start:stop] = ROLE_NAMES.index("assistant")
        pos = text.find(header, stop)
    token_roles = np.maximum(roles[bounds[:-1]], roles[np.maximum(bounds[1:] - 1, bounds[:-1])])
    summary.add(token_roles, labels if labels is not None else ids)


def audit_tokenized(ds, tokenizer) -> AuditSummary:
    """Audit a tokenized dataset (labels, or every token when there are none) against the template."""
    header, end = assistant_markers(tokenizer)
    has_labels = "labels" in ds.column_names
    summary = AuditSummary()
    for row in ds.select_columns(["input_ids"] + (["labels"] if has_labels else [])):
        audit_tokens(row["input_ids"], row.get("labels"), tokenizer, header, end, summary)
    return summary


def audit_dataset_dir(path: Path, model: str, chat_template: Path | None = None, cache_dir=None) -> bool:
    """`chattune audit`: print what a pre-tokenized dataset trains; False when it trains prompts."""
    import datasets

    from chattune.models import load_tokenizer

    path = Path(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: not a datasets folder (expected one written by save_to_disk)") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if "input_ids" not in ds.column_names:
        raise UserError(f"{path}: no `input_ids` column: not a pre-tokenized dataset")
    tokenizer = load_tokenizer(model, chat_template, cache_dir)
    header, end = assistant_markers(tokenizer)
    has_labels = "labels" in ds.column_names
    summary = audit_tokenized(ds, tokenizer)
    print(f"{path}: {'labels present' if has_labels else 'NO labels column'}; "
          f"assistant replies start after {header!r} and end with {end!r}")
    print(summary.format())
    problems = summary.problems()
    if not has_labels:
        print("!! Without labels, a default collator copies input_ids into labels: EVERY token is trained, "
              "prompts included (the bug chattune exists to prevent).")
    for p in problems:
        print(f"!! PROMPTS ARE TRAINED: {p}" if "prompt" in p else f"!! {p}")
    return not problems
