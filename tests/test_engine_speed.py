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
    # a1 ends with nothing ready to start (b waits for a2): its task ends there. a2's task
    # carries on with b (see the hand-over tests below), so a1's is the finished one.
    refs: dict[str, weakref.ref[asyncio.Task[Any]]] = {}
    alive_when_b_started: list[bool] = []

    def sink(event: Event) -> None:
        task = asyncio.current_task()
        if event.type is EventType.AGENT_STARTED and task is not None:
            refs[event.agent or ""] = weakref.ref(task)
            if event.agent == "b":
                gc.collect()
                alive_when_b_started.append(refs["a1"]() is not None)

    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    engine.add_sink(sink)
    agents = (agent("a1", timeout=600.0), agent("a2", timeout=600.0), agent("b", ("a1", "a2"), timeout=600.0))
    result = await run(engine, workflow(*agents))
    assert result.status.value == "completed"
    assert alive_when_b_started == [False]


def _started_in(engine: OrchestrationEngine) -> list[tuple[str, int]]:
    """(agent, id of the task it started in), in the order the agents started."""
    started: list[tuple[str, int]] = []

    def sink(event: Event) -> None:
        if event.type is EventType.AGENT_STARTED:
            started.append((event.agent or "", id(asyncio.current_task())))

    engine.add_sink(sink)
    return started


async def test_a_chain_runs_in_the_task_of_its_first_agent() -> None:
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    started = _started_in(engine)
    result = await run(engine, workflow(agent("a"), agent("b", ("a",)), agent("c", ("b",))))
    assert [a.status.value for a in result.agents] == ["completed"] * 3
    assert [name for name, _ in started] == ["a", "b", "c"]
    assert len({task for _, task in started}) == 1


async def test_an_agent_made_ready_waits_behind_agents_already_started() -> None:
    # The month-end close's opening (docs/ci.md shows it): three start, and `adjustments`, made
    # ready when `accruals` ends, starts after `intercompany`, whose task was already queued,
    # not in `accruals`' task ahead of it.
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    started = _started_in(engine)
    agents = (
        agent("bank", priority=9),
        agent("accruals", priority=7),
        agent("intercompany", priority=6),
        agent("adjustments", ("bank", "accruals"), priority=8),
    )
    result = await run(engine, workflow(*agents, max_parallel_agents=3))
    assert result.status.value == "completed"
    assert [name for name, _ in started] == ["bank", "accruals", "intercompany", "adjustments"]


async def test_a_handed_over_task_goes_on_after_its_agent_timed_out() -> None:
    # One at a time: `slow` times out in the task `first` ended in; that task then runs `last`.
    client = ScriptedClient(delay=lambda prompt: 5.0 if "slow" in prompt else 0.0)
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    started = _started_in(engine)
    agents = (agent("first"), agent("slow", ("first",), timeout=0.05), agent("last", ("first",)))
    result = await run(engine, workflow(*agents, max_parallel_agents=1, allow_partial_completion=True))
    first, slow, last = (a.result for a in result.agents)
    assert first is not None and slow is not None and last is not None
    assert (first.status.value, slow.status.value, last.status.value) == ("completed", "cancelled", "completed")
    assert slow.error == "agent timed out after 0.05s"
    assert [name for name, _ in started] == ["first", "slow", "last"]
    assert len({task for _, task in started}) == 1


