"""Score predictions for the symptoms of training on prompts.

Owns: five pure scores (prompt_echo, repetition, script_drift, format_leakage, length_blowup), the
verdict for one prediction and for one monitoring step, and `chattune score FILE`. Knows nothing about
models, tokenizers or training: it reads strings and returns numbers, so any run's predictions can be
rescored offline. docs/scores.md says what each score means and why its threshold is where it is.
"""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from chattune.config import MonitorThresholds
from chattune.errors import UserError

FLAGS = ("prompt_echo", "repetition", "script_drift", "format_leakage", "length_blowup")

ECHO_N = 5  # a copied run counts when it is this many words long, or a whole (shorter) prompt message
MIN_COPY_WORDS = 4  # shorter messages ("Capital of France?") are restated by good answers too
ECHO_MIN_WORDS = 20  # a short answer that reuses one phrase of the question is not an echo
RESTATE_LEAD = 3  # words allowed before the restated question ("Sure! What is 2+2?")
REPEAT_N = 6  # n-gram size for repetition: shorter ones repeat in healthy lists ("- X is a good source of Y")
MIN_COMPRESS_CHARS = 100  # zlib's ratio says nothing about shorter texts
MIN_FOREIGN_RUN = 8  # words in a row (a Han character is one); names are shorter, sentences longer
MIN_BLOWUP_WORDS = 40  # a 20-word answer to a 5-word reference is not a blow-up

Span = tuple[int, int]


class Symptom(NamedTuple):
    score: float
    spans: list[Span]  # character spans in the prediction that show the symptom
    reliable: bool = True  # False when the evidence is too small to flag on, whatever the score


@dataclass
class PredictionScore:
    scores: dict[str, float]  # length_blowup is absent when there is no reference or baseline
    flags: list[str]
    spans: dict[str, list[Span]]  # for each flagged symptom: character spans that show it
    leaked: list[str]  # template markers and role headers found in the prediction

    @property
    def healthy(self) -> bool:
        return not self.flags


# Han and kana characters are one word each: Chinese and Japanese do not put spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


