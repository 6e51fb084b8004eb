"""Labels: which tokens of a rendered conversation the model is trained on.

Owns: turning one example into `input_ids`, `attention_mask`, `labels` (-100 = not trained) and
`assistant_masks`, for any chat template. This is the one code path that produces labels; the
cache stores its output and the trainers use it as is. No I/O.

How: the conversation is rendered once and tokenized once (so `input_ids` are exactly
`apply_chat_template(tokenize=True)`); a second rendering with sentinel contents (the skeleton,
see chat_template.py) says which text the template writes around each message. Walking both
renderings side by side gives each message's character span in the real text, whatever the
template adds (default system prompts, dates), trims or drops (earlier turns' reasoning). A trained
assistant message's span plus the end-of-turn marker the template writes right after it
(`<|im_end|>`, `<|eot_id|>`, `</s>`…: the text of the following literal up to its first added
token) become labels; every token overlapping them is trained. Cost is linear in the length.

What the skeleton tells (its literals, each slot's end marker, the order to paint the slots in) depends
only on the message structure (roles and other non-content keys), so it is worked out once per
structure (a Layout); a conversation then costs one rendering (chat_template.Renderer), one
tokenization, and a few char_to_token lookups at the span boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from chattune.chat_template import Renderer, Skeleton, TemplateError, skeleton, structure_key

MASKING_VERSION = 1  # bump whenever the labels for the same inputs could change
IGNORE_INDEX = -100
ROLE_NAMES = ("template", "system", "user", "tool", "assistant", "text")
ROLE_ID = {name: i for i, name in enumerate(ROLE_NAMES)}  # higher id wins a token that straddles two
_ASSISTANT = ROLE_ID["assistant"]


class Region(NamedTuple):
    """Where one message's content sits in the rendered text (character offsets)."""

    message: int
    start: int
    end: int
    eot_end: int  # end of the end-of-turn marker after the content (== end when there is none)


@dataclass
class Encoded:
    input_ids: list[int]
    trained: np.ndarray  # bool per token: its label is its id (else IGNORE_INDEX)
    token_roles: np.ndarray  # ROLE_ID per token
    dropped: str | None = None  # why the example can't be trained (it is then not kept)

    @property
    def labels(self) -> list[int]:
        return np.where(self.trained, self.input_ids, IGNORE_INDEX).tolist()


def markers_pattern(tokenizer) -> re.Pattern:
    """A regex matching the tokenizer's special added tokens (the template's markers; whitespace ones
    like Gemma's "\n" tokens are ordinary text)."""
    tokens = sorted(
        (t.content for t in tokenizer.added_tokens_decoder.values() if t.special and t.content.strip()),
        key=len, reverse=True,
    )
    return re.compile("|".join(map(re.escape, tokens)) or r"(?!x)x")


def end_marker(literal: str, markers: re.Pattern) -> str:
    """The end-of-turn text: `literal` up to and including its first special token ('' if none)."""
    m = markers.search(literal)
    return literal[: m.end()] if m else ""


@dataclass(frozen=True)
class Layout:
    """A skeleton with what labelling needs from it, worked out once per message structure: the end
    marker after each content slot, and the order to paint the slots in (lowest role first, so the
    highest role wins a token shared by two spans)."""

    skeleton: Skeleton
    eots: tuple[str, ...]
    paint_order: tuple[int, ...]

    @classmethod
    def of(cls, skel: Skeleton, messages: list[dict], markers: re.Pattern) -> Layout:
        eots = tuple(end_marker(after, markers) for after in skel.literals[1:])
        order = sorted(range(len(skel.order)), key=lambda slot: ROLE_ID[messages[skel.order[slot]]["role"]])
        return cls(skel, eots, tuple(order))


def _common_prefix(text: str, pos: int, literal: str) -> int:
    if text.startswith(literal, pos):
        return len(literal)
    n = 0
    for a, b in zip(literal, text[pos : pos + len(literal)]):
        if a != b:
            break
        n += 1
    return n


def locate(rendered: str, layout: Layout, messages: list[dict]) -> list[Region]:
    """Each content slot's span in `rendered`, in the order the template writes them.

    The fast path: the content appears verbatim where the skeleton puts it, followed by the same
    template text (or at least the same end marker). Otherwise the template changed the content
    (trim, reasoning dropped) or the text around it (reasoning inserted): the span runs from where
    the rendering stops matching the skeleton's literal to the next end marker, and must be a piece
    of the original content, or the template is doing something chattune can't follow.
    """
    literals, regions, pos = layout.skeleton.literals, [], 0
    for slot, m in enumerate(layout.skeleton.order):
        before, after, eot = literals[slot], literals[slot + 1], layout.eots[slot]
        start = pos + _common_prefix(rendered, pos, before)
        content = messages[m]["content"]
        end = start + len(content)
        verbatim = rendered.startswith(content, start) and (
            rendered.startswith(after, end) or (eot and rendered.startswith(eot, end))
        )
        if not verbatim:
            anchor = eot or after
            end = rendered.find(anchor, start) if anchor else len(rendered)
            if end < 0 or rendered[start:end] not in content:
                raise TemplateError(
                    f"message {m} ({messages[m]['role']}) is not where the chat template's skeleton puts it; "
                    "the template changes the text around it in a way chattune cannot follow"
                )
        eot_end = end + len(eot) if eot and rendered.startswith(eot, end) else end
        regions.append(Region(m, start, end, eot_end))
        pos = end
    return regions


