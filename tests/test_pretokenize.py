"""The pipeline and its cache, including the background story as a regression test."""

import json
import subprocess
import sys
from dataclasses import dataclass

import datasets
import pytest

from chattune import cache
from chattune.cli import main
from chattune.config import parse_config
from chattune.data import Source
from chattune.errors import UserError
from chattune.masking import Masker
from chattune.pretokenize import build_sft_dataset, load_labelled_dataset

MODEL = "qwen2.5-tokenizer"


def convo(i):
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": f"What is {i}+{i}?"},
                         {"role": "assistant", "content": f"{2 * i}."},
                         {"role": "user", "content": "Thanks!"},
                         {"role": "assistant", "content": "You're welcome."}]}


@pytest.fixture
def data(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(convo(i)) + "\n" for i in range(40)))
    return f


def job(data, tmp_path, **data_opts):
    return parse_config({"model": MODEL, "cache_dir": str(tmp_path / "cache"), "data": {"train": str(data), **data_opts}})


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path, chattune_cache_dir, qwen25_tokenizer, capsys):
    """Run `chattune ... --cache-dir <fresh root>` in this process (a subprocess when asked: it proves
    there is no traceback). The root shares the session's built tokenizers."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "models").symlink_to(chattune_cache_dir / "models")

    def run(*args, subprocess_=False):
        argv = [*map(str, args), "--cache-dir", str(root)]
        if subprocess_:
            res = subprocess.run([sys.executable, "-m", "chattune.cli", *argv], capture_output=True, text=True,
                                 timeout=300)
            return Result(res.returncode, res.stdout, res.stderr)
        capsys.readouterr()
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return Result(code, out.out, out.err)
    run.root = root
    return run


def test_cached_labels_equal_on_the_fly_labels(qwen25_tokenizer, data, tmp_path):
    """The background story: pre-tokenizing must not change what is trained."""
    cfg = job(data, tmp_path)
    cached, summary = build_sft_dataset(cfg, qwen25_tokenizer, data, use_cache=True)
    reloaded, _ = build_sft_dataset(cfg, qwen25_tokenizer, data, use_cache=True)
    on_the_fly, _ = build_sft_dataset(cfg, qwen25_tokenizer, data, use_cache=False)
    direct = [Masker(qwen25_tokenizer).encode({"messages": [{**m, "train": m["role"] == "assistant"}
                                                            for m in convo(i)["messages"]]}) for i in range(40)]
    assert cached["labels"] == reloaded["labels"] == on_the_fly["labels"] == [d.labels for d in direct]
    assert cached["input_ids"] == [d.input_ids for d in direct]  # input order kept
    assert summary.role_trained["system"] == summary.role_trained["user"] == summary.role_trained["template"] == 0
    assert summary.role_trained["assistant"] > 0


def test_cache_reused_and_rebuilt_on_any_keyed_change(qwen25_tokenizer, data, tmp_path, capsys):
    cfg = job(data, tmp_path)
    build_sft_dataset(cfg, qwen25_tokenizer, data)
    build_sft_dataset(cfg, qwen25_tokenizer, data)
    assert "reusing cache" in capsys.readouterr().out
    for changed in (job(data, tmp_path, max_length=30, skip_invalid=True), job(data, tmp_path, train_on="last_assistant")):
        build_sft_dataset(changed, qwen25_tokenizer, data)
        assert "reusing cache" not in capsys.readouterr().out
    original = qwen25_tokenizer.chat_template
    try:
        qwen25_tokenizer.chat_template = original.replace("You are Qwen", "You are Kwen")
        build_sft_dataset(cfg, qwen25_tokenizer, data)
        assert "reusing cache" not in capsys.readouterr().out
    finally:
        qwen25_tokenizer.chat_template = original
    data.write_text(data.read_text() + json.dumps(convo(99)) + "\n")
    ds, _ = build_sft_dataset(cfg, qwen25_tokenizer, data)
    assert "reusing cache" not in capsys.readouterr().out and len(ds) == 41


def test_older_masking_version_is_not_reused(qwen25_tokenizer, data, tmp_path, capsys):
    cfg = job(data, tmp_path)
    build_sft_dataset(cfg, qwen25_tokenizer, data)
    ((folder, manifest),) = cache.entries(tmp_path / "cache")
    (folder / cache.MANIFEST).write_text(json.dumps({**manifest, "masking_version": 0}))
    capsys.readouterr()
    build_sft_dataset(cfg, qwen25_tokenizer, data)
    assert "reusing cache" not in capsys.readouterr().out
    with pytest.raises(UserError, match="masking version 0"):
        (folder / cache.MANIFEST).write_text(json.dumps({**manifest, "masking_version": 0}))
        load_labelled_dataset(folder)
    # An entry in the layout before entries listed their files (a `dataset` folder) is rebuilt, not read.
    (folder / cache.MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "files"}))
    capsys.readouterr()
    build_sft_dataset(cfg, qwen25_tokenizer, data)
    assert "reusing cache" not in capsys.readouterr().out


def test_interrupted_build_leaves_nothing_usable(qwen25_tokenizer, data, tmp_path):
    data.write_text(data.read_text() + '{"messages": []}\n')
    with pytest.raises(UserError, match=r"train\.jsonl:41"):
        build_sft_dataset(job(data, tmp_path), qwen25_tokenizer, data)
    root = tmp_path / "cache" / "datasets"
    assert not root.exists() or list(root.iterdir()) == []


def test_dataset_without_labels_is_refused(tmp_path, qwen25_tokenizer):
    """The background story's cache: input_ids and attention_mask, no labels."""
    rendered = qwen25_tokenizer.apply_chat_template([convo(1)["messages"]], tokenize=True)
    datasets.Dataset.from_dict({"input_ids": rendered["input_ids"], "attention_mask": rendered["attention_mask"]}
                               ).save_to_disk(str(tmp_path / "story"))
    with pytest.raises(UserError, match="no labels"):
        load_labelled_dataset(tmp_path / "story")


