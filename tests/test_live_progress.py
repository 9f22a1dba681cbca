"""What a running workflow shows while it runs: a fan-out's items, the rate limit that paces it,
and a live table whose columns hold still from frame to frame."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrate import EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import ProviderUnavailableError
from orchestrate.money.rate_limit import RateLimitConfig, RateLimiterRegistry
from orchestrate.observe.dataset_progress import LiveDataset, PlainDatasetLog
from orchestrate.observe.live_layout import break_name
from orchestrate.observe.progress import LiveTable, PlainLog
from orchestrate.run.events import Event, EventType
from orchestrate.run.monitor import Monitor
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


# --------------------------------------------------------------------------- the limit that paces a run


def test_the_registry_names_the_binding_limit_in_plans_words_and_counts_the_queue() -> None:
    clock = Clock()
    registry = RateLimiterRegistry(
        RateLimitConfig(), {"openai": {"requests_per_minute": 60, "concurrent_requests": 50}}, clock=clock
    )
    assert registry.try_acquire("openai", "gpt-4o-mini", 100) is not None
    held = registry.holding("openai", "gpt-4o-mini", 100)  # the next call must wait a second
    assert held is not None
    assert held["text"] == "openai 60/min (rate_limits.openai)" and held["queued"] == 1
    assert held["rate"] == "60/min" and held["source"] == "rate_limits.openai"
    unnamed = RateLimiterRegistry(RateLimitConfig(requests_per_minute=30, concurrent_requests=1), clock=clock)
    assert unnamed.try_acquire("anthropic", "claude-3-5-haiku", 100) is not None
    held = unnamed.holding("anthropic", "claude-3-5-haiku", 100)
    assert held is not None and held["text"] == "anthropic 1 at a time (the default)"
    assert registry.holding("mistral", "mistral-small", 100) is None  # nothing known holds it


def rate_events(table: Any, queued: int, *, at: float, waited: float = 0.0, ended: int = 0) -> None:
    text = "openai 60/min (rate_limits.openai)"
    for n in range(queued):
        table(
            Event(
                EventType.RATE_LIMIT_WAITING,
                "w1",
                "check_line",
                {"limit": "openai", "text": text, "queued": n + 1, "provider": "openai"},
                timestamp=at,
                workflow_name="month_close",
            )
        )
    for n in range(ended):
        table(
            Event(
                EventType.AGENT_RATE_LIMITED,
                "w1",
                "check_line",
                {"waited": waited, "provider": "openai", "limit": "openai", "text": text, "queued": queued - n - 1},
                timestamp=at + waited,
                workflow_name="month_close",
            )
        )


def test_the_live_table_names_the_limit_and_the_queue_and_counts_waits_wall_clock() -> None:
    table = fanning_table(Clock())
    rate_events(table, 27, at=1000.0)
    text = " ".join(draw(table, 80).split())
    assert "paced by openai 60/min (rate_limits.openai): 27 calls queued" in text
    rate_events(table, 0, at=1000.0)
    for n in range(10):  # ten calls that waited side by side for 6 s: the run lost 6 s, not 60
        table(
            Event(
                EventType.AGENT_RATE_LIMITED,
                "w1",
                "check_line",
                {"waited": 6.0, "provider": "openai", "limit": "openai", "text": "t", "queued": 26 - n},
                timestamp=1006.0 + n * 0.001,
                workflow_name="month_close",
            )
        )
    text = " ".join(draw(table, 80).split())
    assert "rate-limit wait 6.0s" in text and ": 17 calls queued" in text
    table(ev(EventType.WORKFLOW_FINISHED, status="completed"))
    assert "paced by" not in draw(table, 80)


def test_a_dataset_run_shows_the_limit_that_paces_it_and_wall_clock_waits() -> None:
    out = io.StringIO()
    log = PlainDatasetLog("invoices", out, total=10, budget=None, spent=lambda: 0.0, in_flight=lambda: 3, clock=Clock())
    rate_events(log, 4, at=1000.0, waited=2.0, ended=1)
    assert log.waited == 2.0
    assert log.line().endswith("2.0s rate-limit waits; paced by openai 60/min (rate_limits.openai): 3 calls queued")
    rate_events(log, 0, at=1001.0, waited=2.0, ended=3)  # waits of 1000-1002 and 1001-1003: 3 s in all
    assert log.waited == 3.0 and "paced by" not in log.line()


PACED = """\
name: month_close
rate_limits:
  simulated: {requests_per_minute: 600}