def token_span(encoding, start: int, end: int) -> tuple[int, int]:
    """Tokens [a, b) that overlap characters [start, end) (a == b when none do)."""
    a = encoding.char_to_token(start) if start < end else None
    if a is None:  # offsets may skip a character (a space trimmed off a token): the first one a token covers
        a = next((t for pos in range(start + 1, end) if (t := encoding.char_to_token(pos)) is not None), None)
        if a is None:
            return 0, 0
    b = encoding.char_to_token(end - 1)
    if b is None:
        b = next(t for pos in range(end - 2, start - 1, -1) if (t := encoding.char_to_token(pos)) is not None)
    # A character split over several byte-level tokens maps to one of them: take them all.
    while a > 0 and encoding.token_to_chars(a - 1)[1] > start:
        a -= 1
    while b + 1 < len(encoding) and encoding.token_to_chars(b + 1)[0] < end:
        b += 1
    return a, b + 1


def label_tokens(encoding, regions: list[Region], layout: Layout, messages: list[dict], train_all: bool = False):
    """(trained, token_roles) for the tokens of `encoding`. A token is trained when it overlaps a
    trained assistant reply or the end marker after it; its role is the highest among the spans it overlaps."""
    trained = np.full(len(encoding), train_all)
    roles = np.zeros(len(encoding), dtype=np.int8)
    for slot in layout.paint_order:
        r = regions[slot]
        msg = messages[r.message]
        role = ROLE_ID[msg["role"]]
        a, b = token_span(encoding, r.start, r.eot_end if role == _ASSISTANT else r.end)
        roles[a:b] = role
        if role == _ASSISTANT and msg["train"]:
            trained[a:b] = True
    return trained, roles


class Masker:
    """Encodes examples for one tokenizer + chat template. Layouts are cached per message structure, so
    most conversations cost one rendering."""

    def __init__(self, tokenizer, max_length: int | None = None, masking: str = "assistant"):
        self.tokenizer, self.max_length, self.masking = tokenizer, max_length, masking
        self.markers = markers_pattern(tokenizer)
        self.render = Renderer(tokenizer)
        self._layouts: dict[tuple, Layout] = {}

    def layout(self, messages: list[dict], key: tuple) -> Layout:
        """The Layout of `messages`, whose structure_key is `key`."""
        if key not in self._layouts:
            skel = skeleton(self.tokenizer, messages)
            dropped = [i for i, m in enumerate(messages) if m["train"] and i not in skel.order]
            if dropped:
                raise TemplateError(
                    f"the chat template drops the content of assistant message {dropped[0]}: "
                    "there is nothing to train; fix the template or pass --chat-template"
                )
            if len(self._layouts) > 4096:
                self._layouts.clear()
            self._layouts[key] = Layout.of(skel, messages, self.markers)
        return self._layouts[key]

    def encode_batch(self, examples: list[dict]) -> list[Encoded | TemplateError]:
        """Encode a batch; an example the template can't handle comes back as its TemplateError."""
        out: list[Encoded | TemplateError | None] = [None] * len(examples)
        texts, rendered, idx = [], [], []
        for i, ex in enumerate(examples):
            if "text" in ex:
                texts.append(i)
                continue
            try:
                key = structure_key(ex["messages"])
                layout = self.layout(ex["messages"], key)
                rendered.append((self.render(ex["messages"], key), layout))
                idx.append(i)
            except TemplateError as e:
                out[i] = e
        if rendered:
            # The backend call is what tokenizer(text, add_special_tokens=False) runs, minus building
            # Python lists of offsets: labels come from char_to_token at the few span boundaries.
            encodings = self.tokenizer.backend_tokenizer.encode_batch([r for r, _ in rendered], add_special_tokens=False)
            for k, i in enumerate(idx):
                text, layout = rendered[k]
                try:
                    out[i] = self._encode_chat(examples[i]["messages"], text, layout, encodings[k])
                except TemplateError as e:
                    out[i] = e
        if texts:
            enc = self.tokenizer([examples[i]["text"] for i in texts], add_special_tokens=True)
            for k, i in enumerate(texts):
                out[i] = self._encode_text(enc["input_ids"][k])
        return out

    def encode(self, example: dict) -> Encoded:
        (result,) = self.encode_batch([example])
        if isinstance(result, TemplateError):
            raise result
        return result

    def _encode_chat(self, messages, text, layout, encoding) -> Encoded:
        regions = locate(text, layout, messages)
        trained, token_roles = label_tokens(encoding, regions, layout, messages, train_all=self.masking == "none")
        return self._truncate(Encoded(encoding.ids, trained, token_roles))

    def _encode_text(self, ids: list[int]) -> Encoded:
        eos = self.tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids = ids + [eos]
        n = len(ids)
        return self._truncate(Encoded(ids, np.ones(n, dtype=bool), np.full(n, ROLE_ID["text"], dtype=np.int8)))

    def _truncate(self, enc: Encoded) -> Encoded:
        if not enc.trained.any():
            raise TemplateError("no token is trained: the rendered assistant replies are empty")
        if self.max_length and len(enc.input_ids) > self.max_length:
            n = self.max_length
            enc = Encoded(enc.input_ids[:n], enc.trained[:n], enc.token_roles[:n])
            if not enc.trained.any():
                enc.dropped = f"all trained tokens beyond max_length ({n})"
        return enc
