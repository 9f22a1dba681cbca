"""Money promises through the Python API and the dataset runner: no silent price, simulated is
never spend in a shared scope, spend read back is validated, a dataset budget finishes whole rows."""

from __future__ import annotations

import pytest

from orchestrate import Agent, CostConfig, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import UserInputError
from orchestrate.llm.simulated import SimulatedClient


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