inputs:
  lines: {type: array, default: [1, 2, 3, 4, 5, 6, 7, 8]}
agents:
  - name: check_line
    module: Finance
    foreach: "{inputs.lines}"
    max_items: 8
    prompt_template: Check line {item}.
    llm_config: {model: gpt-4o-mini, max_tokens: 20}
"""


def test_a_piped_run_says_what_paces_it_while_it_waits(tmp_path: Path) -> None:
    (tmp_path / "paced.yaml").write_text(PACED)
    done = orchestrate("run", "paced.yaml", "--simulate", "--format", "json", cwd=tmp_path, columns=80)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["status"] == "completed"
    assert "month_close paced by simulated 600/min (rate_limits.simulated): 1 call queued" in done.stderr
    waits = [line for line in done.stderr.splitlines() if "rate limited: waited" in line]
    assert len(waits) == 7, done.stderr  # the first call starts at once, the other seven wait their turn
    assert re.search(r"for simulated 600/min \(rate_limits\.simulated\), [1-6] calls? still queued$", waits[0])
    assert waits[-1].endswith("for simulated 600/min (rate_limits.simulated)")


# --------------------------------------------------------------------------- one layout, names whole words

LONG = [
    "reconcile_vendor_statements_quarterly",
    "check-intercompany-balances-eu",
    "summary",
    "post_adjusting_journal_entries",
]


def frames(width: int) -> list[str]:
    """A run drawn after each of its steps: start, a fan-out, tokens, a retry, a failure, the end."""
    clock = Clock()
    table = LiveTable(console=None, clock=clock)
    steps: list[list[Event]] = [
        [
            ev(
                EventType.WORKFLOW_STARTED,
                agents=[{"name": n, "module": "Finance", "model": "gpt-4o-mini"} for n in LONG],
                cost_budget=2.0,
            )
        ],
        [
            ev(EventType.AGENT_STARTED, LONG[0], attempt=1, model="gpt-4o-mini"),
            ev(EventType.ITEMS_STARTED, LONG[0], total=12),
        ],
        [ev(EventType.LLM_CALL, LONG[0], input_tokens=123_456, output_tokens=1_000, cost=0.1234)],
        [
            ev(EventType.AGENT_STARTED, LONG[1], attempt=1, model="gpt-4o-mini"),
            ev(EventType.AGENT_RETRYING, LONG[1], attempt=1, delay=12.0, error="simulated 429: slow down " * 4),
        ],
        [
            ev(
                EventType.AGENT_FINISHED,
                LONG[1],
                status="failed",
                error="simulated 502: upstream unavailable",
                cost=0.00002,
                tokens_used=12,
                execution_time=3.3,
            )
        ],
        [ev(EventType.ITEM_FINISHED, LONG[0], index=1, status="completed", done=9, failed=0, total=12, retrying=2)],
        [ev(EventType.AGENT_STARTED, LONG[3], attempt=1, model="gpt-4o-mini")],
    ]
    drawn = []
    for step in steps:
        for event in step:
            table(event)
        clock.now += 1.5
        drawn.append(draw(table, width, 40))
    return drawn


def header(frame: str) -> str:
    return next(line for line in frame.splitlines() if line.startswith("┏"))


def agent_cells(frame: str) -> list[str]:
    """The agent column's text, line by line, of the table's body."""
    return [line.split("│")[1].strip() for line in frame.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("width", [80, 60])
def test_the_live_table_keeps_one_column_layout_from_frame_to_frame(width: int) -> None:
    drawn = frames(width)
    assert len({header(frame) for frame in drawn}) == 1, "\n".join(drawn)
    for frame in drawn:
        assert all(len(line) <= width for line in frame.splitlines()), frame
    assert all("$0.1234" in frame for frame in drawn[2:])  # a cost is never cut
    assert "124,456" in drawn[-1] and "9/12 items" in drawn[-1]  # a longer status wraps in its column


@pytest.mark.parametrize("width", [80, 60])
def test_long_agent_names_break_after_underscores_and_dashes_never_mid_word(width: int) -> None:
    frame = frames(width)[-1]
    cells = [cell for cell in agent_cells(frame) if cell]
    joined = "".join(cells)
    for name in LONG:
        assert name in joined, frame  # every name whole, its lines in order
    words = {w for name in LONG for w in re.split(r"[_-]", name)}
    for cell in cells:  # each line ends a word (at `_`, `-` or the name's end)
        assert cell[-1] in "_-" or any(cell.endswith(w) for w in words), (cell, frame)
        assert cell[0] not in "_-", (cell, frame)
    if width == 80:
        assert "reconcile_vendor_" in cells and "statements_quarterly" in cells


def test_break_name_folds_only_a_word_wider_than_the_column() -> None:
    assert break_name("reconcile_vendor_statements_quarterly", 20) == "reconcile_vendor_\nstatements_quarterly"
    assert break_name("check-intercompany-balances-eu", 14) == "check-\nintercompany-\nbalances-eu"
    assert break_name("summary", 7) == "summary"
    assert break_name("supercalifragilistic_x", 8) == "supercal\nifragili\nstic_x"


# --------------------------------------------------------------------------- dataset runs whose rows fan out

ROWS = """\
name: month_close
inputs:
  invoice_id: {type: string}
  lines: {type: array, default: [1, 2, 3]}
