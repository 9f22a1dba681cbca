"""Watching a run: the Monitor, the live table, the plain CI log, CI reports and events.jsonl."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrate import (
    Agent,
    EngineConfig,
    OrchestrationEngine,
    SimulatedClient,
    Workflow,
    WorkflowStatus,
)
from orchestrate.errors import AuthenticationError
from orchestrate.observe.ci_reports import junit_xml, mermaid, summary_markdown, write_summary
from orchestrate.observe.eventlog import EventLog, read_events
from orchestrate.observe.progress import LiveTable, PlainLog
from orchestrate.run.events import Event, EventType
from orchestrate.run.monitor import Monitor, MonitorConfig
from tests.scripted import ScriptedClient

REPO = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z ")
ESC = "\x1b["


# --------------------------------------------------------------------------- helpers


def agent(name: str, deps: tuple[str, ...] = (), **fields: Any) -> Agent:
    return Agent(
        name=name,
        module=fields.pop("module", "Finance"),
        description=f"agent {name}",
        llm_config={"model": "gpt-4o-mini", "max_tokens": 50},
        prompt_template=f"task {name}",
        dependencies=list(deps),
        **fields,
    )


def failing_for(bad: str) -> ScriptedClient:
    """Answers every agent, except that `bad`'s call raises a (non-retriable) AuthenticationError."""
    return ScriptedClient(
        lambda m, model, o: (
            AuthenticationError("invalid key", status_code=401) if m[-1]["content"] == f"task {bad}" else "fine"
        )
    )


def four_agents(name: str = "watched") -> Workflow:
    # extract -> summary, bad -> report (report is cancelled when bad fails)
    return Workflow(
        name=name,
        description="test",
        agents=[agent("extract"), agent("bad", module="HR"), agent("report", ("bad",)), agent("summary", ("extract",))],
    )


