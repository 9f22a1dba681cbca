"""Money promises through the Python API and the dataset runner: no silent price, simulated is
never spend in a shared scope, spend read back is validated, a dataset budget finishes whole rows."""

from __future__ import annotations

import uuid

import pytest

from orchestrate import Agent, CostConfig, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import UserInputError
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.state.backends import state_from_url
from orchestrate.state.memory import MemoryState
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from tests.scripted import ScriptedClient


def unpriced(model: str = "gpt-9-ultra", **llm: object) -> Workflow:
    return Workflow("w", "d", [Agent("post", "Finance", "d", {"model": model, **llm}, "go")])


async def test_an_agent_with_no_price_is_refused_at_registration_naming_the_model() -> None:
    engine = OrchestrationEngine(SimulatedClient())
    with pytest.raises(UserInputError, match=r"agent 'post': no price known for model 'gpt-9-ultra'; give it one"):
        await engine.register_workflow(unpriced())
    assert engine.workflows == {}
    await engine.shutdown()


async def test_a_price_given_or_unknown_models_allowed_or_a_local_server_register() -> None:
    engine = OrchestrationEngine(SimulatedClient())
    priced = unpriced()
    priced.prices = {"gpt-9-ultra": {"input": 0.5, "output": 1.5}}
    await engine.register_workflow(priced)
    await engine.register_workflow(unpriced("llama3.1", provider="ollama"))
    allowed = OrchestrationEngine(SimulatedClient(), EngineConfig(cost_config=CostConfig(price_unknown_models=True)))
    await allowed.register_workflow(unpriced())
    await engine.shutdown()
    await allowed.shutdown()


# -- shared budget scopes ----------------------------------------------------------------------


def scoped() -> Workflow:
    wf = Workflow("w", "d", [Agent(n, "Finance", "d", {"model": "gpt-4o-mini", "max_tokens": 50}, "go") for n in "ab"])
    wf.budget_scope = "finance-dept"
    return wf


async def test_a_simulated_run_never_reserves_or_books_in_a_shared_scope() -> None:
    state = MemoryState()
    await state.budget_set("finance-dept", 0.5)
    engine = OrchestrationEngine(SimulatedClient(), state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert done.status.value == "completed" and done.total_cost > 0  # priced, as simulated figures
    shown = await state.budget_get("finance-dept")
    assert (shown.spent, shown.reserved, shown.leases) == (0.0, 0.0, 0)


async def test_a_simulated_run_previews_the_refusal_of_a_scope_too_small() -> None:
    state = MemoryState()
    await state.budget_set("finance-dept", 0.0000001)
    engine = OrchestrationEngine(SimulatedClient(), state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert {a.status.value for a in done.agents} == {"budget_exceeded"}
    assert (await state.budget_get("finance-dept")).spent == 0.0


@pytest.mark.parametrize("field,value", [("spent", "nan"), ("spent", "-5"), ("limit", "nan"), ("spent", "inf")])
async def test_a_redis_scope_holding_nan_or_a_negative_spend_refuses_every_call(
    redis_server: RedisServer,  # noqa: F811
    field: str,
    value: str,
) -> None:
    import redis.asyncio as redis_asyncio

    namespace = f"t{uuid.uuid4().hex[:8]}"
    state = state_from_url(redis_server.url, namespace=namespace)
    await state.connect()
    await state.budget_set("finance-dept", 10.0)
    raw = redis_asyncio.from_url(redis_server.url)
    await raw.hset(f"{namespace}:budget:{{finance-dept}}", field, value)
    await raw.aclose()
    verdict, _, _ = await state.budget_reserve("finance-dept", "lease-1", 0.01)
    assert verdict == "corrupt"
    client = ScriptedClient()
    engine = OrchestrationEngine(client, state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert {a.status.value for a in done.agents} == {"budget_exceeded"}
    assert "not a finite, non-negative amount" in (done.agents[0].result.error or "")
    assert client.calls == []
    await state.aclose()
