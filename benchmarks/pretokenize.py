"""Pre-tokenization benchmark: prints figures, is not a test.

    python benchmarks/pretokenize.py            # ~10 minutes on 2 cores (the README's figures: --repeats 5, ~18)
    python benchmarks/pretokenize.py --n 5000   # smaller and quicker (memory runs use n and 10n)

With the real Qwen2.5 tokenizer and its chat template, on synthetic multi-turn conversations (seeded,
so every run sees the same data) it measures:
  1. `chattune pretokenize` (build_sft_dataset, num_proc=2, fresh cache): conversations/s and tokens/s,
     timed in-process from the data file to the cached dataset; and the CLI's wall time with startup.
  2. the limit: apply_chat_template(tokenize=False) + one batched fast-tokenizer call, in 2 processes
     that already hold the conversations (no file reading, no Arrow, no labels): warm processes that ran
     it before, and the same in freshly forked ones (what any pipeline, chattune's and TRL's, runs in);
  3. TRL: SFTTrainer._prepare_dataset with assistant_only_loss=True and dataset_num_proc=2, i.e. the
     preparation alone, on the data already loaded as a `datasets.Dataset` (model construction and
     loading are not counted; TRL swaps in its own qwen2_5_training.jinja with generation markers);
  4. per-token cost of the masker (one process) and of the limit at 4 vs 80 turns;
  5. a cache hit against the build;
  6. peak memory of the whole pipeline in a subprocess, for n and 10n conversations.
Every timing is the median of --repeats runs (the best is printed too); chattune, the limit and TRL take
turns within each repeat, so a change in the machine's load hits all three. Tokenizers run single-
threaded (TOKENIZERS_PARALLELISM=false, also for the CLI) so that each contender uses exactly its 2
processes on 2 cores. Each section prints the load average: above ~1.5 other work was competing.

Owns nothing in chattune; it only calls build_sft_dataset, Masker, and the `chattune` command.
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before tokenizers is imported, here and in children

import argparse
import json
import multiprocessing
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil

from chattune.config import DataConfig, JobConfig
from chattune.data import normalize
from chattune.masking import Masker
from chattune.models import QWEN25_TOKENIZER, load_tokenizer, resolve_model
from chattune.pretokenize import build_sft_dataset

MAX_LENGTH = 32768  # longer than any generated conversation: nobody truncates, all do the same work
NUM_PROC = 2

# ----------------------------------------------------------------------------- synthetic conversations

WORDS = (
    "the of and to in is it that for you was with on as have be at this are not but by from or an they we can "
    "will all would there their what so if about which when one make like time just know take people into year "
    "your good some could them see other than then now look only come its over think also back after use two how "
    "our work first well way even new want because any these give day most us model data training loss token "
    "layer function value error result example question answer system python file memory process network "
    "learning gradient batch sequence output input method approach problem solution number string list table user "
    "server request response simple small large different important possible available following however "
    "therefore usually probably actually really quite very much many more less each every both between through "
    "during without within against around before under again further once here where why who whose while"
).split()
SYLLABLES = "ka lo mi ne ru sa ti vo ze ba ce di fu ga hi jo ku la me no pe qui ra so tu vi wa xe yo zu an el in on un er or ar al il".split()
HAN = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天而能好都然"
       "没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回"
       "二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世")
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコ"
EMOJI = ["😀", "😂", "🙂", "🤔", "👍", "🚀", "🔥", "✨", "🎉", "❤️", "🙏", "💡", "📈", "✅", "❌", "🤖", "🧠", "👨‍💻", "🇯🇵"]
CODE = ["def f(x):", "    return x * 2", "for i in range(10):", "    print(i, end=' ')", "import numpy as np",
        "x = np.zeros((3, 4))", "if not items:", "    raise ValueError('empty')", "result = {k: v for k, v in pairs}"]


def _sentences(rng: random.Random, n: int) -> list[str]:
    """A pool of English-ish sentences (Zipf-weighted real and made-up words), ~6% Han/kana, some emoji."""
    vocab = WORDS + ["".join(rng.choices(SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(3000)]
    cum, total = [], 0.0
    for rank in range(len(vocab)):
        total += 1 / (rank + 1)
        cum.append(total)
    pool = []
    for _ in range(n):
        if rng.random() < 0.06:
            chars = HAN if rng.random() < 0.8 else KANA
            pool.append("".join(rng.choices(chars, k=rng.randint(6, 40))) + rng.choice("。！？，"))
            continue
        words = rng.choices(vocab, cum_weights=cum, k=rng.randint(3, 28))
        if rng.random() < 0.15:
            words[rng.randrange(len(words))] = str(rng.randint(0, 10 ** rng.randint(1, 6)))
        if len(words) > 6 and rng.random() < 0.3:
            words[rng.randrange(1, len(words) - 1)] += ","
        text = " ".join(words)
        text = text[0].upper() + text[1:] + rng.choice("....?!")
        pool.append(text + " " + rng.choice(EMOJI) if rng.random() < 0.05 else text)
    return pool


class Conversations:
    """Seeded generator: system prompt 40% of the time, then user/assistant turns."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.pool = _sentences(self.rng, 20000)

    def _message(self, median_sentences: float) -> str:
        rng = self.rng
        n = max(1, min(60, round(rng.lognormvariate(0, 0.8) * median_sentences)))
        sentences = rng.choices(self.pool, k=n)
        paragraphs, i = [], 0
        while i < len(sentences):
            k = rng.randint(1, 5)
            chunk = sentences[i:i + k]
            i += k
            r = rng.random()
            if r < 0.08:
                paragraphs.append("\n".join(f"- {s}" for s in chunk))
            elif r < 0.12:
                paragraphs.append("```python\n" + "\n".join(rng.choices(CODE, k=rng.randint(2, 6))) + "\n```")
            else:
                paragraphs.append(" ".join(chunk))
        return "\n\n".join(paragraphs)

    def conversation(self, turns: int | None = None) -> dict:
        rng = self.rng
        messages = []
        if rng.random() < 0.4:
            messages.append({"role": "system", "content": self._message(1)})
        for _ in range(turns or rng.randint(1, 6)):
            messages.append({"role": "user", "content": self._message(1.5)})
            messages.append({"role": "assistant", "content": self._message(3.5)})
        return {"messages": messages}

    def many(self, n: int, turns: int | None = None) -> list[dict]:
        return [self.conversation(turns) for _ in range(n)]


