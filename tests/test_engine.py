"""The engine end to end against scripted clients: order, bounds, failures, data flow, tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from orchestrate import (
    Agent,
    AgentStatus,
    EngineConfig,
    OrchestrationEngine,
    RateLimitConfig,
    RetryPolicy,
    RetryStrategy,
    Workflow,
    WorkflowStatus,
)
from orchestrate.errors import AuthenticationError, ProviderUnavailableError, RateLimitError
from tests.scripted import FakeSleep, ScriptedClient, response


def agent(name: str, deps: tuple[str, ...] = (), prompt: str | None = None, **fields: Any) -> Agent:
    llm = {"model": "gpt-4o-mini", "max_tokens": 50, **fields.pop("llm", {})}
    return Agent(
        name=name,
        module=fields.pop("module", "Finance"),
        description=f"agent {name}",
        llm_config=llm,
        prompt_template=prompt or f"task {name}",
        dependencies=list(deps),
        **fields,
    )


def workflow(*agents: Agent, **fields: Any) -> Workflow:
    return Workflow(name=fields.pop("name", "wf"), description="test", agents=list(agents), **fields)


def engine_for(client: ScriptedClient, sleep: FakeSleep | None = None, **config: Any) -> OrchestrationEngine:
    config.setdefault("rate_limit_config", None)
    config.setdefault("default_retry_policy", RetryPolicy(jitter=False))
    return OrchestrationEngine(client, EngineConfig(**config), sleep=sleep or FakeSleep())


async def run(engine: OrchestrationEngine, wf: Workflow) -> Workflow:
    return await engine.execute_workflow(await engine.register_workflow(wf))


async def test_agents_start_only_after_their_dependencies_complete() -> None:
    client = ScriptedClient(delay=0.001)
    wf = workflow(
        agent("load"), agent("check_a", ("load",)), agent("check_b", ("load",)), agent("report", ("check_a", "check_b"))
    )
    result = await run(engine_for(client), wf)
    assert result.status is WorkflowStatus.COMPLETED
    order = [p.split()[1] for p in client.started]
    assert order[0] == "load" and order[-1] == "report"
    assert set(order[1:3]) == {"check_a", "check_b"}


async def test_higher_priority_starts_first_among_ready_agents() -> None:
    client = ScriptedClient()
    wf = workflow(agent("low", priority=2), agent("high", priority=9), agent("mid", priority=5), max_parallel_agents=1)
    await run(engine_for(client), wf)
    assert [p.split()[1] for p in client.started] == ["high", "mid", "low"]


async def test_equal_priority_prefers_the_longest_remaining_chain() -> None:
    client = ScriptedClient()
    wf = workflow(agent("lone"), agent("head"), agent("mid", ("head",)), agent("tail", ("mid",)), max_parallel_agents=1)
    await run(engine_for(client), wf)
    assert [p.split()[1] for p in client.started][0] == "head"


async def test_parallel_bound_is_never_exceeded() -> None:
    client = ScriptedClient(delay=0.002)
    wf = workflow(*(agent(f"a{i}") for i in range(30)), max_parallel_agents=4)
    result = await run(engine_for(client), wf)
    assert result.status is WorkflowStatus.COMPLETED
    assert client.max_in_flight == 4


async def test_agent_timeout_cancels_it_and_its_dependents() -> None:
    client = ScriptedClient(delay=lambda prompt: 5.0 if "slow" in prompt else 0.0)
    wf = workflow(agent("slow", timeout=0.05), agent("after", ("slow",)), agent("other"))
    result = await run(engine_for(client), wf)
    slow, after, other = (result.get_agent_by_name(n) for n in ("slow", "after", "other"))
    assert slow.status is AgentStatus.CANCELLED and "timed out" in slow.result.error
    assert after.status is AgentStatus.CANCELLED and "'slow'" in after.result.error
    assert other.status is AgentStatus.COMPLETED
    assert result.status is WorkflowStatus.PARTIALLY_COMPLETED


async def test_each_agent_keeps_its_own_timeout_whatever_the_start_order() -> None:
    """Deadlines share one timer: a short timeout started after a long one must still fire on time."""
    delays = {"task patient": 0.3, "task hasty": 2.0, "task later": 0.0}
    client = ScriptedClient(delay=lambda prompt: delays[prompt])
    wf = workflow(
        agent("patient", timeout=10.0, priority=9),
        agent("hasty", timeout=0.05, priority=5),
        agent("later", ("patient",), timeout=0.01),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run(engine_for(client), wf)
    elapsed = loop.time() - started
    patient, hasty, later = (result.get_agent_by_name(n) for n in ("patient", "hasty", "later"))
    assert hasty.status is AgentStatus.CANCELLED and "timed out after 0.05s" in hasty.result.error
    assert patient.status is AgentStatus.COMPLETED and later.status is AgentStatus.COMPLETED
    assert elapsed < 1.0  # 'hasty' did not run its 2 s


async def test_workflow_timeout_cancels_everything_in_flight() -> None:
    client = ScriptedClient(delay=5.0)
    wf = workflow(agent("a"), agent("b"), agent("c", ("a",)), timeout=0.05)
    result = await run(engine_for(client), wf)
    assert {a.status for a in result.agents} == {AgentStatus.CANCELLED}
    assert result.status is WorkflowStatus.FAILED
    assert "timed out" in result.error


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (RetryStrategy.EXPONENTIAL_BACKOFF, [0.5, 1.0, 2.0]),
        (RetryStrategy.LINEAR_BACKOFF, [0.5, 1.0, 1.5]),
        (RetryStrategy.CONSTANT_DELAY, [0.5, 0.5, 0.5]),
        (RetryStrategy.IMMEDIATE, []),
    ],
)
async def test_retry_strategies_wait_as_configured(strategy: RetryStrategy, expected: list[float]) -> None:
    failures = iter([True, True, True])
    client = ScriptedClient(
        lambda m, model, o: ProviderUnavailableError("busy", status_code=503) if next(failures, False) else "fine"
    )
    sleep = FakeSleep()
    engine = engine_for(
        client, sleep, default_retry_policy=RetryPolicy(strategy=strategy, base_delay=0.5, max_delay=10, jitter=False)
    )
    result = await run(engine, workflow(agent("a", max_retries=3)))
    assert result.agents[0].status is AgentStatus.COMPLETED
    assert result.agents[0].result.retry_count == 3
    assert sleep.delays == expected


async def test_retry_after_from_the_provider_is_honoured() -> None:
    failures = iter([True])
    client = ScriptedClient(
        lambda m, model, o: (
            RateLimitError("slow down", status_code=429, retry_after=7.5) if next(failures, False) else "fine"
        )
    )
    sleep = FakeSleep()
    result = await run(engine_for(client, sleep), workflow(agent("a")))
    assert result.status is WorkflowStatus.COMPLETED
    assert sleep.delays == [7.5]


async def test_non_retriable_errors_fail_at_once_and_call_on_failure() -> None:
    seen: list[str] = []
    client = ScriptedClient(lambda m, model, o: AuthenticationError("invalid key", status_code=401))
    engine = OrchestrationEngine(
        client, EngineConfig(rate_limit_config=None), on_failure=lambda a, r: seen.append(a.name), sleep=FakeSleep()
    )
    result = await run(engine, workflow(agent("a", max_retries=5)))
    assert result.agents[0].status is AgentStatus.FAILED
    assert len(client.calls) == 1 and seen == ["a"]
    assert "invalid key" in result.agents[0].result.error


async def test_retries_stop_at_max_retries() -> None:
    client = ScriptedClient(lambda m, model, o: ProviderUnavailableError("down", status_code=500))
    result = await run(engine_for(client), workflow(agent("a", max_retries=2)))
    assert len(client.calls) == 3
    assert result.agents[0].result.retry_count == 2
    assert result.status is WorkflowStatus.FAILED


async def test_failure_skips_dependents_and_finishes_independent_branches() -> None:
    client = ScriptedClient(lambda m, model, o: AuthenticationError("no") if "bad" in m[-1]["content"] else "ok")
    wf = workflow(
        agent("bad"),
        agent("child", ("bad",)),
        agent("grandchild", ("child",)),
        agent("good"),
        agent("good_child", ("good",)),
    )
    result = await run(engine_for(client), wf)
    status = {a.name: a.status for a in result.agents}
    assert status == {
        "bad": AgentStatus.FAILED,
        "child": AgentStatus.CANCELLED,
        "grandchild": AgentStatus.CANCELLED,
        "good": AgentStatus.COMPLETED,
        "good_child": AgentStatus.COMPLETED,
    }
    assert "dependency 'bad' failed" in result.get_agent_by_name("child").result.error
    assert result.status is WorkflowStatus.PARTIALLY_COMPLETED


async def test_without_partial_completion_a_failure_fails_the_workflow() -> None:
    client = ScriptedClient(lambda m, model, o: AuthenticationError("no") if "bad" in m[-1]["content"] else "ok")
    wf = workflow(agent("bad"), agent("good"), allow_partial_completion=False)
    result = await run(engine_for(client), wf)
    assert result.status is WorkflowStatus.FAILED


async def test_execute_multiple_workflows_honours_max_concurrent_workflows() -> None:
    client = ScriptedClient(delay=0.005)
    engine = engine_for(client, max_concurrent_workflows=2)
    running = {"now": 0, "max": 0}

    def sink(event: Any) -> None:
        if event.type.value == "workflow_started":
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        elif event.type.value == "workflow_finished":
            running["now"] -= 1

    engine.add_sink(sink)
    ids = [await engine.register_workflow(workflow(agent("a"), agent("b", ("a",)), name=f"w{i}")) for i in range(5)]
    results = await engine.execute_multiple_workflows(ids)
    assert [r.status for r in results] == [WorkflowStatus.COMPLETED] * 5
    assert running["max"] == 2


async def test_outputs_flow_into_dependent_templates() -> None:
    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        prompt = messages[-1]["content"]
        if prompt.startswith("count"):
            return json.dumps({"total": 42, "lines": [{"sku": "A-1"}]})
        return f"echo<{prompt}>"

    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}}
    wf = workflow(
        agent("counter", prompt="count things", output_schema=schema),
        agent("writer", ("counter",), prompt="total={agents.counter.output.total} sku={counter.output.lines.0.sku}"),
    )
    wf.inputs = {"period": {"type": "string"}}
    wf.input_values = {"period": "2026-10"}
    client = ScriptedClient(answer)
    result = await run(engine_for(client), wf)
    assert result.get_agent_by_name("counter").result.output["json"]["total"] == 42
    assert result.get_agent_by_name("writer").result.output["text"] == "echo<total=42 sku=A-1>"


async def test_schema_invalid_output_is_sent_back_then_fails() -> None:
    client = ScriptedClient(lambda m, model, o: '{"total": "many"}')
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}}
    engine = engine_for(client, output_retries=2)
    result = await run(engine, workflow(agent("a", output_schema=schema)))
    a = result.agents[0]
    assert a.status is AgentStatus.FAILED
    assert "output_schema" in a.result.error
    assert len(client.calls) == 3  # the first answer and two corrections
    correction = client.calls[1]["messages"][-1]["content"]
    assert "rejected" in correction and "integer" in correction


async def test_schema_invalid_output_corrected_on_second_try_succeeds() -> None:
    answers = iter(["not json at all", '{"total": 3}'])
    client = ScriptedClient(lambda m, model, o: next(answers))
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}}
    result = await run(engine_for(client), workflow(agent("a", output_schema=schema)))
    assert result.agents[0].result.output["json"] == {"total": 3}


def lookup_balance(account: str) -> dict[str, Any]:
    """A real tool: the balance of a general-ledger account."""
    if account == "9999":
        raise KeyError("no such account")
    return {"account": account, "balance": 1250.75}


async def test_tool_loop_calls_a_real_python_function() -> None:
    from orchestrate.llm.base import ToolCall

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        tool_results = [m for m in messages if m["role"] == "tool"]
        if len(tool_results) == 0:
            return response(
                "",
                model,
                finish_reason="tool_calls",
                tool_calls=[
                    ToolCall("c1", "lookup_balance", {"account": "4000"}),
                    ToolCall("c2", "lookup_balance", {"account": "9999"}),
                ],
            )
        return "balances: " + " | ".join(m["content"] for m in tool_results)

    tool = {
        "function": "tests.test_engine:lookup_balance",
        "description": "GL balance",
        "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
    }
    client = ScriptedClient(answer)
    result = await run(engine_for(client), workflow(agent("a", tools=[tool])))
    a = result.agents[0]
    assert a.status is AgentStatus.COMPLETED
    assert "1250.75" in a.result.output["text"]
    assert "no such account" in a.result.output["text"]  # the error went back to the model
    assert client.calls[0]["tools"][0]["name"] == "lookup_balance"
    assert a.result.metadata["tool_calls"] == 2


async def test_budget_refuses_calls_that_could_pass_it() -> None:
    client = ScriptedClient()
    wf = workflow(agent("a", llm={"model": "gpt-4", "max_tokens": 1000}), cost_budget=0.01)
    result = await run(engine_for(client), wf)
    assert result.agents[0].status is AgentStatus.BUDGET_EXCEEDED
    assert client.calls == []


async def test_unknown_workflow_id_raises_value_error() -> None:
    with pytest.raises(ValueError):
        await engine_for(ScriptedClient()).execute_workflow("nope")


async def test_status_reports_follow_the_run() -> None:
    engine = engine_for(ScriptedClient(), rate_limit_config=RateLimitConfig(requests_per_minute=1000))
    wf_id = await engine.register_workflow(workflow(agent("a"), agent("b", ("a",))))
    assert engine.get_workflow_status(wf_id)["status"] == "pending"
    assert engine.get_workflow_status("missing") is None
    await engine.execute_workflow(wf_id)
    status = engine.get_workflow_status(wf_id)
    assert status["status"] == "completed" and status["agents"] == {"a": "completed", "b": "completed"}
    system = engine.get_system_status()
    assert system["monitoring"]["workflows"]["completed"] == 1
    assert system["rate_limiting"]["total_requests"] == 2
    assert system["cost_tracking"]["total_cost"] > 0
    await engine.shutdown()


async def test_shutdown_cancels_in_flight_agents_and_keeps_results() -> None:
    client = ScriptedClient(delay=lambda p: 0.0 if "fast" in p else 5.0)
    engine = engine_for(client)
    wf_id = await engine.register_workflow(workflow(agent("fast"), agent("slow"), agent("after", ("fast", "slow"))))
    task = asyncio.create_task(engine.execute_workflow(wf_id))
    while not engine.workflows[wf_id].get_agent_by_name("fast").status.is_terminal:
        await asyncio.sleep(0.001)
    await engine.shutdown()
    result = await task
    assert result.get_agent_by_name("fast").status is AgentStatus.COMPLETED
    assert result.get_agent_by_name("slow").status is AgentStatus.CANCELLED
    assert result.get_agent_by_name("after").status is AgentStatus.CANCELLED
    assert result.status is WorkflowStatus.CANCELLED


class _Owner:
    def __init__(self) -> None:
        self.ended = False
        self.passed: list[int] = []

    def deadline_passed(self, key: int, task: Any) -> None:
        self.passed.append(key)


async def test_deadlines_share_one_timer_and_forget_ended_owners() -> None:
    """Thousands of runs that end before their deadlines leave no heap behind them, and a
    live owner's deadline still fires on time among them."""
    from orchestrate.run.deadlines import Deadlines

    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    live = _Owner()
    deadlines.add(loop, loop.time() + 0.05, live, 7, None)
    for _ in range(5000):  # rows of a batch: each adds its deadlines, then ends long before them
        owner = _Owner()
        for key in (0, 1, -1):
            deadlines.add(loop, loop.time() + 300.0, owner, key, None)
        owner.ended = True
        deadlines.ended(3)
    assert len(deadlines._heap) <= 2 * Deadlines.SWEEP_AT + 4
    await asyncio.sleep(0.1)
    assert live.passed == [7]
    lone = Deadlines()  # a run on its own: its timer goes when it ends
    owner = _Owner()
    lone.add(loop, loop.time() + 300.0, owner, 0, None)
    owner.ended = True
    lone.ended(1)
    assert lone._heap == [] and lone._timer is None


async def test_a_prices_table_changed_in_place_is_taken_again_when_registered() -> None:
    """Registering skips a prices table it has added already (every row of a batch shares one),
    but not one changed in place since."""
    engine = OrchestrationEngine(ScriptedClient(), EngineConfig(rate_limit_config=None))
    prices = {"house-model": {"input": 1.0, "output": 2.0}}
    first = workflow(agent("a"))
    first.prices = prices
    await engine.register_workflow(first)
    assert engine.cost_tracker.price_of("house-model")["input"] == 1.0
    prices["house-model"]["input"] = 3.0
    again = workflow(agent("a"))
    again.prices = prices
    await engine.register_workflow(again)
    assert engine.cost_tracker.price_of("house-model")["input"] == 3.0
