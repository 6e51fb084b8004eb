"""Reading data: formats, example shapes, and one-line errors naming file:line."""

import json
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chattune.data import InvalidExample, fingerprint, normalize, read_examples, read_preferences
from chattune.errors import UserError

CONVO = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_messages_default_train_flags():
    ex = normalize({"messages": [{"role": "system", "content": "s"}, *CONVO["messages"],
                                 {"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "train": False}]})
    assert [m["train"] for m in ex["messages"]] == [False, False, True, False, False]


def test_last_assistant_only():
    ex = normalize({"messages": CONVO["messages"] * 2}, train_on="last_assistant")
    assert [m["train"] for m in ex["messages"]] == [False, False, False, True]


def test_prompt_completion_strings_and_lists():
    ex = normalize({"prompt": "Q?", "completion": "A."})
    assert [(m["role"], m["train"]) for m in ex["messages"]] == [("user", False), ("assistant", True)]
    ex = normalize({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                               {"role": "assistant", "content": "earlier"}, {"role": "user", "content": "q2"}],
                    "completion": [{"role": "assistant", "content": "a"}]})
    assert [m["train"] for m in ex["messages"]] == [False, False, False, False, True]


def test_text():
    assert normalize({"text": "hello"}) == {"text": "hello"}


@pytest.mark.parametrize("record, reason", [
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}, "must be a string"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant message"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "train": False}]},
     "no assistant message is trained"),
    ({"messages": [{"role": "user", "content": "q", "train": True}, {"role": "assistant", "content": "a"}]},
     "only assistant messages"),
    ({"foo": 1}, "needs `messages`"),
    ([1, 2], "expected a JSON object"),
])
def test_invalid_examples(record, reason):
    with pytest.raises(InvalidExample, match=reason):
        normalize(record)


def test_bad_json_line_names_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [CONVO, "{not json", CONVO])
    with pytest.raises(UserError, match=r"d\.jsonl:2: not valid JSON"):
        read_examples(f)


def test_skip_invalid_counts_reasons(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [CONVO, "{not json", {"messages": []}, CONVO])
    skipped = Counter()
    assert len(read_examples(f, skip_invalid=True, skipped=skipped)) == 2
    assert sum(skipped.values()) == 2


@pytest.mark.parametrize("content, match", [(None, "no such data file"), ("", "the file is empty"),
                                            ("\n\n", "no examples")])
def test_missing_and_empty_files(tmp_path, content, match):
    f = tmp_path / "d.jsonl"
    if content is not None:
        f.write_text(content)
    with pytest.raises(UserError, match=match):
        read_examples(f)


def test_json_parquet_and_datasets_folder(tmp_path):
    rows = [CONVO, {"prompt": "q", "completion": "a"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "completion": "a"}] * 2), tmp_path / "d.parquet")
    datasets.Dataset.from_list([{"prompt": "q", "completion": "a"}] * 3).save_to_disk(str(tmp_path / "folder"))
    assert len(read_examples(tmp_path / "d.json")) == 2
    assert len(read_examples(tmp_path / "d.parquet")) == 2
    assert len(read_examples(tmp_path / "folder")) == 3
    with pytest.raises(UserError, match=r"d\.json:\[1\]"):
        (tmp_path / "d.json").write_text(json.dumps([CONVO, {"messages": []}]))
        read_examples(tmp_path / "d.json")


def test_preferences(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}])
    (ex,) = read_preferences(f)
    assert ex["prompt"] == [{"role": "user", "content": "q"}]
    assert ex["chosen"] == [{"role": "assistant", "content": "good"}]


def test_fingerprint_is_content_not_name(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [CONVO])
    b = write_jsonl(tmp_path / "b.jsonl", [CONVO])
    assert fingerprint(a) == fingerprint(b)
    write_jsonl(b, [CONVO, CONVO])
    assert fingerprint(a) != fingerprint(b)
