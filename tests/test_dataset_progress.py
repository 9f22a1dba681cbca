"""The volume display of a batch: plain lines for CI, a rich panel for a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from orchestrate.observe.dataset_progress import LiveDataset, PlainDatasetLog
from orchestrate.run.events import Event, EventType
from orchestrate.workflow.dataset import BadRow, Row


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finished(status: str, error: str | None = None) -> Any:
    return SimpleNamespace(error=error, agents=[])


def test_plain_lines_every_interval_and_one_per_failed_row() -> None:
    clock, out = Clock(), io.StringIO()
    log = PlainDatasetLog(
        "invoice_review", out, every=10.0, total=4, budget=2.0, spent=lambda: 0.25, in_flight=lambda: 3, clock=clock
    )
    log.start()
    log.row_finished(Row(0, 1, "INV-1", {}), finished("completed"), [], "completed")
    assert len(out.getvalue().splitlines()) == 1  # nothing new before the interval
    log.row_finished(Row(1, 2, "INV-2", {}), finished("failed", "payment_decision: HTTP 500"), [], "failed")
    log(Event(EventType.AGENT_RATE_LIMITED, "w", "a", {"waited": 1.5}))
    clock.now += 10
    log.row_invalid(BadRow(2, 3, 1, None, "input 'amount': 'lots' is not a valid number"))
    lines = out.getvalue().splitlines()
    assert "\x1b[" not in out.getvalue()
    assert lines[0].endswith("invoice_review: 4 rows to run, dataset budget $2.0000")
    assert lines[1].endswith("invoice_review row 'INV-2' failed: payment_decision: HTTP 500")
    assert lines[2].endswith("invoice_review row 'line 3' invalid: input 'amount': 'lots' is not a valid number")
    assert lines[3].endswith(
        "invoice_review: 3/4 rows (1 completed, 1 failed, 0 refused, 1 invalid), 0.3 rows/s, "
        "ETA 0m03s, $0.2500 of $2.0000, 3 calls in flight, 1.5s rate-limit waits"
    )


def test_rows_refused_by_the_batch_budget_take_one_line_not_one_each() -> None:
    out = io.StringIO()
    log = PlainDatasetLog("w", out, total=50, budget=1.0, spent=lambda: 1.0, in_flight=lambda: 0, clock=Clock())
    for i in range(50):
        log.row_refused(Row(i, i + 1, f"k{i}", {}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "further rows are refused without a line each" in lines[0]
    assert log.refused == 50


def test_live_panel_shows_progress_spend_and_recent_failures() -> None:
    clock = Clock()
    live = LiveDataset(
        "invoice_review",
        Console(file=io.StringIO(), width=100),
        total=10,
        budget=5.0,
        spent=lambda: 1.25,
        in_flight=lambda: 7,
        clock=clock,
    )
    for i in range(4):
        live.row_finished(Row(i, i + 1, f"INV-{i}", {}), finished("completed"), [], "completed")
    live.row_finished(Row(4, 5, "INV-4", {}), finished("failed", "fraud_screen: timed out"), [], "failed")
    clock.now += 5
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(live.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "5/10" in text and "1.0/s" in text and "ETA 0m05s" in text
    assert "4 completed" in text and "1 failed" in text
    assert "$1.2500 of $5.0000" in text and "7 calls" in text
    assert "INV-4: fraud_screen: timed out" in text


def test_rows_cancelled_by_an_interrupt_are_counted_as_cancelled_not_failed() -> None:
    out = io.StringIO()
    log = PlainDatasetLog(
        "w", out, every=0.0, total=3, budget=None, spent=lambda: 0.0, in_flight=lambda: 1, clock=Clock()
    )
    log.row_finished(Row(0, 1, "a", {}), finished("completed"), [], "completed")
    log.row_finished(Row(1, 2, "b", {}), finished("cancelled", "interrupted by SIGINT"), [], "cancelled")
    assert (log.failed, log.cancelled) == (0, 1)
    assert "2/3 rows (1 completed, 0 failed, 0 refused, 0 invalid, 1 cancelled)" in log.line()
    assert "1 call in flight" in log.line()
