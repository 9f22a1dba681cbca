"""Approvals as a person meets them: the question, what it is about, the command that decides it,
and afterwards who decided, when, how and why, in the closing lines, show, JUnit, the Markdown
summary and report.html."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import chromium_path
from tests.test_answer import orchestrate, page_in_chromium

ROOT = Path(__file__).resolve().parents[1]
CLOSE = "workflows/finance_month_end_close.yaml"


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A month-end close that waits for the controller, is approved with a note, and is resumed."""
    folder = tmp_path_factory.mktemp("approvals")
    shutil.copytree(ROOT / "workflows", folder / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    args = ("--simulate", "--input", "post_to_ledger=true", "--no-progress")
    waiting = orchestrate("run", CLOSE, *args, "--junit", "waiting.xml", "--summary", "waiting.md", cwd=folder)
    assert waiting.returncode == 4, waiting.stderr
    (first,) = (folder / "runs").iterdir()
    approve = orchestrate("approve", str(first.relative_to(folder)), "post_adjustments", "--by", "controller",
                          "--note", "checked against the trial balance", cwd=folder)  # fmt: skip
    assert approve.returncode == 0, approve.stderr
    resumed = orchestrate(
        "run", CLOSE, *args, "--resume", str(first), "--junit", "done.xml", "--summary", "done.md", cwd=folder
    )
    assert resumed.returncode == 0, resumed.stderr
    (second,) = [p for p in (folder / "runs").iterdir() if p != first]
    return {
        "folder": folder,
        "first": first,
        "second": second,
        "waiting": waiting,
        "approve": approve,
        "resumed": resumed,
    }


def test_a_waiting_run_says_who_waits_on_what_and_how_to_decide(decided: dict[str, Any]) -> None:
    out = decided["waiting"].stdout
    run = decided["first"].relative_to(decided["folder"])
    lines = out[out.index("waiting for approval:") :].splitlines()
    assert lines[1] == (
        "  post_adjustments: Post 804.75 of adjustments for 2026-10 to the ledger of ACME Holdings Ltd (acme-prod)?"
    )
    assert lines[2].startswith('    adjustments: {"entries": [') and len(lines[2]) <= 80  # what it is about
    steps = out[out.index("next:\n") :].splitlines()
    assert steps[1] == f"  orchestrate approve {run} post_adjustments"
    assert f"  orchestrate run --resume {run}" in steps  # the folder records the inputs and --simulate


def test_approve_prints_the_command_that_continues(decided: dict[str, Any]) -> None:
    run = decided["first"].relative_to(decided["folder"])
    lines = decided["approve"].stdout.splitlines()
    assert lines[0].startswith("post_adjustments: approved by controller at 20") and lines[0].endswith(" UTC")
    assert lines[1] == f"continue with: orchestrate run --resume {run}"


def test_after_the_decision_every_view_says_who_when_how_and_why(decided: dict[str, Any]) -> None:
    expected = "  post_adjustments: approved by controller at "
    how = ' UTC with orchestrate approve: "checked against the trial balance"'
    closing = decided["resumed"].stdout.splitlines()
    line = closing[closing.index("approvals:") + 1]
    assert line.startswith(expected) and line.endswith(how)
    shown = orchestrate("show", str(decided["second"]), cwd=decided["folder"]).stdout.splitlines()
    assert line in shown
    as_json = json.loads(orchestrate("show", str(decided["second"]), "--json", cwd=decided["folder"]).stdout)
    (decision,) = as_json["approvals"]["decided"]
    assert decision["by"] == "controller" and decision["how"] == "with orchestrate approve"
    assert decision["note"] == "checked against the trial balance"
    waiting = json.loads(orchestrate("show", str(decided["first"]), "--json", cwd=decided["folder"]).stdout)
    (question,) = waiting["approvals"]["waiting"]
    assert question["agent"] == "post_adjustments" and "adjustments" in question["about"]


def test_junit_and_the_summary_carry_the_question_and_the_decision(decided: dict[str, Any]) -> None:
    folder = decided["folder"]
    waiting = ET.parse(folder / "waiting.xml").getroot()
    case = next(c for c in waiting.iter("testcase") if c.get("name") == "post_adjustments")
    skipped = case.find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith("waiting for approval: Post 804.75 of adjustments")
    done = ET.parse(folder / "done.xml").getroot()
    case = next(c for c in done.iter("testcase") if c.get("name") == "post_adjustments")
    out = case.find("system-out")
    assert out is not None and "approval: approved by controller at " in (out.text or "")
    assert "checked against the trial balance" in (out.text or "")
    assert "| post_adjustments | Post 804.75 of adjustments" in (folder / "waiting.md").read_text()
    summary = (folder / "done.md").read_text()
    assert "| post_adjustments | approved | controller |" in summary and "checked against the trial balance" in summary


def test_approve_all_is_named_as_the_way_it_was_decided(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    done = orchestrate(
        "run", CLOSE, "--simulate", "--input", "post_to_ledger=true", "--approve-all", "--no-progress", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert " UTC by run --approve-all" in done.stdout


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_shows_the_pending_question_and_the_decision(decided: dict[str, Any]) -> None:
    text, errors = page_in_chromium((decided["first"] / "report.html").resolve().as_uri())
    assert errors == []
    assert "Approvals" in text and "post_adjustments: waiting for approval" in text
    assert "Post 804.75 of adjustments for 2026-10" in text and "orchestrate approve RUN_DIR post_adjustments" in text
    text, errors = page_in_chromium((decided["second"] / "report.html").resolve().as_uri())
    assert errors == []
    assert "controller" in text and "with orchestrate approve" in text and "checked against the trial balance" in text