async def test_an_agent_past_its_timeout_is_still_cancelled() -> None:
    engine = OrchestrationEngine(ScriptedClient(delay=5.0), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    result = await run(engine, workflow(agent("slow", timeout=0.05), agent("after", ("slow",))))
    slow = result.agents[0].result
    assert slow is not None and slow.error == "agent timed out after 0.05s"
    assert [a.status.value for a in result.agents] == ["cancelled", "cancelled"]


def _definitions() -> list[tuple[Agent, str]]:
    """Agents of every kind of definition, each with the text its digest has always hashed
    (``repr`` of llm_config's sorted items without ``batch``, tools, output schema, dependencies
    and, for a code step, its function)."""
    cases = [
        agent("a"),
        agent("b", ("a",), llm={"temperature": 0.25, "stop": ["\n", "'"], "batch": True, "system": 'say "hi"'}),
        agent("c", output_schema={"type": "object", "properties": {"x": {"type": "number"}}}, tools=["t.py:f"]),
        agent("d", llm={"top_p": None, "nested": {"k": [1, (2, 3)], "é": "ü"}, "latency": [0.1, 0.2]}),
        Agent("e", "Finance", "", {}, "", function="steps.py:total", arguments={"x": 1}),
    ]
    written = []
    for case in cases:
        config = sorted(i for i in case.llm_config.items() if i[0] != "batch")
        parts: tuple[Any, ...] = (config, case.tools, case.output_schema, case.dependencies)
        if case.function is not None:
            parts += (case.function,)
        written.append((case, repr(parts)))
    return written


def test_an_agents_definition_digest_is_the_one_earlier_runs_recorded() -> None:
    """Resuming compares fingerprints with run folders written before: the bytes hashed never change."""
    for case, text in _definitions():
        expected = hashlib.blake2b(text.encode(), digest_size=16)
        assert definition_digest(case).hexdigest() == expected.hexdigest()


def test_a_fingerprint_is_the_digest_of_the_definition_then_the_prompt() -> None:
    """`fingerprint` writes the definition's text and the prompt in one piece: the same bytes as ever."""
    from orchestrate.run.resume import fingerprint

    for case, text in _definitions():
        for prompt in ("", "Task a1", "ünïcode \x00 and {braces}", '{"x": 1}'):
            expected = hashlib.blake2b(f"{text}\x00{prompt}".encode(), digest_size=16).hexdigest()
            assert fingerprint(case, prompt) == expected
            digest = definition_digest(case)
            digest.update(b"\x00" + prompt.encode())
            assert digest.hexdigest() == expected  # what a shared shape's run computes


async def test_a_run_fingerprints_its_agents_alike_with_a_shared_shape_or_its_own() -> None:
    from orchestrate.run.scheduler import RunShape

    def made() -> Any:
        return workflow(agent("a"), agent("b", ("a",), llm={"temperature": 0.5}), agent("c", ("a", "b")), name="fp")

    own = await run(
        OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep()), made()
    )
    shared_wf = made()
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    from orchestrate.run.scheduler import WorkflowRun

    await engine.register_workflow(shared_wf)
    shape = RunShape.of(shared_wf, shared=True)
    done = await WorkflowRun(shared_wf, engine.executor, engine.failure_handler, engine.emit, shape=shape).run()
    first = [a.result.metadata["fingerprint"] for a in own.agents if a.result is not None]
    second = [a.result.metadata["fingerprint"] for a in done.agents if a.result is not None]
    assert len(first) == 3 and first == second


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


def _monitor_cases() -> list[tuple[EventType, dict[str, Any]]]:
    """The three events of every agent, with the values the engine sends and odd ones a caller may."""
    from orchestrate.workflow.models import AgentStatus

    started = [1, 2, 0, None, "1", "3", 1.0, 1.5, True, False]
    tokens = [3, 0, None, "7", 2.9, True, -4]
    costs = [0.25, 0, None, "0.5", 2, 1e-12]
    statuses = ["completed", "failed", "cancelled", "budget_exceeded", "skipped", "rate_limited", "", None, 5]
    cases: list[tuple[EventType, dict[str, Any]]] = []
    cases += [(EventType.AGENT_STARTED, {"attempt": a, "model": "m"}) for a in started]
    cases.append((EventType.AGENT_STARTED, {}))
    for i, t in enumerate(tokens):
        data = {"input_tokens": t, "output_tokens": tokens[-1 - i], "cost": costs[i % len(costs)], "cached": i % 3 == 0}
        cases.append((EventType.LLM_CALL, data))
    cases.append((EventType.LLM_CALL, {}))
    for i, s in enumerate([*statuses, AgentStatus.COMPLETED]):
        cases.append((EventType.AGENT_FINISHED, {"status": s, "execution_time": [1.5, 2, None, "0.25"][i % 4]}))
    cases.append((EventType.AGENT_FINISHED, {}))
    cases.append((EventType.WORKFLOW_FINISHED, {"status": "failed", "duration": 3.0}))
    cases.append((EventType.TOOL_CALL, {"tool": "t"}))
    return cases


