"""The prediction monitor: a trainer callback that generates, scores and acts while a run trains.

Owns: when to generate (step 0 before training, as the baseline; every `monitor.every_steps`; the last step),
the lines of `predictions.jsonl`, the warning on a flagged step, stopping the run on an unhealthy step when
`monitor.stop_on_leakage` is set, and the terminal summary at the end of training. Knows nothing about how
predictions are made (generate.py) or scored (score.py), nor about methods or data formats: any
`transformers.Trainer` (TRL's SFT, DPO, ORPO trainers included) can carry it.

Every process generates, so a sharded model (FSDP, DeepSpeed ZeRO-3) takes part, and every process reaches the
same verdict on the same greedy replies, so all stop together; only the main process writes and prints.
"""

from __future__ import annotations

import json
import sys
import time

from transformers import TrainerCallback

from chattune.config import JobConfig
from chattune.monitor.generate import Prediction, generate, load_prompts
from chattune.monitor.score import FLAGS, PredictionScore, score_prediction, summarize_step
from chattune.train.run_folder import RunFolder

SHOWN_CHARS = 300  # of an offending prediction, in warnings and the summary


def _describe(row: dict) -> str:
    """A flagged line of predictions.jsonl in one line: prompt, flags, and the reply (cut, JSON-quoted)."""
    text = row["prediction"]
    shown = json.dumps(text[:SHOWN_CHARS] + ("…" if len(text) > SHOWN_CHARS else ""), ensure_ascii=False)
    return f"prompt {row['prompt_id']} [{', '.join(row['flags'])}]: {shown}"


class PredictionMonitor(TrainerCallback):
    """Generate and score predictions at step 0 and every `monitor.every_steps`; warn, or stop, on leakage."""

    def __init__(self, cfg: JobConfig, folder: RunFolder):
        self.cfg = cfg.monitor
        self.folder = folder
        self.prompts, self.source = load_prompts(cfg)
        self.baseline: dict[int, str] = {}  # prompt id → the step-0 prediction, the base for length_blowup
        self.history: list[tuple[int, dict]] = []  # (step, summarize_step(...)) per monitored step
        self.last_flagged: list[dict] = []  # lines of the last monitored step that carry flags
        self.seconds = 0.0  # spent generating and scoring, for the summary

    @property
    def path(self):
        return self.folder.path / "predictions.jsonl"

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not self.prompts:
            if state.is_world_process_zero:
                print(f"chattune monitor: no conversation in {self.source} to monitor (plain-text data); "
                      "set monitor.prompts to watch predictions", file=sys.stderr)
            return
        if state.global_step == 0:
            if state.is_world_process_zero:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("", encoding="utf-8")
            self._monitor(0, model, processing_class, state, control)
        else:
            self._resume(state)

    def _resume(self, state) -> None:
        """Keep the lines up to the checkpoint's step (later steps are trained again) and their baseline."""
        rows = []
        if self.path.is_file():
            rows = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= state.global_step]
        self.baseline = {r["prompt_id"]: r["prediction"] for r in rows if r["step"] == 0}
        if state.is_world_process_zero:
            self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        step = state.global_step
        if self.prompts and (step % self.cfg.every_steps == 0 or step == state.max_steps):
            self._monitor(step, model, processing_class, state, control)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.history:
            print(format_summary(self.history, self.last_flagged, self.source, self.seconds))

    def _monitor(self, step: int, model, tokenizer, state, control) -> None:
        started = time.perf_counter()
        predictions = generate(model, tokenizer, self.prompts, self.cfg.max_new_tokens)
        if step == 0:
            self.baseline = {i: p.text for i, p in enumerate(predictions)}
        special = tuple(tokenizer.all_special_tokens)
        results = [
            score_prediction(prompt.messages, pred.text, prompt.reference, self.baseline.get(i) if step else None,
                             self.cfg.thresholds, special)
            for i, (prompt, pred) in enumerate(zip(self.prompts, predictions))
        ]
        rows = [self._line(step, i, pred, r) for i, (pred, r) in enumerate(zip(predictions, results))]
        summary = summarize_step(results)
        self.history.append((step, summary))
        self.last_flagged = [row for row in rows if row["flags"]]
        if state.is_world_process_zero:
            with self.path.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            if self.last_flagged:
                print("\n" + self._warning(step, summary), file=sys.stderr)  # after the progress bar
        if not summary["healthy"] and self.cfg.stop_on_leakage and step > 0:
            self.folder.stop("stopped_on_leakage", self._reason(step, summary))
            control.should_training_stop = True
            control.should_save = True  # keep this step's checkpoint, to look at or to resume from
        self.seconds += time.perf_counter() - started

    def _line(self, step: int, prompt_id: int, pred: Prediction, r: PredictionScore) -> dict:
        prompt = self.prompts[prompt_id]
        return {"step": step, "prompt_id": prompt_id, "messages": prompt.messages, "prediction": pred.text,
                "reference": prompt.reference, "scores": r.scores, "flags": r.flags, "healthy": r.healthy,
                "spans": r.spans, "stopped": pred.stopped}

    def _warning(self, step: int, summary: dict) -> str:
        verdict = "UNHEALTHY" if not summary["healthy"] else "flagged"
        when = ""
        if step == 0:
            when = " (the baseline, before any training: these prompts or thresholds may not suit this model)"
        lines = [f"chattune monitor: WARNING: step {step}{when}: {len(self.last_flagged)} of {summary['predictions']} "
                 f"predictions {verdict}, symptoms of training on prompts:"]
        for row in self.last_flagged:
            lines.append(f"  {_describe(row)}")
        return "\n".join(lines)

    def _reason(self, step: int, summary: dict) -> str:
        counts = ", ".join(f"{f} {round(share * summary['predictions'])}" for f, share in summary["flag_share"].items()
                           if share)
        return (f"monitor.stop_on_leakage: step {step}: {round(summary['unhealthy_share'] * summary['predictions'])} "
                f"of {summary['predictions']} predictions unhealthy ({counts}); {_describe(self.last_flagged[0])}")


def format_summary(history: list[tuple[int, dict]], last_flagged: list[dict], source: str, seconds: float) -> str:
    """The table printed at the end of `chattune train`: per monitored step, healthy share and mean scores;
    then the last step's flagged predictions."""
    n = history[0][1]["predictions"]
    lines = [f"chattune monitor: {n} prompts from {source}; {len(history)} monitored steps, {seconds:.1f}s generating",
             f"  {'step':>6}  {'healthy':>7}  " + "  ".join(f"{f:>14}" for f in FLAGS) + "  verdict"]
    for step, s in history:
        healthy = f"{round((1 - s['unhealthy_share']) * s['predictions'])}/{s['predictions']}"
        means = "  ".join(f"{s['mean'][f]:>14.2f}" if f in s["mean"] else f"{'-':>14}" for f in FLAGS)
        lines.append(f"  {step:>6}  {healthy:>7}  {means}  {'ok' if s['healthy'] else 'UNHEALTHY'}")
    last_step = history[-1][0]
    if last_flagged:
        lines.append(f"  flagged at step {last_step}:")
        lines += [f"    {_describe(r)}" for r in last_flagged]
    else:
        lines.append(f"  no prediction flagged at step {last_step}")
    return "\n".join(lines)
