"""Scores on hand-written predictions: each symptom, and the healthy answers that must not be flagged."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chattune.config import MonitorThresholds
from chattune.errors import UserError
from chattune.monitor.score import (
    FLAGS,
    PredictionScore,
    format_leakage,
    length_blowup,
    prompt_echo,
    repetition,
    score_file,
    score_prediction,
    script_drift,
    summarize_step,
)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def chat(question: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": question}]


def flags(question: str, prediction: str, **kw) -> list[str]:
    return score_prediction(chat(question), prediction, **kw).flags


def marked(prediction: str, spans) -> list[str]:
    return [prediction[a:b] for a, b in spans]


IMMUNE_Q = "Explain how the immune system responds to a viral infection."
IMMUNE_A = (
    "The immune system responds to a viral infection in two stages. First, innate immune cells detect the "
    "virus and release interferons that slow its spread. Then the adaptive response kicks in: B cells make "
    "antibodies that neutralise the virus, and T cells kill infected cells."
)


# --- prompt_echo -------------------------------------------------------------------------------------


def test_echo_loop_of_the_question_is_flagged():
    pred = "What is 2+2? What is 2+2? What is 2+2?"
    s = score_prediction(chat("What is 2+2?"), pred)
    assert s.scores["prompt_echo"] == 1.0
    assert "prompt_echo" in s.flags and not s.healthy
    assert marked(pred, s.spans["prompt_echo"]) == [pred[:-1]]  # the whole loop, less its final "?"


def test_restating_the_question_before_answering_is_flagged():
    assert prompt_echo(chat("What is 2+2?"), "What is 2+2? The answer is 4.").score == 1.0
    restated = "Sure! Explain how the immune system responds to a viral infection. " + IMMUNE_A
    assert "prompt_echo" in flags(IMMUNE_Q, restated)


def test_copying_the_system_prompt_is_flagged():
    pred = "You are a helpful assistant. You are a helpful assistant. You are a helpful assistant. You are"
    assert "prompt_echo" in flags("Hi, how are you today?", pred)


def test_echo_spans_mark_only_the_copied_part():
    pred = "Sure. Explain how the immune system responds to a viral infection. It makes antibodies."
    s = prompt_echo(chat(IMMUNE_Q), pred)
    assert marked(pred, s.spans) == ["Explain how the immune system responds to a viral infection"]


@pytest.mark.parametrize(
    "question, answer",
    [
        ("What is the capital of France?", "The capital of France is Paris."),  # shares a few words
        ("The Eiffel Tower is in which city?", "The Eiffel Tower is in Paris."),  # reuses a 5-word phrase
        (IMMUNE_Q, "The immune system responds to a viral infection by producing antibodies."),  # short restating
        (IMMUNE_Q, IMMUNE_A),
        (
            "What does the saying 'the early bird catches the worm' mean?",  # quotes a phrase from the question
            "'The early bird catches the worm' means that people who start early are more likely to succeed.",
        ),
        ("Hello!", "Hello! How can I help you today?"),
    ],
)
def test_healthy_answers_that_reuse_the_question_are_not_echo(question, answer):
    assert "prompt_echo" not in flags(question, answer)


def test_a_rewrite_task_copies_what_the_reference_copies():
    code = "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(x)\n"
    fixed = code.replace("len(x)", "len(xs)")
    msgs = [{"role": "user", "content": f"Fix the bug in this function:\n```python\n{code}```"}]
    pred = f"Here is the fixed function:\n```python\n{fixed}```\nThe bug was `len(x)`; it should be `len(xs)`."
    assert prompt_echo(msgs, pred).score >= 0.5  # without a reference the copied code looks like an echo
    assert score_prediction(msgs, pred, reference=f"```python\n{fixed}```").healthy


def test_echo_of_an_earlier_turn_counts():
    msgs = [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "Seven is a prime number."},
        {"role": "user", "content": "And another one?"},
    ]
    pred = "Seven is a prime number. Seven is a prime number. Seven is a prime number. Seven is a prime number."
    assert prompt_echo(msgs, pred).score == 1.0


# --- repetition --------------------------------------------------------------------------------------


def test_sentence_loop_is_flagged_and_marked():
    pred = "Once upon a time there was a cat. " + "The cat was happy. " * 6
    s = repetition(pred)
    assert s.score >= 0.5
    second = pred.index("The cat", pred.index("The cat") + 1)
    assert s.spans == [(second, len(pred) - 1)]  # from the first repeat on; the first "The cat was happy." is not one


def test_long_loop_compresses_too_well():
    assert repetition("The answer is 4. " * 12).score == 1.0


def test_word_loop_without_sentences_is_flagged():
    assert repetition("and then the model said that " * 8).score > 0.8


@pytest.mark.parametrize(
    "answer",
    [
        IMMUNE_A,
        "1. Apple\n2. Banana\n3. Cherry\n4. Mango\n5. Kiwi",
        # a bulleted list repeats its structure, not its content
        "- Apples are a good source of fiber.\n- Bananas are a good source of potassium.\n"
        "- Oranges are a good source of vitamin C.\n- Carrots are a good source of vitamin A.\n"
        "- Kiwis are a good source of vitamin C and E.",
        "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\n"
        "def mul(a, b):\n    return a * b\n",
        "| Planet | Moons |\n|---|---|\n| Mercury | 0 |\n| Venus | 0 |\n| Earth | 1 |\n| Mars | 2 |\n| Jupiter | 95 |",
        "Step 1: preheat the oven. Step 2: mix the flour and sugar. Step 3: add the eggs. Step 4: bake for 30 minutes.",
    ],
)
def test_healthy_structure_is_not_repetition(answer):
    assert repetition(answer).score < MonitorThresholds().repetition


# --- script_drift ------------------------------------------------------------------------------------

SWITCH = (
    "To add two numbers, start with the first one and count up by the second. So 2 + 2 means starting "
    "at 2 and counting two more: 3, 4. The result is 4. 所以答案是四，这是一个很简单的加法问题。"
)


def test_chinese_switch_mid_english_answer_is_flagged_and_marked():
    s = score_prediction(chat("What is 2+2?"), SWITCH)
    assert "script_drift" in s.flags
    assert marked(SWITCH, s.spans["script_drift"]) == ["所以答案是四，这是一个很简单的加法问题"]


def test_a_short_chinese_sentence_at_the_end_of_a_longer_answer_is_flagged():
    pred = (
        "Photosynthesis is the process plants use to turn light into chemical energy. In the chloroplasts, "
        "chlorophyll absorbs sunlight, which powers the splitting of water and the fixing of carbon dioxide "
        "into sugars. Oxygen is released as a by-product. 这个过程非常重要。"
    )
    assert "script_drift" in flags("Explain photosynthesis.", pred)


def test_switch_into_cyrillic_is_flagged():
    pred = "Sure, here is the answer. Ответ четыре, потому что два плюс два равно четырем."
    assert "script_drift" in flags("What is 2+2?", pred)


def test_answer_entirely_in_another_script_scores_one():
    assert script_drift(chat("How are you?"), "Я в порядке, спасибо. А как у вас дела?").score == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "Crime and Punishment was written by Fyodor Dostoevsky (Фёдор Достоевский) and published in 1866.",
        "In Russian, 'thank you' is 'спасибо'. You can also say it more warmly as a full phrase.",
        "Beijing (北京) is the capital of China and its political centre.",
        "The largest cities in China are Shanghai (上海), Beijing (北京), Chongqing (重庆) and Guangzhou (广州).",
        'A famous proverb is "千里之行，始于足下": a journey of a thousand miles begins with a single step.',
        "The angle θ is the same as α plus β.",
    ],
)
def test_a_foreign_name_or_quoted_word_is_not_drift(answer):
    assert "script_drift" not in flags("Tell me something.", answer)


def test_chinese_answer_to_a_chinese_prompt_is_not_drift():
    s = score_prediction(chat("二加二等于几？"), "二加二等于四。这是一个简单的加法问题。")
    assert s.scores["script_drift"] == 0.0 and s.healthy


def test_a_script_used_in_the_reference_is_allowed():
    msgs = chat("Translate 'good morning' into Japanese.")
    assert script_drift(msgs, "おはようございます", reference="おはよう").score == 0.0


# --- format_leakage ----------------------------------------------------------------------------------


def test_leaked_chatml_continuation_is_flagged_with_what_leaked():
    pred = "2 + 2 = 4.<|im_end|>\n<|im_start|>user\nWhat is 3+3?"
    s = score_prediction(chat("What is 2+2?"), pred)
    assert s.flags == ["format_leakage"]
    assert s.leaked == ["<|im_end|>", "<|im_start|>"]


@pytest.mark.parametrize(
    "pred, leaked",
    [
        ("4\nuser\nWhat is 3+3?", ["user"]),  # ChatML once special tokens are stripped by decoding
        (
            "4<|eot_id|><|start_header_id|>user<|end_header_id|>",
            ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
        ),
        ("4 [/INST] [INST] and 3+3?", ["[/INST]", "[INST]"]),
        ("4<end_of_turn>\n<start_of_turn>user", ["<end_of_turn>", "<start_of_turn>"]),
        ("4</s>", ["</s>"]),
        ("4<|end|><|user|>", ["<|end|>", "<|user|>"]),
        ("4\n\nHuman: what about 3+3?\n\nAssistant: 6", ["Human:", "Assistant:"]),
        ("4\n### Instruction:\nAdd 3 and 3.", ["### Instruction:"]),
        ("assistant\n4", ["assistant"]),
    ],
)
def test_template_markers_and_role_headers_leak(pred, leaked):
    s = format_leakage(chat("What is 2+2?"), pred)
    assert s.score == 1.0
    assert marked(pred, s.spans) == leaked


def test_the_tokenizers_own_special_tokens_leak():
    s = format_leakage(chat("Hi"), "Hello!<|my_eos|>", special_tokens=("<|my_eos|>", ""))
    assert marked("Hello!<|my_eos|>", s.spans) == ["<|my_eos|>"]
    assert format_leakage(chat("Hi"), "Hello! [EOT]", special_tokens=("[EOT]",)).score == 1.0


@pytest.mark.parametrize(
    "question, answer",
    [
        ("What does <|im_end|> do in ChatML?", "<|im_end|> closes a message in ChatML."),  # asked about it
        ("How do I greet a user?", "A user should be greeted by name. The assistant can say: hello!"),
        ("Give me the specs.", "System: Linux\nMemory: 8 GB\nThe user can upgrade later."),
        ("Write a short markdown doc.", "### Response codes\n\n200 means OK; 404 means not found."),
        ("Write a database config in YAML.", "Here it is:\n```yaml\nuser: admin\npassword: secret\n```"),
    ],
)
def test_healthy_mentions_of_roles_and_markers_are_not_leakage(question, answer):
    assert "format_leakage" not in flags(question, answer)


# --- length_blowup -----------------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(60))


def test_length_blowup_is_the_ratio_and_flags_long_answers_only():
    s = score_prediction(chat("Say ten words."), LONG, reference="one two three four five six seven eight nine ten")
    assert s.scores["length_blowup"] == 6.0 and "length_blowup" in s.flags
    start, end = s.spans["length_blowup"][0]
    assert LONG[start:end].startswith("word30") and end == len(LONG)  # what comes after 3x the reference


def test_short_answer_to_a_shorter_reference_is_not_a_blowup():
    pred = "The capital of France is Paris, a city on the Seine."
    s = score_prediction(chat("Capital of France?"), pred, reference="Paris")
    assert s.scores["length_blowup"] == 11.0 and s.healthy


def test_baseline_is_used_without_a_reference_and_no_base_means_no_score():
    assert length_blowup(LONG, "a b c d e f g h i j", threshold=3.0).score == 6.0
    assert "length_blowup" in flags("Say ten words.", LONG, baseline="a b c d e f g h i j")
    assert "length_blowup" not in score_prediction(chat("Say ten words."), LONG).scores


# --- verdicts ----------------------------------------------------------------------------------------


def test_healthy_answer_has_no_flags():
    s = score_prediction(chat(IMMUNE_Q), IMMUNE_A, reference=IMMUNE_A)
    assert s.healthy and s.flags == [] and s.spans == {} and s.leaked == []
    assert set(s.scores) == set(FLAGS)
    assert all(0.0 <= s.scores[f] <= 1.0 for f in FLAGS if f != "length_blowup")


def test_thresholds_come_from_the_config():
    pred = "The immune system responds to a viral infection by producing antibodies."
    assert "prompt_echo" in flags(IMMUNE_Q, pred, thresholds=MonitorThresholds(prompt_echo=0.3))


def test_empty_prediction_is_healthy():
    s = score_prediction([], "", reference="")
    assert s.healthy and all(v == 0.0 for v in s.scores.values())


_TEXT = st.text(st.sampled_from(list("ab cd.?!\n<|>:用户Юxyz")) | st.characters(), max_size=120)


@settings(max_examples=200, deadline=None)
@given(question=_TEXT, prediction=_TEXT, reference=st.none() | _TEXT)
def test_any_text_gives_bounded_scores_and_spans_inside_the_prediction(question, prediction, reference):
    thresholds = MonitorThresholds(prompt_echo=0, repetition=0, script_drift=0, format_leakage=0)
    s = score_prediction(chat(question), prediction, reference=reference, thresholds=thresholds)
    assert all(0.0 <= v <= 1.0 for f, v in s.scores.items() if f != "length_blowup")
    assert all(0 <= a < b <= len(prediction) for spans in s.spans.values() for a, b in spans)


def _result(*flags: str) -> PredictionScore:
    return PredictionScore(scores={"prompt_echo": 0.5 if flags else 0.0}, flags=list(flags), spans={}, leaked=[])


def test_step_is_unhealthy_when_half_the_predictions_are_flagged():
    step = summarize_step([_result("repetition"), _result("repetition", "prompt_echo"), _result(), _result()])
    assert not step["healthy"] and step["unhealthy_share"] == 0.5
    assert step["flag_share"]["repetition"] == 0.5 and step["flag_share"]["prompt_echo"] == 0.25
    assert step["mean"] == {"prompt_echo": 0.25}


def test_different_symptoms_on_half_the_predictions_make_the_step_unhealthy():
    step = summarize_step([_result("prompt_echo"), _result("format_leakage"), _result(), _result()])
    assert not step["healthy"]


def test_one_odd_prediction_does_not_make_the_step_unhealthy():
    step = summarize_step([_result("script_drift"), _result(), _result(), _result()])
    assert step["healthy"] and step["unhealthy_share"] == 0.25
    assert summarize_step([])["healthy"]


# --- score_file and `chattune score` -----------------------------------------------------------------


def _write(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


GOOD = {"messages": chat("What is 2+2?"), "prediction": "2 + 2 = 4.", "reference": "4"}
ECHO = {"messages": chat("What is 2+2?"), "prediction": "What is 2+2? What is 2+2? What is 2+2?"}


def test_score_file_writes_each_line_back_with_scores(tmp_path, capsys):
    src = _write(tmp_path / "p.jsonl", [GOOD, "\n", ECHO])
    summary = score_file(src, output=tmp_path / "out.jsonl")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["healthy"] for o in out] == [True, False]
    assert out[1]["flags"] == ["prompt_echo", "repetition"] and out[1]["prediction"] == ECHO["prediction"]
    assert out[1]["spans"]["prompt_echo"] == [[0, 37]]
    assert summary["predictions"] == 2 and summary["unhealthy_share"] == 0.5
    assert "UNHEALTHY" in capsys.readouterr().err


def test_score_file_reports_every_bad_line(tmp_path):
    src = _write(tmp_path / "p.jsonl", [GOOD, "{not json\n", {"messages": []}, {"messages": "x", "prediction": 3}])
    with pytest.raises(UserError) as e:
        score_file(src)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{src}:2: not valid JSON: Expecting property name enclosed in double quotes"
    assert lines[1] == f"{src}:3: missing key `prediction`"
    assert f"{src}:4: `messages` must be" in lines[2] and lines[3] == f"{src}:4: `prediction` must be a string"


def test_score_file_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        score_file(tmp_path / "nope.jsonl")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "chattune.cli", "score", *args], capture_output=True, text=True)


def test_cli_score_prints_scored_lines(tmp_path):
    proc = _cli(str(_write(tmp_path / "p.jsonl", [GOOD, ECHO])))
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["flags"] for o in out] == [[], ["prompt_echo", "repetition"]]
    assert "prompt_echo" in proc.stderr and "predictions" in proc.stderr


def test_cli_score_bad_line_exits_2(tmp_path):
    src = _write(tmp_path / "p.jsonl", [GOOD, "{bad\n"])
    proc = _cli(str(src))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"chattune: error: {src}:2: not valid JSON" in proc.stderr