def words(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased words without punctuation, with their character spans."""
    return [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _char_spans(toks: list[tuple[str, int, int]], covered: set[int]) -> list[Span]:
    spans: list[Span] = []
    for i in sorted(covered):
        if spans and i - 1 in covered:
            spans[-1] = (spans[-1][0], toks[i][2])
        else:
            spans.append((toks[i][1], toks[i][2]))
    return spans


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _ngram_hits(seq: list[str], n: int, seen: set[tuple[str, ...]]) -> set[int]:
    """Positions of `seq` inside an n-gram that is in `seen`."""
    hits: set[int] = set()
    for i in range(len(seq) - n + 1):
        if tuple(seq[i : i + n]) in seen:
            hits.update(range(i, i + n))
    return hits


def prompt_echo(messages: list[dict], prediction: str, reference: str | None = None) -> Symptom:
    """Share of the prediction copied from the prompt; 1.0 when it opens by restating the whole question.

    Rewrite tasks ("fix this code", "correct this paragraph") copy their input on purpose: what the
    reference copies too does not count.
    """
    toks = words(prediction)
    pred = [t for t, _, _ in toks]
    ref = [t for t, _, _ in words(reference or "")]
    covered: set[int] = set()
    prompts = [[t for t, _, _ in words(m["content"])] for m in messages]
    for p in prompts:
        if len(p) >= MIN_COPY_WORDS:
            n = min(ECHO_N, len(p))
            grams = {tuple(p[i : i + n]) for i in range(len(p) - n + 1)}
            covered |= _ngram_hits(pred, n, grams - {tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)})
    copied = len(covered) / max(len(pred), ECHO_MIN_WORDS)
    users = [p for p, m in zip(prompts, messages) if m["role"] == "user"]
    question = users[-1] if users else []
    restated = len(question) >= MIN_COPY_WORDS and any(
        pred[lead : lead + len(question)] == question for lead in range(RESTATE_LEAD + 1)
    )
    return Symptom(1.0 if restated else copied, _char_spans(toks, covered))


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"[^\s.!?。！？][^.!?。！？\n]*[.!?。！？]*", text)]


def repetition(prediction: str) -> Symptom:
    """The strongest of: share of words in a repeated 6-gram, share of words in a repeated
    sentence or line, and how well zlib compresses the text (loops compress very well)."""
    toks = words(prediction)
    pred = [t for t, _, _ in toks]
    ngram_hits: set[int] = set()
    seen: set[tuple[str, ...]] = set()
    for i in range(len(pred) - REPEAT_N + 1):
        gram = tuple(pred[i : i + REPEAT_N])
        if gram in seen:
            ngram_hits.update(range(i, i + REPEAT_N))
        seen.add(gram)
    sentence_spans, seen_sentences, repeated_words = [], set(), 0
    for start, end in _sentences(prediction):
        key = tuple(t for t, _, _ in words(prediction[start:end]))
        if key and key in seen_sentences:
            sentence_spans.append((start, end))
            repeated_words += len(key)
        seen_sentences.add(key)
    shares = [len(ngram_hits) / len(pred) if pred else 0.0, repeated_words / len(pred) if pred else 0.0]
    raw = prediction.encode()
    if len(raw) >= MIN_COMPRESS_CHARS:
        # compressed/raw is ~0.7 for prose, ~0.5 for lists and code, under 0.25 for loops
        shares.append(max(0.0, min(1.0, (0.4 - len(zlib.compress(raw, 9)) / len(raw)) / 0.25)))
    return Symptom(max(shares), _merge(_char_spans(toks, ngram_hits) + sentence_spans))


_OPENING_QUOTES = "\"'“‘«「『(（"


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "UNKNOWN").split()
    first = name[1] if name[0] in ("FULLWIDTH", "HALFWIDTH") and len(name) > 1 else name[0]
    # Japanese mixes kanji and kana: one writing system for this purpose.
    return "CJK" if first in ("HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "IDEOGRAPHIC") else first


def scripts(text: str) -> set[str]:
    """Unicode scripts of the letters in `text` (LATIN, CYRILLIC, CJK, ARABIC, ...)."""
    return {_script(ch) for ch in text if ch.isalpha()}


def script_drift(messages: list[dict], prediction: str, reference: str | None = None) -> Symptom:
    """Share of the prediction's words written in a script that neither the prompt nor the reference uses.

    Words, not letters: one Han character carries about a word, so counting letters would make a
    Chinese sentence at the end of an English answer look four times smaller than it is. Flagged only
    when one unquoted run of foreign words is long enough to be a switch rather than a name or a quote.
    """
    allowed = scripts(" ".join(m["content"] for m in messages) + " " + (reference or ""))
    toks = [t for t in words(prediction) if t[0][0].isalpha()]
    runs: list[list[int]] = []  # consecutive foreign words, across spaces and punctuation
    for i, (t, _, _) in enumerate(toks):
        if _script(t[0]) not in allowed:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    foreign = [i for run in runs for i in run]
    switches = [run for run in runs if prediction[: toks[run[0]][1]].rstrip()[-1:] not in _OPENING_QUOTES]
    return Symptom(
        len(foreign) / len(toks) if toks else 0.0,
        _char_spans(toks, set(foreign)),
        reliable=any(len(run) >= MIN_FOREIGN_RUN for run in switches),
    )


_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|\[/?INST\]|<</?SYS>>|<start_of_turn>|<end_of_turn>|</s>")
_ROLE_HEADER = re.compile(
    r"^[ \t]*(?:(?:user|assistant|human)[ \t]*:"  # "User: ...", "Human: ...", "Assistant: ..."
    r"|(?:user|assistant|system|model)[ \t]*$"  # ChatML/Gemma headers once special tokens are stripped
    r"|#{2,4}[ \t]*(?:instruction|response|input|human|assistant|user)[ \t]*:?[ \t]*$)",  # Alpaca
    re.IGNORECASE | re.MULTILINE,
)


def _leaks(text: str, special_tokens: tuple[str, ...] = ()) -> dict[Span, str]:
    found = {m.span(): m.group() for m in _MARKER.finditer(text)}
    code = [m.span() for m in re.finditer(r"```.*?(?:```|\Z)", text, re.DOTALL)]
    for m in _ROLE_HEADER.finditer(text):
        if any(a <= m.start() < b for a, b in code):  # a YAML `user:` key is code, not a new turn
            continue
        stripped = m.group().strip()
        start = m.start() + m.group().index(stripped)
        found[(start, start + len(stripped))] = stripped
    for tok in filter(None, special_tokens):
        for m in re.finditer(re.escape(tok), text):
            found[m.span()] = tok
    return found


def format_leakage(messages: list[dict], prediction: str, special_tokens: tuple[str, ...] = ()) -> Symptom:
    """1.0 when chat-template markers or role headers appear in the prediction, else 0.0.

    A marker the prompt itself contains ("what does <|im_end|> mean?") may appear in a good answer.
    """
    in_prompt = {t.casefold() for m in messages for t in _leaks(m["content"], special_tokens).values()}
    spans = sorted(s for s, t in _leaks(prediction, special_tokens).items() if t.casefold() not in in_prompt)
    return Symptom(1.0 if spans else 0.0, spans)


def length_blowup(prediction: str, base: str, threshold: float) -> Symptom:
    """Prediction words over `base` words (the reference, or the baseline prediction).

    Spans mark what comes after `threshold` times the base length.
    """
    toks = words(prediction)
    ratio = len(toks) / max(len(words(base)), 1)
    cut = math.ceil(threshold * max(len(words(base)), 1))
    spans = [(toks[cut][1], len(prediction))] if cut < len(toks) else []
    return Symptom(ratio, spans, reliable=len(toks) > MIN_BLOWUP_WORDS)


def score_prediction(
    messages: list[dict],
    prediction: str,
    reference: str | None = None,
    baseline: str | None = None,
    thresholds: MonitorThresholds | None = None,
    special_tokens: tuple[str, ...] = (),
) -> PredictionScore:
    """Score one prediction for every symptom and flag those at or above their threshold.

    >>> s = score_prediction([{"role": "user", "content": "What is 2+2?"}], "What is 2+2? What is 2+2? What is 2+2?")
    >>> s.flags, s.healthy
    (['prompt_echo', 'repetition'], False)
    """
    thresholds = thresholds or MonitorThresholds()
    symptoms = {
        "prompt_echo": prompt_echo(messages, prediction, reference),
        "repetition": repetition(prediction),
        "script_drift": script_drift(messages, prediction, reference),
        "format_leakage": format_leakage(messages, prediction, special_tokens),
    }
    base = reference if reference is not None else baseline
    if base is not None:
        symptoms["length_blowup"] = length_blowup(prediction, base, thresholds.length_blowup)
    flags = [n for n, s in symptoms.items() if s.reliable and s.score >= getattr(thresholds, n)]
    return PredictionScore(
        scores={n: round(s.score, 4) for n, s in symptoms.items()},
        flags=flags,
        spans={n: s.spans for n, s in symptoms.items() if s.spans and n in flags},
        leaked=[prediction[a:b] for a, b in symptoms["format_leakage"].spans],
    )


def summarize_step(results: list[PredictionScore]) -> dict:
    """One monitoring step: unhealthy when at least half of its predictions are unhealthy.

    Half, not one: with four monitored prompts one odd answer is noise, two are a pattern. Any flags,
    not one flag: a model trained on its prompts echoes on one prompt and leaks the template on another.
    """
    n = len(results)
    means = {}
    for f in FLAGS:
        values = [r.scores[f] for r in results if f in r.scores]
        if values:
            means[f] = round(sum(values) / len(values), 4)
    unhealthy_share = sum(not r.healthy for r in results) / n if n else 0.0
    return {
        "predictions": n,
        "unhealthy_share": unhealthy_share,
        "flag_share": {f: sum(f in r.flags for r in results) / n if n else 0.0 for f in FLAGS},
        "mean": means,
        "healthy": unhealthy_share < 0.5,
    }


def format_summary(summary: dict, source: str) -> str:
    verdict = "healthy" if summary["healthy"] else "UNHEALTHY (at least half the predictions flagged)"
    lines = [
        f"{source}: {summary['predictions']} predictions, {summary['unhealthy_share']:.0%} unhealthy; "
        f"as one step: {verdict}",
        f"  {'score':<16}{'mean':>8}{'flagged':>10}",
    ]
    for f in FLAGS:
        mean = f"{summary['mean'][f]:.2f}" if f in summary["mean"] else "-"
        lines.append(f"  {f:<16}{mean:>8}{summary['flag_share'][f]:>10.0%}")
    return "\n".join(lines)


def _check_line(obj, where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: expected a JSON object with `messages` and `prediction`"]
    problems = [f"{where}: missing key `{k}`" for k in ("messages", "prediction") if k not in obj]
    msgs = obj.get("messages", [])
    if not isinstance(msgs, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs
    ):
        problems.append(f"{where}: `messages` must be a list of {{role, content}} with string values")
    for k in ("prediction", "reference", "baseline"):
        if obj.get(k) is not None and not isinstance(obj[k], str):
            problems.append(f"{where}: `{k}` must be a string")
    return problems


def score_file(path: str | Path, output: str | Path | None = None, thresholds: MonitorThresholds | None = None) -> dict:
    """Score a JSONL of {messages, prediction, reference?, baseline?}; write each line back with
    `scores`, `flags`, `healthy` and `spans` to `output` (default stdout); print a summary to stderr.
    Every bad line is reported at once, as file:line: reason, before anything is written."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    rows, problems = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{lineno}: not valid JSON: {e.msg}")
            continue
        line_problems = _check_line(obj, f"{path}:{lineno}")
        problems += line_problems
        if not line_problems:
            rows.append(obj)
    if problems:
        raise UserError("\n".join(problems))
    results, out_lines = [], []
    for obj in rows:
        r = score_prediction(obj["messages"], obj["prediction"], obj.get("reference"), obj.get("baseline"), thresholds)
        results.append(r)
        out = {**obj, "scores": r.scores, "flags": r.flags, "healthy": r.healthy, "spans": r.spans}
        out_lines.append(json.dumps(out, ensure_ascii=False) + "\n")
    if output is None:
        sys.stdout.writelines(out_lines)
    else:
        Path(output).write_text("".join(out_lines), encoding="utf-8")
    summary = summarize_step(results)
    print(format_summary(summary, str(path)), file=sys.stderr)
    return summary