def test_num_proc_gives_identical_dataset(qwen25_tokenizer, data, tmp_path, monkeypatch):
    """Two worker processes, each reading its own chunks of the file (tiny chunks, so there are many)."""
    one, s1 = build_sft_dataset(job(data, tmp_path), qwen25_tokenizer, data, use_cache=False)
    monkeypatch.setattr(Source, "MIN_CHUNK_BYTES", 500)
    assert len(Source(data).chunks(parts=2)) > 4
    for use_cache in (False, True):
        two, s2 = build_sft_dataset(job(data, tmp_path, num_proc=2), qwen25_tokenizer, data, use_cache=use_cache)
        assert one.to_dict() == two.to_dict() and s1 == s2


def test_skipped_examples_in_any_chunk_are_counted(qwen25_tokenizer, data, tmp_path, monkeypatch):
    lines = data.read_text().splitlines()
    lines[3], lines[30] = "{not json", '{"messages": [{"role": "robot", "content": "x"}]}'
    data.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(Source, "MIN_CHUNK_BYTES", 500)
    with pytest.raises(UserError, match=r"train\.jsonl:(4: not valid JSON|31: .*unknown role 'robot')"):
        build_sft_dataset(job(data, tmp_path, num_proc=2), qwen25_tokenizer, data)
    ds, summary = build_sft_dataset(job(data, tmp_path, num_proc=2, skip_invalid=True), qwen25_tokenizer, data)
    assert len(ds) == summary.examples == 38
    assert sum(n for reason, n in summary.dropped.items() if reason.startswith("invalid: ")) == 2
    # The entry is its manifest and the Arrow files it lists: the kept rows, no scratch left beside them.
    ((folder, manifest),) = cache.entries(tmp_path / "cache")
    assert sorted(f.name for f in folder.iterdir()) == sorted([cache.MANIFEST, *manifest["files"]])
    assert load_labelled_dataset(folder).to_dict() == ds.to_dict()


def test_truncated_examples_are_dropped_and_counted(qwen25_tokenizer, tmp_path):
    f = tmp_path / "d.jsonl"
    long = {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]}
    f.write_text(json.dumps(long) + "\n" + json.dumps(convo(1)) + "\n")
    ds, summary = build_sft_dataset(job(f, tmp_path, max_length=64), qwen25_tokenizer, f)
    assert len(ds) == 1 and summary.dropped == {"all trained tokens beyond max_length (64)": 1}


# --- the commands -------------------------------------------------------------------------------


