"""Shared fixtures: real tokenizers, built once per test session.

Owns: the session's cache folder, the embedded tokenizers, and tokenizers for the chat templates of
many model families (`FAMILIES`). A family tokenizer is the real Qwen2.5 tokenizer plus that family's
special tokens, bos/eos (and whether the tokenizer itself prepends bos) and its stock chat template:
TRL's installed copy of the original where TRL has one, else tests/templates/<name>.jinja, whose
first line says where the text is from (the line is dropped, so the template is verbatim).
Fixtures are shared across tests: a test that changes a tokenizer must restore it.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import AddedToken

from chattune.models import QWEN25_TOKENIZER, SMOLLM2, load_tokenizer

TRL_TEMPLATES = Path(importlib.util.find_spec("trl").origin).parent / "chat_templates"
OUR_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Family:
    template: str  # "trl:<file>" (TRL's copy of the original) or "<file>" in tests/templates
    tokens: tuple[str | AddedToken, ...] = ()  # a plain str is added as a special token
    bos: str | None = None
    eos: str = "<|im_end|>"
    add_bos: bool = False  # the real tokenizer prepends bos itself (on top of the template's)
    system: bool = True  # the template accepts a system message


def _plain(token: str) -> AddedToken:
    """Never split, but not special: kept by decode(skip_special_tokens=True), as in the real tokenizer."""
    return AddedToken(token, special=False, normalized=False)


def _eats_newline(token: str) -> AddedToken:
    """Phi-3's role tokens absorb the whitespace after them (rstrip) in the real tokenizer."""
    return AddedToken(token, special=True, normalized=False, rstrip=True)


LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>")  # fmt: skip
GEMMA = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>")
PHI3 = ("<s>", "<|endoftext|>", *map(_eats_newline, ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")))
DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
            "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
            "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
            "<｜tool▁sep｜>")  # fmt: skip
QWEN3_ADDED = ("<tool_response>", "</tool_response>", "<think>", "</think>")  # ids 151665-151668, as in Qwen3
MISTRAL_V3 = ("<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
              "[TOOL_RESULTS]", "[/TOOL_RESULTS]")  # fmt: skip
GPT_OSS = ("<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>",
           "<|return|>", "<|call|>")  # fmt: skip
COHERE = ("<BOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
          "<|SYSTEM_TOKEN|>")  # fmt: skip
DEEPSEEK_BOS_EOS = {"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>", "add_bos": True}

FAMILY_SPECS = {
    "chatml": Family("chatml.jinja"),
    "qwen3": Family("trl:qwen3.jinja", tuple(map(_plain, QWEN3_ADDED))),
    "llama3": Family("trl:llama3.jinja", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", add_bos=True),
    "llama3.1": Family("trl:llama3_1.jinja", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", add_bos=True),
    "llama3.2": Family("trl:llama3_2.jinja", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", add_bos=True),
    "mistral": Family("mistral.jinja", ("<s>", "</s>"), "<s>", "</s>", add_bos=True, system=False),
    "mistral-v0.3": Family("mistral_v0_3.jinja", MISTRAL_V3, "<s>", "</s>", add_bos=True),
    "gemma": Family("trl:gemma.jinja", GEMMA, "<bos>", "<eos>", add_bos=True, system=False),
    "gemma3": Family("trl:gemma3.jinja", (*GEMMA, "<start_of_image>"), "<bos>", "<eos>", add_bos=True),
    "phi3": Family("trl:phi3.jinja", PHI3, "<s>", "<|endoftext|>"),
    "phi3.5": Family("trl:phi3_5.jinja", PHI3, "<s>", "<|endoftext|>"),
    "zephyr": Family("zephyr.jinja", ("<s>", "</s>"), "<s>", "</s>", add_bos=True),
    "deepseek-v3": Family("trl:deepseekv3.jinja", DEEPSEEK, **DEEPSEEK_BOS_EOS),
    "deepseek-r1": Family("trl:deepseek_r1_distill.jinja", DEEPSEEK, **DEEPSEEK_BOS_EOS),
    "gpt-oss": Family("trl:gptoss.jinja", GPT_OSS, "<|startoftext|>", "<|return|>"),
    "cohere": Family("trl:cohere.jinja", COHERE, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", add_bos=True),
}
EMBEDDED_FAMILIES = {"smollm2": SMOLLM2, "qwen2.5": QWEN25_TOKENIZER}  # the embedded tokenizers, as they are
FAMILIES = [*EMBEDDED_FAMILIES, *FAMILY_SPECS]


def family_supports_system(name: str) -> bool:
    return name in EMBEDDED_FAMILIES or FAMILY_SPECS[name].system


def family_template(name: str) -> str:
    """The stock template text of a family in FAMILY_SPECS."""
    source = FAMILY_SPECS[name].template
    if source.startswith("trl:"):
        return (TRL_TEMPLATES / source.removeprefix("trl:")).read_text(encoding="utf-8")
    return (OUR_TEMPLATES / source).read_text(encoding="utf-8").split("\n", 1)[1]


@pytest.fixture(scope="session", autouse=True)
def chattune_cache_dir(tmp_path_factory):
    """$CHATTUNE_CACHE_DIR when set (conversions then survive across runs), else one folder per session.
    Either way it is the default cache for the whole session, so no test writes to ~/.cache."""
    if os.environ.get("CHATTUNE_CACHE_DIR"):
        yield Path(os.environ["CHATTUNE_CACHE_DIR"])
        return
    path = tmp_path_factory.mktemp("chattune-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHATTUNE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def embedded_tokenizer(chattune_cache_dir):
    """name -> the embedded tokenizer, loaded (and on first use built) once per session."""
    return functools.cache(lambda name: load_tokenizer(name, cache_dir=chattune_cache_dir))


@pytest.fixture(scope="session")
def smollm2_tokenizer(embedded_tokenizer):
    return embedded_tokenizer(SMOLLM2)


@pytest.fixture(scope="session")
def qwen25_tokenizer(embedded_tokenizer):
    return embedded_tokenizer(QWEN25_TOKENIZER)


@pytest.fixture(scope="session")
def family_tokenizer(embedded_tokenizer):
    """name (one of FAMILIES) -> a tokenizer with that family's tokens and stock chat template."""

    @functools.cache
    def build(name: str):
        if name in EMBEDDED_FAMILIES:
            return embedded_tokenizer(EMBEDDED_FAMILIES[name])
        family = FAMILY_SPECS[name]
        tok = copy.deepcopy(embedded_tokenizer(QWEN25_TOKENIZER))
        added = [t if isinstance(t, AddedToken) else AddedToken(t, special=True, normalized=False)
                 for t in family.tokens]  # fmt: skip
        specials = [t for t in added if t.special]
        tok.add_special_tokens({"extra_special_tokens": specials}, replace_extra_special_tokens=False)
        tok.add_tokens([t for t in added if not t.special])
        tok.bos_token, tok.eos_token = family.bos, family.eos
        if family.add_bos:
            tok.add_bos_token = True
        tok.chat_template = family_template(name)
        return tok

    return build
