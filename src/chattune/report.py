"""Run folder → one self-contained HTML page (`chattune report RUN_DIR`).

Owns: reading the run folder contract (config.yaml, metrics.jsonl, predictions.jsonl, audit.json,
summary.json), drawing its charts as inline SVG, and escaping every piece of run text into the page.
Knows nothing about training, models or scoring: it shows what the trainer and the monitor wrote.
Never torch or transformers (only PyYAML and the config schema), so a report is instant, even of a run that
is still going.
Any file may be missing (a run that died early): its section then says so instead of failing.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path

import yaml

from chattune.config import MonitorThresholds
from chattune.errors import UserError

SCORES = ("prompt_echo", "repetition", "script_drift", "format_leakage", "length_blowup")
ROLES = ("system", "user", "assistant", "tool", "template")
MISSING = {
    "summary.json": "No summary.json: the run is still going, or it died before it could write one.",
    "metrics.jsonl": "No metrics.jsonl: the run stopped before its first logging step.",
    "predictions.jsonl": "No predictions.jsonl: monitoring was off, or the run stopped before step 0's predictions.",
    "audit.json": "No audit.json: the run stopped before the masking audit; nothing shows which tokens were trained.",
    "config.yaml": "No config.yaml in this run folder.",
}


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    """Write RUN_DIR's report (default RUN_DIR/report.html) and return its path.

    >>> write_report(Path("tests/fixtures/run_example"), Path("/tmp/report.html"))
    PosixPath('/tmp/report.html')
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    output = Path(output) if output else run_dir / "report.html"
    output.write_text(render_report(run_dir), encoding="utf-8")
    return output


def render_report(run_dir: Path) -> str:
    """The report page of RUN_DIR as one HTML string."""
    summary, metrics, predictions, audit = (
        _read(run_dir / name) for name in ("summary.json", "metrics.jsonl", "predictions.jsonl", "audit.json"))
    config_path = run_dir / "config.yaml"
    config = config_path.read_text(encoding="utf-8") if config_path.exists() else None
    sections = [
        _section("loss", "Loss", _loss(metrics)),
        _section("scores", "Prediction scores", _scores(predictions, _thresholds(config))),
        _section("audit", "Masking audit", _audit(audit)),
        _section("predictions", "Predictions", _predictions(predictions)),
        _section("config", "Config", _config(config)),
    ]
    title = f"chattune report: {run_dir.resolve().name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
            f"{_header(title, summary, predictions, audit)}\n{''.join(sections)}</main></body></html>\n")


# --- reading the run folder -------------------------------------------------------------------------

def _read(path: Path) -> tuple[object | None, str]:
    """(content, note): content is None when the file is missing; the note says why, or what was skipped."""
    if not path.exists():
        return None, MISSING[path.name]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text), ""
        except json.JSONDecodeError as e:
            return None, f"{path.name} is unreadable ({e}); the run may have died while writing it."
    rows, bad = [], 0
    for line in text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a run killed mid-write leaves a torn last line
                bad += 1
    return rows, f"{bad} unreadable line(s) of {path.name} skipped." if bad else ""


def _thresholds(config: str | None) -> dict[str, float]:
    """The monitor thresholds of the run's config.yaml, over the config defaults (an old or hand-edited
    config may name only some of them, or be torn by a run that died while writing it)."""
    found = MonitorThresholds().model_dump()
    try:
        raw = yaml.safe_load(config or "")
    except yaml.YAMLError:
        return found
    monitor = raw.get("monitor") if isinstance(raw, dict) else None
    thresholds = monitor.get("thresholds") if isinstance(monitor, dict) else None
    if isinstance(thresholds, dict):
        found.update({k: float(v) for k, v in thresholds.items() if k in found and isinstance(v, (int, float))})
    return found


# --- sections ---------------------------------------------------------------------------------------

