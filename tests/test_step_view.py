"""Skip reasons wherever a status is shown, and a code step shown as the call it made."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import chromium_path
from tests.test_answer import orchestrate, page_in_chromium

ROOT = Path(__file__).resolve().parents[1]
SKIP = "when 'inputs.post_to_ledger' was false"


@pytest.fixture(scope="module")
def close(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("steps")
    shutil.copytree(ROOT / "workflows", folder / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    done = orchestrate(
        "run", "workflows/finance_month_end_close.yaml", "--simulate", "--no-progress", "--junit", "j.xml",
        "--summary", "s.md", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (folder / "runs").iterdir()
    return {"folder": folder, "dir": run_dir, "closing": done.stdout}


def test_closing_lines_say_why_an_agent_was_skipped(close: dict[str, Any]) -> None:
    lines = close["closing"].splitlines()
    assert lines[lines.index("skipped:") + 1] == f"  post_adjustments  {SKIP}"


def test_show_gives_the_skip_reason_and_the_code_steps_call(close: dict[str, Any]) -> None:
    table = orchestrate("show", str(close["dir"]), cwd=close["folder"]).stdout
    row = next(line for line in table.splitlines() if line.startswith("│ post_adjustments"))
    assert f"skipped: {SKIP}" in row
    step = next(line for line in table.splitlines() if line.startswith("│ adjustments "))
    assert "finance_tools:adjustment_summary(" in step
    one = orchestrate("show", str(close["dir"]), "adjustments", cwd=close["folder"]).stdout
    assert "code step finance_tools:adjustment_summary" in one
    assert "not recorded" not in one and "\nprompt\n" not in one
    call = one.splitlines()[one.splitlines().index("call") + 1]
    assert call.startswith("  finance_tools:adjustment_summary(accruals={") and "materiality=5000)" in call
    assert "\nresult\n" in one
    skipped = orchestrate("show", str(close["dir"]), "post_adjustments", cwd=close["folder"]).stdout
    assert f"why\n  skipped: {SKIP}" in skipped


def test_junit_and_summary_carry_the_skip_reason_and_the_call(close: dict[str, Any]) -> None:
    root = ET.parse(close["folder"] / "j.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "post_adjustments")
    node = case.find("skipped")
    assert node is not None and node.get("message") == f"skipped: {SKIP}"
    summary = (close["folder"] / "s.md").read_text()
    assert f"skipped: {SKIP}" in summary and "finance_tools:adjustment_summary(" in summary


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_shows_the_call_and_the_skip_reason(close: dict[str, Any]) -> None:
    text, errors = page_in_chromium((close["dir"] / "report.html").resolve().as_uri())
    assert errors == []
    assert f"skipped: {SKIP}" in text
    assert "code step finance_tools:adjustment_summary" in text