agents:
  - name: check_line
    module: Finance
    foreach: "{inputs.lines}"
    max_items: 3
    prompt_template: Check line {item} of {inputs.invoice_id}.
    llm_config: {model: gpt-4o-mini, max_tokens: 20}
"""


def test_a_dataset_run_counts_the_items_its_rows_fan_out_over() -> None:
    log = PlainDatasetLog("invoices", io.StringIO(), total=2, budget=None, spent=lambda: 0.0, in_flight=lambda: 0)
    assert "items" not in log.line()  # rows that do not fan out say nothing of items
    for row in ("w1", "w2"):
        log(Event(EventType.ITEMS_STARTED, row, "check_line", {"total": 3}))
    for n, status in enumerate(["completed", "failed", "completed", "completed"]):
        log(Event(EventType.ITEM_FINISHED, "w1", "check_line", {"index": n, "status": status}))
    assert log.line().endswith("rate-limit waits; items 4/6, 1 failed")


def test_a_piped_dataset_run_ends_with_its_rows_items_and_keeps_them_out_of_its_event_log(tmp_path: Path) -> None:
    (tmp_path / "rows.yaml").write_text(ROWS)
    (tmp_path / "rows.csv").write_text("invoice_id\nINV-1\nINV-2\nINV-3\n")
    done = orchestrate(
        "run", "rows.yaml", "--data", "rows.csv", "--key", "invoice_id", "--simulate", cwd=tmp_path, columns=80
    )
    assert done.returncode == 0, done.stderr
    assert "3/3 rows (3 completed" in done.stderr and "; items 9/9" in done.stderr, done.stderr
    (log,) = tmp_path.glob("runs/*/events.jsonl")
    assert '"item_finished"' not in log.read_text() and '"items_started"' not in log.read_text()


def test_a_provider_paused_after_a_429_is_named_as_the_limit_that_holds_calls_back() -> None:
    clock = Clock()
    registry = RateLimiterRegistry(None, clock=clock)  # nothing limited until the provider refuses
    registry.pause_provider("openai", 20.0)  # a 429 with retry-after: 20
    held = registry.holding("openai", "gpt-4o-mini", 100)
    assert held is not None and held["tier"] == "paused" and held["queued"] == 1
    assert held["text"] == "openai, paused by the provider (a 429 or an exhausted quota)"
    clock.now += 21
    assert registry.holding("openai", "gpt-4o-mini", 100) is None  # the pause is over: nothing holds it


def test_a_wait_cut_short_by_its_agents_end_leaves_the_queue() -> None:
    table = fanning_table(Clock())
    rate_events(table, 2, at=1000.0)  # two calls of check_line wait; neither wait ends (a timeout)
    assert "2 calls queued" in draw(table, 80)
    table(ev(EventType.AGENT_FINISHED, "check_line", status="failed", error="agent timed out after 5s", cost=0.0))
    assert "paced by" not in draw(table, 80)


def test_at_40_columns_the_token_count_goes_before_a_cost_is_cut() -> None:
    frame = frames(40)[-1]
    assert all(len(line) <= 40 for line in frame.splitlines()), frame
    assert "$0.1234" in frame and "$0.000020" in frame and "…" not in frame, frame
    assert "tokens" not in header(frame) + frame.splitlines()[2]


def test_the_dataset_panel_at_80_columns_shows_the_items_and_the_limit_that_paces_it() -> None:
    live = LiveDataset(
        "invoices", Console(file=io.StringIO(), width=80), total=10, budget=None, spent=lambda: 0.0, in_flight=lambda: 3
    )
    live(Event(EventType.ITEMS_STARTED, "w1", "check_line", {"total": 12}))
    for n in range(7):
        live(Event(EventType.ITEM_FINISHED, "w1", "check_line", {"index": n, "status": "completed"}))
    rate_events(live, 27, at=1000.0)
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(live.render())
    text = buffer.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "7/12" in text and "openai 60/min (rate_limits.openai): 27 calls queued" in text, text


# --------------------------------------------------------------------------- in a real terminal, 80 columns

LIVE = """\
name: vendor_close
rate_limits:
  simulated: {requests_per_minute: 300}
