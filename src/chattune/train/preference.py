"""Preference data for DPO and ORPO: read it, and say what the objective trains.

Owns turning `chattune.data.read_preferences` rows (prompt, chosen, rejected: message lists) into a
`datasets.Dataset` for TRL, and the audit of a preference run: TRL renders each pair with the tokenizer's
chat template and puts the loss on the chosen and rejected replies only (the prompt is context), so the audit
counts those tokens after TRL's own tokenization and truncation. Knows nothing about the objectives themselves.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from chattune.config import JobConfig
from chattune.data import read_preferences


def load_preferences(cfg: JobConfig, path: Path) -> Dataset:
    return Dataset.from_list(read_preferences(path, skip_invalid=cfg.data.skip_invalid))


def preference_audit(lengths: list[tuple[int, int, int]], dropped: int, max_length: int) -> dict:
    """The audit (same keys as `AuditSummary.to_dict()`) from each pair's (prompt, chosen, rejected) token counts.

    Each of the two sequences (prompt + chosen, prompt + rejected) is cut at `max_length` from the end.
    """
    prompt = chosen = rejected = 0
    for p, c, r in lengths:
        p_kept = min(p, max_length)
        prompt += 2 * p_kept
        chosen += min(p + c, max_length) - p_kept
        rejected += min(p + r, max_length) - p_kept
    return {
        "examples": len(lengths),
        "tokens": prompt + chosen + rejected,
        "trained_tokens": chosen + rejected,
        "dropped": {"prompt fills max_length": dropped} if dropped else {},
        # Same role names as SFT audits: anything but `assistant` with trained tokens means a leaked prompt.
        "roles": {
            "prompt": {"tokens": prompt, "trained": 0},
            "assistant": {"tokens": chosen + rejected, "trained": chosen + rejected},
        },
        "pairs": {"chosen_tokens": chosen, "rejected_tokens": rejected},
        "masking": "preference: the loss covers the chosen and rejected replies, never the prompt",
        "warnings": [],
    }