class Recorder:
    """A sink keeping every event, to compare what the Monitor kept against."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


async def run_watched(config: MonitorConfig | None = None) -> tuple[OrchestrationEngine, Workflow, Recorder]:
    recorder = Recorder()
    engine = OrchestrationEngine(
        failing_for("bad"),
        EngineConfig(rate_limit_config=None, monitor_config=config or MonitorConfig()),
        sinks=[recorder],
    )
    wf = await engine.execute_workflow(await engine.register_workflow(four_agents()))
    return engine, wf, recorder


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- Monitor


async def test_monitor_counts_a_run_with_one_failed_agent() -> None:
    engine, wf, _ = await run_watched()
    assert wf.status is WorkflowStatus.PARTIALLY_COMPLETED
    m = engine.monitor.get_metrics()
    assert m["uptime_seconds"] > 0
    assert m["workflows_started"] == 1
    assert m["workflows_partially_completed"] == 1
    assert m["workflows_completed"] == 0 and m["workflows_failed"] == 0
    assert wf.total_cost > 0
    assert m["total_cost"] == pytest.approx(wf.total_cost, rel=1e-9, abs=1e-12)
    # extract, bad and summary start; report is cancelled before it can start
    assert m["agents_started"] == 3
    assert m["agents_completed"] == 2
    assert m["agents_failed"] == 1
    assert m["agents_cancelled"] == 1
    assert m["agents_retried"] == 0  # an authentication error is not retried
    assert m["llm_calls"] == 2  # the failed call never produced an answer
    assert m["input_tokens"] == 20 and m["output_tokens"] == 10 and m["total_tokens"] == 30


async def test_monitor_summary_rates_and_averages() -> None:
    engine, wf, _ = await run_watched()
    s = engine.monitor.get_summary()
    assert s["uptime_seconds"] > 0
    # success_rate: completed workflows out of finished ones, in percent; a partial one is no success
    assert s["workflows"]["started"] == 1
    assert s["workflows"]["partially_completed"] == 1
    assert s["workflows"]["success_rate"] == 0.0
    assert s["workflows"]["avg_duration"] > 0
    # agents: 2 of the 4 finished agents completed
    assert s["agents"]["success_rate"] == pytest.approx(50.0)
    assert s["agents"]["avg_execution_time"] >= 0
    assert s["agents"]["failed"] == 1 and s["agents"]["cancelled"] == 1
    assert s["llm"]["calls"] == 2 and s["llm"]["total_tokens"] == 30
    assert s["costs"]["total_cost"] == pytest.approx(wf.total_cost, rel=1e-9, abs=1e-12)


async def test_workflow_success_rate_counts_completed_among_finished_workflows() -> None:
    engine = OrchestrationEngine(failing_for("bad"), EngineConfig(rate_limit_config=None))
    good = Workflow(name="good", description="all fine", agents=[agent("a"), agent("b", ("a",))])
    ids = [await engine.register_workflow(good), await engine.register_workflow(four_agents())]
    results = await engine.execute_multiple_workflows(ids)
    assert [r.status for r in results] == [WorkflowStatus.COMPLETED, WorkflowStatus.PARTIALLY_COMPLETED]
    s = engine.monitor.get_summary()
    assert s["workflows"]["started"] == 2
    assert s["workflows"]["success_rate"] == pytest.approx(50.0)
    # 4 of the 6 finished agents completed
    assert s["agents"]["success_rate"] == pytest.approx(100.0 * 4 / 6)


async def test_recent_events_are_the_last_ones_and_filter_by_type() -> None:
    engine, _, recorder = await run_watched()
    seen = [(e.type.value, e.agent) for e in recorder.events]
    last_two = engine.monitor.get_recent_events(count=2)
    assert [(e["event_type"], e["agent_id"]) for e in last_two] == seen[-2:]
    assert last_two[-1]["event_type"] == "workflow_finished"

    everything = engine.monitor.get_recent_events(count=1000)
    assert [(e["event_type"], e["agent_id"]) for e in everything] == seen

    finished = engine.monitor.get_recent_events(event_type="agent_finished")
    assert [e["agent_id"] for e in finished] == [a for t, a in seen if t == "agent_finished"]
    assert sorted(e["agent_id"] for e in finished) == ["bad", "extract", "report", "summary"]
    assert {e["data"]["status"] for e in finished} == {"completed", "failed", "cancelled"}
    assert [e["event_type"] for e in engine.monitor.get_recent_events(count=1, event_type="llm_call")] == ["llm_call"]
    assert engine.monitor.get_recent_events(count=0) == []


async def test_disabling_metrics_keeps_counters_at_zero_but_keeps_events() -> None:
    engine, wf, recorder = await run_watched(MonitorConfig(enable_metrics=False, metrics_interval=0))
    assert wf.total_cost > 0
    m = engine.monitor.get_metrics()
    assert m["workflows_started"] == 0 and m["agents_started"] == 0 and m["llm_calls"] == 0
    assert m["total_cost"] == 0
    assert list(engine.monitor.snapshots) == []
    assert len(engine.monitor.get_recent_events(count=1000)) == len(recorder.events)


async def test_disabling_logging_keeps_no_events_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrate")
    engine, _, _ = await run_watched(MonitorConfig(enable_logging=False))
    assert engine.monitor.get_recent_events() == []
    assert engine.monitor.get_metrics()["agents_completed"] == 2  # metrics still on
    assert [r for r in caplog.records if r.name == "orchestrate"] == []


async def test_logging_on_writes_events_to_the_orchestrate_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrate")
    _, _, recorder = await run_watched()
    records = [r for r in caplog.records if r.name == "orchestrate"]
    assert len(records) == len(recorder.events)
    failed = [r for r in records if "agent_finished" in r.getMessage() and "agent=bad" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]


async def test_agent_failure_is_logged_at_warning_without_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrate")
    await run_watched()
    warnings = [r.getMessage() for r in caplog.records if r.name == "orchestrate" and r.levelno == logging.WARNING]
    assert any("agent_finished" in msg and "agent=bad" in msg for msg in warnings)


def test_snapshots_are_taken_every_metrics_interval_by_the_clock() -> None:
    clock = FakeClock(1000.0)
    monitor = Monitor(MonitorConfig(metrics_interval=10.0), clock=clock)
    for now in (1001.0, 1009.9):
        clock.now = now
        monitor.record_event("llm_call", "a", "w", {"input_tokens": 1, "output_tokens": 1, "cost": 0.5})
    assert list(monitor.snapshots) == []
    clock.now = 1010.0
    monitor.record_event("llm_call", "a", "w", {"input_tokens": 1, "output_tokens": 1, "cost": 0.5})
    assert len(monitor.snapshots) == 1
    snap = monitor.snapshots[-1]
    assert snap["timestamp"] == 1010.0
    assert snap["llm_calls"] == 3 and snap["total_cost"] == pytest.approx(1.5)
    assert snap["uptime_seconds"] == pytest.approx(10.0)
    # the next one is due 10 s after the last snapshot, not after start
    clock.now = 1019.0
    monitor.record_event("agent_started", "a", "w", {"attempt": 1})
    assert len(monitor.snapshots) == 1
    clock.now = 1020.0
    monitor.record_event("agent_started", "b", "w", {"attempt": 1})
    assert len(monitor.snapshots) == 2
    assert monitor.snapshots[-1]["agents_started"] == 2
    assert monitor.get_metrics()["uptime_seconds"] == pytest.approx(20.0)


def test_snapshots_follow_event_timestamps_and_are_bounded() -> None:
    clock = FakeClock(0.0)
    monitor = Monitor(MonitorConfig(metrics_interval=5.0, max_snapshots=2, max_events=3), clock=clock)
    for t in range(1, 31):  # events every second for 30 s, stamped on the same clock
        monitor(Event(EventType.TOOL_CALL, "w", "a", {"tool": "x", "error": None}, timestamp=float(t)))
    assert [s["timestamp"] for s in monitor.snapshots] == [25.0, 30.0]
    assert [s["tool_calls"] for s in monitor.snapshots] == [25, 30]
    recent = monitor.get_recent_events()
    assert [e["timestamp"] for e in recent] == [28.0, 29.0, 30.0]


async def test_engine_monitor_with_zero_interval_snapshots_every_event() -> None:
    engine, _, recorder = await run_watched(MonitorConfig(metrics_interval=0))
    snaps = list(engine.monitor.snapshots)
    assert len(snaps) == len(recorder.events)
    assert [s["timestamp"] for s in snaps] == [e.timestamp for e in recorder.events]
    assert snaps[0]["workflows_started"] == 1 and snaps[0]["agents_started"] == 0
    assert snaps[-1]["workflows_partially_completed"] == 1


# --------------------------------------------------------------------------- LiveTable

AGENTS = [
    {
        "name": "ledger_reconcile",
        "module": "Finance",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "dependencies": [],
        "priority": 5,
    },
    {
        "name": "payroll_check",
        "module": "HR",
        "model": "claude-3-5-haiku",
        "provider": "anthropic",
        "dependencies": [],
        "priority": 5,
    },
    {
        "name": "stock_count",
        "module": "Inventory",
        "model": "gpt-4o",
        "provider": "openai",
        "dependencies": ["ledger_reconcile"],
        "priority": 5,
    },
]


def started(wid: str, name: str, budget: float = 2.5, agents: list[dict[str, Any]] = AGENTS) -> Event:
    return Event(
        EventType.WORKFLOW_STARTED,
        wid,
        None,
        {"name": name, "cost_budget": budget, "max_parallel_agents": 2, "agents": agents},
        workflow_name=name,
    )


def agent_event(kind: EventType, wid: str, wf: str, name: str, **data: Any) -> Event:
    return Event(kind, wid, name, data, workflow_name=wf)


def finished_data(status: str, tokens: int, cost: float, seconds: float, error: str | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "error": error,
        "tokens_used": tokens,
        "cost": cost,
        "execution_time": seconds,
        "retry_count": 0,
        "model": "m",
        "provider": "p",
        "module": "x",
    }


def close_events(wid: str = "w1", wf: str = "month_close") -> list[Event]:
    call = {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "cached_input_tokens": 0,
        "reasoning_tokens": 0,
        "cached": False,
    }
    return [
        started(wid, wf),
        agent_event(
            EventType.AGENT_STARTED,
            wid,
            wf,
            "ledger_reconcile",
            attempt=1,
            model="gpt-4o-mini",
            provider="openai",
            module="Finance",
        ),
        agent_event(
            EventType.AGENT_STARTED,
            wid,
            wf,
            "payroll_check",
            attempt=1,
            model="claude-3-5-haiku",
            provider="anthropic",
            module="HR",
        ),
        agent_event(EventType.AGENT_RATE_LIMITED, wid, wf, "ledger_reconcile", waited=1.5, provider="openai"),
        agent_event(
            EventType.LLM_CALL,
            wid,
            wf,
            "ledger_reconcile",
            **{**call, "input_tokens": 1000, "output_tokens": 234, "cost": 0.0123},
        ),
        agent_event(
            EventType.AGENT_FINISHED, wid, wf, "ledger_reconcile", **finished_data("completed", 1234, 0.0123, 2.5)
        ),
        agent_event(EventType.AGENT_RETRYING, wid, wf, "payroll_check", attempt=1, delay=0.5, error="503"),
        agent_event(
            EventType.AGENT_STARTED,
            wid,
            wf,
            "payroll_check",
            attempt=2,
            model="claude-3-5-haiku",
            provider="anthropic",
            module="HR",
        ),
        # It waited after ledger_reconcile's wait ended (waits are counted wall-clock: 1.5 + 0.75).
        Event(
            EventType.AGENT_RATE_LIMITED,
            wid,
            "payroll_check",
            {"waited": 0.75, "provider": "anthropic"},
            timestamp=time.time() + 0.75,
            workflow_name=wf,
        ),
        agent_event(
            EventType.AGENT_FINISHED,
            wid,
            wf,
            "payroll_check",
            **finished_data("failed", 0, 0.0, 3.25, error="invalid key"),
        ),
        agent_event(
            EventType.AGENT_STARTED,
            wid,
            wf,
            "stock_count",
            attempt=1,
            model="gpt-4o",
            provider="openai",
            module="Inventory",
        ),
        agent_event(
            EventType.LLM_CALL,
            wid,
            wf,
            "stock_count",
            **{**call, "model": "gpt-4o", "input_tokens": 400, "output_tokens": 100, "cost": 0.0045},
        ),
    ]


def render(table: LiveTable) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False, color_system=None)
    console.print(table.render())
    text = buffer.getvalue()
    assert ESC not in text
    return text


def rows(text: str) -> dict[str, list[str]]:
    """Data rows of the rendered tables, by agent name: [agent, status, module, model, tries, tokens, cost, time]."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            out[cells[0]] = cells
    return out


