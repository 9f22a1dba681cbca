"""Showing a run as it goes: a live rich table in a terminal, plain lines everywhere else.

Both are event sinks. They keep their own small state, updated by events, and
the table is redrawn from that state by rich's refresh thread at a steady
rate (never once per event), so a burst of events costs nothing to draw and
the screen does not flicker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from orchestrate.observe.events import Event, EventType

__all__ = ["LiveTable", "PlainLog", "RunState", "batch_line"]

_STYLE = {
    "pending": "dim", "running": "cyan", "retrying": "yellow", "rate_limited": "magenta",
    "completed": "green", "failed": "bold red", "cancelled": "red", "budget_exceeded": "bold magenta",
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
    started: float | None = None   # monotonic
    elapsed: float | None = None   # set when finished
    error: str | None = None

    def seconds(self, now: float) -> float:
        if self.elapsed is not None:
            return self.elapsed
        return now - self.started if self.started is not None else 0.0


@dataclass
class WorkflowState:
    name: str
    budget: float | None = None
    status: str = "running"
    rows: dict[str, AgentRow] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # open provider batches by id

    @property
    def spent(self) -> float:
        return sum(row.cost for row in self.rows.values())

    @property
    def waited(self) -> float:
        return sum(row.waited for row in self.rows.values())

    def counts(self) -> tuple[int, int]:
        done = sum(1 for r in self.rows.values()
                   if r.status in ("completed", "failed", "cancelled", "budget_exceeded"))
        return done, len(self.rows)


class RunState:
    """What the display needs, folded from events: a row per agent, grouped by workflow."""

    def __init__(self) -> None:
        self.workflows: dict[str, WorkflowState] = {}

    def apply(self, event: Event) -> None:
        wid = event.workflow_id or ""
        data = event.data
        if event.type is EventType.WORKFLOW_STARTED:
            started = WorkflowState(event.workflow_name or data.get("name", wid), data.get("cost_budget"))
            for spec in data.get("agents", []):
                started.rows[spec["name"]] = AgentRow(spec["name"], spec.get("module", ""),
                                                      spec.get("model") or "")
            self.workflows[wid] = started
            return
        state = self.workflows.get(wid)
        if state is None:
            return
        if event.type is EventType.WORKFLOW_FINISHED:
            state.status = data.get("status", "finished")
            state.finished = time.monotonic()
            return
        if event.type in (EventType.BATCH_SUBMITTED, EventType.BATCH_STATUS):
            state.batches[data["batch_id"]] = data
            return
        if event.type is EventType.BATCH_FINISHED:
            state.batches.pop(str(data.get("batch_id")), None)
            return
        row = state.rows.get(event.agent or "")
        if row is None:
            row = state.rows[event.agent or "?"] = AgentRow(event.agent or "?")
        if event.type is EventType.AGENT_STARTED:
            row.status, row.attempts = "running", data.get("attempt", row.attempts + 1)
            row.model = data.get("model") or row.model
            if row.started is None:
                row.started = time.monotonic()
        elif event.type is EventType.AGENT_RATE_LIMITED:
            row.waited += float(data.get("waited", 0.0))
        elif event.type is EventType.AGENT_RETRYING:
            row.status, row.error = "retrying", data.get("error")
        elif event.type is EventType.LLM_CALL:
            row.tokens += int(data.get("input_tokens", 0)) + int(data.get("output_tokens", 0))
            row.cost += float(data.get("cost", 0.0))
        elif event.type is EventType.AGENT_FINISHED:
            row.status = data.get("status", row.status)
            row.error = data.get("error")
            row.cost = float(data.get("cost", row.cost))
            row.tokens = int(data.get("tokens_used", row.tokens))
            row.elapsed = float(data.get("execution_time") or row.seconds(time.monotonic()))


class LiveTable:
    """The live table: a row per agent (status, module, model, attempts, tokens, cost, time).

    Use as an event sink; `start()` and `stop()` bracket the run. `render()`
    builds the current picture, so tests can print it into a captured console.
    """

    def __init__(self, console: Any, *, refresh_per_second: float = 4.0) -> None:
        self.console = console
        self.state = RunState()
        self.refresh_per_second = refresh_per_second
        self._live: Any = None

    def __call__(self, event: Event) -> None:
        self.state.apply(event)

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=self.refresh_per_second, transient=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        parts: list[Any] = []
        for state in self.state.workflows.values():
            done, total = state.counts()
            title = Text(f"{state.name} [{state.status}]", style="bold")  # Text: no markup parsing
            table = Table(title=title, title_justify="left", expand=False, show_edge=True)
            for column, justify in (("agent", "left"), ("status", "left"), ("module", "left"),
                                    ("model", "left"), ("tries", "right"), ("tokens", "right"),
                                    ("cost", "right"), ("time", "right")):
                table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
            for row in state.rows.values():
                style = _STYLE.get(row.status, "")
                status: Any = Text(row.status, style=style)
                if row.status in ("running", "retrying"):
                    status = Spinner("dots", text=Text(row.status, style=style))
                table.add_row(row.name, status, row.module, row.model, str(row.attempts or ""),
                              f"{row.tokens:,}" if row.tokens else "", _money(row.cost) if row.cost else "",
                              f"{row.seconds(now):.1f}s" if row.started is not None else "")
            budget = f"{_money(state.spent)} of ${state.budget:.2f}" if state.budget else _money(state.spent)
            elapsed = (state.finished or now) - state.started
            table.caption = (f"{done}/{total} agents done | spent {budget} | "
                             f"rate-limit wait {state.waited:.1f}s | {elapsed:.1f}s elapsed")

            table.caption_justify = "left"
            parts.append(table)
            parts.extend(Text(batch_line(batch), style="cyan", no_wrap=True, overflow="ellipsis")
                         for batch in state.batches.values())
        return Group(*parts)


def batch_line(data: dict[str, Any]) -> str:
    """``batch batch_abc (openai/gpt-4o-mini) in_progress: 412/5,000 done, 3 failed``."""
    line = (f"batch {data.get('batch_id')} ({data.get('provider')}/{data.get('model')}) "
            f"{data.get('status')}: {int(data.get('done') or 0):,}/{int(data.get('total') or 0):,} done")
    if data.get("failed"):
        line += f", {int(data['failed']):,} failed"
    if data.get("reason"):
        line += f" ({data['reason']})"
    return line


def _money(amount: float) -> str:
    """Dollars with enough places that a cheap call does not show as $0.0000."""
    if amount == 0:
        return "$0.00"
    return f"${amount:.4f}" if amount >= 0.01 else f"${amount:.6f}"


def _stamp(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class PlainLog:
    """One plain, timestamped line per state change: for CI logs and pipes (no escape codes)."""

    def __init__(self, stream: IO[str], *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        line = self.format(event)
        if line is not None:
            self.stream.write(f"{_stamp(event.timestamp)} {line}\n")
            self.stream.flush()

    @staticmethod
    def format(event: Event) -> str | None:
        d = event.data
        who = f"{event.workflow_name}/{event.agent}" if event.agent else f"{event.workflow_name}"
        kind = event.type
        if kind is EventType.WORKFLOW_STARTED:
            return (f"{who} started: {len(d.get('agents', []))} agents, budget ${d.get('cost_budget', 0):.2f}, "
                    f"max {d.get('max_parallel_agents')} in parallel")
        if kind is EventType.AGENT_STARTED:
            return f"{who} started (attempt {d.get('attempt')}, {d.get('provider')}/{d.get('model')})"
        if kind is EventType.AGENT_RATE_LIMITED:
            return f"{who} rate limited: waited {d.get('waited', 0):.2f}s for {d.get('provider')}"
        if kind is EventType.AGENT_RETRYING:
            return f"{who} retrying in {d.get('delay', 0):.2f}s after attempt {d.get('attempt')}: {d.get('error')}"
        if kind is EventType.AGENT_BUDGET_REFUSED:
            return (f"{who} budget refused: call may cost ${d.get('requested', 0):.4f}, "
                    f"{d.get('scope')} limit ${d.get('limit', 0):.4f}, committed ${d.get('committed', 0):.4f}")
        if kind is EventType.AGENT_FINISHED:
            tail = f": {d.get('error')}" if d.get("error") and d.get("status") != "completed" else ""
            return (f"{who} {d.get('status')} in {d.get('execution_time', 0):.2f}s, "
                    f"{d.get('tokens_used', 0)} tokens, ${d.get('cost', 0):.6f}{tail}")
        if kind is EventType.BATCH_SUBMITTED:
            mine, total = int(d.get("requests") or 0), int(d.get("total") or 0)
            share = f"{total:,} requests" if mine == total else f"{mine:,} of its {total:,} requests are this run's"
            return f"{who} batch {d.get('batch_id')} ({d.get('provider')}/{d.get('model')}) submitted: {share}"
        if kind is EventType.BATCH_STATUS:
            return f"{who} {batch_line(d)}"
        if kind is EventType.BATCH_FINISHED:
            return f"{who} {batch_line(d)}; results collected"
        if kind is EventType.WORKFLOW_FINISHED:
            return (f"{who} finished: {d.get('status')}, ${d.get('total_cost', 0):.4f}, "
                    f"{d.get('total_tokens', 0)} tokens, {d.get('duration') or 0:.2f}s")
        return None
