"""Fallbacks through the engine, over real HTTP: a primary on the Anthropic wire format and a
fallback on OpenAI's, both served by tests/fake_provider.py (the script answers in order)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Agent, EngineConfig, OrchestrationEngine, RetryPolicy, Workflow
from orchestrate.llm.fallbacks import chain_of, failure_class
from orchestrate.llm.providers import ClientPool
from orchestrate.money.rate_limit import RateLimitConfig
from orchestrate.run.events import Event, EventType
from tests.fake_provider import FakeProvider, Fault, anthropic_message
from tests.redis_server import redis_server  # noqa: F401  (a fixture)
from tests.scripted import FakeSleep

PRIMARY = "claude-sonnet-4-5"
FALLBACK = "gpt-4.1-mini"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
        yield fake


def llm(**extra: Any) -> dict[str, Any]:
    return {"model": PRIMARY, "max_tokens": 200, "fallbacks": [{"model": FALLBACK, "provider": "openai"}], **extra}


async def run(
    agents: list[Agent], *, retries: int = 0, budget: float = 10.0, limits: RateLimitConfig | None = None
) -> tuple[Workflow, list[Event], FakeSleep]:
    events: list[Event] = []
    sleep = FakeSleep()
    engine = OrchestrationEngine(
        None,
        EngineConfig(rate_limit_config=limits, default_retry_policy=RetryPolicy(max_retries=retries, jitter=False)),
        clients=ClientPool(),
        sinks=[events.append],
        sleep=sleep,
    )
    wf = Workflow("fallbacks", "d", agents, cost_budget=budget)
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    return wf, events, sleep


def paths(server: FakeProvider) -> list[str]:
    return [r["path"] for r in server.requests]


@pytest.mark.parametrize("status", [429, 529, 503, 500])
async def test_a_listed_failure_goes_to_the_fallback_at_once_without_a_retry_wait(
    server: FakeProvider, status: int
) -> None:
    server.script(Fault(status, None, {"retry-after": "30"}))
    agent = Agent("close", "Finance", "d", llm(), "close the books", max_retries=3)
    wf, events, sleep = await run([agent], retries=3)
    result = agent.result
    assert result is not None and result.is_success(), result
    assert paths(server) == ["/v1/messages", "/v1/chat/completions"]
    assert sleep.delays == []  # no retry budget spent on the primary first
    assert result.metadata["served_model"] == FALLBACK
    assert result.metadata["served_provider"] == "openai"
    assert result.metadata["fallback_reason"] == {429: "rate_limited", 529: "overloaded", 503: "overloaded"}.get(
        status, "server_error"
    )
    moved = [e for e in events if e.type is EventType.AGENT_FALLBACK]
    assert len(moved) == 1 and moved[0].data["from_model"] == PRIMARY and moved[0].data["to_model"] == FALLBACK
    call = next(e for e in events if e.type is EventType.LLM_CALL)
    assert call.data["model"] == FALLBACK and call.data["requested_model"] == PRIMARY


async def test_the_served_model_is_priced_as_itself_and_recorded_with_the_model_asked_for(
    server: FakeProvider,
) -> None:
    from orchestrate.money.costs import CostTracker

    server.script(Fault(429, None))
    agent = Agent("close", "Finance", "d", llm(), "close the books")
    wf, events, _ = await run([agent])
    call = next(e for e in events if e.type is EventType.LLM_CALL)
    expected = CostTracker().calculate_cost(FALLBACK, call.data["input_tokens"], call.data["output_tokens"])
    assert call.data["cost"] == pytest.approx(expected)
    assert agent.result is not None and agent.result.cost == pytest.approx(expected)


@pytest.mark.parametrize("listed", [False, True])
async def test_a_content_policy_refusal_stays_unless_listed(server: FakeProvider, listed: bool) -> None:
    refusal = {"type": "error", "error": {"type": "invalid_request_error", "message": "blocked by content_filter"}}
    server.script(Fault(400, refusal))
    extra = {"fallback_on": ["rate_limited", "content_policy"]} if listed else {}
    agent = Agent("screen", "HR", "d", llm(**extra), "screen the candidate", max_retries=0)
    await run([agent])
    assert agent.result is not None
    if listed:
        assert agent.result.is_success() and agent.result.metadata["fallback_reason"] == "content_policy"
        assert len(server.requests) == 2
    else:
        assert agent.result.status.value == "failed" and "content_filter" in (agent.result.error or "")
        assert paths(server) == ["/v1/messages"]


async def test_a_failure_not_listed_never_falls_back(server: FakeProvider) -> None:
    server.script(Fault(401, None))
    agent = Agent("close", "Finance", "d", llm(), "close the books", max_retries=0)
    await run([agent])
    assert agent.result is not None and agent.result.status.value == "failed"
    assert paths(server) == ["/v1/messages"]


def _tool_module(tmp_path: Path) -> str:
    (tmp_path / "ledger_tools.py").write_text("def post_entry():\n    return {'posted': True}\n")
    return str(tmp_path)


@pytest.mark.parametrize("side_effects", [True, False])
async def test_no_fallback_after_a_side_effecting_tool_ran_in_the_attempt(
    server: FakeProvider, tmp_path: Path, side_effects: bool
) -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "post_entry", "input": {}}
    server.script(Fault(200, anthropic_message({}, content=[use])), Fault(429, None))
    agent = Agent(
        "post",
        "Finance",
        "d",
        llm(),
        "post the entry",
        tools=[{"function": "ledger_tools:post_entry", "side_effects": side_effects}],
        max_retries=0,
    )
    events: list[Event] = []
    engine = OrchestrationEngine(
        None,
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(max_retries=0)),
        clients=ClientPool(),
        sinks=[events.append],
        sleep=FakeSleep(),
    )
    wf = Workflow("tools", "d", [agent])
    wf.base_dir = _tool_module(tmp_path)
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert agent.result is not None
    if side_effects:
        assert agent.result.status.value == "failed"
        assert paths(server) == ["/v1/messages", "/v1/messages"]
    else:
        assert agent.result.is_success()
        assert paths(server) == ["/v1/messages", "/v1/messages", "/v1/chat/completions"]


async def test_the_chain_is_bounded_and_an_exhausted_chain_fails_like_the_last_model(server: FakeProvider) -> None:
    server.script(Fault(429, None), Fault(429, None))
    agent = Agent("close", "Finance", "d", llm(), "close the books", max_retries=0)
    await run([agent])
    assert agent.result is not None and agent.result.status.value == "failed"
    assert len(server.requests) == 2
    assert len(chain_of({"model": "a", "fallbacks": [{"model": f"m{i}"} for i in range(9)]})) == 6


async def test_a_paused_provider_sends_agents_to_their_fallback_priced_for_it_within_the_budget(
    server: FakeProvider,
) -> None:
    """The first agent's 429 pauses the primary's provider for 60 s. The five agents that follow
    run at once: each skips the paused primary without waiting or reserving its price, and
    reserves the fallback's, which all five fit in a budget where two primaries would not."""
    server.script(Fault(429, None, {"retry-after": "60"}))
    limits = RateLimitConfig(
        requests_per_minute=10**6,
        requests_per_hour=10**8,
        requests_per_day=10**9,
        tokens_per_minute=10**9,
        concurrent_requests=100,
    )
    first = Agent("first", "Finance", "d", llm(max_tokens=4000), "one", priority=10)
    later = [Agent(f"later{i}", "Finance", "d", llm(max_tokens=4000), "two", dependencies=["first"]) for i in range(5)]
    # claude-sonnet-4-5 reserves > 4000 * 0.015 / 1000 = $0.06 a call; gpt-4.1-mini about $0.0064.
    wf, events, sleep = await run([first, *later], budget=0.1, limits=limits)
    assert wf.status.value == "completed", [a.result for a in wf.agents]
    assert paths(server).count("/v1/messages") == 1  # only the first call went to the paused provider
    assert paths(server).count("/v1/chat/completions") == 6
    assert sleep.delays == []
    reasons = [e.data["reason"] for e in events if e.type is EventType.AGENT_FALLBACK]
    assert reasons == ["rate_limited"] * 6


