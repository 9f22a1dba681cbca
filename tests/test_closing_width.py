"""In a terminal, the closing lines' reasons break between words at its width, never in a word.

A run refused by its budget says why for each agent in a line of about 150 characters;
at 80 columns it is broken between words, the rest indented under it. Commands to copy
(the ``next:`` hints) are never broken. Piped, nothing is broken.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrate.observe.summary import closing_lines
from tests import cli
from tests.terminal import Terminal, plain

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "finance_month_end_close.yaml")
WHY = "workflow budget of $0.0005 would be passed: $0.0000 spent or reserved, and this call may cost up to $0.0006"


def _document() -> dict[str, object]:
    return {
        "name": "close",
        "status": "failed",
        "agents": [
            {"name": "bank_reconciliation", "status": "budget_exceeded", "error": WHY},
            {"name": "post", "status": "skipped", "metadata": {"skipped": "when 'inputs.post_to_ledger' was false"}},
        ],
    }


def test_reasons_break_between_words_at_the_width_and_hints_never() -> None:
    lines = closing_lines(_document(), "runs/close-20261204T003729Z-with-a-long-folder-name-to-copy", width=60)
    why = lines[lines.index("why:") + 1 : lines.index("skipped:")]
    assert len(why) > 1 and all(len(line) <= 60 for line in why)
    assert why[0].startswith("  bank_reconciliation  budget exceeded:")
    assert all(line.startswith("      ") for line in why[1:])  # under the agent, indented further
    assert " ".join(" ".join(why).split()) == f"bank_reconciliation budget exceeded: {' '.join(WHY.split())}"
    hints = lines[lines.index("next:") + 1 :]
    assert any(len(line) > 60 for line in hints)  # a command to copy stays whole


def test_piped_nothing_is_broken() -> None:
    lines = closing_lines(_document(), "runs/close-1")
    assert f"  bank_reconciliation  budget exceeded: {WHY}" in lines


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_a_budget_refusal_at_80_columns_in_a_terminal(tmp_path: Path) -> None:
    args = ["run", WORKFLOW, "--simulate", "--budget", "0.0005", "-o", "runs"]
    with Terminal(args, tmp_path) as terminal:
        code = terminal.finish()
        screen = terminal.screen
    assert code == 1, screen
    tail = screen[screen.rfind("finance_month_end_close: failed") :]
    lines = plain(tail).replace("\r", "").split("\n")
    closing = lines[: lines.index("next:")]
    assert all(len(line) <= 80 for line in closing), closing
    assert "why:" in closing and any(line.startswith("      ") for line in closing)


def test_piped_the_real_command_keeps_each_reason_on_one_line(tmp_path: Path) -> None:
    done = cli.orchestrate(
        "run", WORKFLOW, "--simulate", "--budget", "0.0005", "--no-progress", cwd=tmp_path, columns=80, ci=False
    )
    assert done.returncode == 1
    assert any(
        line.startswith("  bank_reconciliation  budget exceeded: ") and len(line) > 80
        for line in done.stdout.splitlines()
    )
