"""Showing a run as it goes: a live rich table in a terminal, plain lines everywhere else.

Both are event sinks. They keep their own small state, updated by events, and
the table is redrawn from that state by rich's refresh thread at a steady
rate (never once per event), so a burst of events costs nothing to draw and
the screen does not flicker.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from orchestrate.money.amounts import usd
from orchestrate.observe.live_layout import LiveLayout
from orchestrate.observe.pacing import Pacing, paced_line
from orchestrate.observe.summary import outcome_counts, plural
from orchestrate.observe.tables import Column, build_table
from orchestrate.printable import printable
from orchestrate.run.events import Event, EventType

__all__ = ["LiveTable", "PlainLog", "RunState", "batch_line", "quiet_control_echo"]


def quiet_control_echo() -> Callable[[], None]:
    """Stop the terminal echoing ``^C`` while a live display is drawn; returns what puts it back.

    A display as wide as the terminal leaves the cursor after its last column, so an echoed
    ``^C`` wraps onto a new line: the next redraw then starts a line low and leaves the
    display's top line behind above the message (seen in tmux at 80 columns). Nothing is
    done when standard input is not a terminal, or the platform has no termios.
    """
    try:
        import termios
    except ImportError:
        return lambda: None
    try:
        if not sys.stdin.isatty():
            return lambda: None
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
        quiet = list(before)
        quiet[3] &= ~termios.ECHOCTL
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (AttributeError, ValueError, OSError, termios.error):  # no real stdin, or not ours to change
        return lambda: None

    def restore() -> None:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, before)
        except (OSError, termios.error):
            pass  # the terminal went away

    return restore


_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "rate_limited": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "red",
    "budget_exceeded": "bold magenta",
    "skipped": "dim green",
    "waiting_approval": "bold yellow",
    "rejected": "bold red",
}


@dataclass
class AgentRow:
    name: str
    module: str = ""
    model: str = ""
    status: str = "pending"
    attempts: int = 0
    tokens: int = 0
    cost: float = 0.0
    waited: float = 0.0
    started: float | None = None  # monotonic
    elapsed: float | None = None  # set when finished
    error: str | None = None
    retry_at: float | None = None  # monotonic moment of the next attempt, while retrying
    expect: str | None = None  # its expectations once scored, when some did not pass
    expect_brief: str = ""  # ``1 failed``, for the status cell
    items: int | None = None  # a foreach agent's item count, once its fan-out began
    items_done: int = 0
    items_failed: int = 0
    items_retrying: int = 0  # items in flight waiting to try again

    def seconds(self, now: float) -> float:
        if self.elapsed is not None:
            return self.elapsed
        return now - self.started if self.started is not None else 0.0


# Statuses during which an agent has not finished; every other status (new ones too) is an end.
_UNFINISHED = frozenset({"pending", "running", "retrying", "rate_limited", "waiting_approval"})
_ACTIVE = frozenset({"running", "retrying", "rate_limited", "waiting_approval"})


@dataclass
class WorkflowState:
    name: str
    budget: float | None = None
    status: str = "running"
    rows: dict[str, AgentRow] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # open provider batches by id
    pacing: Pacing = field(default_factory=Pacing)  # limits its calls wait on, time lost (wall-clock)
    expect: str | None = None  # the workflow's own expectations (on its outputs), once scored

    @property
    def spent(self) -> float:
        return sum(row.cost for row in self.rows.values())

    @property
    def waited(self) -> float:
        """Seconds the run lost waiting on rate limits, wall-clock (not summed over calls)."""
        return self.pacing.waited

    def counts(self) -> tuple[int, int]:
        done = sum(1 for r in self.rows.values() if r.status not in _UNFINISHED)
        return done, len(self.rows)


class RunState:
    """What the display needs, folded from events: a row per agent, grouped by workflow."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.workflows: dict[str, WorkflowState] = {}
        self.clock = clock

    def apply(self, event: Event) -> None:
        wid = event.workflow_id or ""
        data = event.data
        if event.type is EventType.WORKFLOW_STARTED:
            started = WorkflowState(
                event.workflow_name or data.get("name", wid), data.get("cost_budget"), started=self.clock()
            )
            for spec in data.get("agents", []):
                started.rows[spec["name"]] = AgentRow(spec["name"], spec.get("module", ""), spec.get("model") or "")
            self.workflows[wid] = started
            return
        state = self.workflows.get(wid)
        if state is None:
            return
        if event.type is EventType.WORKFLOW_FINISHED:
            state.status = data.get("status", "finished")
            state.finished = self.clock()
            state.pacing.clear()
            return
        if state.pacing.apply(event) and event.type is EventType.RATE_LIMIT_WAITING:
            return
        if event.type in (EventType.BATCH_SUBMITTED, EventType.BATCH_STATUS):
            state.batches[data["batch_id"]] = data
            return
        if event.type is EventType.BATCH_FINISHED:
            state.batches.pop(str(data.get("batch_id")), None)
            return
        if event.type is EventType.EXPECTATIONS_CHECKED:
            line = checked_line(data)
            if event.agent is None:
                state.expect = line
            elif event.agent in state.rows:
                scored = state.rows[event.agent]
                scored.expect = line if int(data.get("failed") or 0) + int(data.get("errors") or 0) else None
                scored.expect_brief = _not_passed(data)
            return
        row = state.rows.get(event.agent or "")
        if row is None:
            row = state.rows[event.agent or "?"] = AgentRow(event.agent or "?")
        if row.items is not None and _item_event(row, event):
            return
        if event.type is EventType.AGENT_STARTED:
            row.status, row.attempts = "running", data.get("attempt", row.attempts + 1)
            row.model = data.get("model") or row.model
            row.retry_at = None
            if row.started is None:
                row.started = self.clock()
        elif event.type is EventType.AGENT_RATE_LIMITED:
            row.waited += float(data.get("waited", 0.0))
        elif event.type is EventType.AGENT_FALLBACK:  # the live table shows the model that serves
            row.model = f"{data.get('to_model')} (fallback: {data.get('reason')})"
        elif event.type is EventType.AGENT_RETRYING:
            row.status, row.error = "retrying", data.get("error")
            row.retry_at = self.clock() + float(data.get("delay") or 0.0)
        elif event.type is EventType.LLM_CALL:
            row.tokens += int(data.get("input_tokens", 0)) + int(data.get("output_tokens", 0))
            row.cost += float(data.get("cost", 0.0))
        elif event.type is EventType.ITEMS_STARTED:
            row.items, row.items_done, row.items_failed, row.items_retrying = int(data.get("total") or 0), 0, 0, 0
            row.status = "running"
            if row.started is None:
                row.started = self.clock()
        elif event.type is EventType.AGENT_FINISHED:
            state.pacing.finished(row.name)
            row.status = data.get("status", row.status)
            row.error = data.get("error")
            row.retry_at = None
            row.cost = float(data.get("cost", row.cost))
            row.tokens = int(data.get("tokens_used", row.tokens))
            row.elapsed = float(data.get("execution_time") or row.seconds(self.clock()))
        elif data.get("status"):  # an event type added later that moves the agent (approvals, ...)
            row.status = str(data["status"])


