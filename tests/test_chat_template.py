"""Rendering: the masker's direct renderer gives apply_chat_template's text, or steps aside."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chattune.chat_template import Renderer, TemplateError, render, skeleton, structure_key, template_messages

from .conftest import FAMILIES, family_supports_system


def convo(name, *contents):
    roles = (["system"] if family_supports_system(name) else []) + ["user", "assistant"] * 2
    return [{"role": r, "content": c, "train": r == "assistant"} for r, c in zip(roles, contents or map(str, range(5)))]


def reference(tok, messages):
    return tok.apply_chat_template(template_messages(messages), tokenize=False)


@pytest.mark.parametrize("name", FAMILIES)
def test_direct_rendering_is_apply_chat_template(family_tokenizer, name):
    tok = family_tokenizer(name)
    messages = convo(name, " Be <b>terse</b>. ", "Hi\n\n", "  Hello: {{ x }} <|im_end|>", "你好 🙂", "Bye.\n")
    renderer = Renderer(tok)
    assert renderer(messages) == reference(tok, messages)  # the first of its structure: both ways, compared
    assert renderer._direct_ok == {structure_key(messages): True}  # every stock template takes the fast path
    assert renderer(messages) == reference(tok, messages)


def test_structure_where_preparation_matters_goes_through_apply_chat_template(qwen25_tokenizer):
    """apply_chat_template aliases `reasoning_content` as `thinking`; the direct path doesn't, so a
    template that prints `thinking` must not be rendered directly."""
    tok = qwen25_tokenizer
    old = tok.chat_template
    tok.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.thinking }}|{{ m.content }}{% endfor %}"
    try:
        messages = [{"role": "user", "content": "q", "train": False},
                    {"role": "assistant", "content": "a", "reasoning_content": "why", "train": True}]
        renderer = Renderer(tok)
        for _ in range(2):
            assert renderer(messages) == reference(tok, messages) == "[user]|q[assistant]why|a"
        assert renderer._direct_ok == {structure_key(messages): False}
    finally:
        tok.chat_template = old


def test_structure_key_is_the_roles_unless_messages_carry_more():
    plain = [{"role": "user", "content": "a", "train": False}, {"role": "assistant", "content": "b", "train": True}]
    assert structure_key(plain) == ("user", "assistant")
    assert structure_key(plain) == structure_key([{**m, "content": "other"} for m in plain])
    tools = [plain[0], {**plain[1], "tool_calls": [{"name": "f"}]}]
    assert structure_key(tools) != structure_key(plain)
    assert structure_key(tools) != structure_key([plain[0], {**plain[1], "tool_calls": [{"name": "g"}]}])


def test_rejected_conversation_is_a_template_error(family_tokenizer):
    tok = family_tokenizer("mistral")  # roles must alternate
    bad = [{"role": "user", "content": "a", "train": False}, {"role": "user", "content": "b", "train": False}]
    with pytest.raises(TemplateError, match="rejected"):
        render(tok, bad)
    with pytest.raises(TemplateError, match="rejected"):
        skeleton(tok, bad)
    with pytest.raises(TemplateError, match="rejected"):
        Renderer(tok)(bad)


text = st.text(st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs", "Cc")), max_size=30)


@pytest.mark.parametrize("name", ["qwen2.5", "llama3.1", "gemma", "mistral-v0.3", "phi3", "deepseek-r1", "gpt-oss"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.lists(text, min_size=5, max_size=5))
def test_property_direct_rendering_matches(family_tokenizer, name, contents):
    tok = family_tokenizer(name)
    messages = convo(name, *contents)
    renderer = Renderer(tok)
    renderer(convo(name))  # another conversation of the same structure decides the path
    assert renderer._direct_ok == {structure_key(messages): True}
    assert renderer(messages) == reference(tok, messages)
