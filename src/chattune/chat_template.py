"""The only code that renders a chat template.

Owns: rendering conversations to text (through the tokenizer's own `apply_chat_template`, so the
text is exactly what transformers, TRL and inference servers produce), the *skeleton* of a
conversation (the same rendering with every message's content replaced by a sentinel, which shows
where the template puts each message and what text it adds around it), the template's generation
prompt, and the Renderer the masker renders many conversations with (the same compiled template,
minus apply_chat_template's per-call input preparation, where that is shown to change nothing).
Knows nothing about labels: masking.py reads the skeleton.

Training, generation and the audit all render through here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

SENTINEL = "@@chattune:{}@@"
_SENTINEL_RE = re.compile(r"@@chattune:(\d+)@@")


class TemplateError(ValueError):
    """The template rejected a conversation, or renders it in a way chattune cannot mask."""


@dataclass(frozen=True)
class Skeleton:
    """A rendering split at the message contents: literals[0], msg[order[0]], literals[1], ...

    `order[j]` is the index of the message whose content the template puts at slot j; a message
    may appear in a different place than its turn (Mistral folds the system prompt into a user
    turn), more than once, or not at all (a template that drops it).
    """

    literals: tuple[str, ...]
    order: tuple[int, ...]


def template_messages(messages: list[dict]) -> list[dict]:
    """Messages as the template sees them: chattune's own `train` key removed."""
    return [{k: v for k, v in m.items() if k != "train"} for m in messages]


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Render one conversation; a template that raises (e.g. "roles must alternate") → TemplateError."""
    try:
        return tokenizer.apply_chat_template(
            template_messages(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as e:  # jinja raises anything the template author chose (raise_exception, TypeError…)
        raise TemplateError(f"the chat template rejected this conversation: {str(e).splitlines()[0]}") from None


class Renderer:
    """Renders many conversations with one tokenizer's template, as `render` does, faster.

    apply_chat_template spends about a third of each call making its input plain (copying every
    message, aliasing reasoning fields, dropping None values), which for messages read from JSON
    changes nothing a template can see. The renderer calls the same compiled template with the same
    arguments directly, once the first conversation of a message structure has rendered to the same
    text both ways (what that preparation does depends on the keys and types of the messages, not on
    their contents); a structure where they differ always goes through apply_chat_template.
    """

    def __init__(self, tokenizer):
        # Private, so imported here only: the compiled (and cached) template apply_chat_template renders with.
        from transformers.utils.chat_template_utils import _compile_jinja_template

        self.tokenizer = tokenizer
        self._template = _compile_jinja_template(tokenizer.get_chat_template())
        self._kwargs = {**tokenizer.special_tokens_map, "tools": None, "documents": None, "add_generation_prompt": False}
        self._direct_ok: dict[tuple, bool] = {}  # structure_key -> the direct rendering is apply_chat_template's

    def __call__(self, messages: list[dict], key: tuple | None = None) -> str:
        """The rendering of `messages`; `key` is their structure_key, if the caller has it already."""
        key = structure_key(messages) if key is None else key
        direct = self._direct_ok.get(key)
        if direct:
            return self._direct(messages)
        text = render(self.tokenizer, messages)
        if direct is None:
            if len(self._direct_ok) > 4096:
                self._direct_ok.clear()
            self._direct_ok[key] = self._agrees(messages, text)
        return text

    def _agrees(self, messages: list[dict], text: str) -> bool:
        try:
            return self._direct(messages) == text
        except Exception:  # a template that fails this way too is only ever rendered by render()
            return False

    def _direct(self, messages: list[dict]) -> str:
        return self._template.render(messages=template_messages(messages), **self._kwargs)


_CONTENT_KEYS = frozenset({"role", "content", "train"})


def structure_key(messages: list[dict]) -> tuple:
    """What a skeleton depends on: everything but the message contents (and chattune's `train`). Most
    messages have nothing else, and their key is their role."""
    return tuple(
        m["role"] if m.keys() <= _CONTENT_KEYS
        else json.dumps({k: v for k, v in m.items() if k not in ("content", "train")}, sort_keys=True)
        for m in messages
    )


def skeleton(tokenizer, messages: list[dict]) -> Skeleton:
    sentinels = [{**m, "content": SENTINEL.format(i)} for i, m in enumerate(messages)]
    parts = _SENTINEL_RE.split(render(tokenizer, sentinels))
    return Skeleton(literals=tuple(parts[0::2]), order=tuple(int(i) for i in parts[1::2]))


def generation_prompt(tokenizer) -> str:
    """The text the template adds to ask for an assistant turn ('' if it has no such prompt)."""
    convo = [{"role": "user", "content": SENTINEL.format(0)}]
    with_prompt = render(tokenizer, convo, add_generation_prompt=True)
    without = render(tokenizer, convo)
    return with_prompt[len(without):] if with_prompt.startswith(without) else ""
