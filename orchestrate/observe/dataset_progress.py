"""Watching a dataset run: made for volume, not a row per agent.

`DatasetState` folds what a display needs: rows done out of the total with
their rate and an estimate of the time left, rows failed and refused, spend
against the dataset budget, calls in flight, time lost waiting on rate limits,
and the last few failures. It is both an event sink (rate-limit waits) and a
row sink (outcomes), and costs O(1) per event.

`PlainDatasetLog` prints a plain line every `every` seconds and one per row that
did not complete: for CI logs and pipes. `LiveDataset` redraws a small rich
panel from the state four times a second, in a terminal.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from orchestrate.observe.pacing import Pacing
from orchestrate.observe.summary import plural
from orchestrate.run.events import Event, EventType, try_of

if TYPE_CHECKING:
    from orchestrate.money.costs import CallRecord
    from orchestrate.workflow.dataset import BadRow, Row
    from orchestrate.workflow.models import Workflow

__all__ = ["DatasetState", "LiveDataset", "PlainDatasetLog"]


class DatasetState:
    """The numbers of a dataset run in progress.

    Args:
        name: The workflow's name.
        total: Rows this session will see (None when unknown).
        budget: The dataset budget, or None.
        spent: Returns what the dataset run has spent so far.
        in_flight: Returns the calls in flight now.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        name: str,
        *,
        total: int | None,
        budget: float | None,
        spent: Callable[[], float],
        in_flight: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.total = total
        self.budget = budget
        self.spent = spent
        self.in_flight = in_flight
        self.clock = clock
        self.started = clock()
        self.done = self.completed = self.failed = self.refused = self.invalid = self.cancelled = 0
        self.pacing = Pacing()  # the limits calls wait on now, and the time lost (wall-clock)
        self.items = self.items_done = self.items_failed = 0  # the rows' foreach items, all rows together
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=5)
        self.batches: dict[str, dict[str, Any]] = {}  # open provider batches (--provider-batch)
        self.checked = self.missed = 0  # agents whose expectations were scored; of them, those that missed one
        self._keys: dict[str, str] = {}  # a row's run id -> its key, while it runs

    # The engine calls this sink only for these (see OrchestrationEngine.add_sink).
    event_types = Pacing.event_types | {
        EventType.ITEMS_STARTED,
        EventType.ITEM_FINISHED,
        EventType.BATCH_SUBMITTED,
        EventType.BATCH_STATUS,
        EventType.BATCH_FINISHED,
        EventType.ROW_STARTED,
        EventType.EXPECTATIONS_CHECKED,
    }

    @property
    def waited(self) -> float:
        """Seconds lost waiting on rate limits, wall-clock: calls that wait together count once."""
        return self.pacing.waited

    def __call__(self, event: Event) -> None:
        if self.pacing.apply(event):
            pass
        elif event.type is EventType.ITEMS_STARTED:
            self.items += int(event.data.get("total") or 0)
        elif event.type is EventType.ITEM_FINISHED:
            self.items_done += 1
            if event.data.get("status") != "completed":
                self.items_failed += 1
        elif event.type is EventType.ROW_STARTED:
            if event.workflow_id is not None:
                self._keys[event.workflow_id] = str(event.data.get("key"))
        elif event.type is EventType.EXPECTATIONS_CHECKED:
            self.checked += 1
            d = event.data
            if int(d.get("failed") or 0) + int(d.get("errors") or 0):
                self.missed += 1
                from orchestrate.observe.progress import checked_line

                run = (event.workflow_id or "").rpartition(".")[0] or event.workflow_id or ""
                key = self._keys.get(event.workflow_id or "") or self._keys.get(run) or "?"
                attempt = try_of(event.workflow_id)  # --repeat: a later try's miss says which try
                which = f"(try {attempt}) " if attempt > 1 else ""
                self.on_miss(key, f"{which}{event.agent or 'outputs'} {checked_line(d)}")
        elif event.type in (EventType.BATCH_SUBMITTED, EventType.BATCH_STATUS):
            self.batches[str(event.data.get("batch_id"))] = event.data
            self.on_batch(event)
        elif event.type is EventType.BATCH_FINISHED:
            self.batches.pop(str(event.data.get("batch_id")), None)
            self.on_batch(event)

    def on_batch(self, event: Event) -> None:
        """Called for each provider batch event; displays override it."""

    def _outcome(self, key: str, status: str, error: str | None) -> None:
        self.done += 1
        if status == "completed":
            self.completed += 1
            return
        if status == "budget_exceeded":
            self.refused += 1
            if error and error.startswith("not started"):
                if self.refused == 1 or not self.recent or self.recent[-1][2] != error:
                    self.recent.append((key, status, error))
                    self.on_failure(key, status, error + " (further rows are refused without a line each)")
                return
        elif status == "invalid":
            self.invalid += 1
        elif status == "cancelled":  # stopped by Ctrl-C or SIGTERM: not a failure of the row
            self.cancelled += 1
        else:
            self.failed += 1
        self.recent.append((key, status, error or status))
        self.on_failure(key, status, error or status)

    def on_failure(self, key: str, status: str, error: str) -> None:
        """Called for each row that did not complete; displays override it."""

    def on_miss(self, key: str, line: str) -> None:
        """Called as an agent of row `key` ends with an expectation that did not pass (`line`
        says which); displays override it."""
        self.recent.append((key, "expect", line))

    def row_finished(self, row: Row, workflow: Workflow, records: list[CallRecord], status: str) -> None:
        self._keys.pop(getattr(workflow, "id", ""), None)
        error = workflow.error
        if error is None and status != "completed":
            error = next(
                (
                    f"{a.name}: {a.result.error}"
                    for a in workflow.agents
                    if a.result is not None and a.result.error and a.status.value != "completed"
                ),
                None,
            )
        self._outcome(row.key, status, error)

    def row_invalid(self, bad: BadRow) -> None:
        self._outcome(bad.key or f"line {bad.line}", "invalid", bad.reason)

    def row_refused(self, row: Row, reason: str | None = None) -> None:
        self._outcome(row.key, "budget_exceeded", reason or "not started: the dataset budget is spent")

    def money(self) -> str:
        """Spend, and the dataset budget when there is one."""
        return _usd(self.spent()) + (f" of {_usd(self.budget)}" if self.budget is not None else "")

    def rate(self) -> float:
        """Rows a second so far."""
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far, or None when unknown."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def items_text(self) -> str:
        """``items 57/120, 1 failed``: the foreach items of the rows so far; empty when none fans out."""
        if not self.items:
            return ""
        return f"items {self.items_done:,}/{self.items:,}" + (
            f", {self.items_failed:,} failed" if self.items_failed else ""
        )

    def line(self) -> str:
        """The state in one plain line."""
        total = f"/{self.total}" if self.total is not None else ""
        eta = self.eta()
        spend = self.money()
        return (
            f"{self.name}: {self.done}{total} rows ({self.completed} completed, {self.failed} failed, "
            f"{self.refused} refused, {self.invalid} invalid"
            f"{f', {self.cancelled} cancelled' if self.cancelled else ''}), {self.rate():.1f} rows/s"
            f"{f', ETA {_duration(eta)}' if eta is not None else ''}, {spend}, "
            f"{plural(self.in_flight(), 'call')} in flight, {self.waited:.1f}s rate-limit waits"
            + (f"; {self.items_text()}" if self.items else "")
            + (f", expectations missed by {self.missed} of {self.checked} agents scored" if self.checked else "")
            + "".join(f"; {line}" for line in self.pacing.lines())
        )