def flat(text: str) -> str:
    return " ".join(text.split())


def test_live_table_shows_a_row_per_agent_and_a_footer() -> None:
    table = LiveTable(console=None)
    for event in close_events():
        table(event)
    text = render(table)
    r = rows(text)
    assert set(r) == {"ledger_reconcile", "payroll_check", "stock_count"}
    assert r["ledger_reconcile"][1:7] == ["completed", "Finance", "gpt-4o-mini", "1", "1,234", "$0.0123"]
    assert r["ledger_reconcile"][7] == "2.5s"
    assert r["payroll_check"][1:5] == ["failed", "HR", "claude-3-5-haiku", "2"]
    assert r["payroll_check"][5:7] == ["", ""]  # no tokens, nothing spent
    assert r["payroll_check"][7] == "3.2s" or r["payroll_check"][7] == "3.3s"
    assert r["stock_count"][1].endswith("running")
    assert r["stock_count"][2:7] == ["Inventory", "gpt-4o", "1", "500", "$0.004500"]
    caption = flat(text)
    assert "2/3 agents done" in caption
    assert "spent $0.0168 of $2.50" in caption
    assert "rate-limit wait 2.2s" in caption or "rate-limit wait 2.3s" in caption  # 1.5 + 0.75


def test_live_table_before_any_agent_runs_shows_pending_rows() -> None:
    table = LiveTable(console=None)
    table(started("w1", "month_close", budget=1.0))
    text = render(table)
    r = rows(text)
    assert [c[1] for c in r.values()] == ["pending"] * 3
    assert [c[3] for c in r.values()] == ["gpt-4o-mini", "claude-3-5-haiku", "gpt-4o"]
    assert [c[4] for c in r.values()] == ["", "", ""]
    caption = flat(text)
    assert "0/3 agents done" in caption and "spent $0.00 of $1.00" in caption
    assert "rate-limit wait 0.0s" in caption


