"""What the engine's fast paths must keep: the collector restored, limits and counts as before."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import subprocess
import sys
import weakref
from typing import Any

from orchestrate import Agent, EngineConfig, OrchestrationEngine, RateLimitConfig
from orchestrate.money.rate_limit import RateLimiter, skew_margin
from orchestrate.run.events import Event, EventType
from orchestrate.run.monitor import Monitor
from orchestrate.run.resume import definition_digest
from tests.scripted import FakeSleep, ScriptedClient
from tests.test_engine import agent, run, workflow


async def test_the_collector_is_quiet_while_a_run_is_in_flight_and_restored_after() -> None:
    before = gc.get_threshold()
    seen: list[tuple[tuple[int, ...], int]] = []
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    engine.add_sink(lambda e: seen.append((gc.get_threshold(), gc.get_freeze_count())))
    result = await run(engine, workflow(agent("a"), agent("b", ("a",))))
    assert result.status.value == "completed"
    assert all(thresholds[0] >= 50_000 for thresholds, _ in seen)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_overlapping_runs_restore_the_collector_once_the_last_ends() -> None:
    before = gc.get_threshold()
    engine = OrchestrationEngine(ScriptedClient(delay=0.01), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    first = await engine.register_workflow(workflow(agent("a"), name="one"))
    second = await engine.register_workflow(workflow(agent("b"), agent("c", ("b",)), name="two"))
    done = await asyncio.gather(engine.execute_workflow(first), engine.execute_workflow(second))
    assert [wf.status.value for wf in done] == ["completed", "completed"]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_a_collector_quieted_already_is_left_as_it_is() -> None:
    before = gc.get_threshold()
    gc.set_threshold(80_000, *before[1:])
    try:
        engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
        await run(engine, workflow(agent("a")))
        assert gc.get_threshold() == (80_000, *before[1:])
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_a_paced_tier_keeps_its_spacing_on_the_fast_path() -> None:
    now = [100.0]
    limiter = RateLimiter(RateLimitConfig(requests_per_minute=600, concurrent_requests=100), clock=lambda: now[0])
    assert limiter.try_start(10)
    now[0] += 0.001  # well inside the log's newest entry, far before the next paced start (0.1 s)
    assert not limiter.try_start(10)
    assert limiter.in_flight == 1
    now[0] += 0.1
    assert limiter.try_start(10)
    assert limiter.in_flight == 2
    assert limiter.total_requests == 2


def test_a_refused_fast_start_gives_its_concurrency_slot_back() -> None:
    now = [100.0]
    limiter = RateLimiter(RateLimitConfig(requests_per_minute=1, concurrent_requests=1), clock=lambda: now[0])
    assert limiter.try_start(1)
    limiter.release()
    assert not limiter.try_start(1)  # the minute's one request is spent
    assert limiter.ready(1) is False
    now[0] += 60.0 + skew_margin(60.0, 1)  # the minute and the limiter's margin against clock skew
    assert limiter.try_start(1)  # the slot was not kept by the refusal


def test_the_monitor_counts_ends_by_status_only_for_known_counters() -> None:
    monitor = Monitor()
    for status in ("completed", "failed", "skipped", "rate_limited"):
        monitor(Event(EventType.AGENT_FINISHED, "w", "a", {"status": status, "execution_time": 1.0}))
    monitor(Event(EventType.WORKFLOW_FINISHED, "w", None, {"status": "partially_completed", "duration": 2.0}))
    monitor.record_event("agent_finished", "a", "w", {"status": 5})
    c = monitor.counters
    assert (c["agents_completed"], c["agents_failed"], c["agents_rate_limited"]) == (1, 1, 1)
    assert c["workflows_partially_completed"] == 1
    assert monitor.agents_finished == 5
    assert monitor.get_summary()["agents"]["avg_execution_time"] == 4.0 / 5


async def test_a_finished_agents_task_is_not_held_until_the_run_ends() -> None:
    refs: dict[str, weakref.ref[asyncio.Task[Any]]] = {}
    alive_when_b_started: list[bool] = []

    def sink(event: Event) -> None:
        task = asyncio.current_task()
        if event.type is EventType.AGENT_STARTED and task is not None:
            refs[event.agent or ""] = weakref.ref(task)
            if event.agent == "b":
                gc.collect()
                alive_when_b_started.append(refs["a"]() is not None)

    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    engine.add_sink(sink)
    result = await run(engine, workflow(agent("a", timeout=600.0), agent("b", ("a",), timeout=600.0)))
    assert result.status.value == "completed"
    assert alive_when_b_started == [False]


async def test_an_agent_past_its_timeout_is_still_cancelled() -> None:
    engine = OrchestrationEngine(ScriptedClient(delay=5.0), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    result = await run(engine, workflow(agent("slow", timeout=0.05), agent("after", ("slow",))))
    slow = result.agents[0].result
    assert slow is not None and slow.error == "agent timed out after 0.05s"
    assert [a.status.value for a in result.agents] == ["cancelled", "cancelled"]


def test_an_agents_definition_digest_is_the_one_earlier_runs_recorded() -> None:
    """Resuming compares fingerprints with run folders written before: the bytes hashed never change."""
    cases = [
        agent("a"),
        agent("b", ("a",), llm={"temperature": 0.25, "stop": ["\n", "'"], "batch": True, "system": 'say "hi"'}),
        agent("c", output_schema={"type": "object", "properties": {"x": {"type": "number"}}}, tools=["t.py:f"]),
        agent("d", llm={"top_p": None, "nested": {"k": [1, (2, 3)], "é": "ü"}, "latency": [0.1, 0.2]}),
        Agent("e", "Finance", "", {}, "", function="steps.py:total", arguments={"x": 1}),
    ]
    for case in cases:
        llm = case.llm_config
        config = sorted(i for i in llm.items() if i[0] != "batch")
        parts: tuple[Any, ...] = (config, case.tools, case.output_schema, case.dependencies)
        if case.function is not None:
            parts += (case.function,)
        expected = hashlib.blake2b(repr(parts).encode(), digest_size=16)
        assert definition_digest(case).hexdigest() == expected.hexdigest()


def test_equal_but_differently_typed_configs_keep_their_own_digests() -> None:
    digests = {
        definition_digest(agent("x", llm={"temperature": value})).hexdigest() for value in (1, 1.0, True, "1", None)
    }
    assert len(digests) == 5
    again = definition_digest(agent("x", llm={"temperature": 1.0})).hexdigest()
    assert again in digests


def test_the_engine_runs_without_importing_httpx() -> None:
    """An engine whose client makes no HTTP call does not load httpx (about 11 MB of memory at 10,000 agents)."""
    script = (
        "import sys\n"
        "from orchestrate import Agent, EngineConfig, LLMClient, OrchestrationEngine, RateLimitConfig, Workflow\n"
        "import orchestrate.llm.batch_api, orchestrate.redaction\n"
        "assert 'httpx' not in sys.modules, 'httpx imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_scrubbed_provider_error_hides_the_key_wherever_it_is_imported_from() -> None:
    from orchestrate.errors import LLMError
    from orchestrate.llm.http import scrub_error as from_http
    from orchestrate.redaction import scrub_error

    assert from_http is scrub_error
    exc = scrub_error(
        LLMError("bad key sk-secret-123456789", request_id="req-sk-secret-123456789"), "sk-secret-123456789"
    )
    assert "sk-secret-123456789" not in str(exc) and "sk-secret-123456789" not in (exc.request_id or "")


def test_a_prompt_without_placeholders_takes_no_place_in_the_template_cache() -> None:
    """Thousands of agents with plain prompts must not push out the templates that need compiling."""
    from orchestrate.workflow import templates

    before = templates._compile.cache_info().currsize
    assert templates.static_prefix("Task 12345 with no placeholder") == "Task 12345 with no placeholder"
    assert templates._compile.cache_info().currsize == before
    assert templates.static_prefix("Review {{literal}} then {inputs.x}") == "Review {literal} then "