def _with_bar(total: float, completed: float, label: Any) -> Any:
    """A bar and its figures on one line; the bar gives way first, the figures are never cut."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    row = Table.grid(padding=(0, 1))
    row.add_column(ratio=1, max_width=40)
    row.add_column(no_wrap=True)
    row.add_row(ProgressBar(total=total, completed=completed), label)
    return row


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 10 else f"${amount:.4f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _stamp() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class PlainDatasetLog(DatasetState):
    """A plain line every `every` seconds, and one per row that did not complete."""

    def __init__(self, name: str, stream: IO[str], *, every: float = 10.0, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.stream = stream
        self.every = every
        self.quiet = quiet
        self._next = self.started + every

    def _print(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(f"{_stamp()} {text}\n")
            self.stream.flush()

    def on_failure(self, key: str, status: str, error: str) -> None:
        self._print(f"{self.name} row {key!r} {status}: {error}")

    def on_miss(self, key: str, line: str) -> None:
        self._print(f"{self.name} row {key!r} {line}")

    def _outcome(self, key: str, status: str, error: str | None) -> None:
        super()._outcome(key, status, error)
        self.tick()

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if event.type is EventType.ROW_STARTED:
            self.tick()

    def on_batch(self, event: Event) -> None:
        from orchestrate.observe.progress import batch_line

        tail = "; results collected" if event.type is EventType.BATCH_FINISHED else ""
        self._print(f"{self.name} {batch_line(event.data)}{tail}")

    def tick(self) -> None:
        """Print the progress line when `every` seconds have passed since the last."""
        now = self.clock()
        if now >= self._next:
            self._next = now + self.every
            self._print(self.line())

    def start(self) -> None:
        self._print(
            f"{self.name}: {self.total if self.total is not None else 'unknown'} rows to run"
            + (f", dataset budget {_usd(self.budget)}" if self.budget is not None else "")
        )

    def stop(self) -> None:
        self._print(self.line())


class LiveDataset(DatasetState):
    """A rich panel for a terminal, redrawn from the state four times a second."""

    def __init__(self, name: str, console: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.console = console
        self._live: Any = None
        self._echo: Callable[[], None] = lambda: None

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", style="bold")
        grid.add_column()
        total = self.total or 0
        eta = self.eta()
        grid.add_row(
            "rows",
            _with_bar(
                max(total, 1),
                self.done,
                Text(
                    f"{self.done}/{total if self.total is not None else '?'}  {self.rate():.1f}/s"
                    + (f"  ETA {_duration(eta)}" if eta is not None else "")
                ),
            ),
        )
        grid.add_row(
            "outcomes",
            Text.assemble(
                (f"{self.completed} completed", "green"),
                "  ",
                (f"{self.failed} failed", "bold red"),
                "  ",
                (f"{self.refused} refused", "magenta"),
                "  ",
                (f"{self.invalid} invalid", "yellow"),
                (f"  {self.cancelled} cancelled" if self.cancelled else "", "dim"),
            ),
        )
        spent = self.spent()
        if self.budget:
            grid.add_row("spend", _with_bar(self.budget, min(spent, self.budget), Text(self.money())))
        else:
            grid.add_row("spend", Text(self.money()))
        grid.add_row("in flight", Text(f"{plural(self.in_flight(), 'call')}, {self.waited:.1f}s waited on rate limits"))
        if self.items:
            grid.add_row(
                "items", _with_bar(self.items, self.items_done, Text(self.items_text().removeprefix("items ")))
            )
        if self.checked:
            grid.add_row(
                Text("expect", style="yellow"),
                Text(f"{self.missed} of {self.checked} agents scored missed an expectation"),
            )
        for line in self.pacing.lines():
            grid.add_row(Text("paced", style="magenta"), Text(line.removeprefix("paced by ")))
        from orchestrate.observe.progress import batch_line

        for batch in self.batches.values():
            grid.add_row(Text("batch", style="cyan"), Text(batch_line(batch)[6:]))
        for key, status, error in self.recent:
            grid.add_row(Text(status, style="yellow" if status == "expect" else "red"), Text(f"{key}: {error}"[:160]))
        from rich.panel import Panel

        return Panel(grid, title=self.name, title_align="left")

    def start(self) -> None:
        from rich.live import Live

        from orchestrate.observe.progress import quiet_control_echo

        self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4, transient=False)
        self._echo = quiet_control_echo()
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._echo()