def test_failure_classes() -> None:
    from orchestrate.errors import BadRequestError, LLMTimeoutError, ProviderUnavailableError, RateLimitError

    assert failure_class(RateLimitError("x", status_code=429)) == "rate_limited"
    assert failure_class(ProviderUnavailableError("overloaded_error", status_code=529)) == "overloaded"
    assert failure_class(LLMTimeoutError("t")) == "timeout"
    assert failure_class(ProviderUnavailableError("boom", status_code=500)) == "server_error"
    assert failure_class(BadRequestError("prompt is too long: 210000 tokens", status_code=400)) == "context_window"
    assert failure_class(BadRequestError("bad field", status_code=400)) is None


def test_the_bedrock_eu_example_shows_its_fallback_everywhere_a_run_is_read(tmp_path: Path) -> None:
    """--simulate: the example's primary fails every call (failure_rate: 1.0, simulated only), so each
    agent is served by its EU fallback; result.json, cost.json, events.jsonl, show, report.html and
    cost-report --by model all say which model served, which was asked for, why, and where."""
    import json
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "workflows" / "finance_supplier_statement_bedrock_eu.yaml"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrate", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    proc = cli("run", str(example), "--simulate", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "fell back from eu.anthropic.claude-sonnet-4-5" in proc.stderr + proc.stdout
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    served = "eu.anthropic.claude-haiku-4-5-20251001-v1:0"
    result = json.loads((run_dir / "result.json").read_text())
    for agent in result["agents"]:
        assert agent["metadata"]["served_model"] == served
        assert agent["metadata"]["fallbacks"][0]["from_model"].startswith("eu.anthropic.claude-sonnet-4-5")
    cost = json.loads((run_dir / "cost.json").read_text())
    assert {c["model"] for c in cost["calls"]} == {served}
    assert {c["region"] for c in cost["calls"]} == {"eu:eu-central-1"}
    assert all(c["requested_model"].startswith("eu.anthropic.claude-sonnet") for c in cost["calls"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e.get("type") == "agent_fallback" for e in events) == 3  # one per agent of the example
    show = cli("show", str(run_dir), "read_statement")
    assert "fell back: eu.anthropic.claude-sonnet-4-5" in show.stdout, show.stdout + show.stderr
    assert cli("report", str(run_dir)).returncode == 0
    html = (run_dir / "report.html").read_text()
    assert "Where calls were served" in html and "eu:eu-central-1" in html and "→ " + served in html
    by_model = cli("cost-report", str(run_dir), "--by", "model", "--include-simulated", "--json")
    assert served in by_model.stdout and "claude-sonnet" not in by_model.stdout, by_model.stdout


async def test_otel_names_the_model_asked_for_and_the_model_that_served(server: FakeProvider) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from orchestrate.observe.otel import OTelSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.script(Fault(529, None))
    agent = Agent("close", "Finance", "d", llm(), "close the books")
    engine = OrchestrationEngine(
        None, EngineConfig(rate_limit_config=None), clients=ClientPool(), sinks=[OTelSink(provider)], sleep=FakeSleep()
    )
    await engine.execute_workflow(await engine.register_workflow(Workflow("otel", "d", [agent])))
    await engine.shutdown()
    provider.shutdown()
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name.startswith("chat ")]
    assert call.attributes["gen_ai.request.model"] == PRIMARY
    assert call.attributes["gen_ai.response.model"] == FALLBACK
    assert call.attributes["orchestrate.fallback_reason"] == "overloaded"
    (agent_span,) = [s for s in spans if s.name == "invoke_agent close"]
    assert [e.name for e in agent_span.events].count("fallback") == 1