inputs:
  lines: {type: array, default: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
agents:
  - name: reconcile_vendor_statements_quarterly
    module: Finance
    foreach: "{inputs.lines}"
    max_items: 10
    prompt_template: Reconcile line {item}.
    llm_config: {model: gpt-4o-mini, max_tokens: 20}
  - name: post_adjusting_journal_entries
    module: Finance
    dependencies: [reconcile_vendor_statements_quarterly]
    prompt_template: Post the entries.
    llm_config: {model: gpt-4o-mini, max_tokens: 20}
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_a_live_run_at_80_columns_keeps_its_layout_and_shows_items_and_pacing(tmp_path: Path) -> None:
    from tests.terminal import Terminal, plain

    (tmp_path / "live.yaml").write_text(LIVE)
    with Terminal(["run", "live.yaml", "--simulate"], tmp_path) as terminal:
        code = terminal.finish(120)
        screen = plain(terminal.screen)
    assert code == 0, screen
    headers = {line.strip() for line in screen.splitlines() if line.startswith("┏")}
    assert len(headers) == 1, screen  # every frame has the same columns, the same widths
    rows = [line.rstrip() for line in screen.splitlines() if line[:1] in ("┏", "┃", "┡", "│", "└")]
    assert rows and all(len(line) <= 80 for line in rows), screen
    assert re.search(r"\d+/10 items", screen), screen
    assert "paced by simulated 300/min (rate_limits.simulated): " in screen, screen
    cells = {line.split("│")[1].strip() for line in screen.splitlines() if line.startswith("│")}
    assert "reconcile_vendor_statements_" in cells or "reconcile_vendor_" in cells, screen
    assert not any(cell.endswith(("reconcil", "statemen", "quarterl")) for cell in cells), screen


def test_a_provider_whose_headers_say_nothing_remains_is_named_as_what_holds_the_next_call(tmp_path: Path) -> None:
    from tests.fake_provider import FakeProvider

    # Every answer says no request remains until 2 s from now: the next agent's call waits for it.
    with FakeProvider(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}) as fake:
        llm = f"{{model: gpt-4o-mini, base_url: '{fake.url}/v1', max_tokens: 20}}"
        (tmp_path / "chain.yaml").write_text(
            "name: chain\ndefaults: {module: Finance}\nrate_limits:\n  openai: {requests_per_minute: 6000}\nagents:\n"
            f"  - name: first\n    prompt_template: one\n    llm_config: {llm}\n"
            f"  - name: second\n    dependencies: [first]\n    prompt_template: two\n    llm_config: {llm}\n"
        )
        done = orchestrate(
            "run", "chain.yaml", "--format", "json", cwd=tmp_path, columns=80, env={"OPENAI_API_KEY": "sk-test"}
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["status"] == "completed"
    paused = "openai, paused by the provider (a 429 or an exhausted quota)"
    assert f"chain paced by {paused}: 1 call queued" in done.stderr, done.stderr
    assert re.search(rf"chain/second rate limited: waited \d+\.\d\ds for {re.escape(paused)}\n", done.stderr)


def test_the_monitor_counts_rate_limit_waits_both_summed_and_wall_clock() -> None:
    clock = Clock()
    monitor = Monitor(clock=clock)
    clock.now = 1006.0
    for _ in range(10):  # ten calls that waited side by side for 6 s
        monitor(Event(EventType.AGENT_RATE_LIMITED, "w1", "a", {"waited": 6.0, "provider": "openai"}))
    clock.now = 1010.0  # and one more that waited 2 s after them
    monitor(Event(EventType.AGENT_RATE_LIMITED, "w1", "a", {"waited": 2.0, "provider": "openai"}))
    metrics = monitor.get_metrics()
    assert metrics["rate_limited_seconds"] == 62.0 and metrics["rate_limited_wall_seconds"] == 8.0
    assert monitor.get_summary()["rate_limiting"]["waited_wall_seconds"] == 8.0