def _header(title: str, summary, predictions, audit) -> str:
    data, note = summary
    if data is None:
        status, facts = "unknown", [f'<p class="missing">{_e(note)}</p>']
    else:
        status, steps, loss = data.get("status", "unknown"), data.get("steps"), data.get("final_loss")
        facts = [f"<p>{_e(data['reason'])}</p>" if data.get("reason") else "",
                 f'<p class="facts">steps <b>{"?" if steps is None else _e(steps)}</b> · final loss '
                 f'<b>{"?" if loss is None else _num(loss)}</b></p>']
    alerts = []
    if audit[0] is not None and _prompt_trained(audit[0]):
        alerts.append('<a href="#audit">Prompt tokens were trained: see the masking audit.</a>')
    if predictions[0]:
        last = max(r["step"] for r in predictions[0])
        sick = sorted({r["prompt_id"] for r in predictions[0] if r["step"] == last and not r["healthy"]})
        if sick:
            alerts.append(f'<a href="#predictions">{len(sick)} monitored prompt(s) unhealthy at step {last}.</a>')
    nav = " · ".join(f'<a href="#{k}">{k}</a>' for k in ("loss", "scores", "audit", "predictions", "config"))
    return (f'<header><h1>{_e(title)} <span class="status {_e(status)}">{_e(status)}</span></h1>'
            f"{''.join(facts)}{''.join(f'<p class=alert>{a}</p>' for a in alerts)}<nav>{nav}</nav></header>")


def _loss(metrics) -> str:
    rows, note = metrics
    if rows is None:
        return _missing(note)
    series, diverged = [], []
    for key, label, cls in (("loss", "train loss", "train"), ("eval_loss", "eval loss", "eval")):
        logged = [r for r in rows if key in r]
        diverged += [f"{label} at step {r['step']} is {r[key]}" for r in logged if not math.isfinite(r[key])]
        points = [(r["step"], r[key], f"step {r['step']}: {label} {_num(r[key])}", False) for r in logged
                  if math.isfinite(r[key])]
        if points:
            series.append((label, cls, points))
    if diverged:  # NaN/inf cannot be drawn, yet they are the news: say the first ones out loud
        note += f" Not drawn: {'; '.join(diverged[:3])}{' …' if len(diverged) > 3 else ''}."
    if not series:
        return _note(note) + _missing("metrics.jsonl holds no loss values yet.")
    return _note(note) + _line_chart(series, y_label="loss", width=960, height=300)


def _scores(predictions, thresholds: dict[str, float]) -> str:
    rows, note = predictions
    if rows is None:
        return _missing(note)
    by_step = defaultdict(list)
    for r in rows:
        by_step[r["step"]].append(r)
    charts = []
    for score in SCORES:
        points = []
        for step, group in sorted(by_step.items()):
            values = [r["scores"][score] for r in group if score in r.get("scores", {})]
            if values:
                flagged = sum(score in r.get("flags", []) for r in group)
                mean = sum(values) / len(values)
                tip = f"step {step}: mean {_num(mean)}, {flagged} of {len(group)} prompt(s) flagged"
                points.append((step, mean, tip, flagged > 0))
        chart = _line_chart([("mean over prompts", "score", points)], y_label=score, width=360, height=210,
                            threshold=thresholds.get(score), y_from_zero=True) if points else _missing("no values")
        charts.append(f'<figure><figcaption>{_e(score)}</figcaption>{chart}</figure>')
    return (_note(note) + '<p class="hint">Mean over monitored prompts at each step; the dashed line is the '
            "flag threshold; red dots are steps where at least one prompt was flagged.</p>"
            f'<div class="grid">{"".join(charts)}</div>')


def _prompt_trained(audit: dict) -> bool:
    return audit.get("masking") == "none" or any(
        counts.get("trained", 0) > 0 for role, counts in audit.get("roles", {}).items() if role != "assistant")


