"""What the executor's call path keeps while it works out less per call: events, records, requests."""

from __future__ import annotations

from typing import Any

from orchestrate import EngineConfig, OrchestrationEngine
from orchestrate.run.events import Event, EventType
from tests.scripted import FakeSleep, ScriptedClient, response
from tests.test_engine import agent, run, workflow

# The llm_call event's data, in the order it has always been written (events.jsonl keeps it).
LLM_CALL_KEYS = [
    "model",
    "provider",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_savings",
    "cost",
    "cached",
    "batch_id",
    "duration",
    "finish_reason",
    "response_model",
    "request_id",
    "max_tokens",
    "temperature",
    "tool_calls",
    "usage_anomaly",
]


def _calls_of(engine: OrchestrationEngine) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}

    def keep(event: Event) -> None:
        if event.type is EventType.LLM_CALL and event.agent is not None:
            seen[event.agent] = event.data

    engine.add_sink(keep)
    return seen


async def test_an_llm_call_events_data_has_its_keys_in_their_order_each_its_own_dict() -> None:
    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        if "noted" in messages[-1]["content"]:
            return response("ok", model, metadata={"notice": "the schema went as a prompt"})
        return "ok"

    engine = OrchestrationEngine(ScriptedClient(answer), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    seen = _calls_of(engine)
    wf = workflow(agent("plain"), agent("warm", llm={"temperature": 1}), agent("noted"), name="keys")
    assert (await run(engine, wf)).status.value == "completed"
    assert list(seen["plain"]) == [*LLM_CALL_KEYS, "region"]
    assert list(seen["noted"]) == [*LLM_CALL_KEYS, "notice", "region"]
    assert seen["noted"]["notice"] == "the schema went as a prompt"
    assert seen["plain"]["model"] == "gpt-4o-mini" and seen["plain"]["max_tokens"] == 50
    assert seen["plain"]["temperature"] is None and seen["warm"]["temperature"] == 1
    assert type(seen["warm"]["temperature"]) is int  # as the config gave it
    assert seen["plain"]["input_tokens"] == 10 and seen["plain"]["output_tokens"] == 5
    assert seen["plain"] is not seen["warm"]
