"""chattune.monitor.generate: which prompts are monitored, where a reply stops, and greedy generation on the
real embedded model (integration: batched with left padding, bounded, stopped at the end-of-turn token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chattune.config import JobConfig
from chattune.errors import UserError
from chattune.models import SMOLLM2, load_model
from chattune.monitor.generate import Prompt, generate, load_prompts, split_reply, stop_token_ids

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"
USER = {"role": "user", "content": "What is 2+2?"}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --- choosing the prompts -------------------------------------------------------------------------------

def test_split_reply_cuts_at_the_last_assistant_message():
    messages = [USER, {"role": "assistant", "content": "4.", "train": True},
                {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6.", "train": True}]
    prompt = split_reply(messages)
    assert prompt.reference == "6."
    assert prompt.messages == [USER, {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"}]


def test_a_conversation_ending_with_the_user_is_all_prompt():
    assert split_reply([USER]) == Prompt([USER], None)


def test_prompts_file_takes_score_lines_and_conversations(tmp_path):
    path = _jsonl(tmp_path / "prompts.jsonl", [
        {"messages": [USER], "reference": "4", "prediction": "5"},  # a `chattune score` / predictions.jsonl line
        {"messages": [USER, {"role": "assistant", "content": "4."}]},  # a training conversation
        {"messages": [USER]},
    ])
    cfg = JobConfig.model_validate({"monitor": {"prompts": str(path), "num_prompts": 10}})
    prompts, source = load_prompts(cfg)
    assert prompts == [Prompt([USER], "4"), Prompt([USER], "4."), Prompt([USER], None)]
    assert source == str(path)


def test_prompts_file_reports_every_bad_line_at_once(tmp_path):
    path = _jsonl(tmp_path / "prompts.jsonl", [
        "{not json", {"messages": [{"role": "robot", "content": "hi"}]}, {"messages": [USER], "reference": 4},
        {"messages": [{"role": "system", "content": "Be brief."}]},
    ])
    cfg = JobConfig.model_validate({"monitor": {"prompts": str(path)}})
    with pytest.raises(UserError) as err:
        load_prompts(cfg)
    lines = str(err.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:{n}" for n in (1, 2, 3, 4)]
    assert "not valid JSON" in lines[0] and "roles: system, user" in lines[1] and "no user message" in lines[3]


def test_missing_prompts_file_is_a_user_error(tmp_path):
    cfg = JobConfig.model_validate({"monitor": {"prompts": str(tmp_path / "nope.jsonl")}})
    with pytest.raises(UserError, match="monitor.prompts: .*nope.jsonl: no such file"):
        load_prompts(cfg)


def test_prompts_come_from_eval_data_else_train_data(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "plain text has no prompt"},
                                              {"prompt": "Hi?", "completion": "Hello."}])
    evaluation = _jsonl(tmp_path / "eval.jsonl", [{"messages": [USER, {"role": "assistant", "content": "4."}]}] * 3)
    cfg = JobConfig.model_validate({"data": {"train": str(train), "eval": str(evaluation)},
                                    "monitor": {"num_prompts": 2}})
    assert load_prompts(cfg) == ([Prompt([USER], "4.")] * 2, str(evaluation))
    cfg.data.eval = None
    prompts, source = load_prompts(cfg)
    assert prompts == [Prompt([{"role": "user", "content": "Hi?"}], "Hello.")]
    assert "train data: these prompts are trained on" in source


def test_preference_data_gives_its_prompt_and_chosen_reply():
    cfg = JobConfig.model_validate({"data": {"train": str(EXAMPLES / "pirate_prefs.jsonl")},
                                    "training": {"method": "dpo"}, "monitor": {"num_prompts": 1}})
    [prompt], _ = load_prompts(cfg)
    assert prompt.messages == [{"role": "user", "content": "What is the opposite of 'light'?"}]
    assert prompt.reference == "Yo ho ho! The opposite o' 'light' be 'dark', matey. ⚓"


# --- where a reply stops ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family, stops", [
    ("smollm2", ["<|im_end|>"]),
    ("llama3", ["<|eot_id|>"]),
    ("gemma", ["<end_of_turn>", "<eos>"]),  # Gemma ends a turn with <end_of_turn>, not with eos
    # gpt-oss closes its analysis with <|end|> and goes on to the final answer, which ends with <|return|>.
    ("gpt-oss", ["<|return|>"]),
])
def test_stop_tokens_are_eos_and_the_templates_end_of_turn(family_tokenizer, family, stops):
    tok = family_tokenizer(family)
    assert sorted(stop_token_ids(tok)) == sorted(tok.convert_tokens_to_ids(stops))


# --- generating on the real model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(chattune_cache_dir):
    return load_model(SMOLLM2, cache_dir=chattune_cache_dir, dtype=torch.float32)


@pytest.mark.integration
def test_stops_at_the_end_of_turn_token(model, smollm2_tokenizer):
    [pred] = generate(model, smollm2_tokenizer, [Prompt([USER])], max_new_tokens=48)
    assert pred.stopped and 0 < pred.tokens < 48
    assert "<|im_end|>" not in pred.text and "4" in pred.text


@pytest.mark.integration
def test_respects_max_new_tokens(model, smollm2_tokenizer):
    story = Prompt([{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}])
    [pred] = generate(model, smollm2_tokenizer, [story], max_new_tokens=6)
    assert not pred.stopped and pred.tokens == 6
    assert len(smollm2_tokenizer(pred.text, add_special_tokens=False)["input_ids"]) <= 7


@pytest.mark.integration
def test_without_stopping_it_writes_past_the_end_of_turn(model, smollm2_tokenizer):
    [pred] = generate(model, smollm2_tokenizer, [Prompt([USER])], max_new_tokens=20, stop_at_end_of_turn=False)
    assert not pred.stopped and pred.tokens == 20 and "<|im_end|>" in pred.text  # the marker stays visible


@pytest.mark.integration
def test_batched_left_padded_replies_equal_one_at_a_time(model, smollm2_tokenizer):
    prompts = [Prompt([USER]), Prompt([{"role": "system", "content": "You are a pirate. Answer in one sentence."},
                                       {"role": "user", "content": "What colour is the sea on a stormy night?"}])]
    batched = generate(model, smollm2_tokenizer, prompts, max_new_tokens=24)
    alone = [generate(model, smollm2_tokenizer, [p], max_new_tokens=24)[0] for p in prompts]
    assert batched == alone


@pytest.mark.integration
def test_works_on_a_peft_model_and_restores_training_mode(model, smollm2_tokenizer):
    import peft

    base = generate(model, smollm2_tokenizer, [Prompt([USER])], max_new_tokens=16)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    try:
        lora.train()
        # A fresh adapter adds zero (its B matrix starts at 0): the replies must be the base model's.
        assert generate(lora, smollm2_tokenizer, [Prompt([USER])], max_new_tokens=16) == base
        assert lora.training and all(m.training for m in lora.modules())
    finally:
        lora.unload()  # give the shared module fixture its plain model back
    model.eval()
