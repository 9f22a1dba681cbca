"""The simulated provider: deterministic, schema-true, priced like the model, faults on demand."""

from __future__ import annotations

import jsonschema
import pytest

from orchestrate import SimulatedClient
from orchestrate.errors import RetriableLLMError


async def test_answers_are_deterministic_for_the_same_prompt() -> None:
    a = await SimulatedClient(seed=1).complete("Summarise payroll for October", "gpt-4o")
    b = await SimulatedClient(seed=1).complete("Summarise payroll for October", "gpt-4o")
    assert a.content == b.content and a.model == "gpt-4o" and a.provider == "simulated"
    assert a.input_tokens > 0 and a.output_tokens > 0


async def test_json_answers_satisfy_the_schema() -> None:
    schema = {
        "type": "object",
        "required": ["vendors", "risk"],
        "properties": {
            "vendors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "score"],
                    "properties": {"name": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
                },
            },
            "risk": {"enum": ["low", "medium", "high"]},
            "count": {"type": "integer", "minimum": 1},
        },
    }
    client = SimulatedClient()
    for i in range(20):
        response = await client.complete(f"vendor review {i}", "claude-sonnet-4-5", response_schema=schema)
        import json

        jsonschema.validate(json.loads(response.content), schema)


async def test_output_is_cut_at_max_tokens() -> None:
    response = await SimulatedClient().complete("x " * 400, "gpt-4o", max_tokens=3)
    assert response.output_tokens <= 3 and response.finish_reason == "length"


async def test_failure_rate_raises_retriable_errors_at_about_that_rate() -> None:
    client = SimulatedClient(failure_rate=0.3, seed=7)
    failures = 0
    for i in range(400):
        try:
            await client.complete(f"prompt {i}", "gpt-4o-mini")
        except RetriableLLMError:
            failures += 1
    assert 80 <= failures <= 160


async def test_latency_goes_through_the_injected_sleep() -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    client = SimulatedClient(latency=(0.1, 0.2), sleep=sleep)
    await client.complete("hello", "gpt-4o")
    await client.complete("hello", "gpt-4o", latency=0.5)
    assert 0.1 <= waited[0] <= 0.2 and waited[1] == 0.5


async def test_tools_are_called_then_answered() -> None:
    client = SimulatedClient()
    tools = [
        {
            "name": "stock_level",
            "description": "",
            "parameters": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
        }
    ]
    first = await client.complete_with_tools([{"role": "user", "content": "check stock"}], "gpt-4o", tools)
    assert first.tool_calls and first.tool_calls[0].name == "stock_level"
    assert isinstance(first.tool_calls[0].arguments["sku"], str)
    second = await client.complete_with_tools(
        [
            {"role": "user", "content": "check stock"},
            {"role": "assistant", "content": "", "tool_calls": first.tool_calls},
            {"role": "tool", "tool_call_id": first.tool_calls[0].id, "name": "stock_level", "content": '{"qty": 4}'},
        ],
        "gpt-4o",
        tools,
    )
    assert second.tool_calls is None and "qty" in second.content


@pytest.mark.parametrize("rate", [0.0])
async def test_no_failures_without_a_failure_rate(rate: float) -> None:
    client = SimulatedClient(failure_rate=rate)
    for i in range(50):
        await client.complete(f"p{i}", "gpt-4o")
