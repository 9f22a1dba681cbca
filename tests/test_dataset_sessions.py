"""A resumed dataset run is reported whole: result.json, the closing lines, `show` and report.html
list its sessions and give totals across them (rows, cost, duration), not the last session's."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.chromium import Browser, RecordingProxy
from tests.cli import orchestrate

FLOW = (
    "name: vendor_screen\ndefaults: {module: Compliance, llm_config: {model: gpt-4o-mini}}\n"
    "inputs: {vendor: {type: string}}\nagents:\n  - name: lookup\n    prompt_template: 'Look up {vendor}'\n"
)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sessions")
    (folder / "vendors.yaml").write_text(FLOW)
    (folder / "vendors.jsonl").write_text("".join(f'{{"vendor": "V{i}"}}\n' for i in range(6)))
    common = ("--data", "vendors.jsonl", "--key", "vendor", "--simulate", "--no-progress")
    first = orchestrate("run", "vendors.yaml", *common, "--budget", "0", cwd=folder)  # every row refused
    assert first.returncode == 1, first.stderr
    (run_dir,) = (folder / "runs").iterdir()
    before = json.loads((run_dir / "result.json").read_text())
    second = orchestrate("run", "--resume", str(run_dir), "--budget", "1", "--no-progress", cwd=folder)
    assert second.returncode == 0, second.stderr
    return {
        "folder": folder,
        "dir": run_dir,
        "before": before,
        "after": json.loads((run_dir / "result.json").read_text()),
        "closing": second.stdout,
    }


def test_result_json_lists_the_sessions_and_totals_across_them(resumed: dict[str, Any]) -> None:
    before, after = resumed["before"], resumed["after"]
    sessions = after["sessions"]
    assert [s["status"] for s in sessions] == ["failed", "completed"]
    assert sessions[0]["started_at"] == before["started_at"] == after["started_at"]  # the run's first start
    assert sessions[0]["duration_seconds"] == pytest.approx(before["duration_seconds"])
    assert after["duration_seconds"] == pytest.approx(sum(s["duration_seconds"] for s in sessions), abs=1e-5)
    assert sessions[1]["rows"] == 6 and sessions[1]["cost"] == pytest.approx(after["total_cost"])
    assert after["counts"] == {"completed": 6}


def test_the_closing_lines_say_the_run_had_two_sessions(resumed: dict[str, Any]) -> None:
    assert re.search(r"[0-9.]+s over 2 sessions$", resumed["closing"], flags=re.MULTILINE), resumed["closing"]


def test_show_lists_each_session(resumed: dict[str, Any]) -> None:
    done = orchestrate("show", str(resumed["dir"]), cwd=resumed["folder"], columns=80)
    lines = done.stdout.splitlines()
    at = lines.index("sessions: 2 (totals above count them all)")
    assert lines[at + 1].startswith("  1. ") and lines[at + 1].endswith("6 rows, $0.00, failed")
    assert lines[at + 2].startswith("  2. ") and lines[at + 2].endswith("completed")
    assert re.match(r"  1\. \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00 ", lines[at + 1])  # to the second, with offset


def test_report_html_shows_the_sessions_readable_times_and_no_zero_percent(resumed: dict[str, Any]) -> None:
    report = resumed["dir"] / "report.html"
    html = report.read_text()
    assert "2 sessions (resumed; the figures above count them all)" in html
    started = re.search(r"started ([^<·]+) ·", html)
    assert started and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", started[1]), started
    assert "0.0% of the budget" not in html and "under 0.1% of the budget spent" in html
    proxy = RecordingProxy()
    try:
        with Browser(proxy.port) as browser:
            page = browser.load(report.as_uri())
    finally:
        proxy.close()
    assert "2 sessions" in page.text and page.requests == [report.as_uri()]