def test_the_monitors_counting_of_an_agents_events_is_that_of_record_event() -> None:
    """`Monitor.__call__` counts agent_started, llm_call and agent_finished inline; `record_event`
    through the per-kind handlers: both must keep the same counters, sums, snapshots and events."""
    import logging

    from orchestrate.run.monitor import MonitorConfig

    config = MonitorConfig(metrics_interval=5.0, max_events=7, max_snapshots=4)
    fast, slow = Monitor(config, clock=lambda: 100.0), Monitor(config, clock=lambda: 100.0)
    cases = _monitor_cases() + [(EventType.LLM_CALL, {"input_tokens": "many"}), (EventType.LLM_CALL, {"cost": "x"})]
    cases += [(EventType.AGENT_STARTED, {"attempt": "first"}), (EventType.AGENT_FINISHED, {"execution_time": "x"})]
    logging.getLogger("orchestrate").disabled = True  # the failed ends' warnings are not this test's
    try:
        for i, (kind, data) in enumerate(cases):
            stamp = 100.0 + 2 * i
            errors: list[str] = []
            try:
                fast(Event(kind, "w", f"a{i}", dict(data), timestamp=stamp))
            except ValueError as exc:
                errors.append(str(exc))
            try:
                slow.record_event(kind.value, f"a{i}", "w", dict(data), timestamp=stamp)
            except ValueError as exc:
                errors.append(str(exc))
            assert len(errors) in (0, 2) and len(set(errors)) <= 1, (kind, data, errors)
            assert fast.counters == slow.counters, (kind, data)
            assert (fast.total_cost, fast.agent_time, fast.agents_finished, fast.workflow_time) == (
                slow.total_cost,
                slow.agent_time,
                slow.agents_finished,
                slow.workflow_time,
            ), (kind, data)
    finally:
        logging.getLogger("orchestrate").disabled = False
    assert fast.counters["agents_started"] > 0 and fast.counters["llm_calls"] > 0 and fast.agents_finished > 0
    assert fast.get_metrics() == slow.get_metrics()
    assert fast.get_summary() == slow.get_summary()
    assert fast.get_recent_events(100) == slow.get_recent_events(100)
    assert list(fast.snapshots) == list(slow.snapshots) and len(fast.snapshots) == 4


def test_the_monitor_logs_at_debug_exactly_while_debug_is_on(caplog: Any) -> None:
    """The Monitor skips asking the logger while logging's own answer for DEBUG is False: turning
    DEBUG on or off between events, or disabling the logger, is followed event by event."""
    import logging

    log = logging.getLogger("orchestrate")
    monitor = Monitor()
    seen: list[bool] = []

    def send(name: str) -> None:
        before = len(caplog.records)
        monitor(Event(EventType.AGENT_STARTED, "w", name, {"attempt": 1}))
        seen.append(len(caplog.records) > before)

    level = log.level
    try:
        log.setLevel(logging.INFO)
        send("a")
        send("b")
        log.setLevel(logging.DEBUG)
        send("c")
        log.disabled = True
        send("d")
        log.disabled = False
        send("e")
        logging.disable(logging.DEBUG)
        send("f")
        logging.disable(logging.NOTSET)
        send("g")
        log.setLevel(logging.WARNING)
        send("h")
    finally:
        log.setLevel(level)
        log.disabled = False
        logging.disable(logging.NOTSET)
    assert seen == [False, False, True, False, True, False, True, False]
    assert [r.getMessage().split(" ")[2] for r in caplog.records if r.name == "orchestrate"] == [
        "agent=c",
        "agent=e",
        "agent=g",
    ]


