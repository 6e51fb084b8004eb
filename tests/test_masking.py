"""The masker on real tokenizers and real chat templates: exact tokens, many families, properties."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chattune.chat_template import TemplateError, template_messages
from chattune.masking import IGNORE_INDEX, Masker

from .conftest import FAMILIES, family_supports_system


def msgs(*pairs, train=True):
    return [{"role": r, "content": c, "train": train and r == "assistant"} for r, c in pairs]


def trained_text(tok, enc):
    return tok.decode([i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX])


def trained_runs(tok, enc):
    """Decoded text of each contiguous run of trained tokens."""
    runs, cur = [], []
    for i, label in zip(enc.input_ids, enc.labels):
        if label != IGNORE_INDEX:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs + ([tok.decode(cur)] if cur else [])


def reference_ids(tok, messages):
    return tok.apply_chat_template(template_messages(messages), tokenize=True)["input_ids"]


# --- exact expectations on the two shipped tokenizers -------------------------------------------


def test_smollm2_exact_labels(smollm2_tokenizer):
    tok = smollm2_tokenizer
    convo = msgs(("user", "What is 2+2?"), ("assistant", "4"))
    enc = Masker(tok).encode({"messages": convo})
    assert enc.input_ids == reference_ids(tok, convo)
    # The template injects a default system prompt; none of it, nor the user turn, nor the headers, is trained.
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    four = tok.encode("4", add_special_tokens=False)
    trained = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX]
    assert trained == four + [im_end]
    assert enc.labels[-1] == IGNORE_INDEX  # the "\n" after <|im_end|> is template text
    assert "SmolLM" in tok.decode(enc.input_ids)


def test_qwen25_multi_turn_exact(qwen25_tokenizer):
    tok = qwen25_tokenizer
    convo = msgs(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "Bye."))
    enc = Masker(tok).encode({"messages": convo})
    assert enc.input_ids == reference_ids(tok, convo)
    assert trained_runs(tok, enc) == ["Hello!<|im_end|>", "Bye.<|im_end|>"]


def test_qwen25_default_system_prompt_not_trained(qwen25_tokenizer):
    convo = msgs(("user", "Hi"), ("assistant", "Hello!"))
    enc = Masker(qwen25_tokenizer).encode({"messages": convo})
    assert "You are Qwen" in qwen25_tokenizer.decode(enc.input_ids)
    assert trained_text(qwen25_tokenizer, enc) == "Hello!<|im_end|>"


def test_train_flag_and_last_assistant(qwen25_tokenizer):
    convo = msgs(("user", "a"), ("assistant", "first"), ("user", "b"), ("assistant", "second"))
    convo[1]["train"] = False
    enc = Masker(qwen25_tokenizer).encode({"messages": convo})
    assert trained_runs(qwen25_tokenizer, enc) == ["second<|im_end|>"]


def test_marker_like_content_is_not_a_boundary(qwen25_tokenizer):
    tricky = "<|im_end|>\n<|im_start|>user\nassistant"
    convo = msgs(("user", tricky), ("assistant", "user: <|im_start|>assistant\n ok"))
    enc = Masker(qwen25_tokenizer).encode({"messages": convo})
    assert trained_runs(qwen25_tokenizer, enc) == ["user: <|im_start|>assistant\n ok<|im_end|>"]


def test_truncation_cuts_from_the_end_and_drops_untrainable(qwen25_tokenizer):
    convo = msgs(("user", "word " * 50), ("assistant", "answer"))
    full = Masker(qwen25_tokenizer).encode({"messages": convo})
    cut = Masker(qwen25_tokenizer, max_length=20).encode({"messages": convo})
    assert cut.input_ids == full.input_ids[:20]
    assert cut.dropped and "max_length" in cut.dropped
    fits = Masker(qwen25_tokenizer, max_length=len(full.input_ids) - 2).encode({"messages": convo})
    assert fits.dropped is None and fits.labels == full.labels[:-2]


def test_text_examples_train_every_token(qwen25_tokenizer):
    enc = Masker(qwen25_tokenizer).encode({"text": "Plain text."})
    assert enc.labels == enc.input_ids
    assert enc.input_ids[-1] == qwen25_tokenizer.eos_token_id


def test_masking_none_trains_everything(qwen25_tokenizer):
    enc = Masker(qwen25_tokenizer, masking="none").encode({"messages": msgs(("user", "q"), ("assistant", "a"))})
    assert enc.labels == enc.input_ids


def test_template_that_drops_assistant_content_is_refused(qwen25_tokenizer):
    tok = qwen25_tokenizer
    old = tok.chat_template
    tok.chat_template = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    try:
        with pytest.raises(TemplateError, match="drops the content"):
            Masker(tok).encode({"messages": msgs(("user", "q"), ("assistant", "a"))})
    finally:
        tok.chat_template = old


# --- other model families -----------------------------------------------------------------------

END_MARKERS = {
    "chatml": "<|im_end|>", "smollm2": "<|im_end|>", "qwen2.5": "<|im_end|>", "qwen3": "<|im_end|>",
    "llama3": "<|eot_id|>", "llama3.1": "<|eot_id|>", "mistral": "</s>", "gemma": "<end_of_turn>",
    "gemma3": "<end_of_turn>", "phi3": "<|end|>", "zephyr": "</s>", "deepseek-v3": "<｜end▁of▁sentence｜>",
    "deepseek-r1": "<｜end▁of▁sentence｜>",
}


def family_convo(name, first="Paris is the capital.", second="Sure: 42."):
    pairs = [("user", "Capital of France?"), ("assistant", first), ("user", "And the answer?"), ("assistant", second)]
    if family_supports_system(name):
        pairs.insert(0, ("system", "You are terse."))
    return msgs(*pairs)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_labels(family_tokenizer, name):
    tok = family_tokenizer(name)
    convo = family_convo(name)
    enc = Masker(tok).encode({"messages": convo})
    assert enc.input_ids == reference_ids(tok, convo)
    runs = trained_runs(tok, enc)
    assert len(runs) == 2, runs
    for run, content in zip(runs, ["Paris is the capital.", "Sure: 42."]):
        assert content in run
        head, _, tail = run.partition(content)
        assert head.strip() == "", f"{name}: trained text before the reply: {head!r}"
        if name in END_MARKERS:
            assert tail.strip() == END_MARKERS[name] or tail == END_MARKERS[name]
        else:
            assert tail.strip(), f"{name}: no end-of-turn marker trained"
    untrained = tok.decode([i for i, label in zip(enc.input_ids, enc.labels) if label == IGNORE_INDEX])
    assert "Capital of France?" in untrained and "And the answer?" in untrained


@pytest.mark.parametrize("name", ["qwen3", "deepseek-r1"])
def test_reasoning_templates_follow_the_full_rendering(family_tokenizer, name):
    """History turns lose their reasoning in the rendering; labels follow the rendered text."""
    tok = family_tokenizer(name)
    convo = family_convo(name, first="<think>\nLet me recall.\n</think>\n\nParis.", second="<think>\nSimple.\n</think>\n\n42.")
    enc = Masker(tok).encode({"messages": convo})
    assert enc.input_ids == reference_ids(tok, convo)
    runs = trained_runs(tok, enc)
    rendered = tok.decode(enc.input_ids)
    assert "Let me recall." not in rendered  # the template dropped the first turn's reasoning
    assert runs[0].lstrip("\n").startswith("Paris.")  # DeepSeek-R1 keeps the "\n\n" after </think>: rendered text
    assert runs[-1].endswith("42.<｜end▁of▁sentence｜>" if name == "deepseek-r1" else "42.<|im_end|>")
    if "Simple." in rendered:  # Qwen3 keeps the last turn's reasoning: it is assistant output, trained
        assert "Simple." in runs[-1]


def test_llama31_injected_date_not_trained(family_tokenizer):
    tok = family_tokenizer("llama3.1")
    enc = Masker(tok).encode({"messages": msgs(("user", "Hi"), ("assistant", "Hello"))})
    text = tok.decode(enc.input_ids)
    assert "Cutting Knowledge Date" in text
    assert trained_text(tok, enc) == "Hello<|eot_id|>"


# --- properties ---------------------------------------------------------------------------------

tricky_text = st.one_of(
    # Assigned characters of every kind (letters, marks, numbers, punctuation, symbols, spaces): unassigned code
    # points don't round-trip through the GGUF-converted SmolLM2 vocabulary, whatever the masking.
    st.text(st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=40),
    st.sampled_from(["user", "assistant", "<|im_end|>", "<|im_start|>user\n", "<", "\n\n", " ", "你好，世界",
                     "🙂🚀", "[INST]", "<|eot_id|>", "a", "system\n", "<think>x</think>", "  lead", "trail \n"]),
    st.lists(st.sampled_from(["Hi", " ", "\n", "user", "<|im_end|>", "世界", "🙂", "x"]), min_size=1, max_size=8).map("".join),
)


@st.composite
def conversations(draw):
    turns = draw(st.integers(1, 4))
    out = []
    if draw(st.booleans()):
        out.append({"role": "system", "content": draw(tricky_text), "train": False})
    for _ in range(turns):
        out.append({"role": "user", "content": draw(tricky_text), "train": False})
        out.append({"role": "assistant", "content": draw(tricky_text), "train": draw(st.booleans())})
    if not any(m["train"] for m in out):
        out[-1]["train"] = True
    return out


@pytest.mark.parametrize("fixture", ["smollm2_tokenizer", "qwen25_tokenizer"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(convo=conversations())
def test_property_trained_tokens_are_replies_then_end_marker(request, fixture, convo):
    tok = request.getfixturevalue(fixture)
    enc = Masker(tok).encode({"messages": convo})
    assert enc.input_ids == reference_ids(tok, convo)
    ids = enc.input_ids
    trained_idx = [k for k, label in enumerate(enc.labels) if label != IGNORE_INDEX]
    assert all(enc.labels[k] == ids[k] for k in trained_idx)
    # Decoding the trained tokens gives each trained reply followed by <|im_end|>, in order. A token can
    # only be whole, so one that straddles the header and the reply ("\n" + "\n…") may add header whitespace.
    normalizer = tok.backend_tokenizer.normalizer  # Qwen2 normalizes to NFC: compare with what it encodes
    norm = normalizer.normalize_str if normalizer else str
    expected = [norm(m["content"]) + "<|im_end|>" for m in convo if m["train"]]
    runs = trained_runs(tok, enc)
    joined = "".join(runs)
    pos = 0
    for piece in expected:
        at = joined.find(piece, pos)
        assert at >= 0, (piece, runs)
        assert joined[pos:at].strip("\n ") == "", (joined[pos:at], runs)
        pos = at + len(piece)
    assert joined[pos:] == ""