def test_live_table_groups_two_workflows_under_two_titles() -> None:
    table = LiveTable(console=None)
    for event in close_events("w1", "month_close"):
        table(event)
    other = [
        {
            "name": "welcome_pack",
            "module": "HR",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "dependencies": [],
            "priority": 5,
        }
    ]
    table(started("w2", "onboarding", budget=0.5, agents=other))
    table(
        agent_event(
            EventType.AGENT_STARTED,
            "w2",
            "onboarding",
            "welcome_pack",
            attempt=1,
            model="gpt-4o-mini",
            provider="openai",
            module="HR",
        )
    )
    table(
        agent_event(
            EventType.AGENT_FINISHED, "w2", "onboarding", "welcome_pack", **finished_data("completed", 77, 0.002, 0.4)
        )
    )
    table(
        Event(
            EventType.WORKFLOW_FINISHED,
            "w2",
            None,
            {"status": "completed", "total_cost": 0.002, "total_tokens": 77, "duration": 0.5},
            workflow_name="onboarding",
        )
    )
    text = render(table)
    lines = text.splitlines()
    titles = [i for i, line in enumerate(lines) if line.strip().startswith(("month_close", "onboarding"))]
    assert len(titles) == 2
    assert lines[titles[0]].strip().startswith("month_close")
    assert lines[titles[1]].strip().startswith("onboarding")
    first, second = "\n".join(lines[titles[0] : titles[1]]), "\n".join(lines[titles[1] :])
    assert set(rows(first)) == {"ledger_reconcile", "payroll_check", "stock_count"}
    assert set(rows(second)) == {"welcome_pack"}
    assert rows(second)["welcome_pack"][1:7] == ["completed", "HR", "gpt-4o-mini", "1", "77", "$0.002000"]
    assert "2/3 agents done" in flat(first) and "1/1 agents done" in flat(second)
    assert "spent $0.002000 of $0.50" in flat(second)