async def test_every_kind_of_sink_gets_the_events_in_order_and_a_failing_one_is_named() -> None:
    """Sinks whose class defines `__call__` are called through that method bound to them: every
    kind of sink still sees every event, in the order added, and a failure is kept under its name."""
    import functools

    seen: list[str] = []

    class Display:
        def __call__(self, event: Event) -> None:
            seen.append(f"display {event.type.value}")

    class Broken:
        def __call__(self, event: Event) -> None:
            seen.append(f"broken {event.type.value}")
            raise RuntimeError("terminal gone")

    class Static:
        @staticmethod
        def __call__(event: Event) -> None:  # unusual, but callable all the same
            seen.append(f"static {event.type.value}")

    class Inherited(Display):
        pass

    def function(event: Event) -> None:
        seen.append(f"function {event.type.value}")

    def tagged(tag: str, event: Event) -> None:
        seen.append(f"{tag} {event.type.value}")

    class Collector:
        def take(self, event: Event) -> None:
            seen.append(f"method {event.type.value}")

    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    sinks: list[Any] = [
        Display(),
        Broken(),
        Static(),
        Inherited(),
        function,
        functools.partial(tagged, "partial"),
        Collector().take,
    ]
    for sink in sinks[:-1]:
        engine.add_sink(sink)
    engine.sinks.append(sinks[-1])  # appended to the list directly: routed on the next event
    result = await run(engine, workflow(agent("a")))
    assert result.status.value == "completed"
    names = ["display", "broken", "static", "display", "function", "partial", "method"]
    kinds = ["workflow_started", "agent_started", "llm_call", "agent_finished", "workflow_finished"]
    assert seen == [f"{name} {kind}" for kind in kinds for name in names]
    assert engine.sink_failures == {"Broken": "RuntimeError: terminal gone"}
    assert engine.monitor.counters["agents_completed"] == 1


def test_events_made_without_init_are_the_events_event_makes() -> None:
    import dataclasses

    from orchestrate.run.events import new_event

    for content in (None, {"prompt": "p", "system": None}):
        made = new_event(EventType.LLM_CALL, "wf-1", "a", {"cost": 0.5}, "flow", content)
        plain = Event(EventType.LLM_CALL, "wf-1", "a", {"cost": 0.5}, workflow_name="flow", content=content)
        for f in dataclasses.fields(Event):  # every field set, to what Event's own __init__ sets
            if f.name == "timestamp":
                assert isinstance(getattr(made, f.name), float)
                assert abs(made.timestamp - plain.timestamp) < 5
            else:
                assert getattr(made, f.name) == getattr(plain, f.name), f.name
        assert made.to_dict() == {**plain.to_dict(), "timestamp": made.timestamp}
        assert type(made) is Event


def test_a_running_result_made_without_init_is_the_one_agentresult_makes() -> None:
    from datetime import UTC, datetime

    from orchestrate.run.scheduler import _running
    from orchestrate.workflow.models import AgentResult, AgentStatus

    now = datetime.now(UTC)
    made = _running("a", now)
    plain = AgentResult(agent_id="a", status=AgentStatus.RUNNING, started_at=now)
    assert made == plain
    assert list(vars(made).items()) == list(vars(plain).items())  # the same fields, in the same order
    assert made.metadata is not _running("b", now).metadata


