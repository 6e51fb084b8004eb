"""chattune.report: the run folder → HTML page, checked as text and as rendered by a real headless Chromium.

The fixture run (tests/fixtures/run_example) has two monitored prompts: prompt 0 stays healthy; prompt 1
echoes its question from step 50, leaks template markers at step 100 and drifts into Chinese from step 150
(its step-200 prediction also holds a <script> tag). Its config sets the prompt_echo threshold to 0.4.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from chattune.cli import main
from chattune.config import JobConfig, MonitorThresholds
from chattune.errors import UserError
from chattune.report import render_report, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_example"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture run."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "run"))


class _Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def _set_audit(run_dir: Path, **changes) -> None:
    audit = json.loads((run_dir / "audit.json").read_text())
    audit.update(changes)
    (run_dir / "audit.json").write_text(json.dumps(audit))


# --- the page as text ---------------------------------------------------------------------------------

def test_missing_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        write_report(tmp_path / "nope")


def test_writes_report_html_in_the_run_folder_by_default(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_prints_the_report_path(run_dir, tmp_path, capsys):
    out = tmp_path / "elsewhere.html"
    main(["report", str(run_dir), "--output", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    assert out.exists()


def test_cli_missing_run_folder_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "nope")])
    assert exit_.value.code == 2
    assert "no such run folder" in capsys.readouterr().err


def test_header_shows_status_and_unhealthy_prompts():
    page = render_report(FIXTURE)
    assert '<span class="status stopped_on_leakage">stopped_on_leakage</span>' in page
    assert "step 200: prompt 1 flagged prompt_echo, script_drift, length_blowup" in page
    assert "1 monitored prompt(s) unhealthy at step 200." in page


def test_loss_and_score_charts_with_dashed_thresholds():
    elements = _Elements(render_report(FIXTURE))
    assert len(elements.find("svg", "chart")) == 1 + 5  # loss, then one per score
    assert len(elements.find("polyline", "s-train")) == 1 and len(elements.find("polyline", "s-eval")) == 1
    assert len(elements.find("polyline", "s-score")) == 5
    dashed = [a for a in elements.find("line", "threshold") if a.get("stroke-dasharray")]
    assert len(dashed) == 2 * 5  # the threshold line and its legend swatch, per score
    page = render_report(FIXTURE)
    assert "threshold 0.4" in page  # prompt_echo, from the run's config.yaml
    assert "threshold 0.2" in page and "threshold 3" in page  # script_drift, length_blowup
    # Steps where some prompt was flagged are red dots, with the count in their tooltip.
    assert "step 50: mean 0.325, 1 of 2 prompt(s) flagged" in page
    assert len(elements.find("circle", "bad")) == 3 + 1 + 2 + 1 + 1  # echo, repetition, drift, leakage, blowup


def test_flagged_spans_are_wrapped_in_marks_named_by_flag():
    page = render_report(FIXTURE)
    assert '<mark class="f-prompt_echo" title="prompt_echo">What is 2+2?</mark> The answer is 4.' in page
    assert '<mark class="f-script_drift" title="script_drift">答案是四，因为二加二等于四。</mark>' in page
    assert '<mark class="f-format_leakage" title="format_leakage">&lt;|im_end|&gt;</mark>' in page
    # Step 50: the second and third echoes are also the repetition span, so the marks nest.
    assert ('<mark class="f-prompt_echo" title="prompt_echo"><mark class="f-repetition" title="repetition">'
            "What is 2+2?</mark></mark>") in page


def test_marks_clip_out_of_range_spans_and_skip_empty_ones(run_dir):
    row = {"step": 0, "prompt_id": 7, "messages": [{"role": "user", "content": "hi"}], "prediction": "abcdef",
           "reference": None, "scores": {}, "flags": ["repetition"], "healthy": False,
           "spans": {"repetition": [[4, 99], [2, 2]], "prompt_echo": [[-3, 1]]}}
    (run_dir / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    page = render_report(run_dir)
    assert ('<mark class="f-prompt_echo" title="prompt_echo">a</mark>bcd'
            '<mark class="f-repetition" title="repetition">ef</mark>') in page


def test_run_text_is_escaped_and_page_loads_nothing_external():
    page = render_report(FIXTURE)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<|im_end|>" not in page and "<|im_start|>" not in page
    elements = _Elements(page)
    assert not elements.find("script") and not elements.find("link") and not elements.find("img")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_each_prompt_is_shown_once_with_a_row_per_step():
    elements = _Elements(render_report(FIXTURE))
    assert [a["id"] for a in elements.find("article", "prompt")] == ["prompt-0", "prompt-1"]
    assert len(elements.find("tr", "healthy")) == 5 + 1 and len(elements.find("tr", "unhealthy")) == 4
    page = render_report(FIXTURE)
    assert page.count("Name the three primary colours of paint.") == 1
    assert '<span class="badge sick">first flagged at step 50</span>' in page


def test_audit_table_shows_zero_for_prompt_roles_and_no_banner():
    page = render_report(FIXTURE)
    for role in ("system", "user", "tool", "template"):
        assert f'<td>{role}</td>' in page
        row = page.split(f"<td>{role}</td>")[1].split("</tr>")[0]
        assert '<td class="num">0%</td>' in row
    assert '<td class="num">100%</td>' in page.split("<td>assistant</td>")[1].split("</tr>")[0]
    assert 'class="banner"' not in page
    assert "too_long: 3" in page


@pytest.mark.parametrize("changes, why", [
    ({"masking": "none"}, "masking is &quot;none&quot;, so every token is trained"),
    ({"roles": {"system": {"tokens": 100, "trained": 0}, "user": {"tokens": 19456, "trained": 3},
                "assistant": {"tokens": 50, "trained": 50}}}, "masking is on, yet user tokens are trained"),
])
def test_banner_when_prompt_tokens_are_trained(run_dir, changes, why):
    _set_audit(run_dir, **changes)
    page = render_report(run_dir)
    assert 'class="banner"' in page and why in page
    assert '<a href="#audit">Prompt tokens were trained' in page
    if "roles" in changes:  # a tiny leak must not round down to 0%
        assert '<tr class="bad"><td>user</td>' in page and "0.0154%" in page


def test_every_missing_file_is_said_in_its_section(tmp_path):
    (tmp_path / "run").mkdir()
    page = render_report(tmp_path / "run")
    for name in ("summary.json", "metrics.jsonl", "predictions.jsonl", "audit.json", "config.yaml"):
        assert f"No {name}" in page
    assert page.count('class="missing"') == 6  # predictions.jsonl is missing for scores and predictions
    assert '<span class="status unknown">unknown</span>' in page and "<svg" not in page


def test_defaults_thresholds_without_config_and_skips_torn_lines(run_dir):
    (run_dir / "config.yaml").unlink()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 210, "lo')  # the run died mid-write
    page = render_report(run_dir)
    assert "threshold 0.4" not in page and "threshold 0.5" in page
    assert "1 unreadable line(s) of metrics.jsonl skipped." in page
    assert "No config.yaml" in page


def test_non_finite_losses_are_named_not_drawn(run_dir):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 210, "loss": NaN}\n{"step": 220, "loss": Infinity}\n')
    page = render_report(run_dir)
    assert "Not drawn: train loss at step 210 is nan; train loss at step 220 is inf." in page
    assert len(_Elements(page).find("polyline", "s-train")) == 1


def test_thresholds_from_a_config_written_as_the_trainer_writes_it(run_dir):
    cfg = JobConfig()
    cfg.monitor.thresholds.repetition = 0.35
    # As train.run_folder writes it.
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    page = render_report(run_dir)
    assert "threshold 0.35" in page and "threshold 0.4" not in page


def test_default_thresholds_are_the_config_defaults(run_dir):
    (run_dir / "config.yaml").write_text("monitor:\n  thresholds:\n    prompt_echo: 0.4\n")  # the others unset
    page = render_report(run_dir)
    assert f"threshold {MonitorThresholds().script_drift:g}" in page and "threshold 0.4" in page


def test_unreadable_config_falls_back_to_default_thresholds(run_dir):
    (run_dir / "config.yaml").write_text("monitor:\n  thresholds: [unclosed\n")  # torn mid-write
    page = render_report(run_dir)
    assert "threshold 0.5" in page and "threshold 0.4" not in page


def test_config_is_shown_collapsed():
    page = render_report(FIXTURE)
    assert "<details><summary>config.yaml (30 lines" in page and "stop_on_leakage: true" in page
    assert "<details open" not in page


def test_importing_report_pulls_in_no_torch():
    code = ("import sys, chattune.report; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the page in a real browser -----------------------------------------------------------------------

def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium)")
    profile = tmp_path / "chromium-profile"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_chromium_renders_the_expected_dom(run_dir, tmp_path):
    page = write_report(run_dir)
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    elements = _Elements(dom)
    assert len(elements.find("svg", "chart")) == 6
    assert len(elements.find("line", "threshold")) == 10
    assert len(elements.find("mark", "f-script_drift")) == 1 + 3  # the legend, then the spans
    assert len(elements.find("mark", "f-prompt_echo")) == 1 + 6
    assert len(elements.find("mark", "f-format_leakage")) == 1 + 2
    assert not elements.find("script")  # the prediction's <script> stayed text
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in dom and "&lt;|im_end|&gt;" in dom
    assert len(elements.find("table", "roles")) == 1 and not elements.find("div", "banner")


def test_chromium_screenshot_is_a_full_png(run_dir, tmp_path):
    page = write_report(run_dir)
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 2000)
    assert len(data) > 50_000  # a blank page compresses to a few KB
