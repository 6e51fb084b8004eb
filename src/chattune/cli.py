"""The `chattune` command. Each subcommand parses its arguments and calls one function elsewhere.

Owns: argument parsing and turning a UserError into one line on stderr and exit code 2.
Knows nothing else: no logic lives here. Heavy modules are imported inside each command so that
`chattune --help` and `chattune config check` stay instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chattune.errors import UserError


def _add_data_args(p: argparse.ArgumentParser, with_output: bool) -> None:
    p.add_argument("job", nargs="?", type=Path, help="a job config (YAML/JSON); flags below override it")
    p.add_argument("--model", help="tokenizer/model: hub id, local folder, or an embedded name")
    p.add_argument("--data", type=Path, help="JSONL/JSON/Parquet file or datasets folder")
    p.add_argument("--chat-template", type=Path, help="a .jinja file replacing the tokenizer's chat template")
    p.add_argument("--max-length", type=int, help="cut longer examples from the end")
    p.add_argument("--train-on", choices=["all_assistant", "last_assistant"])
    p.add_argument("--num-proc", type=int, help="tokenizing processes")
    p.add_argument("--skip-invalid", action="store_true", default=None, help="skip malformed examples")
    p.add_argument("--cache-dir", type=Path, help="cache root (default $CHATTUNE_CACHE_DIR or ~/.cache/chattune)")
    if with_output:
        p.add_argument("--output", type=Path, help="also save the dataset to this folder")


def _job_from_args(args: argparse.Namespace):
    from chattune.config import JobConfig, load_config, parse_config

    cfg = load_config(args.job) if args.job else JobConfig()
    raw = cfg.model_dump(mode="json", exclude_unset=False)
    for key, val in (("model", args.model), ("chat_template", args.chat_template), ("cache_dir", args.cache_dir)):
        if val is not None:
            raw[key] = str(val)
    data = raw["data"]
    for key in ("data", "max_length", "train_on", "num_proc", "skip_invalid"):
        val = getattr(args, key, None)
        if val is not None:
            data["train" if key == "data" else key] = str(val) if isinstance(val, Path) else val
    cfg = parse_config(raw, str(args.job or "command line"))
    if cfg.data.train is None:
        raise UserError("no data: pass --data FILE or set data.train in the job config")
    return cfg


def cmd_pretokenize(args):
    from chattune.pretokenize import pretokenize

    pretokenize(_job_from_args(args), output=args.output)


def cmd_inspect(args):
    from chattune.inspect import inspect

    inspect(_job_from_args(args), n=args.n, color=args.color)


def cmd_audit(args):
    from chattune.audit import audit_dataset_dir

    if not audit_dataset_dir(args.dataset, model=args.model, chat_template=args.chat_template,
                             cache_dir=args.cache_dir):
        sys.exit(1)


def cmd_cache(args):
    from chattune import cache

    root = cache.cache_root(args.cache_dir)
    if args.action == "list":
        cache.print_entries(root)
    else:
        cache.clear(root)


def cmd_config(args):
    from chattune.config import load_config, schema

    if args.action == "schema":
        print(json.dumps(schema(), indent=2))
    else:
        load_config(args.file)
        print(f"{args.file}: ok")


def cmd_train(args):
    from chattune.config import load_config
    from chattune.train import train

    cfg = load_config(args.job)
    if args.resume:
        cfg.training.resume = True
    if args.output_dir:
        cfg.training.output_dir = args.output_dir
    sys.exit(train(cfg))


def cmd_export(args):
    from chattune.train.export import export

    export(args.run_dir, output=args.output, merge=args.merge)


def cmd_score(args):
    from chattune.monitor.score import score_file

    score_file(args.predictions, output=args.output)


def cmd_report(args):
    from chattune.report import write_report

    print(write_report(args.run_dir, output=args.output))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chattune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretokenize", help="render, tokenize, mask and cache a dataset")
    _add_data_args(p, with_output=True)
    p.set_defaults(func=cmd_pretokenize)

    p = sub.add_parser("inspect", help="show examples with trained tokens highlighted, and the audit summary")
    _add_data_args(p, with_output=False)
    p.add_argument("-n", type=int, default=3, help="examples to show")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("audit", help="check a pre-tokenized dataset (any tool's) for trained prompt tokens")
    p.add_argument("dataset", type=Path, help="a datasets.save_to_disk folder")
    p.add_argument("--model", required=True, help="the tokenizer the dataset was made with")
    p.add_argument("--chat-template", type=Path)
    p.add_argument("--cache-dir", type=Path)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("cache", help="list or clear the pre-tokenization cache")
    p.add_argument("action", choices=["list", "clear"])
    p.add_argument("--cache-dir", type=Path)
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("config", help="validate a job config, or print its JSON Schema")
    p.add_argument("action", choices=["check", "schema"])
    p.add_argument("file", type=Path, nargs="?")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("train", help="fine-tune from a job config")
    p.add_argument("job", type=Path)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--output-dir", type=Path, help="override training.output_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write a run's model (LoRA merged with --merge)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--output", type=Path)
    p.add_argument("--merge", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="score predictions (JSONL: messages, prediction, reference?)")
    p.add_argument("predictions", type=Path)
    p.add_argument("--output", type=Path)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report", help="write a run's self-contained HTML report")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--output", type=Path)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "config" and args.action == "check" and args.file is None:
        args = build_parser().parse_args(["config", "--help"])
    try:
        args.func(args)
    except UserError as e:
        print(f"chattune: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