def write_jsonl(records: list[dict], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------- measurements


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_times(xs: list[float]) -> str:
    """The runs and their median, with the load average (above ~1.5, other work was competing)."""
    return (f"median {median(xs):.2f}s, best {min(xs):.2f}s of [{', '.join(f'{x:.2f}' for x in xs)}] "
            f"(load {os.getloadavg()[0]:.1f})")


def job(path: Path, cache_dir: Path) -> JobConfig:
    return JobConfig(model=QWEN25_TOKENIZER, cache_dir=cache_dir,
                     data=DataConfig(train=path, num_proc=NUM_PROC, max_length=MAX_LENGTH))


def quiet(fn, *args, **kw):
    """Run fn with its stdout/stderr (progress bars, "pre-tokenized ..." lines) sent to /dev/null."""
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
        try:
            return fn(*args, **kw)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def build(path: Path, tokenizer, cache_dir: Path):
    """One timed build_sft_dataset: (seconds, dataset, audit summary)."""
    t0 = time.perf_counter()
    ds, summary = quiet(build_sft_dataset, job(path, cache_dir), tokenizer, path, use_cache=True)
    return time.perf_counter() - t0, ds, summary


def bench_cli(path: Path, cache_dir: Path) -> float:
    """`chattune pretokenize` wall time, Python startup and imports included."""
    model_dir = resolve_model(QWEN25_TOKENIZER)  # the built folder: a fresh --cache-dir would rebuild it
    cmd = ["chattune", "pretokenize", "--model", model_dir, "--data", str(path), "--num-proc", str(NUM_PROC),
           "--max-length", str(MAX_LENGTH), "--cache-dir", str(cache_dir)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


_SHARDS: list[list[list[dict]]] = []  # inherited by the forked limit workers
_WORKER_TOKENIZER = None  # likewise (loaded once in this process, as chattune's workers inherit theirs)


def _limit_shard(i: int) -> int:
    tok = _WORKER_TOKENIZER
    texts = [tok.apply_chat_template(messages, tokenize=False) for messages in _SHARDS[i]]
    return sum(map(len, tok(texts, add_special_tokens=False)["input_ids"]))


class Limit:
    """Render + one batched tokenizer call per shard, in NUM_PROC forked workers that already hold the
    tokenizer and their shard of the conversations: no file reading, no Arrow, no labels.

    `warm()` reuses one pool for every run: processes that have done exactly this work before (their
    memory is mapped, their allocator grown); `fresh()` forks new workers for each run, as any pipeline
    does (datasets.map forks a pool per call), and does not time the forking. Neither counts pool start-up."""

    def __init__(self, records: list[dict]):
        global _WORKER_TOKENIZER
        _WORKER_TOKENIZER = load_tokenizer(QWEN25_TOKENIZER)
        conversations = [r["messages"] for r in records]
        _SHARDS[:] = [conversations[i::NUM_PROC] for i in range(NUM_PROC)]
        self.pool = self._pool()

    @staticmethod
    def _pool():
        pool = multiprocessing.get_context("fork").Pool(NUM_PROC)
        pool.map(time.sleep, [0.1] * NUM_PROC)  # returns once both workers are up
        return pool

    @staticmethod
    def _run(pool) -> tuple[float, int]:
        t0 = time.perf_counter()
        tokens = sum(pool.map(_limit_shard, range(NUM_PROC), chunksize=1))
        return time.perf_counter() - t0, tokens

    def warm(self) -> tuple[float, int]:
        return self._run(self.pool)

    def fresh(self) -> tuple[float, int]:
        pool = self._pool()
        try:
            return self._run(pool)
        finally:
            pool.close()
            pool.join()

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class TRLPrep:
    """SFTTrainer._prepare_dataset (assistant_only_loss, dataset_num_proc=2) on the data as a Dataset.

    The trainer is built once, on a 1-row dataset with a tiny Qwen2 model (not timed); each call loads
    the JSONL into a fresh datasets cache (timed apart) and times only _prepare_dataset, which is what
    the constructor runs on `train_dataset`."""

    def __init__(self, path: Path, work: Path):
        import datasets
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
        from trl import SFTConfig, SFTTrainer

        warnings.filterwarnings("ignore", category=FutureWarning)  # SFTConfig's own gradient_checkpointing default
        transformers.logging.set_verbosity_error()
        datasets.logging.set_verbosity_error()  # "num_proc must be <= 1" for the 1-row dataset
        self.path, self.work = path, work
        self.tokenizer = load_tokenizer(QWEN25_TOKENIZER)
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(self.tokenizer), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
        self.args = SFTConfig(output_dir=str(work / "trl-out"), assistant_only_loss=True, dataset_num_proc=NUM_PROC,
                              max_length=None, report_to="none", bf16=False, use_cpu=True)
        one = quiet(self._load, "train[:1]", work / "trl-one")
        self.trainer = quiet(SFTTrainer, model=model, args=self.args, train_dataset=one,
                             processing_class=self.tokenizer)
        self.swapped = self.trainer.chat_template is not None  # TRL's training template in place of Qwen's

    def _load(self, split: str, cache_dir: Path):
        import datasets

        return datasets.load_dataset("json", data_files=str(self.path), split=split, cache_dir=str(cache_dir))

    def __call__(self, cache_dir: Path):
        t0 = time.perf_counter()
        raw = quiet(self._load, "train", cache_dir)
        loaded = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = quiet(self.trainer._prepare_dataset, raw, self.tokenizer, self.args, False, None, "train")
        return loaded, time.perf_counter() - t0, prepared


def compare_with_trl(trl_ds, ours, newline: int, n: int = 200) -> tuple[int, int]:
    """How many of the first n examples have the same input_ids, and the same labels apart from the two
    newlines TRL's training template puts inside {% generation %} (after `assistant`, after <|im_end|>)."""
    ids_same = labels_same = 0
    for t, o in zip(trl_ds.select(range(n)), ours.select(range(n))):
        ids_same += t["input_ids"] == o["input_ids"]
        labels_same += all(a == b or (b == -100 and a == newline) for a, b in zip(t["labels"], o["labels"]))
    return ids_same, labels_same


def bench_turns(seed: int, repeats: int, n4: int = 2000, n80: int = 100) -> dict:
    """µs per token, one process: the masker (render + skeleton + tokenize + labels) and the limit."""
    tokenizer = load_tokenizer(QWEN25_TOKENIZER)
    out = {}
    for turns, n in ((4, n4), (80, n80)):
        records = Conversations(seed + turns).many(n, turns)
        examples = [normalize(r) for r in records]
        masker_t, limit_t = [], []
        for _ in range(repeats):
            masker = Masker(tokenizer, MAX_LENGTH)  # fresh: its skeleton cache is part of the cost
            t0 = time.perf_counter()
            encoded = [e for i in range(0, n, 256) for e in masker.encode_batch(examples[i:i + 256])]
            masker_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in records]
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
            limit_t.append(time.perf_counter() - t0)
        tokens = sum(len(e.input_ids) for e in encoded)
        assert tokens == sum(map(len, ids))
        out[turns] = {"n": n, "tokens": tokens, "masker_us": median(masker_t) * 1e6 / tokens,
                      "limit_us": median(limit_t) * 1e6 / tokens}
    return out


# ----------------------------------------------------------------------------- memory (subprocess)


def memory_child(path: Path, cache_dir: Path) -> None:
    """Run in a subprocess: the pipeline on `path`, then print what getrusage saw, as JSON."""
    tokenizer = load_tokenizer(QWEN25_TOKENIZER)
    before = psutil.Process().memory_info().rss
    before_anon = rss(os.getpid())[0]
    t0 = time.perf_counter()
    ds, _ = quiet(build_sft_dataset, job(path, cache_dir), tokenizer, path, use_cache=True)
    print(json.dumps({
        "rows": len(ds), "entry_bytes": sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file()),
        "seconds": time.perf_counter() - t0, "rss_before": before, "anon_before": before_anon,
        # VmHWM, not RUSAGE_SELF: ru_maxrss survives exec, so it would count the parent's pages shared at fork
        "maxrss_self": status_kib(os.getpid(), "VmHWM"),
        "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }))


def status_kib(pid: int, *keys: str) -> int | tuple[int, ...]:
    """Fields of /proc/PID/status in bytes (0 once the process has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
    except (FileNotFoundError, ProcessLookupError):
        fields = {}
    values = tuple(int(fields[k].split()[0]) * 1024 if k in fields else 0 for k in keys)
    return values if len(keys) > 1 else values[0]


def rss(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile): private memory, and pages of mapped files (page cache, reclaimable)."""
    return status_kib(pid, "RssAnon", "RssFile")


def bench_memory(path: Path, cache_dir: Path) -> dict:
    """Peak memory of the pipeline in a subprocess: its own ru_maxrss, and /proc samples every 50 ms of the
    main process (anonymous vs mapped-file pages) and of the largest worker."""
    proc = subprocess.Popen([sys.executable, __file__, "--memory-child", str(path), str(cache_dir)],
                            stdout=subprocess.PIPE, text=True)
    peak = {"main_anon": 0, "main_file": 0, "worker_anon": 0}
    stop = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                workers = [c.pid for c in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            anon, file = rss(proc.pid)
            peak["main_anon"], peak["main_file"] = max(peak["main_anon"], anon), max(peak["main_file"], file)
            peak["worker_anon"] = max([peak["worker_anon"], *(rss(w)[0] for w in workers)])
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"memory run on {path} failed (exit {proc.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), **peak}


# ----------------------------------------------------------------------------- report


def path_size(m: dict) -> str:
    return f"{m['rows']:,} rows, cache entry {m['entry_bytes'] / 2**20:,.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="conversations (memory: n and 10n)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep data and caches here (default: a temporary folder)")
    ap.add_argument("--memory-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        return memory_child(*a.memory_child)

    work = a.workdir or Path(tempfile.mkdtemp(prefix="chattune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(a, work)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run(a, work: Path) -> None:
    wall = time.perf_counter()
    print(f"chattune pre-tokenization benchmark: {a.n:,} conversations, seed {a.seed}, median of {a.repeats}, "
          f"{NUM_PROC} processes, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    records = Conversations(a.seed).many(a.n)
    path = write_jsonl(records, work / "conversations.jsonl")
    turns = [sum(m["role"] == "assistant" for m in r["messages"]) for r in records]
    print(f"\n[1] data: {path.stat().st_size / 2**20:.1f} MiB JSONL, {sum(turns) / len(turns):.2f} turns per "
          f"conversation, {sum('system' == r['messages'][0]['role'] for r in records) / len(records):.0%} with a "
          f"system prompt (generated in {time.perf_counter() - t0:.1f}s)")

    # chattune, the limit and TRL take turns, so that a change in the machine's load hits all three.
    tokenizer = load_tokenizer(QWEN25_TOKENIZER)
    limit_run, trl_run = Limit(records), TRLPrep(path, work)
    builds, cli, limit_t, fresh_t, loads, preps, hits = [], [], [], [], [], [], []
    for r in range(a.repeats):
        seconds, ds, summary = build(path, tokenizer, work / f"cache-{r}")
        builds.append(seconds)
        seconds, limit_tokens = limit_run.warm()
        limit_t.append(seconds)
        fresh_t.append(limit_run.fresh()[0])
        loaded, seconds, prepared = trl_run(work / f"trl-{r}")
        loads.append(loaded)
        preps.append(seconds)
        cli.append(bench_cli(path, work / f"cli-cache-{r}"))
    limit_run.close()
    for _ in range(a.repeats):
        hits.append(build(path, tokenizer, work / f"cache-{a.repeats - 1}")[0])
    assert len(ds) == a.n and limit_tokens == summary.tokens, (len(ds), limit_tokens, summary.tokens)

    tokens = summary.tokens
    trl_file = [load + prep for load, prep in zip(loads, preps)]  # file → prepared, as chattune's figure is timed
    ours, limit, fresh, trl, trl_f = (a.n / median(t) for t in (builds, limit_t, fresh_t, preps, trl_file))
    # Each round's contenders ran back to back, so the ratio within a round is less exposed to the machine's drift.
    per_round = lambda other: median([o / b for o, b in zip(other, builds)])  # noqa: E731
    print(f"\n[2] chattune build_sft_dataset (in-process, fresh cache): {fmt_times(builds)}\n"
          f"    {ours:,.0f} conversations/s, {tokens / median(builds):,.0f} tokens/s "
          f"({tokens:,} tokens, {tokens / a.n:.0f} per conversation, {summary.trained_tokens / tokens:.0%} trained)")
    print(f"    `chattune pretokenize` CLI, wall time with startup: {fmt_times(cli)} "
          f"({a.n / median(cli):,.0f} conversations/s)")
    print(f"\n[3a] limit (apply_chat_template + batched tokenizer, {NUM_PROC} warm processes): {fmt_times(limit_t)}\n"
          f"    {limit:,.0f} conversations/s, {tokens / median(limit_t):,.0f} tokens/s\n"
          f"     the same in {NUM_PROC} freshly forked processes: {fmt_times(fresh_t)}, {fresh:,.0f} conversations/s")
    ids_same, labels_same = compare_with_trl(prepared, ds, tokenizer.convert_tokens_to_ids("Ċ"))
    print(f"[3b] TRL SFTTrainer._prepare_dataset (assistant_only_loss, dataset_num_proc={NUM_PROC}"
          f"{', training template swapped in' if trl_run.swapped else ''}): {fmt_times(preps)}\n"
          f"    {trl:,.0f} conversations/s (+ load_dataset('json') {median(loads):.2f}s, not counted); "
          f"first 200 examples: input_ids identical to chattune's {ids_same}/200; labels identical {labels_same}/200 but "
          f"for the newlines around each reply that TRL's training template also trains")
    print(f"    chattune/limit = {ours / limit:.2f} (target >= 0.75; per round {per_round(limit_t):.2f}; "
          f"fresh processes {ours / fresh:.2f})   chattune/TRL = {ours / trl:.2f} (target >= 2; per round "
          f"{per_round(preps):.2f}; counting TRL's load_dataset too, file to prepared as chattune is timed: "
          f"{ours / trl_f:.2f})")

    per_token = bench_turns(a.seed, a.repeats)
    print("\n[4] per-token cost, one process (masker = render + skeleton + tokenize + labels):")
    for t, r in per_token.items():
        print(f"    {t:>2} turns: {r['n']:>5} conversations, {r['tokens']:>9,} tokens: "
              f"masker {r['masker_us']:.2f} µs/token, limit {r['limit_us']:.2f} µs/token")
    m_ratio = per_token[80]["masker_us"] / per_token[4]["masker_us"]
    l_ratio = per_token[80]["limit_us"] / per_token[4]["limit_us"]
    print(f"    80 turns / 4 turns per token: masker {m_ratio:.2f}x (target <= ~2x), limit {l_ratio:.2f}x")

    print(f"\n[5] cache: build {fmt_times(builds)}; hit {fmt_times(hits)}; "
          f"{median(builds) / median(hits):.0f}x faster (target >= 20x)")

    mem = {}
    for n in (a.n, 10 * a.n):
        data = path if n == a.n else write_jsonl(Conversations(a.seed).many(n), work / f"memory-{n}.jsonl")
        mem[n] = bench_memory(data, work / f"memory-cache-{n}")
        if n != a.n:
            data.unlink()
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    print(f"\n[6] peak memory of the pipeline in a subprocess (baseline = imports + tokenizer, before the build);"
          f"\n    anon = private memory; file = pages of memory-mapped Arrow files (page cache, reclaimable):")
    for n, m in mem.items():
        print(f"    {n:>7,} conversations ({m['seconds']:.0f}s, {path_size(m)}): main max RSS "
              f"{mib(m['maxrss_self'])} (baseline {mib(m['rss_before'])}) = anon {mib(m['main_anon'])} "
              f"(baseline {mib(m['anon_before'])}) + file up to {mib(m['main_file'])}; "
              f"largest worker: max RSS {mib(m['maxrss_children'])}, anon {mib(m['worker_anon'])}")
    small, big = mem[a.n], mem[10 * a.n]

    print(f"\nwhole benchmark: {time.perf_counter() - wall:.0f}s; load average now {os.getloadavg()[0]:.2f}")
    print(f"\n`python benchmarks/pretokenize.py` ({a.n:,} conversations, {tokens / a.n:.0f} tokens each on average, "
          f"Qwen2.5 tokenizer, {NUM_PROC} processes, median of {a.repeats}):\n")
    rows = [
        ("chattune pretokenize (in-process)", f"{ours:,.0f} conv/s, {tokens / median(builds) / 1e3:,.0f}k tok/s", ""),
        ("chattune pretokenize CLI (wall, with startup)", f"{median(cli):.1f}s ({a.n / median(cli):,.0f} conv/s)", ""),
        ("limit: apply_chat_template + batched tokenizer, warm processes", f"{limit:,.0f} conv/s", ""),
        ("the same limit in freshly forked processes", f"{fresh:,.0f} conv/s", ""),
        ("TRL SFTTrainer prep, assistant_only_loss", f"{trl:,.0f} conv/s", ""),
        ("chattune / limit (warm; per round)", f"{ours / limit:.2f}; {per_round(limit_t):.2f}", ">= 0.75"),
        ("chattune / limit in fresh processes", f"{ours / fresh:.2f}", ""),
        ("chattune / TRL (per round)", f"{ours / trl:.2f} ({per_round(preps):.2f})", ">= 2"),
        ("chattune / TRL with its load_dataset (file → prepared, both)", f"{ours / trl_f:.2f}", ""),
        ("masker µs/token, 4 → 80 turns",
         f"{per_token[4]['masker_us']:.2f} → {per_token[80]['masker_us']:.2f} ({m_ratio:.2f}x)", "<= ~2x"),
        ("limit µs/token, 4 → 80 turns",
         f"{per_token[4]['limit_us']:.2f} → {per_token[80]['limit_us']:.2f} ({l_ratio:.2f}x)", ""),
        ("cache hit vs build", f"{median(hits):.2f}s vs {median(builds):.1f}s ({median(builds) / median(hits):.0f}x)",
         ">= 20x"),
        (f"peak anon memory, main / worker, {a.n:,} vs {10 * a.n:,} conv",
         f"{mib(small['main_anon'])} / {mib(small['worker_anon'])} vs {mib(big['main_anon'])} / "
         f"{mib(big['worker_anon'])}", "bounded"),
        (f"peak RSS (VmHWM) main, {a.n:,} vs {10 * a.n:,} conv",
         f"{mib(small['maxrss_self'])} vs {mib(big['maxrss_self'])} (incl. mapped Arrow pages)", ""),
    ]
    print("| measure | figure | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
