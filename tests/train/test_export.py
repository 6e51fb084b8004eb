"""`chattune export RUN_DIR --merge` writes a model that plain transformers loads, equal to base + adapter."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from chattune.cli import main
from chattune.errors import UserError
from chattune.train import train
from chattune.train.export import export


@pytest.fixture
def lora_run(job, chat_data, tmp_path):
    assert train(job(chat_data, max_steps=3, learning_rate=1e-2)) == 0
    return tmp_path / "run"


def _logits(model, tokenizer):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_merged_export_loads_with_plain_transformers(lora_run, tiny_model):
    main(["export", str(lora_run), "--merge"])
    merged_dir = lora_run / "merged"
    assert not (merged_dir / "adapter_config.json").exists()

    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), lora_run)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert torch.allclose(_logits(merged, tokenizer), _logits(with_adapter, tokenizer), atol=1e-5)
    assert not torch.allclose(_logits(merged, tokenizer), _logits(base, tokenizer), atol=1e-5), "training changed it"


def test_export_without_merge_writes_the_adapter(lora_run, tmp_path):
    out = export(lora_run, output=tmp_path / "adapter")
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer.json").is_file()


def test_export_of_a_full_fine_tune(job, chat_data, tmp_path):
    assert train(job(chat_data, use_lora=False, max_steps=1)) == 0
    out = export(tmp_path / "run", merge=True)
    assert AutoModelForCausalLM.from_pretrained(out) is not None


def test_export_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not a chattune run folder"):
        export(tmp_path)
