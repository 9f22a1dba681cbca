"""Provider batch APIs end to end: the engine, the batching clients and the loopback server.

Nothing of ours is patched: requests go over real sockets to `tests/fake_batch.py`,
which speaks both batch APIs and moves batches along an injected clock, so the
hours a batch may take pass in no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.llm.batch import BatchHub
from orchestrate.llm.batch_clients import BatchClients
from orchestrate.llm.providers import ClientPool
from orchestrate.money.costs import CostTracker
from orchestrate.run.events import EventType
from orchestrate.workflow.models import AgentStatus, WorkflowStatus
from tests.fake_batch import FakeBatchProvider, FakeClock

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(clock) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def engine_for(
    clock: FakeClock, *, everything: bool = True, api_options: dict[str, Any] | None = None, **hub_options: Any
) -> tuple[OrchestrationEngine, BatchHub, list[Any]]:
    hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock, **hub_options)
    events: list[Any] = []
    clients = BatchClients(ClientPool(), hub, everything=everything, api_options=api_options)
    # No default online pacing: the online calls some tests make would wait on the real clock.
    engine = OrchestrationEngine(
        None, EngineConfig(rate_limit_config=None), clients=clients, sleep=clock.sleep, sinks=[events.append]
    )
    from orchestrate.run.events import batch_events

    hub.emit = batch_events(engine.emit)
    return engine, hub, events


def layered(
    server: FakeBatchProvider, *, width: int, model: str = "gpt-4o-mini", provider: str = "openai", **fields: Any
) -> Workflow:
    base = f"{server.url}/v1" if provider == "openai" else server.url
    llm = {"model": model, "max_tokens": 50, "temperature": 0.0}
    if provider == "openai":
        llm["base_url"] = base
    agents = []
    for layer in range(3):
        for i in range(width):
            deps = [f"l{layer - 1}_{i}"] if layer else []
            prompt = (
                f"Row {i}: extract the invoice total." if layer == 0 else f"Check this: {{l{layer - 1}_{i}.output}}"
            )
            agents.append(
                Agent(
                    name=f"l{layer}_{i}",
                    module="Finance",
                    description="",
                    llm_config=dict(llm),
                    prompt_template=prompt,
                    dependencies=deps,
                    max_retries=2,
                    retry={"strategy": "constant_delay", "base_delay": 1.0},
                )
            )
    return Workflow(name="batch_close", description="3 layers", agents=agents, max_parallel_agents=3, **fields)


async def run(engine: OrchestrationEngine, workflow: Workflow) -> Workflow:
    await engine.register_workflow(workflow)
    try:
        return await engine.execute_workflow(workflow.id)
    finally:
        await engine.shutdown()


async def test_three_layers_go_through_openai_batches_in_order_at_half_price(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    engine, hub, events = engine_for(clock)
    workflow = await run(engine, layered(server, width=200))
    assert workflow.status is WorkflowStatus.COMPLETED
    # One submission per layer, though max_parallel_agents is 3: batched calls take no slot.
    assert [len(s["items"]) for s in server.submitted] == [200, 200, 200]
    layers = [{item["custom_id"].split("_")[0] for item in s["items"]} for s in server.submitted]
    assert layers == [{"l0"}, {"l1"}, {"l2"}]
    # Outputs flow downstream: layer 1's prompts hold layer 0's answers.
    first = server.submitted[1]["items"][0]["body"]["messages"][-1]["content"]
    assert first.startswith("Check this: answer to")
    # Every call priced at the batch rate: half of what the same tokens cost online.
    tracker = CostTracker()
    records = engine.cost_tracker.records(workflow.id)
    assert len(records) == 600 and all(r.batch and r.batch_id for r in records)
    for r in records:
        online = tracker.calculate_cost(r.model, r.input_tokens, r.output_tokens)
        assert r.cost == pytest.approx(online * 0.5)
    assert workflow.total_cost == pytest.approx(sum(r.cost for r in records))
    # One poll per open batch, at a growing interval, never one per request.
    assert sum(server.polls.values()) < 3 * 8
    kinds = [e.type for e in events if e.type.value.startswith("batch_")]
    assert kinds.count(EventType.BATCH_SUBMITTED) == 3 and kinds.count(EventType.BATCH_FINISHED) == 3


async def test_anthropic_message_batches_answer_a_workflow(
    server: FakeBatchProvider, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    engine, hub, events = engine_for(clock)
    workflow = await run(engine, layered(server, width=5, model="claude-haiku-4-5", provider="anthropic"))
    assert workflow.status is WorkflowStatus.COMPLETED
    assert [s["provider"] for s in server.submitted] == ["anthropic"] * 3
    item = server.submitted[0]["items"][0]
    assert set(item) == {"custom_id", "params"} and item["params"]["model"] == "claude-haiku-4-5"
    records = engine.cost_tracker.records(workflow.id)
    assert all(r.batch for r in records) and len(records) == 15


async def test_a_submission_is_split_at_the_request_count_limit(server: FakeBatchProvider, clock: FakeClock) -> None:
    engine, hub, _ = engine_for(clock, api_options={"max_requests": 16})
    workflow = layered(server, width=40)
    workflow.agents = workflow.agents[:40]  # one layer
    done = await run(engine, workflow)
    assert done.status is WorkflowStatus.COMPLETED
    assert sorted(len(s["items"]) for s in server.submitted) == [8, 16, 16]
    ids = [item["custom_id"] for s in server.submitted for item in s["items"]]
    assert len(set(ids)) == 40


async def test_a_submission_that_would_pass_the_budget_is_cut_to_what_fits(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    engine, hub, _ = engine_for(clock)
    workflow = layered(server, width=20)
    workflow.agents = workflow.agents[:20]
    tracker = CostTracker()
    one = 0.5 * tracker.max_cost("gpt-4o-mini", [{"role": "user", "content": "Row 10: extract the invoice total."}], 50)
    workflow.cost_budget = one * 12.5  # room for 12 worst cases at the batch rate, not 13
    done = await run(engine, workflow)
    (submission,) = server.submitted
    assert len(submission["items"]) == 12
    statuses = [a.status for a in done.agents]
    assert statuses.count(AgentStatus.COMPLETED) == 12
    assert statuses.count(AgentStatus.BUDGET_EXCEEDED) == 8
    assert done.total_cost <= workflow.cost_budget


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_errored_and_expired_requests_are_retried_in_a_later_batch(
    server: FakeBatchProvider, clock: FakeClock, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    failed_once: set[str] = set()

    def outcome(custom_id: str, body: dict[str, Any]) -> str:
        agent = custom_id.split("-a")[0]
        if agent in ("l0_1", "l0_2") and agent not in failed_once:
            failed_once.add(agent)
            return "error"
        return "ok"

    server.outcome = outcome
    server.fate = lambda n: "expired" if n == 0 else "completed"
    engine, hub, events = engine_for(clock)
    model = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    workflow = layered(server, width=6, model=model, provider=provider)
    workflow.agents = workflow.agents[:6]
    done = await run(engine, workflow)
    assert done.status is WorkflowStatus.COMPLETED
    # The first batch expired with every other request unanswered, and two requests errored:
    # those went through the retry policy into a later batch.
    assert server.submissions >= 2
    retried = {a.name for a in done.agents if a.result and a.result.retry_count}
    assert retried == {"l0_1", "l0_2", "l0_3", "l0_5"}
    second = {item["custom_id"].split("-a")[0] for item in server.submitted[1]["items"]}
    assert second == retried
    # The attempt follows the first "-a" (the digest after it may hold "-a" too).
    assert all(item["custom_id"].split("-a", 1)[1].startswith("2-") for item in server.submitted[1]["items"])


async def test_fallback_online_sends_the_retry_as_an_ordinary_call(server: FakeBatchProvider, clock: FakeClock) -> None:
    server.outcome = lambda custom_id, body: "error" if custom_id.startswith("l0_0-a1") else "ok"
    engine, hub, _ = engine_for(clock, fallback="online")
    workflow = layered(server, width=3)
    workflow.agents = workflow.agents[:3]
    done = await run(engine, workflow)
    assert done.status is WorkflowStatus.COMPLETED
    online = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert len(online) == 1 and server.submissions == 1
    records = {r.agent: r for r in engine.cost_tracker.records(done.id)}
    assert not records["l0_0"].batch and records["l0_1"].batch
    full = CostTracker().calculate_cost("gpt-4o-mini", records["l0_0"].input_tokens, records["l0_0"].output_tokens)
    assert records["l0_0"].cost == pytest.approx(full)


async def test_a_batch_the_provider_refuses_fails_its_agents_with_the_reason(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.fate = lambda n: "failed"
    engine, hub, _ = engine_for(clock)
    workflow = layered(server, width=2)
    workflow.agents = workflow.agents[:2]
    done = await run(engine, workflow)
    for agent in done.agents:
        assert agent.status is AgentStatus.FAILED
        assert "invalid_json_line" in (agent.result.error or "") and "line 1" in (agent.result.error or "")
    assert server.submissions == 1  # not retriable: never resubmitted


async def test_polling_backs_off_to_the_cap_and_honours_retry_after(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    from tests.fake_provider import Fault

    server.process_s = 900.0
    engine, hub, _ = engine_for(clock, poll_min=5.0, poll_max=60.0)
    workflow = layered(server, width=1)
    workflow.agents = workflow.agents[:1]
    await engine.register_workflow(workflow)
    task = asyncio.ensure_future(engine.execute_workflow(workflow.id))
    while not server.submitted:
        await asyncio.sleep(0.01)
    server.batch_script.append(Fault(429, None, {"retry-after": "120"}))
    done = await task
    await engine.shutdown()
    assert done.status is WorkflowStatus.COMPLETED
    polls = [d for d in clock.sleeps if d >= 5.0]
    # 5, 10, 20, 40, then capped at 60; the 429's retry-after (120 s) is honoured once.
    assert polls[:4] in ([5.0, 10.0, 20.0, 40.0], [5.0, 120.0, 10.0, 20.0], [5.0, 10.0, 120.0, 20.0])
    assert polls.count(120.0) == 1 and max(d for d in polls if d != 120.0) == 60.0
    assert polls[-3:] == [60.0, 60.0, 60.0]
    (batch_id,) = server.polls
    assert server.polls[batch_id] == len(polls)  # one poll per wait, for the one open batch


def test_submissions_are_split_at_the_size_limit_too() -> None:
    from orchestrate.llm.batch import _Queue, _Request
    from orchestrate.llm.openai_batch import OpenAIBatchAPI

    api = OpenAIBatchAPI(None, max_requests=1000, max_bytes=1000)
    queue = _Queue(BatchHub(), api, "", "gpt-4o-mini")
    loop = asyncio.new_event_loop()
    try:
        requests = [_Request(f"r{i}", "", {}, 300, loop.create_future(), {}) for i in range(10)]
    finally:
        loop.close()
    assert [len(c) for c in queue.chunks(requests)] == [3, 3, 3, 1]
    huge = _Request("big", "", {}, 5000, requests[0].future, {})
    assert [len(c) for c in queue.chunks([requests[0], huge, requests[1]])] == [1, 1, 1]


async def test_resume_resubmits_what_a_vanished_recorded_batch_held(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    from orchestrate.llm.batch import request_digest  # noqa: F401  (the ids below are made like ours)

    workflow = layered(server, width=2)
    workflow.agents = workflow.agents[:2]
    engine, hub, _ = engine_for(clock)
    done = await run(engine, workflow)
    first = server.submitted[0]
    record = {
        "batch_id": "batch_gone",
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "gpt-4o-mini",
        "file_id": "file-gone",
        "custom_ids": {
            i["custom_id"]: f"batch_close/{i['custom_id'].split('-a')[0]}/" + request_digest(i["body"])
            for i in first["items"]
        },
    }
    assert done.status is WorkflowStatus.COMPLETED
    again = layered(server, width=2)
    again.agents = again.agents[:2]
    engine, hub, _ = engine_for(clock, adopt=[record])
    resumed = await run(engine, again)
    assert resumed.status is WorkflowStatus.COMPLETED
    assert server.polls.get("batch_gone") is None  # the server never knew it: a 404 on the poll
    assert server.submissions == 2  # its requests were submitted again, once
    assert all(a.result.retry_count == 1 for a in resumed.agents)
    assert "batch_gone" in " ".join(a.result.metadata.get("errors", [""])[0] for a in resumed.agents)


def test_the_live_table_and_the_plain_log_show_each_open_batch() -> None:
    from io import StringIO

    from rich.console import Console

    from orchestrate.observe.progress import LiveTable, PlainLog
    from orchestrate.run.events import Event

    table, out = LiveTable(Console(file=StringIO(), width=120)), StringIO()
    log = PlainLog(out)
    data = {
        "batch_id": "batch_abc",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status": "in_progress",
        "total": 5000,
        "done": 412,
        "failed": 3,
        "requests": 5000,
    }
    for event in (
        Event(EventType.WORKFLOW_STARTED, "w1", None, {"name": "close", "agents": []}, workflow_name="close"),
        Event(
            EventType.BATCH_SUBMITTED,
            "w1",
            None,
            {**data, "status": "validating", "done": 0, "failed": 0},
            workflow_name="close",
        ),
        Event(EventType.BATCH_STATUS, "w1", None, data, workflow_name="close"),
    ):
        table(event)
        log(event)
    console = Console(file=StringIO(), width=120)
    console.print(table.render())
    assert "batch batch_abc (openai/gpt-4o-mini) in_progress: 412/5,000 done, 3 failed" in console.file.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("close batch batch_abc (openai/gpt-4o-mini) submitted: 5,000 requests")
    assert lines[2].endswith("close batch batch_abc (openai/gpt-4o-mini) in_progress: 412/5,000 done, 3 failed")
    table(Event(EventType.BATCH_FINISHED, "w1", None, {**data, "status": "completed"}, workflow_name="close"))
    console = Console(file=StringIO(), width=120)
    console.print(table.render())
    assert "batch_abc" not in console.file.getvalue()


def test_plan_prices_batched_agents_at_the_batch_rate(server: FakeBatchProvider) -> None:
    from orchestrate.money.planning import plan_workflow

    workflow = layered(server, width=3)
    online = plan_workflow(workflow, CostTracker())
    batched = plan_workflow(workflow, CostTracker(), provider_batch=True)
    assert batched.max_cost == pytest.approx(online.max_cost * 0.5)
    assert batched.min_cost == pytest.approx(online.min_cost * 0.5)
    workflow.agents[0].llm_config["batch"] = False  # kept online even under --provider-batch
    mixed = plan_workflow(workflow, CostTracker(), provider_batch=True)
    assert mixed.agents[0].max_cost == pytest.approx(online.agents[0].max_cost)


async def test_the_response_cache_answers_before_a_batch_is_needed(
    server: FakeBatchProvider, clock: FakeClock, tmp_path: Any
) -> None:
    from orchestrate.run.cache import CachingClients

    for expected_submissions in (1, 1):
        hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
        clients = CachingClients(tmp_path, BatchClients(ClientPool(), hub, everything=True))
        engine = OrchestrationEngine(None, EngineConfig(), clients=clients, sleep=clock.sleep)
        workflow = layered(server, width=4)
        workflow.agents = workflow.agents[:4]
        done = await run(engine, workflow)
        assert done.status is WorkflowStatus.COMPLETED
        assert server.submissions == expected_submissions  # the second run: every answer cached
    records = engine.cost_tracker.records(done.id)
    assert all(r.cached and r.cost == 0 for r in records)


async def test_a_resumed_online_run_still_collects_what_open_batches_hold(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.process_s = 10_000.0
    workflow = layered(server, width=3)
    workflow.agents = workflow.agents[:6]  # two layers
    engine, hub, events = engine_for(clock)
    await engine.register_workflow(workflow)
    task = asyncio.ensure_future(engine.execute_workflow(workflow.id))
    while not any(server.polls.values()):
        await asyncio.sleep(0.01)
    await engine.stop("interrupted by SIGINT")  # what Ctrl-C does
    stopped = await task
    await engine.shutdown()
    assert stopped.status is WorkflowStatus.CANCELLED and stopped.total_cost == 0
    (submitted,) = [e.data for e in events if e.type is EventType.BATCH_SUBMITTED]

    server.process_s = 0.0
    again = layered(server, width=3)
    again.agents = again.agents[:6]
    engine, hub, _ = engine_for(clock, everything=False, adopt=[submitted])  # resumed without --provider-batch
    done = await run(engine, again)
    assert done.status is WorkflowStatus.COMPLETED
    assert server.submissions == 1  # nothing submitted again
    records = {r.agent: r for r in engine.cost_tracker.records(done.id)}
    assert {a for a, r in records.items() if r.batch} == {"l0_0", "l0_1", "l0_2"}
    assert {r.batch_id for r in records.values() if r.batch} == {submitted["batch_id"]}
    online = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert len(online) == 3  # the second layer, sent online as asked
