"""What a running workflow shows while it runs: a fan-out's items, the rate limit that paces it,
and a live table whose columns hold still from frame to frame."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrate import EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import ProviderUnavailableError
from orchestrate.observe.progress import LiveTable, PlainLog
from orchestrate.run.events import Event, EventType
from orchestrate.workflow.loader import load_workflow_text
from tests.cli import orchestrate
from tests.scripted import ScriptedClient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def draw(table: LiveTable, width: int, height: int = 60) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, height=height, color_system=None).print(table.render(width=width, height=height))
    return buffer.getvalue()


def ev(kind: EventType, agent: str | None = None, **data: Any) -> Event:
    return Event(kind, "w1", agent, data, workflow_name="month_close")


FLOW = """\
name: month_close
inputs:
  lines: {type: array, default: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}
agents:
  - name: check_line
    module: Finance
    foreach: "{inputs.lines}"
    max_items: 12
    prompt_template: Check line {item}.
    llm_config: {model: gpt-4o-mini, max_tokens: 20, latency: 0.01}
"""


def fan_out_workflow(count: int = 12) -> Workflow:
    lines = ", ".join(str(n) for n in range(1, count + 1))
    text = FLOW.replace("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12", lines).replace("max_items: 12", f"max_items: {count}")
    return load_workflow_text(text, file="close.yaml")


# --------------------------------------------------------------------------- a fan-out's progress


async def test_a_fan_out_reports_each_item_with_the_counts_so_far_and_the_items_retrying() -> None:
    release = asyncio.Event()
    tries: dict[str, int] = {}

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        prompt = messages[-1]["content"]
        tries[prompt] = tries.get(prompt, 0) + 1
        if prompt == "Check line 3." and tries[prompt] == 1:
            return ProviderUnavailableError("simulated 529: provider unavailable", status_code=529)
        return "fine"

    async def retry_sleep(seconds: float) -> None:
        await release.wait()  # item 3 waits to try again until every other item is done

    recorder = Recorder()
    engine = OrchestrationEngine(ScriptedClient(answer), EngineConfig(), sinks=[recorder], sleep=retry_sleep)
    workflow = fan_out_workflow(12)
    wid = await engine.register_workflow(workflow)
    run = asyncio.create_task(engine.execute_workflow(wid))
    while sum(1 for e in recorder.events if e.type is EventType.ITEM_FINISHED) < 11:
        await asyncio.sleep(0.01)
    release.set()
    await run
    started = [e for e in recorder.events if e.type is EventType.ITEMS_STARTED]
    items = [e.data for e in recorder.events if e.type is EventType.ITEM_FINISHED]
    assert [e.data for e in started] == [{"total": 12}]
    assert [d["done"] for d in items] == list(range(1, 13))
    assert all(d["total"] == 12 and d["failed"] == 0 for d in items)
    assert items[10]["retrying"] == 1  # eleven done, line 3 waiting for its second attempt
    assert items[-1] == {**items[-1], "index": 2, "status": "completed", "retrying": 0}
    assert all(e.agent == "check_line" and e.workflow_id == wid for e in recorder.events if "item" in e.type.value)


async def test_items_are_not_reported_when_no_sink_reads_them() -> None:
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig())  # the default Monitor only
    assert not engine.wants(EventType.ITEM_FINISHED)
    recorder = Recorder()
    engine.add_sink(recorder, types=[EventType.AGENT_FINISHED])
    assert not engine.wants(EventType.ITEM_FINISHED)
    wid = await engine.register_workflow(fan_out_workflow(3))
    done = await engine.execute_workflow(wid)
    assert done.status.value == "completed"
    assert [e.type for e in recorder.events] == [EventType.AGENT_FINISHED]
    assert not any("item" in e[1] for e in engine.monitor.events)
    engine.add_sink(Recorder())  # a sink of every event reads them
    assert engine.wants(EventType.ITEM_FINISHED)


def fanning_table(clock: Clock, width_names: list[str] | None = None) -> LiveTable:
    table = LiveTable(console=None, clock=clock)
    names = width_names or ["check_line", "summary"]
    table(
        ev(
            EventType.WORKFLOW_STARTED,
            agents=[{"name": n, "module": "Finance", "model": "gpt-4o-mini"} for n in names],
            cost_budget=1.0,
        )
    )
    table(ev(EventType.ITEMS_STARTED, "check_line", total=12))
    for _ in range(10):
        table(ev(EventType.AGENT_STARTED, "check_line", attempt=1, model="gpt-4o-mini"))
    for n in range(1, 8):
        table(ev(EventType.ITEM_FINISHED, "check_line", index=n, status="completed", done=n, failed=0, total=12))
    table(ev(EventType.AGENT_RETRYING, "check_line", attempt=1, delay=2.0, error="simulated 529: provider unavailable"))
    return table


def test_the_live_table_shows_a_fan_out_as_items_done_and_retrying_at_80_columns() -> None:
    table = fanning_table(Clock())
    text = draw(table, 80)
    row = next(line for line in text.splitlines() if "check_line" in line)
    assert "7/12 items, 1 retrying" in row, text
    assert "retrying in" not in row  # the agent runs on: one of its items waits, not the agent
    table(ev(EventType.AGENT_STARTED, "check_line", attempt=2, model="gpt-4o-mini"))
    assert "7/12 items " in draw(table, 80) and "retrying" not in draw(table, 80)
    table(ev(EventType.ITEM_FINISHED, "check_line", index=9, status="failed", error="x", done=8, failed=1, total=12))
    assert "8/12 items, 1 failed" in draw(table, 80)
    table(ev(EventType.AGENT_FINISHED, "check_line", status="failed", error="1 of 12 items failed", cost=0.0))
    assert "8/12 items" not in draw(table, 80)


def test_plain_lines_give_a_small_fan_out_item_by_item_and_a_large_one_by_tenths() -> None:
    def line(**data: Any) -> str | None:
        return PlainLog.format(ev(EventType.ITEM_FINISHED, "check_line", **data))

    assert PlainLog.format(ev(EventType.ITEMS_STARTED, "check_line", total=12)) == (
        "month_close/check_line fans out over 12 items"
    )
    assert line(index=6, status="completed", done=7, failed=0, total=12, retrying=1) == (
        "month_close/check_line 7/12 items, 1 retrying"
    )
    assert line(index=4, status="failed", error="simulated 502", done=8, failed=1, total=12, retrying=0) == (
        "month_close/check_line item 4 failed: simulated 502; 8/12 items, 1 failed"
    )
    shown = [d for d in range(1, 1001) if line(index=0, status="completed", done=d, failed=0, total=1000)]
    assert shown == list(range(100, 1001, 100))


def test_a_piped_run_prints_the_fan_out_progress_and_json_stays_clean(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(FLOW)
    done = orchestrate("run", "close.yaml", "--simulate", "--format", "json", cwd=tmp_path, columns=80)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["status"] == "completed"
    lines = done.stderr.splitlines()
    assert any(line.endswith("month_close/check_line fans out over 12 items") for line in lines)
    assert any(line.endswith("month_close/check_line 12/12 items") for line in lines), done.stderr
    assert all(len(line) <= 80 or "started" in line or "finished" in line for line in lines if "items" in line)
