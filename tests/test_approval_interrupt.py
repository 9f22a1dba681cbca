"""Ctrl-C while `orchestrate run` asks for an approval in a terminal: the run stops as on any
Ctrl-C (the two-line notice on a line of its own, the cursor shown, exit 130, nothing left waiting
on the keyboard) and can be resumed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli import orchestrate
from tests.terminal import Terminal, plain

HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"

FLOW = """\
name: month_close
defaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 20, provider: simulated}}
agents:
  - name: adjustments
    prompt_template: Work out the adjustments.
  - name: post_adjustments
    dependencies: [adjustments]
    prompt_template: Post them.
    approval: {message: "Post the adjustments to the ledger?"}
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_ctrl_c_at_the_approval_prompt_stops_the_run_cleanly_and_it_resumes(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(FLOW)
    with Terminal(["run", "close.yaml", "-o", "runs"], tmp_path) as terminal:
        assert terminal.read_until("[y/N]: ", 60), terminal.screen
        terminal.interrupt()
        code = terminal.finish(30)  # never waits for a key to be pressed
        screen = terminal.screen
    assert code == 130, screen
    lines = plain(screen.replace("\r", "")).split("\n")
    at = next(i for i, line in enumerate(lines) if "received SIGINT" in line)
    assert lines[at] == "received SIGINT: cancelling in-flight calls and writing reports", lines[at - 1 : at + 2]
    assert lines[at + 1] == "  press Ctrl-C again to exit at once", lines[at : at + 2]
    assert screen.rfind(SHOW) > screen.rfind(HIDE), "cursor left hidden"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"--resume {run_dir.relative_to(tmp_path)}" in "".join(lines[at:]).replace("\n", ""), screen
    result = json.loads((run_dir / "result.json").read_text())
    assert {a["name"]: a["status"] for a in result["agents"]}["adjustments"] == "completed", result
    resumed = orchestrate("run", "--resume", str(run_dir), "--approve-all", cwd=tmp_path, ci=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reused 1 agent" in resumed.stdout, resumed.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_an_answer_typed_at_the_prompt_is_read_and_decides(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(FLOW)
    with Terminal(["run", "close.yaml", "-o", "runs", "--approver", "controller"], tmp_path) as terminal:
        assert terminal.read_until("[y/N]: ", 60), terminal.screen
        terminal.type("yes\n")
        code = terminal.finish()
        screen = terminal.screen
    assert code == 0, screen
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert {a["name"]: a["status"] for a in result["agents"]} == {
        "adjustments": "completed",
        "post_adjustments": "completed",
    }, result
