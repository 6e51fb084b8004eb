"""Reading data: formats, example shapes, and one-line errors naming file:line."""

import json
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chattune.data import InvalidExample, Source, fingerprint, normalize, read_examples, read_preferences
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


def _numbered(i):
    return {"messages": [{"role": "user", "content": f"q{i}" + "x" * (i % 7)}, {"role": "assistant", "content": "a"}]}


@pytest.mark.parametrize("chunk_bytes", [1, 13, 100, 10_000])
def test_jsonl_chunks_cover_every_line_once_in_order(tmp_path, monkeypatch, chunk_bytes):
    """Chunks are read in worker processes: together they give every example once, in order, with its
    line number, whatever the chunk size (even smaller than a line) and with blank lines."""
    rows = [_numbered(i) for i in range(30)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, "")
    lines.insert(17, "   ")
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(lines))  # no newline at the end
    monkeypatch.setattr(Source, "MIN_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(Source, "MAX_CHUNK_BYTES", chunk_bytes)
    source = Source(f)
    chunks = source.chunks(parts=2)
    assert (len(chunks) > 1) == (chunk_bytes < f.stat().st_size)
    got = [pr for c in chunks for pr in source.records(c)]
    assert [r for _, r in got] == rows
    expected_lines = [n for n, line in enumerate(lines, 1) if line.strip()]
    assert [place for place, _ in got] == [f"{f}:{n}" for n in expected_lines]


def test_row_chunks_of_parquet_row_groups_and_datasets_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(Source, "CHUNK_ROWS", 2)
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=3)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "folder"))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    for path, name in ((tmp_path / "d.parquet", "row {}"), (tmp_path / "folder", "row {}"), (tmp_path / "d.json", "[{}]")):
        source = Source(path)
        got = [pr for c in source.chunks() for pr in source.records(c)]
        assert [r for _, r in got] == rows, path
        assert [place for place, _ in got] == [f"{path}:{name.format(i)}" for i in range(7)]