def test_cli_pretokenize_output_cache_and_reuse(data, tmp_path, qwen25_tokenizer, cli):
    out = tmp_path / "out"
    first = cli("pretokenize", "--model", MODEL, "--data", data, "--output", out)
    assert first.returncode == 0, first.stderr
    assert "examples 40" in first.stdout and "cache" in first.stdout
    ds = datasets.load_from_disk(str(out))
    assert set(ds.column_names) == {"input_ids", "attention_mask", "labels", "assistant_masks"}
    assert ds["assistant_masks"] == [[int(x != -100) for x in row] for row in ds["labels"]]
    second = cli("pretokenize", "--model", MODEL, "--data", data)
    assert "reusing cache" in second.stdout
    listed = cli("cache", "list")
    assert "40 rows" in listed.stdout
    cli("cache", "clear")
    assert "no cached datasets" in cli("cache", "list").stdout


def test_cli_pretokenize_from_job_config(data, tmp_path, cli):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"model: {MODEL}\ndata:\n  train: {data}\n  max_length: 512\n")
    res = cli("pretokenize", cfg)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("line, reason", [
    ("{oops", "not valid JSON"), ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "no assistant message"),
    ('{"messages": [{"role": "bot", "content": "q"}]}', "unknown role"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(data, tmp_path, line, reason, cli):
    data.write_text(data.read_text() + line + "\n")
    res = cli("pretokenize", "--model", MODEL, "--data", data, "--output", tmp_path / "o", subprocess_=line == "{oops")
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("chattune: error: ") and "Traceback" not in res.stderr
    assert "train.jsonl:41: " in last and reason in last
    assert not (tmp_path / "o").exists() and not list(cli.root.glob("datasets/*"))
    skipped = cli("pretokenize", "--model", MODEL, "--data", data, "--skip-invalid")
    assert skipped.returncode == 0 and "dropped 1: invalid" in skipped.stdout


def test_cli_missing_file(tmp_path, cli):
    res = cli("pretokenize", "--model", MODEL, "--data", tmp_path / "nope.jsonl")
    assert res.returncode == 2 and "nope.jsonl: no such data file" in res.stderr


def test_cli_inspect_marks_trained_tokens(data, tmp_path, cli):
    res = cli("inspect", "--model", MODEL, "--data", data, "-n", "1")
    assert res.returncode == 0, res.stderr
    assert "[[0.<|im_end|>]]" in res.stdout and "[[You're welcome.<|im_end|>]]" in res.stdout
    assert "user" in res.stdout and "assistant" in res.stdout


def test_cli_audit_says_loudly_that_prompts_are_trained(tmp_path, qwen25_tokenizer, data, cli):
    rendered = qwen25_tokenizer.apply_chat_template([convo(i)["messages"] for i in range(5)], tokenize=True)
    datasets.Dataset.from_dict(dict(rendered)).save_to_disk(str(tmp_path / "story"))
    res = cli("audit", tmp_path / "story", "--model", MODEL)
    assert res.returncode == 1
    assert "PROMPTS ARE TRAINED" in res.stdout and "NO labels" in res.stdout
    cli("pretokenize", "--model", MODEL, "--data", data, "--output", tmp_path / "good")
    res = cli("audit", tmp_path / "good", "--model", MODEL)
    assert res.returncode == 0, res.stdout


def test_pretokenized_folder_is_used_as_it_is(data, tmp_path, qwen25_tokenizer, smollm2_tokenizer, cli):
    assert cli("pretokenize", "--model", MODEL, "--data", data, "--output", tmp_path / "out").returncode == 0
    built, _ = build_sft_dataset(job(data, tmp_path), qwen25_tokenizer, data, use_cache=False)
    reused, summary = build_sft_dataset(job(tmp_path / "out", tmp_path), qwen25_tokenizer, tmp_path / "out")
    assert reused["labels"] == built["labels"] and summary.role_trained["user"] == 0
    with pytest.raises(UserError, match="another tokenizer"):
        build_sft_dataset(job(tmp_path / "out", tmp_path), smollm2_tokenizer, tmp_path / "out")
    # Another tool's folder with labels is audited against the template; one that trains prompts is refused.
    foreign = datasets.load_from_disk(str(tmp_path / "out"))
    foreign.map(lambda r: {"labels": r["input_ids"]}).save_to_disk(str(tmp_path / "foreign"))
    with pytest.raises(UserError, match="prompt tokens would be trained"):
        build_sft_dataset(job(tmp_path / "foreign", tmp_path), qwen25_tokenizer, tmp_path / "foreign")