async def test_the_call_tag_is_a_call_tag() -> None:
    from orchestrate.llm.batch_api import CALL_TAG, CallTag

    seen: list[Any] = []

    class Tagged(ScriptedClient):
        async def complete(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(CALL_TAG.get())
            return await super().complete(*args, **kwargs)

    engine = OrchestrationEngine(Tagged(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    result = await run(engine, workflow(agent("a"), name="tags"))
    assert result.status.value == "completed"
    assert len(seen) == 1 and type(seen[0]) is CallTag
    assert seen[0] == CallTag(result.id, "tags", "a", 1)
    assert seen[0].agent == "a" and seen[0].attempt == 1


def test_a_fresh_usage_is_the_one_usage_makes() -> None:
    import dataclasses

    from orchestrate.run.executor import Usage, _fresh_usage

    made, plain = _fresh_usage(), Usage()
    assert made == plain
    for f in dataclasses.fields(Usage):  # every field set, each list its own
        assert getattr(made, f.name) == getattr(plain, f.name)
        if isinstance(getattr(made, f.name), list):
            assert getattr(made, f.name) is not getattr(_fresh_usage(), f.name)


async def test_cache_savings_are_asked_only_of_calls_that_read_or_wrote_the_cache() -> None:
    """A call with no cache tokens books 0.0 without asking: what asking would have said."""
    from orchestrate import LLMClient, LLMResponse
    from orchestrate.money.costs import CostTracker

    shapes = {  # agent -> (cached, written 5 min, written 1 h)
        "none": (0, 0, 0),
        "read": (400, 0, 0),
        "written": (0, 300, 0),
        "written_1h": (0, 300, 300),
        "only_1h": (0, 0, 50),
        "both": (200, 100, 40),
    }

    class Caching(LLMClient):
        provider = "anthropic"

        async def complete(self, prompt: str, model: str, *args: Any, **kwargs: Any) -> LLMResponse:
            cached, written, written_1h = shapes[prompt.split()[0]]
            return LLMResponse(
                "ok",
                model,
                1000,
                10,
                "stop",
                cached_input_tokens=cached,
                cache_creation_input_tokens=written,
                cache_creation_1h_input_tokens=written_1h,
                provider="anthropic",
            )

        async def complete_with_tools(self, messages: Any, model: str, *args: Any, **kwargs: Any) -> LLMResponse:
            return await self.complete(messages[-1]["content"], model)

    seen: dict[str, dict[str, Any]] = {}

    def keep(event: Event) -> None:
        if event.type is EventType.LLM_CALL and event.agent is not None:
            seen[event.agent] = event.data

    engine = OrchestrationEngine(Caching(), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    engine.add_sink(keep)
    model = "claude-sonnet-4-5"
    agents = [agent(name, prompt=name + " x" * 3000, llm={"model": model}) for name in shapes]  # room for 1,000
    result = await run(engine, workflow(*agents, name="savings"))
    assert result.status.value == "completed"
    plain = CostTracker()
    for name, (cached, written, written_1h) in shapes.items():
        asked = plain.cache_savings(
            model,
            1000,
            cached_input_tokens=cached,
            cache_creation_input_tokens=written,
            cache_creation_1h_input_tokens=written_1h,
        )
        assert seen[name]["cache_savings"] == (round(asked, 10) if asked else asked), name
        assert seen[name]["usage_anomaly"] is None
    assert seen["none"]["cache_savings"] == 0.0 and seen["read"]["cache_savings"] > 0


def test_an_llm_configs_text_is_its_sorted_items_whatever_came_before() -> None:
    """The config text kept from the agent before is used only for an equal config of the same
    value types: in any order of configs, each is written as repr() of its sorted items."""
    import random

    from orchestrate.run import resume

    pool: list[dict[str, Any]] = [
        {"model": "gpt-4o-mini", "max_tokens": 64},
        {"max_tokens": 64, "model": "gpt-4o-mini"},  # the same, in another order
        {"model": "gpt-4o-mini", "max_tokens": 64.0},  # equal, another type
        {"model": "gpt-4o-mini", "max_tokens": True},
        {"model": "gpt-4o-mini", "max_tokens": 1},
        {"model": "gpt-4o-mini", "max_tokens": 1.0},
        {"model": "gpt-4o-mini", "max_tokens": 64, "batch": True},
        {"model": "gpt-4o-mini", "max_tokens": 64, "batch": False},
        {"model": "gpt-4o", "max_tokens": 64},
        {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": None},
        {"temperature": 1, "max_tokens": 1.0},  # these two are equal, their types swapped by key:
        {"max_tokens": 1, "temperature": 1.0},  # in the order of their keys, the same types
        {"model": "gpt-4o-mini", "stop": ["\n"]},  # not plain: never kept
        {"model": "gpt-4o-mini", "stop": ["\n", "x"]},
        {"model": "gpt-4o-mini", "temperature": float("nan")},
        {},
    ]
    rng = random.Random(7)
    for _ in range(3000):
        config = rng.choice(pool)
        expected = repr(sorted(i for i in config.items() if i[0] != "batch"))
        assert resume._config_repr(config) == expected, config
    mutable = {"model": "gpt-4o-mini", "max_tokens": 64}
    assert resume._config_repr(mutable) == "[('max_tokens', 64), ('model', 'gpt-4o-mini')]"
    mutable["max_tokens"] = 65  # the same dict, changed since: its new text
    assert resume._config_repr(mutable) == "[('max_tokens', 65), ('model', 'gpt-4o-mini')]"


def test_a_calls_route_is_the_one_its_key_finds_whatever_call_came_before() -> None:
    """The route kept from the call before is used only for the same provider and an equal
    llm_config: in any order of calls, each gets the route worked out for it alone."""
    import random

    fast = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None)).executor
    plain = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None)).executor
    configs: list[tuple[str, dict[str, Any]]] = [
        ("openai", {"model": "gpt-4o-mini", "max_tokens": 64}),
        ("openai", {"max_tokens": 64, "model": "gpt-4o-mini"}),
        ("openai", {"model": "gpt-4o", "max_tokens": 64}),
        ("azure", {"model": "my-deployment", "price_as": "gpt-4o-mini", "base_url": "https://x.openai.azure.com"}),
        ("bedrock", {"model": "eu.anthropic.claude-3-5-haiku-20241022-v1:0", "region": "eu-west-1"}),
        ("bedrock", {"model": "eu.anthropic.claude-3-5-haiku-20241022-v1:0", "region": "eu-central-1"}),
        ("simulated", {"model": "gpt-4o-mini", "provider": "openai"}),
        ("simulated", {"model": "claude-3-5-haiku-20241022"}),
        ("anthropic", {"model": "claude-3-5-haiku-20241022", "stop": ["\n"]}),
        ("scripted", {"model": "gpt-4o-mini", "max_tokens": 64}),
    ]
    rng = random.Random(11)
    for _ in range(2000):
        provider, llm = rng.choice(configs)
        plain._last_route = (None, None, ("", "", 1.0, None))  # the general path, every call
        assert fast._route(provider, llm) == plain._route(provider, llm), (provider, llm)
    mutable = {"model": "gpt-4o-mini"}
    first = fast._route("openai", mutable)
    mutable["model"] = "gpt-4o"  # the same dict, changed since: its new route
    assert fast._route("openai", mutable) == plain._route("openai", {"model": "gpt-4o"}) != first


def test_package_text_is_the_shipped_file() -> None:
    from importlib import resources

    from orchestrate.fsutil import package_text

    folder = resources.files("orchestrate").joinpath("data")
    names = sorted(e.name for e in folder.iterdir() if e.name.endswith(".json"))
    assert "prices.json" in names and "capabilities.json" in names
    for name in names:
        assert package_text(name) == folder.joinpath(name).read_text(encoding="utf-8")


def test_a_first_registration_reads_its_tables_without_importlib_readers() -> None:
    # importlib.resources.files() imports zipfile and importlib's readers on its first use in a
    # process: ~1.3 ms of a first run's registration, which every fresh process pays.
    code = (
        "import asyncio, sys\n"
        "from orchestrate import Agent, OrchestrationEngine, Workflow\n"
        "from tests.scripted import ScriptedClient\n"
        "agent = Agent('a', 'Finance', '', {'model': 'gpt-4o-mini'}, 'hi')\n"
        "async def go():\n"
        "    engine = OrchestrationEngine(ScriptedClient())\n"
        "    wf = await engine.execute_workflow(await engine.register_workflow(Workflow('w', '', [agent])))\n"
        "    assert wf.status.value == 'completed', wf.status\n"
        "asyncio.run(go())\n"
        "print(sorted(m for m in ('zipfile', 'importlib.readers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