def test_live_table_ignores_events_of_unknown_workflows() -> None:
    table = LiveTable(console=None)
    table(agent_event(EventType.AGENT_STARTED, "nope", "nope", "x", attempt=1, model="m", provider="p", module="HR"))
    assert rows(render(table)) == {}


def test_live_table_title_shows_the_workflow_status() -> None:
    table = LiveTable(console=None)
    table(started("w1", "month_close"))
    table(
        Event(
            EventType.WORKFLOW_FINISHED,
            "w1",
            None,
            {"status": "partially_completed", "total_cost": 0.0, "total_tokens": 0, "duration": 1.0},
            workflow_name="month_close",
        )
    )
    assert "[partially_completed]" in render(table)


# --------------------------------------------------------------------------- PlainLog


def test_plain_log_writes_one_stamped_line_per_state_change() -> None:
    stream = io.StringIO()
    log = PlainLog(stream)
    events = close_events()
    events[0] = Event(
        EventType.WORKFLOW_STARTED, "w1", None, events[0].data, workflow_name="month_close", timestamp=1700000000.5
    )
    events.append(agent_event(EventType.TOOL_CALL, "w1", "month_close", "stock_count", tool="lookup", error=None))
    events.append(
        agent_event(
            EventType.AGENT_BUDGET_REFUSED,
            "w1",
            "month_close",
            "stock_count",
            scope="workflow",
            limit=2.5,
            requested=3.0,
            committed=0.1,
        )
    )
    events.append(
        Event(
            EventType.WORKFLOW_FINISHED,
            "w1",
            None,
            {"status": "partially_completed", "total_cost": 0.0168, "total_tokens": 1734, "duration": 4.0},
            workflow_name="month_close",
        )
    )
    for event in events:
        log(event)
    lines = stream.getvalue().splitlines()
    changes = [e for e in events if e.type not in (EventType.LLM_CALL, EventType.TOOL_CALL)]
    assert len(lines) == len(changes)
    assert ESC not in stream.getvalue()
    assert all(STAMP.match(line) for line in lines), lines
    assert lines[0].startswith("2023-11-14T22:13:20.500Z month_close started: 3 agents, budget $2.50")
    assert " month_close/ledger_reconcile started (attempt 1, openai/gpt-4o-mini)" in lines[1]
    assert " month_close/ledger_reconcile rate limited: waited 1.50s for openai" in lines[3]
    assert " month_close/payroll_check retrying in 0.50s after attempt 1: 503" in lines[5]
    assert " month_close/payroll_check failed in 3.25s, 0 tokens, $0.00: invalid key" in lines[8]
    assert "budget refused" in lines[-2]
    assert lines[-1].endswith("month_close finished: partially_completed, $0.0168, 1734 tokens, 4.00s")
    # each line's stamp is its event's own time, in UTC
    for line, event in zip(lines, changes):
        assert line.split(" ", 1)[0] == _utc(event.timestamp)


