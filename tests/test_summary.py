"""What a terminal user is told: the live table at 80 and 120 columns, and the closing summary."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console

from orchestrate.money.amounts import plain_decimal, usd
from orchestrate.observe.progress import LiveTable
from orchestrate.observe.summary import closing_lines, failure_lines, outcome_counts, plural
from orchestrate.run.events import Event, EventType

NAMES = [f"vendor_invoice_check_{i:02d}" for i in range(64)]
MODEL = "claude-3-5-haiku-20241022"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ev(kind: EventType, agent: str | None = None, **data: Any) -> Event:
    return Event(kind, "w1", agent, data, workflow_name="invoice_batch")


def busy_table(clock: Clock) -> LiveTable:
    """64 agents: 36 completed, 4 failed, 9 running, 1 retrying after a 429, 14 pending."""
    table = LiveTable(console=None, clock=clock)
    table(
        ev(
            EventType.WORKFLOW_STARTED,
            name="invoice_batch",
            cost_budget=5.0,
            agents=[{"name": n, "module": "Finance", "model": MODEL} for n in NAMES],
        )
    )
    for i, name in enumerate(NAMES[:50]):
        table(ev(EventType.AGENT_STARTED, name, attempt=1, model=MODEL))
        if i < 40:
            failed = i % 10 == 0
            table(
                ev(
                    EventType.AGENT_FINISHED,
                    name,
                    status="failed" if failed else "completed",
                    cost=0.00002055,
                    tokens_used=12345,
                    execution_time=1.25,
                    error="simulated 502: upstream unavailable" if failed else None,
                )
            )
    table(ev(EventType.AGENT_RETRYING, NAMES[45], attempt=1, delay=4.0, error="simulated 429: slow down"))
    return table


def draw(table: LiveTable, width: int, height: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, height=height, color_system=None)
    console.print(table.render(width=width, height=height))
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_live_table_with_64_agents_fits_30_lines_keeping_running_rows_and_the_footer(width: int) -> None:
    text = draw(busy_table(Clock()), width, 30)
    lines = text.splitlines()
    assert len(lines) <= 29, text
    assert all(len(line) <= width for line in lines), text
    for name in NAMES[40:50]:  # every running or retrying agent is on screen, its name whole
        assert f"│ {name} " in text, name
    assert "retrying in 4s (429)" in text  # why it is retrying, and when it tries again
    assert re.search(r"\+ \d+ more: 36 completed", text), text  # finished work folded into a count
    footer = " ".join(text.split())
    assert "40/64 agents done: 36 completed, 4 failed, 9 running, 1 retrying, 14 pending" in footer
    assert "spent $0.000822 of $5.00" in footer


@pytest.mark.parametrize("width", [80, 120])
def test_live_table_never_cuts_a_number_or_a_name(width: int) -> None:
    text = draw(busy_table(Clock()), width, 200)
    assert "…" not in "".join(line for line in text.splitlines() if "502" not in line and "429" not in line)
    rows = [line for line in text.splitlines() if line.startswith("│ vendor")]
    assert len(rows) == 64
    for line in rows[1:10]:  # completed rows: whole tokens and cost
        assert "12,345" in line and "$0.000021" in line
    assert "failed (502)" in text  # the reason in brief, whatever the width
    if width >= 120:
        assert MODEL in text  # room enough: the model is shown whole, not as `claude-3-5…`
    else:
        assert "claude-3-5-haiku-2024…" not in text  # dropped as a column rather than cut
    wide = draw(busy_table(Clock()), 220, 200)
    assert "simulated 502: upstream unavailable" in wide and "simulated 429: slow down" in wide


def test_live_table_with_several_workflows_keeps_an_overall_line() -> None:
    clock = Clock()
    table = busy_table(clock)
    table(
        Event(
            EventType.WORKFLOW_STARTED,
            "w2",
            None,
            {"cost_budget": 1.0, "agents": [{"name": "welcome_pack", "module": "HR", "model": "gpt-4o-mini"}]},
            workflow_name="onboarding",
        )
    )
    text = draw(table, 100, 30)
    assert len(text.splitlines()) <= 29, text
    flat = " ".join(text.split())
    assert "all 2 workflows: 40/65 agents done" in flat
    assert "welcome_pack" in text and "onboarding [running]" in text


def test_amounts_are_never_zero_when_spent_and_plain_in_files() -> None:
    assert usd(0) == "$0.00"
    assert usd(0.00002055) == "$0.000021"
    assert usd(0.0123) == "$0.0123"
    assert usd(1e-9) != "$0.0000" and usd(1e-9).strip("$0.") == "1"
    assert plain_decimal(2.055e-05) == "0.00002055"
    assert plain_decimal(0.0) == "0" and plain_decimal(3) == "3" and plain_decimal(1.5) == "1.5"


def test_plural_and_outcome_counts() -> None:
    assert plural(1, "retry") == "1 retry" and plural(2, "retry") == "2 retries"
    assert plural(1, "agent") == "1 agent" and plural(0, "token") == "0 tokens"
    assert plural(1234, "token") == "1,234 tokens"
    assert (
        outcome_counts(["failed", "completed", "cancelled", "completed", "completed"])
        == "3 completed, 1 failed, 1 cancelled"
    )
    assert (
        outcome_counts(["budget_exceeded", "skipped", "waiting_approval"])
        == "1 budget exceeded, 1 skipped, 1 waiting approval"
    )
    assert outcome_counts(["some_new_status"]) == "1 some new status"


def _agent(name: str, status: str, error: str | None = None, attempts: int = 1) -> dict[str, Any]:
    return {"name": name, "status": status, "error": error, "metadata": {"attempts": attempts}}


DOC = {
    "name": "month_close",
    "status": "failed",
    "simulated": True,
    "total_cost": 0.00002055,
    "total_tokens": 1,
    "retries": 1,
    "duration_seconds": 2.5,
    "agents": [
        _agent("ledger", "completed"),
        _agent("bank", "failed", "simulated 502: upstream unavailable", attempts=4),
        _agent("fx", "budget_exceeded", "this call may cost up to $0.0135, $0.0093 left"),
        _agent("variance", "cancelled", "dependency 'bank' failed"),
        _agent("memo", "cancelled", "dependency 'bank' failed"),
        _agent("notes", "cancelled", "dependency 'bank' failed"),
        _agent("later", "skipped", "condition was false"),
    ],
}


def test_failure_lines_give_each_reason_and_name_a_cancelling_cause_once() -> None:
    lines = failure_lines(DOC)
    assert lines == [
        "  bank  failed: simulated 502: upstream unavailable (after 4 attempts)",
        "  fx  budget exceeded: this call may cost up to $0.0135, $0.0093 left",
        "  3 agents (variance, memo, notes)  cancelled: dependency 'bank' failed",
    ]


def test_closing_lines_count_by_outcome_and_put_the_run_folder_on_its_own_line() -> None:
    run_dir = "runs/a very long folder name/month_close-20261125T101010Z"
    lines = closing_lines(DOC, run_dir, "workflows/close.yaml")
    assert lines[0] == (
        "month_close: failed (simulated) - 1 completed, 1 failed, 1 budget exceeded, "
        "3 cancelled, 1 skipped; $0.000021, 1 token, 1 retry, 2.50s"
    )
    assert "why:" in lines
    assert f"run folder: {run_dir}" in lines
    quoted = "'runs/a very long folder name/month_close-20261125T101010Z'"
    assert f"  orchestrate show {quoted}" in lines
    assert f"  orchestrate run --resume {quoted}" in lines
    assert f"  orchestrate cost-report {quoted} --include-simulated" in lines


def test_a_completed_run_has_no_why_and_no_resume_hint() -> None:
    doc = {**DOC, "status": "completed", "simulated": False, "retries": 2, "agents": [_agent("ledger", "completed")]}
    lines = closing_lines(doc, "runs/x", "w.yaml")
    assert "why:" not in lines and not any("--resume" in line for line in lines)
    assert "2 retries" in lines[0] and "1 completed" in lines[0]


def test_in_an_80_column_terminal_the_first_line_breaks_after_the_counts_not_inside_an_amount() -> None:
    lines = closing_lines(DOC, "runs/x", "workflows/close.yaml", width=80)
    # The counts are longer than 80 too: broken between words, continued under an indent.
    assert lines[:2] == [
        "month_close: failed (simulated) - 1 completed, 1 failed, 1 budget exceeded, 3",
        "  cancelled, 1 skipped;",
    ]
    assert lines[2] == "  $0.000021, 1 token, 1 retry, 2.50s"
    assert all(len(line) <= 80 for line in lines[:3])
    assert closing_lines(DOC, "runs/x", width=200)[0].endswith("skipped; $0.000021, 1 token, 1 retry, 2.50s")