def test_plan_bounds_a_call_by_the_dearest_model_of_its_chain() -> None:
    from orchestrate.money.costs import CostTracker
    from orchestrate.money.planning import plan_workflow

    cheap = {"model": "gpt-4o-mini", "max_tokens": 500}
    alone = Agent("a", "Finance", "d", dict(cheap), "sum", max_retries=0)
    backed = Agent("a", "Finance", "d", {**cheap, "fallbacks": [{"model": "claude-opus-4-1"}]}, "sum", max_retries=0)
    plain = plan_workflow(Workflow("p", "d", [alone]), CostTracker())
    chained = plan_workflow(Workflow("p", "d", [backed]), CostTracker())
    assert chained.max_cost > plain.max_cost * 10  # claude-opus-4-1's output costs 125x gpt-4o-mini's


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_pause_another_process_set_in_shared_state_sends_the_agent_to_its_fallback(
    server: FakeProvider, backend: str, request: pytest.FixtureRequest
) -> None:
    """Another process's 429 paused the primary's provider in the shared state: this run's agent
    goes to its fallback at once instead of waiting the pause out."""
    import uuid

    from orchestrate.state.backends import state_from_url

    url = "memory://" if backend == "memory" else request.getfixturevalue("redis_server").url
    state = state_from_url(url, namespace=f"fb{uuid.uuid4().hex[:8]}")
    await state.connect()
    await state.pause("anthropic", 120.0)  # as the other process's pause_provider does
    sleep = FakeSleep()
    engine = OrchestrationEngine(
        None,
        EngineConfig(default_retry_policy=RetryPolicy(max_retries=0)),
        clients=ClientPool(),
        sleep=sleep,
        state=state,
        limiter_sleep=sleep,
    )
    agent = Agent("close", "Finance", "d", llm(), "close the books")
    await engine.execute_workflow(await engine.register_workflow(Workflow("shared", "d", [agent])))
    await engine.shutdown()
    await state.aclose()
    assert agent.result is not None and agent.result.is_success(), agent.result
    assert paths(server) == ["/v1/chat/completions"]
    assert agent.result.metadata["fallback_reason"] == "rate_limited"
    assert max(sleep.delays, default=0.0) < 60  # lease renewals tick; nobody waited out the 120 s pause