def _utc(timestamp: float) -> str:
    from datetime import datetime

    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_plain_log_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    log = PlainLog(stream, quiet=True)
    for event in close_events():
        log(event)
    assert stream.getvalue() == ""


async def test_plain_log_follows_a_real_engine_run() -> None:
    stream = io.StringIO()
    recorder = Recorder()
    engine = OrchestrationEngine(
        SimulatedClient(), EngineConfig(rate_limit_config=None), sinks=[recorder, PlainLog(stream)]
    )
    wf = Workflow(name="sim", description="d", agents=[agent("a"), agent("b", ("a",)), agent("c")])
    result = await engine.execute_workflow(await engine.register_workflow(wf))
    assert result.status is WorkflowStatus.COMPLETED
    lines = stream.getvalue().splitlines()
    changes = [e for e in recorder.events if e.type not in (EventType.LLM_CALL, EventType.TOOL_CALL)]
    assert len(lines) == len(changes) == 1 + 3 + 3 + 1
    assert all(STAMP.match(line) for line in lines)
    assert sum(" started (attempt 1, simulated/gpt-4o-mini)" in line for line in lines) == 3
    assert lines[-1].split(" ", 1)[1].startswith("sim finished: completed")


# --------------------------------------------------------------------------- CI reports through the CLI


@pytest.fixture(scope="module")
def failing_cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrate",
            "run",
            "workflows/hr_onboarding.yaml",
            "--simulate",
            "-o",
            str(tmp / "runs"),
            "--junit",
            str(tmp / "j.xml"),
            "--summary",
            str(tmp / "s.md"),
            "--sim-failure-rate",
            "1.0",
            "--json",
        ],
        cwd=REPO,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    run_dirs = list((tmp / "runs").iterdir())
    assert len(run_dirs) == 1, (proc.stdout, proc.stderr)
    return {
        "proc": proc,
        "tmp": tmp,
        "run_dir": run_dirs[0],
        "result": json.loads((run_dirs[0] / "result.json").read_text(encoding="utf-8")),
        "events": list(read_events(run_dirs[0] / "events.jsonl")),
    }


def test_cli_run_fails_when_every_call_fails(failing_cli_run: dict[str, Any]) -> None:
    result = failing_cli_run["result"]
    assert failing_cli_run["proc"].returncode == 1
    assert result["status"] == "failed"
    statuses = {a["name"]: a["status"] for a in result["agents"]}
    assert statuses == {
        "contract_check": "failed",
        "equipment_request": "failed",
        "system_access": "failed",
        "training_plan": "cancelled",
        "welcome_pack": "cancelled",
    }


