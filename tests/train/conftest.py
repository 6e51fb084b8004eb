"""Fixtures for the training tests: a tiny model with the real SmolLM2 tokenizer, small data, job configs.

The tiny model (2 layers, width 32, SmolLM2's vocabulary and chat template) trains a step in milliseconds,
so these tests check the plumbing (labels, run folder, resume, export, processes), not learning.
The examples' tests run the real SmolLM2-135M-Instruct for a couple of steps (marked integration).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from chattune.config import JobConfig, parse_config


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A folder with a randomly initialised 2-layer Llama and the SmolLM2 tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=smollm2_tokenizer.bos_token_id,
        eos_token_id=smollm2_tokenizer.eos_token_id,
        pad_token_id=smollm2_tokenizer.pad_token_id,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def conversation(i: int) -> dict:
    messages = [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": f"Arr, {2 * i}!"}]
    if i % 3 == 0:  # some multi-turn, with a system prompt, so lengths differ and padding shows
        messages = [{"role": "system", "content": "Talk like a pirate."}, *messages,
                    {"role": "user", "content": "And doubled again?"},
                    {"role": "assistant", "content": f"{4 * i}, matey."}]
    return {"messages": messages}


def preference(i: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
        "chosen": [{"role": "assistant", "content": f"Arr, {2 * i}, matey!"}],
        "rejected": [{"role": "assistant", "content": f"{2 * i}."}],
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def chat_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", [conversation(i) for i in range(24)])


@pytest.fixture
def pref_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "prefs.jsonl", [preference(i) for i in range(16)])


@pytest.fixture
def job(tmp_path, tiny_model):
    """job(train=..., **training) -> a JobConfig on the tiny model, writing into tmp_path/run."""

    def make(train: Path, eval: Path | None = None, monitor: bool = False, **training) -> JobConfig:
        return parse_config({
            "model": str(tiny_model),
            "cache_dir": str(tmp_path / "cache"),
            "data": {"train": str(train), "eval": str(eval) if eval else None, "max_length": 64},
            "training": {"output_dir": str(tmp_path / "run"), "batch_size": 4, "max_steps": 3, "logging_steps": 1,
                         "save_steps": 2, "learning_rate": 1e-3, **training},
            "monitor": {"enabled": monitor, "every_steps": 2, "num_prompts": 2, "max_new_tokens": 8},
        })

    return make