def _item_event(row: AgentRow, event: Event) -> bool:
    """Fold an event of a fanning-out agent's items into its row; False when it is not one.

    Every item's attempts are the agent's events: a retry of one item does not make the agent
    `retrying` (its other items run on), it counts among the items waiting to try again.
    """
    kind, data = event.type, event.data
    if kind is EventType.ITEM_FINISHED:
        row.items_done, row.items_failed = int(data.get("done") or 0), int(data.get("failed") or 0)
        row.items_retrying = int(data.get("retrying") or 0)
        return True
    if kind is EventType.AGENT_RETRYING:
        row.items_retrying += 1
        row.error = data.get("error")
        return True
    if kind is EventType.AGENT_STARTED:
        attempt = int(data.get("attempt") or 1)
        if attempt > 1:
            row.items_retrying = max(0, row.items_retrying - 1)
            if not row.items_retrying:
                row.error = None
        row.attempts = max(row.attempts, attempt)
        row.model = data.get("model") or row.model
        return True
    return False


def items_progress(done: int, total: int, failed: int = 0, retrying: int = 0) -> str:
    """``7/12 items, 1 failed, 1 retrying``: a fan-out as it goes."""
    text = f"{done:,}/{total:,} items"
    if failed:
        text += f", {failed:,} failed"
    if retrying:
        text += f", {retrying:,} retrying"
    return text


