"""report.html: what it shows, that it escapes everything, and that it needs nothing but itself.

The browser tests open the report in a real headless Chromium (installed by
.ci/run where missing) over the DevTools protocol.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from orchestrate.observe.html_report import render_report, write_run_report
from orchestrate.observe.run_folder import load_run_folder
from tests.chromium import Browser, RecordingProxy
from tests.sample_runs import HOSTILE, run_sample


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
async def sample_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "month_end_sample-20261125T100000Z"
    await run_sample(run_dir)
    write_run_report(run_dir)
    return run_dir


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_report_escapes_provider_and_user_text_and_loads_nothing(sample_dir: Path) -> None:
    html = (sample_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    assert not {"script", "img", "link", "iframe", "object", "embed", "base"} & set(parser.tags)
    assert not [v for k, v in parser.attrs if k in ("src", "srcset", "data")]
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in html  # the prompt, shown
    assert "Answer with markup &lt;script&gt;" in html  # the provider's answer, shown
    assert "content=\"default-src 'none'" in html


def test_report_shows_retry_tool_call_failure_and_cancellation(sample_dir: Path) -> None:
    run = load_run_folder(sample_dir)
    ledger = run.traces["ledger_extract"]
    assert [a["status"] for a in ledger.attempts] == ["failed", "completed"]
    kinds = [s.kind for s in ledger.lane.segments]  # type: ignore[union-attr]
    assert kinds.count("attempt") == 2 and "backoff" in kinds and "call" in kinds
    assert run.traces["gl_lookup"].tools == [{"tool": "lookup_balance", "error": None}]
    html = render_report([run])
    assert "<pre>task ledger_extract for period 2026-10</pre>" in html  # the rendered prompt
    problems = html.split("<h3>Problems</h3>", 1)[1].split("</section>", 1)[0]
    assert "vat_check" in problems and "unsupported parameter &#x27;vat_mode&#x27;" in problems
    assert "close_memo" in problems and "dependency &#x27;vat_check&#x27; failed" in problems
    assert "ledger_extract" not in problems  # it recovered
    assert "429 Too Many Requests" in html  # the failed attempt's error, under the agent
    for column in ("input", "cached input", "output", "reasoning"):
        assert f"<th class=num>{column}</th>" in html


def test_unknown_and_future_statuses_render_with_their_own_names(sample_dir: Path) -> None:
    result = json.loads((sample_dir / "result.json").read_text())
    result["agents"][0]["status"] = "waiting_approval"
    result["agents"][1]["status"] = "skipped"
    result["status"] = "waiting"
    (sample_dir / "result.json").write_text(json.dumps(result))
    html = render_report([load_run_folder(sample_dir)])
    for status in ("waiting_approval", "skipped", "waiting"):  # in words; the value kept for a script
        assert f">{status.replace('_', ' ')}</span>" in html and f'data-status="{status}"' in html


def test_dataset_batch_folder_gets_counts_distributions_and_failed_rows(sample_dir: Path) -> None:
    rows = [
        {
            "key": f"INV-{i}",
            "row": i,
            "status": "completed",
            "cost": 0.001 * i,
            "tokens": 100,
            "duration_seconds": 0.5 + i / 10,
            "error": None,
        }
        for i in range(1, 40)
    ]
    rows.append(
        {
            "key": "INV-<40>",
            "row": 40,
            "status": "failed",
            "cost": 0.0,
            "tokens": 0,
            "duration_seconds": 0.1,
            "error": "vendor <unknown>",
        }
    )
    (sample_dir / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"key": "torn')
    html = render_report([load_run_folder(sample_dir)])
    section = html.split("<h3>Dataset rows</h3>", 1)[1].split("</section>", 1)[0]
    assert ">40</div>" in section and "Cost per row" in section and "Time per row" in section
    assert "INV-&lt;40&gt;" in section and "vendor &lt;unknown&gt;" in section
    assert section.count('class="histogram"') == 2


def test_report_command_rebuilds_one_run_or_combines_several(sample_dir: Path, tmp_path: Path) -> None:
    (sample_dir / "report.html").unlink()
    done = cli("report", str(sample_dir))
    assert done.returncode == 0, done.stderr
    assert (sample_dir / "report.html").is_file()
    other = tmp_path / "runs" / "second-20261125T110000Z"
    other.mkdir(parents=True)
    for name in ("result.json", "cost.json", "events.jsonl"):
        (other / name).write_bytes((sample_dir / name).read_bytes())
    out = tmp_path / "all.html"
    done = cli("report", str(sample_dir), str(tmp_path / "runs"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "2 runs" in html and html.count('<article class="run">') == 2


def test_report_command_refuses_what_is_not_a_run_folder(tmp_path: Path, sample_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("report", str(empty))
    assert done.returncode == 2 and "not a run folder" in done.stderr and "Traceback" not in done.stderr
    (sample_dir / "result.json").write_text('{"agents": [\n  {"name": oops}]}')
    before = (sample_dir / "report.html").read_bytes()
    done = cli("report", str(sample_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.search(r"result\.json:2:\d+: not valid JSON", done.stderr)
    assert (sample_dir / "report.html").read_bytes() == before  # the old report is intact


def test_every_cli_run_writes_report_html_even_when_it_fails(tmp_path: Path) -> None:
    flow = tmp_path / "wf.yaml"
    flow.write_text(
        "name: doomed\nagents:\n  - name: only\n    module: HR\n"
        "    llm_config: {model: gpt-4o-mini, failure_rate: 1.0}\n"
        "    max_retries: 0\n    prompt_template: hello\n"
    )
    done = cli("run", str(flow), "--simulate", "-o", str(tmp_path / "runs"), "--no-progress")
    assert done.returncode == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "only" in (run_dir / "report.html").read_text()


def test_a_run_that_spent_nothing_says_so_under_cost(tmp_path: Path) -> None:
    flow = tmp_path / "wf.yaml"
    flow.write_text(
        "name: doomed\nagents:\n  - name: only\n    module: HR\n"
        "    llm_config: {model: gpt-4o-mini, failure_rate: 1.0}\n"
        "    max_retries: 0\n    prompt_template: hello\n"
    )
    assert cli("run", str(flow), "--simulate", "-o", str(tmp_path / "runs"), "--no-progress").returncode == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "nothing was spent" in (run_dir / "report.html").read_text()


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy() -> Any:
    recorder = RecordingProxy()
    yield recorder
    recorder.close()


def test_report_opens_in_headless_chromium_offline(tmp_path: Path, proxy: RecordingProxy) -> None:
    flow = tmp_path / "close.yaml"
    flow.write_text(
        "name: month_end_close\nallow_partial_completion: true\ncost_budget: 0.5\n"
        "defaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 80}}\n"
        "agents:\n"
        f"  - name: bank_reconciliation\n    prompt_template: 'Reconcile {HOSTILE}'\n"
        "  - name: accruals_review\n    prompt_template: Review accruals\n"
        "  - name: fx_revaluation\n    llm_config: {model: gpt-4o-mini, failure_rate: 1.0}\n"
        "    max_retries: 1\n    retry: {strategy: immediate}\n    prompt_template: Revalue FX\n"
        "  - name: close_memo\n    dependencies: [bank_reconciliation, accruals_review]\n"
        "    prompt_template: 'Memo on {bank_reconciliation.output} and {accruals_review.output}'\n"
    )
    done = cli("run", str(flow), "--simulate", "-o", str(tmp_path / "runs"), "--no-progress")
    assert done.returncode == 3, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    report = run_dir / "report.html"
    control = tmp_path / "control.html"  # proves the checks below can see a request leave
    control.write_text('<html><body><p>control</p><img src="http://leak.example/pixel.png"></body></html>')
    with Browser(proxy.port) as browser:
        leaky = browser.load(control.as_uri())
        page = browser.load(
            report.as_uri(), evaluate=("document.title", "document.querySelectorAll('script,img,iframe,link').length")
        )
    assert any("leak.example" in url for url in leaky.requests)
    assert any("leak.example" in line for line in proxy.page_requests())
    assert page.requests == [report.as_uri()]  # the document itself, nothing else
    proxy.requests.clear()
    with Browser(proxy.port) as browser:  # and once more, watching only the proxy
        browser.load(report.as_uri())
    assert proxy.page_requests() == []
    text = page.text
    for agent in result["agents"]:
        assert agent["name"] in text
    assert page.values == {
        "document.title": "month_end_close · orchestrate report",  # no script ran
        "document.querySelectorAll('script,img,iframe,link').length": 0,
    }
    total = result["total_cost"]
    assert f"${total:.6f}" in text or f"${total:.4f}" in text
    failed = next(a for a in result["agents"] if a["name"] == "fx_revaluation")
    assert failed["status"] == "failed" and failed["error"] in text
    assert page.screenshot.startswith(b"\x89PNG\r\n\x1a\n") and len(page.screenshot) > 20_000
    assert page.pdf.startswith(b"%PDF-") and len(page.pdf) > 10_000  # prints (Ctrl-P) to PDF
    assert "Review accruals" not in text and "Review accruals" in page.print_text  # folded on screen, printed
    (tmp_path / "report.png").write_bytes(page.screenshot)


def test_a_dataset_batch_folder_gets_its_rows_agents_across_rows_and_failed_rows(tmp_path: Path) -> None:
    flow = tmp_path / "vendors.yaml"
    flow.write_text(
        "name: vendor_screen\nallow_partial_completion: true\n"
        "defaults: {module: Compliance, llm_config: {model: gpt-4o-mini, max_tokens: 40}}\n"
        "inputs: {vendor: {type: string}}\nagents:\n"
        "  - name: lookup\n    prompt_template: 'Look up <{vendor}>'\n"
        "  - name: sanctions\n    llm_config: {model: gpt-4o-mini, failure_rate: 1.0}\n"
        "    max_retries: 0\n    prompt_template: 'Screen {vendor}'\n"
    )
    data = tmp_path / "vendors.jsonl"
    data.write_text('{"vendor": "ACME GmbH"}\n{"vendor": "Globex"}\n{"vendor": "Initech"}\n')
    done = cli(
        "run",
        str(flow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--simulate",
        "--no-progress",
        "-o",
        str(tmp_path / "runs"),
    )
    assert done.returncode == 1, done.stderr  # no row completed
    (run_dir,) = (tmp_path / "runs").iterdir()
    html = (run_dir / "report.html").read_text()
    assert "<h3>Dataset rows</h3>" in html and "<h3>Agents across rows</h3>" in html
    across = html.split("<h3>Agents across rows</h3>", 1)[1].split("</section>", 1)[0]
    assert ">lookup<" in across and ">sanctions<" in across and "&nbsp;3" in across
    assert "<h3>Timeline of rows</h3>" in html and html.count('class="lane-label"') == 3
    failed = html.split("<h3>Rows that did not complete, in full</h3>", 1)[1]
    assert failed.count("<details>") == 3 and "Look up &lt;Globex&gt;" in failed


def test_a_resumed_batch_is_reported_by_each_rows_last_state(tmp_path: Path) -> None:
    """A resumed batch appends a row again when it runs it again; the page counts its last state."""
    flow = tmp_path / "vendors.yaml"
    flow.write_text(
        "name: vendor_screen\ndefaults: {module: Compliance, llm_config: {model: gpt-4o-mini}}\n"
        "inputs: {vendor: {type: string}}\nagents:\n  - name: lookup\n"
        "    prompt_template: 'Look up {vendor}'\n"
    )
    data = tmp_path / "vendors.jsonl"
    data.write_text('{"vendor": "ACME"}\n{"vendor": "Globex"}\n')
    done = cli(
        "run",
        str(flow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--simulate",
        "--no-progress",
        "-o",
        str(tmp_path / "runs"),
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    # What an interrupted first session followed by a resume leaves: the row twice, cancelled then done.
    for name in ("results.jsonl", "rows.jsonl"):
        lines = (run_dir / name).read_text().splitlines()
        first = json.loads(lines[0])
        first["status"] = "cancelled"
        for agent in first.get("agents", []):
            agent["status"] = "cancelled"
        (run_dir / name).write_text("\n".join([json.dumps(first), *lines]) + "\n")
    run = load_run_folder(run_dir)
    assert run.rows is not None and [r["status"] for r in run.rows] == ["completed", "completed"]
    assert run.batch is not None and dict(run.batch.outcomes["lookup"]) == {"completed": 2}
    html = render_report([run])
    assert "Rows that did not complete" not in html