def _audit(audit) -> str:
    data, note = audit
    if data is None:
        return _missing(note)
    roles = data.get("roles", {})
    banner = ""
    if _prompt_trained(data):
        leaked = [r for r, c in roles.items() if r != "assistant" and c.get("trained", 0) > 0]
        why = ('masking is "none", so every token is trained' if data.get("masking") == "none"
               else f"masking is on, yet {', '.join(leaked)} tokens are trained")
        banner = (f'<div class="banner">Prompt tokens were trained: {_e(why)}. '
                  "The model learns to echo its prompts.</div>")
    table = ['<table class="roles"><tr><th>role</th><th>tokens</th><th>trained</th><th>trained share</th>'
             "<th>expected</th></tr>"]
    for role in [*ROLES, *sorted(set(roles) - set(ROLES))]:
        tokens, trained = roles.get(role, {}).get("tokens", 0), roles.get(role, {}).get("trained", 0)
        bad = role != "assistant" and trained > 0
        table.append(f'<tr class="{"bad" if bad else ""}"><td>{_e(role)}</td><td class="num">{tokens:,}</td>'
                     f'<td class="num">{trained:,}</td><td class="num">{_pct(trained, tokens)}</td>'
                     f'<td>{"&gt; 0%" if role == "assistant" else "0%"}</td></tr>')
    table.append("</table>")
    dropped = ", ".join(f"{_e(k)}: {v:,}" for k, v in data.get("dropped", {}).items()) or "none"
    warnings = "".join(f'<li class="warning">{_e(w)}</li>' for w in data.get("warnings", []))
    return (_note(note) + banner +
            f'<p class="facts">masking <b>{_e(data.get("masking", "?"))}</b> · examples '
            f'<b>{data.get("examples", 0):,}</b> · tokens <b>{data.get("tokens", 0):,}</b> · trained '
            f'<b>{data.get("trained_tokens", 0):,}</b> ({_pct(data.get("trained_tokens", 0), data.get("tokens", 0))})'
            f" · dropped examples: {dropped}</p>{''.join(table)}" + (f"<ul>{warnings}</ul>" if warnings else ""))


def _predictions(predictions) -> str:
    rows, note = predictions
    if rows is None:
        return _missing(note)
    by_prompt = defaultdict(list)
    for r in rows:
        by_prompt[r["prompt_id"]].append(r)
    legend = " ".join(f'<mark class="f-{s}" title="{s}">{s}</mark>' for s in SCORES)
    out = [_note(note), f'<p class="hint">Highlighted spans show each symptom: {legend}</p>']
    for pid, group in sorted(by_prompt.items()):
        group.sort(key=lambda r: r["step"])
        first_bad = next((r["step"] for r in group if not r["healthy"]), None)
        state = ('<span class="badge ok">healthy throughout</span>' if first_bad is None
                 else f'<span class="badge sick">first flagged at step {first_bad}</span>')
        messages = "".join(f'<div class="msg"><span class="role">{_e(m["role"])}</span><pre>{_e(m["content"])}</pre>'
                           "</div>" for m in group[0]["messages"])
        reference = group[0].get("reference")
        if reference is not None:
            messages += f'<div class="msg ref"><span class="role">reference</span><pre>{_e(reference)}</pre></div>'
        steps = "".join(_prediction_row(r) for r in group)
        out.append(f'<article class="prompt" id="prompt-{_e(pid)}"><h3>Prompt {_e(pid)} {state}</h3>'
                   f'<div class="messages">{messages}</div><table class="steps"><tr><th>step</th><th>flags</th>'
                   f"<th>prediction</th></tr>{steps}</table></article>")
    return "".join(out)


def _prediction_row(row: dict) -> str:
    flags = row.get("flags", [])
    badges = "".join(f'<span class="badge f-{_e(f)}">{_e(f)}</span>' for f in flags) or (
        '<span class="badge ok">healthy</span>' if row["healthy"] else '<span class="badge sick">unhealthy</span>')
    scores = " ".join(f'<span class="{"crossed" if s in flags else ""}">{_e(s)} {_num(v)}</span>'
                      for s, v in row.get("scores", {}).items())
    return (f'<tr class="{"healthy" if row["healthy"] else "unhealthy"}"><td class="num">{row["step"]}</td>'
            f'<td class="flags">{badges}<div class="scorelist">{scores}</div></td>'
            f'<td><pre class="prediction">{_highlight(row["prediction"], row.get("spans") or {})}</pre></td></tr>')