# Which rows stay on screen when they do not all fit: the active ones, then problems, then
# what is still to come; finished work folds into a count first.
_KEEP_ORDER = {
    "running": 0,
    "retrying": 0,
    "rate_limited": 0,
    "waiting_approval": 0,
    "failed": 1,
    "budget_exceeded": 1,
    "rejected": 1,
    "pending": 2,
    "cancelled": 3,
}
_COLUMNS = (
    Column("agent"),
    Column("status"),
    Column("module", drop=5),
    Column("model", drop=2),
    Column("tries", "right", "number", drop=4),
    Column("tokens", "right", "number"),
    Column("cost", "right", "number"),
    Column("time", "right", "number", drop=3),
    Column("why", kind="text", drop=1),
)


class LiveTable:
    """The live table: a row per agent (status, module, model, attempts, tokens, cost, time, why).

    Use as an event sink; `start()` and `stop()` bracket the run. `render()`
    builds the current picture, so tests can print it into a captured console.
    The picture always fits the terminal: columns of least value are dropped
    when it is narrow, and when there are more agents than lines, finished
    agents fold into a count so that running ones and the footer stay visible.
    """

    def __init__(
        self, console: Any, *, refresh_per_second: float = 4.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.console = console
        self.clock = clock
        self.state = RunState(clock)
        self.refresh_per_second = refresh_per_second
        self._live: Any = None
        self._echo: Callable[[], None] = lambda: None
        self.layout = LiveLayout(_COLUMNS)  # one column layout from frame to frame

    def __call__(self, event: Event) -> None:
        self.state.apply(event)
        if event.type is EventType.WORKFLOW_STARTED:  # every name known at the start: reserved at once
            self.layout.see(
                [self._cells(row, self.clock()) for s in self.state.workflows.values() for row in s.rows.values()]
            )

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(
            get_renderable=self.render,
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._echo = quiet_control_echo()
        self._live.start()

    def stop(self) -> None:
        """Draw the last frame and give the terminal back (cursor shown), whatever happens."""
        live, self._live = self._live, None
        if live is None:
            return
        try:
            live.refresh()
        finally:
            live.stop()
            self._echo()
            if self.console is not None and getattr(self.console, "is_terminal", False):
                self.console.show_cursor(True)

    def render(self, *, width: int | None = None, height: int | None = None) -> Any:
        """The current picture, fitting `width` x `height` (default: the console's size)."""
        from rich.console import Group
        from rich.text import Text

        if self.console is not None:
            size = self.console.size
            width = width if width is not None else size.width
            height = height if height is not None else size.height
        now = self.clock()
        states = list(self.state.workflows.values())
        titles = [f"{state.name} [{state.status}]" for state in states]
        footers = [self._footer(state, now) for state in states]  # open batches on lines of their own
        total_line = self._total_line(states) if len(states) > 1 else None
        # Lines each workflow takes besides its rows: title, three header lines, bottom border, footer.
        fixed = [
            _lines(title, width) + 4 + sum(_lines(line, width) for line in footer.split("\n"))
            for title, footer in zip(titles, footers)
        ]
        spare = None if height is None else height - 1 - sum(fixed) - _lines(total_line, width)
        if spare is not None and width is not None:  # rows whose names break take more than a line
            spare //= self.layout.lines_per_row([r.name for s in states for r in s.rows.values()], width)
        budgets = _row_budgets([len(s.rows) for s in states], spare)
        parts: list[Any] = []
        for state, title, footer, budget in zip(states, titles, footers, budgets):
            shown, folded = _fold(list(state.rows.values()), budget)
            cells = [self._cells(row, now) for row in shown]
            heading = Text(title, style="bold")  # Text: no markup
            if width is None:  # no screen to fit: every column at its full width
                parts.append(build_table(_COLUMNS, cells, width=None, title=heading))
            else:
                parts.append(self.layout.table(cells, width=width, title=heading))
            if folded:
                parts.append(Text(f"  + {len(folded)} more: {outcome_counts([r.status for r in folded])}", style="dim"))
            parts.append(Text(footer))
        if total_line:
            parts.append(Text(total_line, style="bold"))
        return Group(*parts)

    @staticmethod
    def _footer(state: WorkflowState, now: float) -> str:
        done, total = state.counts()
        spent = usd(state.spent)
        budget_text = f"{spent} of ${state.budget:.2f}" if state.budget else spent
        elapsed = (state.finished or now) - state.started
        footer = (
            f"{done}/{total} agents done: {outcome_counts([r.status for r in state.rows.values()])}"
            f" | spent {budget_text} | rate-limit wait {state.waited:.1f}s | {elapsed:.1f}s elapsed"
        )
        lines = [footer, *state.pacing.lines(), *(batch_line(batch) for batch in state.batches.values())]
        if state.expect:
            lines.append(f"outputs: {state.expect}")
        return "\n".join(lines)

    @staticmethod
    def _total_line(states: list[WorkflowState]) -> str:
        every = [r for s in states for r in s.rows.values()]
        done = sum(1 for r in every if r.status not in _UNFINISHED)
        return (
            f"all {len(states)} workflows: {done}/{len(every)} agents done: "
            f"{outcome_counts([r.status for r in every])} | spent {usd(sum(s.spent for s in states))}"
        )

    def _cells(self, row: AgentRow, now: float) -> list[Any]:
        from rich.spinner import Spinner
        from rich.text import Text

        style = _STYLE.get(row.status, "")
        label = row.status.replace("_", " ")
        if row.items is not None and row.status == "running":
            label = items_progress(row.items_done, row.items, row.items_failed, row.items_retrying)
        elif row.status == "retrying" and row.retry_at is not None and row.retry_at > now:
            label = f"retrying in {row.retry_at - now:.0f}s"
        brief = _brief(row.error) if row.error and row.status in ("retrying", "failed") else ""
        if row.expect_brief:
            brief, style = f"expect: {row.expect_brief}", "yellow"
        if brief:
            label += f" ({brief})"  # the why column may be dropped on a narrow screen
        status: Any = Text(label, style=style)
        if row.status in _ACTIVE:
            status = Spinner("dots", text=Text(label, style=style))
        why = _short(row.error) if row.error and row.status != "completed" else ""
        if row.expect and row.status == "completed":
            why = row.expect
        return [
            row.name,
            status,
            row.module,
            row.model,
            str(row.attempts or ""),
            f"{row.tokens:,}" if row.tokens else "",
            usd(row.cost) if row.cost else "",
            f"{row.seconds(now):.1f}s" if row.started is not None else "",
            why,
        ]


def checked_line(data: dict[str, Any]) -> str:
    """An ``expectations_checked`` event as a line: ``expectations: 2/3 passed, 1 failed; equals
    output.gl_account: expected '6100', got '6200'`` (the first that did not pass)."""
    from orchestrate.run.evaluation import closing_line
    from orchestrate.run.protection import shown, shown_reason

    line = closing_line(data)
    bad = [o for o in data.get("outcomes") or () if o.get("status") in ("fail", "error")]
    if bad:
        first = bad[0]
        detail = shown_reason(first.get("reason")) or first.get("status")
        if first.get("status") == "fail" and first.get("kind") != "rubric":
            detail = f"expected {shown(first.get('expected'), 40)}, got {shown(first.get('got'), 40)}"
        elif first.get("kind") == "rubric" and first.get("score") is not None:
            detail = f"score {first['score']:g}: {shown_reason(first.get('reason'))}".rstrip(": ")
        line += f"; {first.get('name')}: {detail}"
    return line


def _not_passed(data: dict[str, Any]) -> str:
    failed, errors = int(data.get("failed") or 0), int(data.get("errors") or 0)
    parts = [f"{failed} failed"] if failed else []
    parts += [f"{errors} error" + ("s" if errors != 1 else "")] if errors else []
    return ", ".join(parts)


def batch_line(data: dict[str, Any]) -> str:
    """``batch batch_abc (openai/gpt-4o-mini) in_progress: 412/5,000 done, 3 failed``."""
    line = (
        f"batch {data.get('batch_id')} ({data.get('provider')}/{data.get('model')}) "
        f"{data.get('status')}: {int(data.get('done') or 0):,}/{int(data.get('total') or 0):,} done"
    )
    if data.get("failed"):
        line += f", {int(data['failed']):,} failed"
    if data.get("reason"):
        line += f" ({data['reason']})"
    return line


def _lines(text: str | None, width: int | None) -> int:
    """How many screen lines `text` takes at `width` columns."""
    if not text:
        return 0
    return 1 if width is None or width <= 0 else max(1, -(-len(text) // width))


def _row_budgets(sizes: list[int], spare: int | None) -> list[int | None]:
    """How many rows each workflow's table may show in `spare` lines (None: all of them)."""
    if spare is None or sum(sizes) <= spare:
        return [None] * len(sizes)
    spare -= len(sizes)  # each folding table needs a line for its count
    budgets = [max(1, spare // max(1, len(sizes)))] * len(sizes)
    # What a small workflow does not use goes to the others.
    left = max(0, spare - sum(min(b, n) for b, n in zip(budgets, sizes)))
    for i, n in enumerate(sizes):
        extra = min(left, max(0, n - budgets[i]))
        budgets[i] += extra
        left -= extra
    return list(budgets)


def _fold(rows: list[AgentRow], budget: int | None) -> tuple[list[AgentRow], list[AgentRow]]:
    """The rows to show (in their order) and the ones folded into a count."""
    if budget is None or len(rows) <= budget:
        return rows, []
    ranked = sorted(range(len(rows)), key=lambda i: (_KEEP_ORDER.get(rows[i].status, 4), i))
    keep = set(ranked[:budget])
    return ([r for i, r in enumerate(rows) if i in keep], [r for i, r in enumerate(rows) if i not in keep])


_HTTP_STATUS = re.compile(r"\b([45]\d\d)\b")


def _brief(error: str) -> str:
    """A reason in a word or two, for the status cell: `429`, `503`, `timeout`, `invalid output`."""
    lowered = error.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "output_schema" in lowered or "not valid json" in lowered:
        return "invalid output"
    found = _HTTP_STATUS.search(error)
    if found:
        return found.group(1)
    if "connect" in lowered:
        return "connection"
    if "tool" in lowered:
        return "tool error"
    return ""


def _short(error: str) -> str:
    """The first line of a reason; the full text is in the closing summary and `show`."""
    return error.strip().splitlines()[0] if error.strip() else ""


def _stamp(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_PACED_EVERY = 10.0  # seconds between two plain lines of one queue


class PlainLog:
    """One plain, timestamped line per state change: for CI logs and pipes (no escape codes)."""

    def __init__(self, stream: IO[str], *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        # (workflow, limit) -> when its queue was last said, and how long it was then
        self._paced: dict[tuple[str | None, str], tuple[float, int]] = {}

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        line = self._pacing(event) if event.type is EventType.RATE_LIMIT_WAITING else self.format(event)
        if event.type is EventType.AGENT_RATE_LIMITED and not event.data.get("queued"):
            self._paced.pop((event.workflow_id, str(event.data.get("limit"))), None)  # the queue is empty
        if line is not None:
            self.stream.write(f"{_stamp(event.timestamp)} {printable(line, one_line=True)}\n")
            self.stream.flush()

    def _pacing(self, event: Event) -> str | None:
        """``paced by openai 60/min (rate_limits.openai): 27 calls queued``: when calls of a
        workflow start to queue on a limit, then when the queue has doubled or 10 s passed."""
        key = (event.workflow_id, str(event.data.get("limit")))
        queued = int(event.data.get("queued") or 0)
        said = self._paced.get(key)
        if said is not None and event.timestamp - said[0] < _PACED_EVERY and queued < 2 * said[1]:
            return None
        self._paced[key] = (event.timestamp, queued)
        return f"{event.workflow_name} {paced_line(str(event.data.get('text')), queued)}"

    @staticmethod
    def format(event: Event) -> str | None:
        d = event.data
        who = f"{event.workflow_name}/{event.agent}" if event.agent else f"{event.workflow_name}"
        kind = event.type
        if kind is EventType.WORKFLOW_STARTED:
            return (
                f"{who} started: {len(d.get('agents', []))} agents, budget {_budget(float(d.get('cost_budget') or 0))}, "
                f"max {d.get('max_parallel_agents')} in parallel"
            )
        if kind is EventType.AGENT_STARTED:
            if d.get("function"):
                return f"{who} started (attempt {d.get('attempt')}, code step {d.get('function')})"
            return f"{who} started (attempt {d.get('attempt')}, {d.get('provider')}/{d.get('model')})"
        if kind is EventType.APPROVAL_REQUESTED:
            return f"{who} waits for approval: {d.get('message')}"
        if kind is EventType.APPROVAL_DECIDED:
            note = f" ({d.get('note')})" if d.get("note") else ""
            return f"{who} {d.get('decision')} by {d.get('by')}{note}"
        if kind is EventType.AGENT_RATE_LIMITED:
            line = f"{who} rate limited: waited {d.get('waited', 0):.2f}s for {d.get('text') or d.get('provider')}"
            return line + (f", {plural(int(d['queued']), 'call')} still queued" if d.get("queued") else "")
        if kind is EventType.AGENT_FALLBACK:
            return (
                f"{who} fell back from {d.get('from_model')} to {d.get('to_provider')}/{d.get('to_model')} "
                f"({d.get('reason')}): {d.get('error')}"
            )
        if kind is EventType.ITEMS_STARTED:
            return f"{who} fans out over {plural(int(d.get('total') or 0), 'item')}"
        if kind is EventType.ITEM_FINISHED:
            return _item_line(who, d)
        if kind is EventType.AGENT_RETRYING:
            return f"{who} retrying in {d.get('delay', 0):.2f}s after attempt {d.get('attempt')}: {d.get('error')}"
        if kind is EventType.AGENT_BUDGET_REFUSED:
            return (
                f"{who} budget refused: call may cost {usd(d.get('requested', 0))}, "
                f"{d.get('scope')} limit {usd(d.get('limit', 0))}, committed {usd(d.get('committed', 0))}"
            )
        if kind is EventType.USAGE_ANOMALY:
            return f"{who} usage anomaly: {d.get('anomaly')}"
        if kind is EventType.AGENT_FINISHED and d.get("status") in ("skipped", "waiting_approval"):
            return f"{who} {d.get('status')}" + (f": {d.get('skipped')}" if d.get("skipped") else "")
        if kind is EventType.AGENT_FINISHED:
            tail = f": {d.get('error')}" if d.get("error") and d.get("status") != "completed" else ""
            return (
                f"{who} {d.get('status')} in {d.get('execution_time', 0):.2f}s, "
                f"{d.get('tokens_used', 0)} tokens, {usd(d.get('cost', 0))}{tail}"
            )
        if kind is EventType.LLM_CALL:  # said once a run: the structured-output fallback
            return f"{who} note: {d['notice']}" if d.get("notice") else None
        if kind is EventType.BATCH_SUBMITTED:
            mine, total = int(d.get("requests") or 0), int(d.get("total") or 0)
            share = f"{total:,} requests" if mine == total else f"{mine:,} of its {total:,} requests are this run's"
            return f"{who} batch {d.get('batch_id')} ({d.get('provider')}/{d.get('model')}) submitted: {share}"
        if kind is EventType.BATCH_STATUS:
            return f"{who} {batch_line(d)}"
        if kind is EventType.BATCH_FINISHED:
            return f"{who} {batch_line(d)}; results collected"
        if kind is EventType.EXPECTATIONS_CHECKED:
            return f"{who} {checked_line(d)}"
        if kind is EventType.WORKFLOW_FINISHED:
            return (
                f"{who} finished: {d.get('status')}, {usd(d.get('total_cost', 0))}, "
                f"{d.get('total_tokens', 0)} tokens, {d.get('duration') or 0:.2f}s"
            )
        return None


def _item_line(who: str, d: dict[str, Any]) -> str | None:
    """``month_close/check_line 7/12 items, 1 retrying``: every item of a small fan-out, about
    every tenth of a large one, and every item that did not complete, with its reason."""
    done, total = int(d.get("done") or 0), int(d.get("total") or 0)
    progress = items_progress(done, total, int(d.get("failed") or 0), int(d.get("retrying") or 0))
    status = d.get("status")
    if status != "completed":
        why = f": {d.get('error')}" if d.get("error") else ""
        return f"{who} item {d.get('index')} {status}{why}; {progress}"
    step = 1 if total <= 20 else -(-total // 10)
    if done % step and done != total:
        return None
    return f"{who} {progress}"


def _budget(amount: float) -> str:
    """A budget in cents (``$0.50``), or its digits when it is below a cent (``$0.000100``, never ``$0.00``)."""
    return f"${amount:.2f}" if amount == 0 or amount >= 0.01 else usd(amount)
