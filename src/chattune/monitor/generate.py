"""Greedy predictions on a fixed set of prompts, for watching a model while it trains.

Owns: choosing the monitored prompts (a `monitor.prompts` file, else the eval data, else the train data),
and generating one reply to each: rendered through `chat_template.render` with the generation prompt,
batched with left padding, greedy, at most `max_new_tokens`, stopping at the template's end-of-turn token.
Knows nothing about scores or trainers: callback.py decides when to generate and what a reply means.

>>> from chattune.models import load_model, load_tokenizer
>>> tok, model = load_tokenizer("smollm2-135m-instruct"), load_model("smollm2-135m-instruct")  # doctest: +SKIP
>>> [p] = generate(model, tok, [Prompt([{"role": "user", "content": "Say hi."}])], 16)  # doctest: +SKIP
>>> p.stopped  # it ended its turn itself  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig

from chattune.audit import assistant_markers
from chattune.chat_template import render, template_messages
from chattune.config import JobConfig
from chattune.data import ROLES, iter_examples
from chattune.errors import UserError


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]  # the conversation the model answers (role, content; no `train` key)
    reference: str | None = None  # the reply the data gives, when it gives one


@dataclass(frozen=True)
class Prediction:
    text: str  # the reply, special tokens kept (a leaked `<|im_start|>` must stay visible), end-of-turn cut off
    tokens: int  # new tokens generated, the end-of-turn token not counted
    stopped: bool  # True when the model ended its turn; False when max_new_tokens cut it off


def split_reply(messages: list[dict]) -> Prompt:
    """A conversation → the prompt up to its last assistant message, whose content is the reference.
    A conversation that does not end in an assistant reply is all prompt, without a reference."""
    messages = template_messages(messages)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
    if last == 0:
        return Prompt(messages)
    return Prompt(messages[:last], messages[last]["content"])


def _read_prompts_file(path: Path) -> list[Prompt]:
    """JSONL: `messages` (a conversation; a final assistant message becomes the reference) and an optional
    `reference`. A line of `chattune score` input, or of a run's predictions.jsonl, is a valid line."""
    if not path.is_file():
        raise UserError(f"monitor.prompts: {path}: no such file")
    prompts, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: not valid JSON ({e.msg})")
            continue
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in msgs
        ):
            problems.append(f"{path}:{n}: needs `messages`: a non-empty list of {{role, content}} "
                            f"(roles: {', '.join(ROLES)})")
            continue
        if obj.get("reference") is not None and not isinstance(obj["reference"], str):
            problems.append(f"{path}:{n}: `reference` must be a string")
            continue
        prompt = split_reply(msgs) if "reference" not in obj else Prompt(template_messages(msgs), obj["reference"])
        if not any(m["role"] == "user" for m in prompt.messages):
            problems.append(f"{path}:{n}: the prompt has no user message")
            continue
        prompts.append(prompt)
    if problems:
        raise UserError("\n".join(problems))
    if not prompts:
        raise UserError(f"monitor.prompts: {path}: no prompts in it")
    return prompts


def load_prompts(cfg: JobConfig) -> tuple[list[Prompt], str]:
    """The first `monitor.num_prompts` prompts of `monitor.prompts`, else of the eval data, else of the train
    data (those are trained on: the monitor then sees training conversations), and where they came from.
    Plain-text examples have no prompt and are passed over; preference data gives its prompt and `chosen`."""
    n = cfg.monitor.num_prompts
    if cfg.monitor.prompts is not None:
        return _read_prompts_file(Path(cfg.monitor.prompts))[:n], str(cfg.monitor.prompts)
    source = cfg.data.eval or cfg.data.train
    preferences = cfg.training.method != "sft"
    prompts = []
    for _, ex in iter_examples(source, train_on=cfg.data.train_on, skip_invalid=True, preferences=preferences):
        if preferences:
            prompts.append(Prompt(ex["prompt"], ex["chosen"][-1]["content"]))
        elif "messages" in ex:
            prompts.append(split_reply(ex["messages"]))
        if len(prompts) == n:
            break
    return prompts, f"{source}{'' if cfg.data.eval else ' (train data: these prompts are trained on)'}"


def stop_token_ids(tokenizer) -> list[int]:
    """eos, and the special token the template writes after an assistant reply (`<|im_end|>`, `<|eot_id|>`,
    `<end_of_turn>`...), which is not always eos."""
    _, end = assistant_markers(tokenizer)
    ids = {tokenizer.eos_token_id}
    if end:
        ids.add(tokenizer(end, add_special_tokens=False)["input_ids"][-1])  # end ends with that special token
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[Prompt], max_new_tokens: int, batch_size: int = 8,
             stop_at_end_of_turn: bool = True) -> list[Prediction]:
    """Greedy replies to `prompts`, in their order. Works on a peft model; the model's train/eval mode is
    restored afterwards. Prompts are tokenized as training tokenizes them (the template writes BOS itself).

    `stop_at_end_of_turn=False` generates all `max_new_tokens`, end-of-turn tokens included, as a sampler with
    the wrong eos does: what a model writes after its reply shows what it learned of the prompts
    (benchmarks/leakage.py). The monitor always stops."""
    stops = stop_token_ids(tokenizer) if stop_at_end_of_turn else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # An empty list, not None: None would fall back to the model's own eos.
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                              pad_token_id=pad, use_cache=True)
    texts = [render(tokenizer, p.messages, add_generation_prompt=True) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # Similar lengths in one batch waste less on padding; the results go back in the prompts' order.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: dict[int, Prediction] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch], device=model.device)
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch],
                                device=model.device)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for i, row in zip(batch, out[:, width:].tolist()):
                end = next((k for k, t in enumerate(row) if t in stops), None)
                kept = row if end is None else row[:end]
                results[i] = Prediction(tokenizer.decode(kept, skip_special_tokens=False), len(kept), end is not None)
    finally:
        model.train(was_training)
    return [results[i] for i in range(len(prompts))]
