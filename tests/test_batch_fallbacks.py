"""Fallbacks for calls sent through a provider's batch API (tests/fake_batch.py): a batch provider
that is down, or a request its batch answered with a server error, moves the call to the agent's
next model at once, like an online call; a batch that expired or that the provider refused
whole does not (docs/providers.md, Fallbacks, says why)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.llm.batch import BatchHub
from orchestrate.llm.batch_clients import BatchClients
from orchestrate.llm.providers import ClientPool
from orchestrate.workflow.models import AgentStatus
from tests.fake_batch import FakeBatchProvider, FakeClock
from tests.fake_provider import Fault

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(clock) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        yield fake


async def run_one(server: FakeBatchProvider, clock: FakeClock, **llm: Any) -> Agent:
    hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
    engine = OrchestrationEngine(
        None,
        EngineConfig(rate_limit_config=None),
        clients=BatchClients(ClientPool(), hub, everything=True),
        sleep=clock.sleep,
    )
    config = {
        "model": "gpt-4o-mini",
        "base_url": f"{server.url}/v1",
        "max_tokens": 50,
        "fallbacks": [{"model": "claude-haiku-4-5", "provider": "anthropic"}],
        **llm,
    }
    agent = Agent("match", "Finance", "", config, "Match the invoice to its PO.", max_retries=1)
    agent.retry = {"strategy": "constant_delay", "base_delay": 1.0}
    workflow = Workflow(name="batched", description="", agents=[agent])
    await engine.register_workflow(workflow)
    try:
        await engine.execute_workflow(workflow.id)
    finally:
        await engine.shutdown()
    return agent


def batches_of(server: FakeBatchProvider) -> list[str]:
    return [s["provider"] for s in server.submitted]


async def test_a_batch_provider_that_is_down_sends_the_call_to_the_next_model_at_once(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.batch_script.append(Fault(503, None))  # OpenAI's file upload: the service is unavailable
    agent = await run_one(server, clock)
    assert agent.status is AgentStatus.COMPLETED
    assert agent.result is not None
    assert agent.result.metadata["served_provider"] == "anthropic"
    assert agent.result.metadata["fallback_reason"] == "overloaded"
    assert batches_of(server) == ["anthropic"]  # the fallback is batched too, at its batch price


async def test_a_request_its_batch_answered_with_a_server_error_falls_back_at_once(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.outcome = lambda custom_id, body: "error" if body.get("model") == "gpt-4o-mini" else "ok"
    agent = await run_one(server, clock)
    assert agent.status is AgentStatus.COMPLETED and agent.result is not None
    assert agent.result.metadata["fallback_reason"] == "server_error"
    assert batches_of(server) == ["openai", "anthropic"]  # no second OpenAI batch: the retry budget is kept


async def test_an_expired_batch_is_retried_in_a_later_batch_not_fallen_back_from(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.fate = lambda n: "expired" if n == 0 else "completed"
    server.outcome = lambda custom_id, body: "expired"
    agent = await run_one(server, clock)
    assert agent.result is not None
    assert "served_provider" not in agent.result.metadata or agent.result.metadata["served_provider"] == "openai"
    assert agent.result.metadata.get("fallback_reason") is None
    assert batches_of(server)[:2] == ["openai", "openai"]


async def test_a_batch_the_provider_refuses_whole_does_not_fall_back(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.fate = lambda n: "failed"
    agent = await run_one(server, clock)
    assert agent.status is AgentStatus.FAILED and agent.result is not None
    assert "not valid" in (agent.result.error or "")
    assert batches_of(server) == ["openai"]