def _highlight(text: str, spans: dict[str, list[list[int]]]) -> str:
    """Escape TEXT, wrapping each flagged span in <mark class="f-FLAG" title="FLAG">; overlaps nest, one flag each."""
    marks = [(max(0, a), min(len(text), b), flag) for flag, ranges in spans.items() for a, b in ranges]
    marks = [m for m in marks if m[0] < m[1]]
    cuts = sorted({0, len(text)} | {i for a, b, _ in marks for i in (a, b)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        piece = _e(text[a:b])
        for flag in sorted({flag for start, end, flag in marks if start <= a and b <= end}, reverse=True):
            piece = f'<mark class="f-{_e(flag)}" title="{_e(flag)}">{piece}</mark>'
        out.append(piece)
    return "".join(out)


def _config(config: str | None) -> str:
    if config is None:
        return _missing(MISSING["config.yaml"])
    return (f"<details><summary>config.yaml ({len(config.splitlines())} lines, click to show)</summary>"
            f"<pre>{_e(config)}</pre></details>")


# --- SVG charts -------------------------------------------------------------------------------------

def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi]."""
    if hi - lo < 1e-12:
        lo, hi = (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1) if lo else (0, 1)
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    start = step * int(lo // step)
    count = int(-(-(hi - start) // step))
    return [round(start + i * step, 12) for i in range(count + 1)]


def _line_chart(series, *, y_label: str, width: int, height: int, threshold: float | None = None,
                y_from_zero: bool = False) -> str:
    """SERIES: [(label, css class, [(x, y, tooltip, bad), ...])] as lines on shared axes; bad points are red."""
    pad_l, pad_r, pad_t, pad_b = 52, 14, 26, 38
    xs = [p[0] for _, _, pts in series for p in pts]
    ys = [p[1] for _, _, pts in series for p in pts] + ([threshold] if threshold is not None else [])
    x_ticks = _ticks(min(xs), max(xs))
    y_ticks = _ticks(0 if y_from_zero else min(ys), max(ys))

    def sx(x):
        return pad_l + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (width - pad_l - pad_r)

    def sy(y):
        return height - pad_b - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (height - pad_t - pad_b)

    parts = [_axes(x_ticks, y_ticks, sx, sy, y_label, width, height, pad_l, pad_b)]
    if threshold is not None:
        y = sy(threshold)
        parts.append(f'<line class="threshold" x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke-dasharray="6 4"/><line class="threshold" x1="{width - pad_r - 100}" '
                     f'x2="{width - pad_r - 82}" y1="12" y2="12" stroke-dasharray="6 4"/><text class="threshold-label" '
                     f'x="{width - pad_r}" y="16" text-anchor="end">threshold {_num(threshold)}</text>')
    for i, (label, cls, pts) in enumerate(series):
        parts.append(_series(pts, cls, sx, sy))
        lx = pad_l + 8 + i * 110
        parts.append(f'<line class="s-{cls}" x1="{lx}" x2="{lx + 18}" y1="12" y2="12"/>'
                     f'<text x="{lx + 23}" y="16">{_e(label)}</text>')
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(y_label)} over steps" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def _axes(x_ticks, y_ticks, sx, sy, y_label, width, height, pad_l, pad_b) -> str:
    left, right, bottom, top = sx(x_ticks[0]), sx(x_ticks[-1]), sy(y_ticks[0]), sy(y_ticks[-1])
    parts = []
    for y in y_ticks:
        parts.append(f'<line class="gridline" x1="{left}" x2="{right:.1f}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                     f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_num(y)}</text>')
    for x in x_ticks:
        parts.append(f'<line class="axis" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{bottom:.1f}" y2="{bottom + 4:.1f}"/>'
                     f'<text x="{sx(x):.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{_num(x)}</text>')
    parts.append(f'<polyline class="axis" points="{left},{top:.1f} {left},{bottom:.1f} {right:.1f},{bottom:.1f}"/>')
    parts.append(f'<text class="axis-label" x="{(left + right) / 2:.1f}" y="{height - 4}" '
                 'text-anchor="middle">step</text>')
    parts.append(f'<text class="axis-label" transform="translate(12 {(top + bottom) / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{_e(y_label)}</text>')
    return "".join(parts)


def _series(points, cls: str, sx, sy) -> str:
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _, _ in points)
    # Dots (with their tooltips) only where they stay apart; a long run's loss is just a line.
    dots = "".join(f'<circle class="{"bad" if bad else f"s-{cls}"}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" '
                   f'r="{4 if bad else 3}"><title>{_e(tip)}</title></circle>'
                   for x, y, tip, bad in points) if len(points) <= 60 else ""
    return f'<polyline class="s-{cls}" points="{line}"/>{dots}'


# --- small helpers ----------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _pct(part: int, whole: int) -> str:
    # 3 significant digits so a small leak shows as 0.0123%, never rounded down to 0%.
    return f"{100 * part / whole:.3g}%" if part else "0%"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{title}</h2>{body}</section>\n'


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text.strip())}</p>' if text else ""


CSS = """
body{margin:0;background:#f6f7f9;color:#1f2937;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1080px;margin:0 auto;padding:20px 24px 40px}
header,section{background:#fff;border:1px solid #e3e6ea;border-radius:10px;padding:16px 22px;margin:0 0 16px}
h1{font-size:21px;margin:0 0 6px}h2{font-size:17px;margin:0 0 10px}h3{font-size:15px;margin:18px 0 8px}
nav{margin-top:8px;color:#64748b}a{color:#2563eb;text-decoration:none}p{margin:6px 0}
.status{font-size:13px;padding:2px 10px;border-radius:999px;vertical-align:middle;background:#e2e8f0}
.status.completed{background:#dcfce7;color:#166534}.status.stopped_on_leakage,.status.failed{background:#fee2e2;color:#991b1b}
.alert a{color:#b91c1c;font-weight:600}.facts{color:#475569}.hint{color:#64748b;font-size:13px}
.note{color:#92400e;font-size:13px}
.missing{background:#fffbeb;border:1px dashed #f59e0b;color:#92400e;padding:8px 12px;border-radius:6px}
.banner{background:#dc2626;color:#fff;font-size:16px;font-weight:700;padding:12px 16px;border-radius:8px;margin:6px 0 10px}
table{border-collapse:collapse;width:100%}th{text-align:left;color:#64748b;font-weight:600;font-size:12px}
th,td{padding:6px 10px;border-bottom:1px solid #edf0f3;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.roles{width:auto}tr.bad td{background:#fee2e2;color:#991b1b;font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(310px,1fr));gap:10px}
figure{margin:0;border:1px solid #edf0f3;border-radius:8px;padding:6px 8px}figcaption{font-weight:600;font-size:13px}
svg.chart{width:100%;height:auto;display:block}svg text{font-size:11px;fill:#64748b}
svg .axis-label{font-size:12px;fill:#334155}.gridline{stroke:#edf0f3}.axis{stroke:#94a3b8}
svg polyline[class]{fill:none;stroke-width:2}svg polyline.axis{stroke-width:1}
.s-train{stroke:#2563eb;fill:#2563eb}.s-eval{stroke:#ea580c;fill:#ea580c}.s-score{stroke:#475569;fill:#475569}
circle.bad{fill:#dc2626;stroke:#fff}.threshold{stroke:#dc2626;stroke-width:1.5}svg .threshold-label{fill:#dc2626}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.messages{display:flex;flex-direction:column;gap:4px;margin-bottom:8px}
.msg{display:flex;gap:10px;background:#f8fafc;border-radius:6px;padding:6px 10px}.msg.ref{background:#f0fdf4}
.role{min-width:72px;color:#64748b;font-size:12px;font-weight:600;text-transform:uppercase}
table.steps{table-layout:fixed}table.steps th:first-child{width:44px}table.steps th:nth-child(2){width:230px}
tr.unhealthy td:first-child{border-left:3px solid #dc2626}
.scorelist{color:#94a3b8;font-size:11px;margin-top:4px}.scorelist span{white-space:nowrap}
.scorelist span+span::before{content:" · ";color:#cbd5e1;font-weight:400}.scorelist .crossed{color:#b91c1c;font-weight:700}
.badge{display:inline-block;font-size:12px;padding:1px 8px;border-radius:999px;margin:1px 3px 1px 0;background:#e2e8f0}
.badge.ok{background:#dcfce7;color:#166534}.badge.sick{background:#fee2e2;color:#991b1b}
mark{border-radius:3px;padding:3px 1px;color:inherit}mark mark{padding:0}
.f-prompt_echo{background:#fed7aa}.f-repetition{background:#e9d5ff}.f-script_drift{background:#bfdbfe}
.f-format_leakage{background:#fecaca}.f-length_blowup{background:#99f6e4}
details summary{cursor:pointer;color:#2563eb}
details pre{background:#f8fafc;padding:10px;border-radius:6px;margin-top:8px}
"""