def test_junit_counts_match_result_json(failing_cli_run: dict[str, Any]) -> None:
    result = failing_cli_run["result"]
    root = ET.parse(failing_cli_run["tmp"] / "j.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    agents = result["agents"]
    failures = sum(a["status"] in ("failed", "budget_exceeded") for a in agents)
    skipped = sum(a["status"] in ("cancelled", "pending") for a in agents)
    assert suite.get("name") == result["name"]
    assert (
        (int(suite.get("tests")), int(suite.get("failures")), int(suite.get("skipped")))
        == (len(agents), failures, skipped)
        == (5, 3, 2)
    )
    assert (int(root.get("tests")), int(root.get("failures")), int(root.get("skipped"))) == (5, 3, 2)
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {a["name"] for a in agents}
    for a in agents:
        case = cases[a["name"]]
        assert case.get("classname") == f"{result['name']}.{a['module']}"
        if a["status"] == "failed":
            failure = case.find("failure")
            assert failure is not None and failure.get("message") == a["error"]
            assert case.find("skipped") is None
        else:
            assert case.find("skipped") is not None and case.find("failure") is None
        assert f"retries={a['retry_count']}" in case.find("system-out").text


def test_summary_has_a_mermaid_graph_of_the_run(failing_cli_run: dict[str, Any]) -> None:
    result = failing_cli_run["result"]
    text = (failing_cli_run["tmp"] / "s.md").read_text(encoding="utf-8")
    assert text.startswith(f"## {result['name']}: failed (simulated)")
    assert "0/5 agents completed" in text
    blocks = re.findall(r"```mermaid\n(.*?)\n```", text, re.S)
    assert len(blocks) == 1
    graph = blocks[0].splitlines()
    assert graph[0] == "flowchart LR"
    nodes = {
        m.group(1): (m.group(2), m.group(3))
        for line in graph
        if (m := re.match(r'\s+(\w+)\["([^"]*)"\]:::(\w+)$', line))
    }
    assert len(nodes) == len(result["agents"]) == 5
    ids = {a["name"]: f"a{i}" for i, a in enumerate(result["agents"])}  # node ids by position
    for a in result["agents"]:
        label, klass = nodes[ids[a["name"]]]
        assert label.startswith(a["name"]) and a["status"] in label
        assert klass == {"failed": "failed", "cancelled": "skipped", "completed": "done"}[a["status"]]
    edges = {(m.group(1), m.group(2)) for line in graph if (m := re.match(r"\s+(\w+) --> (\w+)$", line))}
    expected = {(ids[d], ids[a["name"]]) for a in result["agents"] for d in a["dependencies"]}
    assert edges == expected
    assert len(edges) == 4
    for klass in ("done", "failed", "skipped"):
        assert any(line.strip().startswith(f"classDef {klass} ") for line in graph)
    # the agent table has a row per agent with its status
    for a in result["agents"]:
        assert f"| {a['name']} | {a['module']} | {a['status']} |" in text


def test_json_summary_on_stdout_matches_result_json(failing_cli_run: dict[str, Any]) -> None:
    result = failing_cli_run["result"]
    payload = json.loads(failing_cli_run["proc"].stdout)["runs"][0]
    assert payload["status"] == result["status"]
    assert payload["total_cost"] == result["total_cost"]
    assert payload["retries"] == result["retries"] == 9
    assert payload["agents"] == {a["name"]: a["status"] for a in result["agents"]}
    assert Path(payload["run_dir"]) == failing_cli_run["run_dir"]
    assert payload["simulated"] is True


def test_stderr_is_plain_with_a_line_per_state_change(failing_cli_run: dict[str, Any]) -> None:
    stderr = failing_cli_run["proc"].stderr
    events = failing_cli_run["events"]
    assert ESC not in stderr
    lines = stderr.splitlines()
    started_events = sum(e["type"] == "agent_started" for e in events)
    started_lines = [line for line in lines if " started (attempt" in line]
    assert started_events == 12  # three agents, four attempts each
    assert len(started_lines) == started_events
    assert all(STAMP.match(line) for line in started_lines)
    changes = [e for e in events if e["type"] not in ("llm_call", "tool_call")]
    stamped = [line for line in lines if STAMP.match(line)]
    assert len(stamped) == len(changes)
    assert sum(" retrying in " in line for line in stamped) == sum(e["type"] == "agent_retrying" for e in events)


def test_stderr_has_only_stamped_lines(failing_cli_run: dict[str, Any]) -> None:
    # The Monitor logs the failed workflow at WARNING; that must not leak (via logging's
    # lastResort handler) into the plain CI log as an unstamped line.
    lines = [line for line in failing_cli_run["proc"].stderr.splitlines() if line.strip()]
    assert [line for line in lines if not STAMP.match(line)] == []


def test_events_jsonl_holds_the_run_in_order(failing_cli_run: dict[str, Any]) -> None:
    events = failing_cli_run["events"]
    assert events[0]["type"] == "workflow_started" and events[-1]["type"] == "workflow_finished"
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert events[-1]["data"]["status"] == failing_cli_run["result"]["status"]


# --------------------------------------------------------------------------- CI reports from documents


def _doc(name: str, agents: list[tuple[str, str, list[str]]]) -> dict[str, Any]:
    return {
        "name": name,
        "status": "partially_completed",
        "simulated": False,
        "total_cost": 0.25,
        "cost_budget": 1.0,
        "total_tokens": 100,
        "retries": 0,
        "duration_seconds": 1.0,
        "started_at": "2026-01-01T00:00:00+00:00",
        "agents": [
            {
                "name": n,
                "module": "Finance",
                "status": s,
                "dependencies": deps,
                "model": "m",
                "provider": "p",
                "error": None if s == "completed" else f"{n} went wrong",
                "tokens_used": 10,
                "cost": 0.01,
                "execution_time": 0.5,
                "retry_count": 0,
            }
            for n, s, deps in agents
        ],
    }


def test_junit_xml_has_a_suite_per_document() -> None:
    docs = [
        _doc("one", [("a", "completed", []), ("b", "budget_exceeded", ["a"])]),
        _doc("two", [("c", "completed", []), ("d", "cancelled", ["c"]), ("e", "failed", [])]),
    ]
    root = ET.fromstring(junit_xml(docs))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("5", "2", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["one", "two"]
    assert [(s.get("tests"), s.get("failures"), s.get("skipped")) for s in suites] == [("2", "1", "0"), ("3", "1", "1")]
    b = suites[0].find("testcase[@name='b']")
    assert b.find("failure").get("type") == "budget_exceeded"
    assert b.find("failure").get("message") == "b went wrong"


def test_write_summary_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "step_summary.md"
    path.write_text("# earlier step\n", encoding="utf-8")
    write_summary(path, [_doc("one", [("a", "completed", [])])])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n")
    assert "## one: partially completed" in text and "```mermaid" in text


def test_mermaid_gives_distinct_agents_distinct_nodes() -> None:
    doc = _doc("dash", [("load-data", "completed", []), ("load_data", "completed", ["load-data"])])
    graph = mermaid(doc).splitlines()
    node_ids = [line.split("[", 1)[0].strip() for line in graph if '["' in line]
    assert len(set(node_ids)) == 2
    edge = [line.split(" --> ") for line in graph if " --> " in line]
    assert len(edge) == 1 and edge[0][0].strip() != edge[0][1].strip()


def test_summary_markdown_escapes_pipes_in_errors() -> None:
    doc = _doc("one", [("a", "failed", [])])
    doc["agents"][0]["error"] = "bad | worse\nand more"
    text = summary_markdown([doc])
    assert "| a | Finance | failed | m | 10 | $0.0100 | bad \\| worse and more |" in text


# --------------------------------------------------------------------------- EventLog / read_events


def test_event_log_reads_back_every_event_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run" / "events.jsonl"
    log = EventLog(path)
    events = close_events()
    for event in events:
        log(event)
    log.close()
    log(started("w9", "after_close"))  # dropped once closed
    back = list(read_events(path))
    assert [e["type"] for e in back] == [e.type.value for e in events]
    assert [e["agent"] for e in back] == [e.agent for e in events]
    assert [e["timestamp"] for e in back] == [e.timestamp for e in events]
    assert back[0]["data"]["agents"][1]["name"] == "payroll_check"
    assert back[0]["workflow"] == "month_close" and back[0]["workflow_id"] == "w1"
    assert back[4]["data"]["cost"] == 0.0123


def test_read_events_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    events = close_events()[:4]
    for event in events:
        log(event)
    log.close()
    whole = json.dumps(Event(EventType.AGENT_FINISHED, "w1", "x", {"status": "completed"}).to_dict())
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(whole[: len(whole) // 2])  # a crash mid-write
    assert path.read_text(encoding="utf-8").count("\n") == 4
    back = list(read_events(path))
    assert [e["type"] for e in back] == [e.type.value for e in events]
    assert [e["agent"] for e in back] == [e.agent for e in events]


def test_read_events_skips_blank_and_non_object_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = json.dumps(started("w1", "a").to_dict())
    last = json.dumps(started("w2", "b").to_dict())
    path.write_text(f"{first}\n\n[1, 2]\nnot json\n{last}\n", encoding="utf-8")
    assert [e["workflow_id"] for e in read_events(path)] == ["w1", "w2"]
