"""The Bedrock Converse client against a loopback server speaking Converse (tests/fake_bedrock.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from orchestrate.errors import (
    AuthenticationError,
    BadRequestError,
    MissingAPIKeyError,
    ProviderUnavailableError,
    RateLimitError,
    UserInputError,
)
from orchestrate.llm.base import ToolCall
from orchestrate.llm.bedrock import BedrockClient, runtime_url
from orchestrate.llm.capabilities import lookup
from orchestrate.llm.presets import base_model, region_of
from orchestrate.llm.prices import find_price, regional_uplift
from orchestrate.llm.providers import ClientPool, infer_provider
from tests.fake_bedrock import FakeBedrock, converse_answer

KEY = "ABSKQmVkcm9ja0FQSUtleS1TECRET0123456789"
PROFILE = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


def client(fake: FakeBedrock, **kw: object) -> BedrockClient:
    return BedrockClient(api_key=KEY, base_url=fake.url, region="eu-central-1", **kw)  # type: ignore[arg-type]


async def test_a_converse_request_carries_the_profile_in_the_path_and_the_key_as_bearer(bedrock: FakeBedrock) -> None:
    c = client(bedrock)
    response = await c.complete("Hello", PROFILE, 0.2, 300, system="Be brief.", stop="END")
    await c.aclose()
    sent = bedrock.requests[0]
    assert sent["path"] == "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert sent["model"] == PROFILE
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    body = sent["body"]
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "Hello"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.2, "stopSequences": ["END"]}
    assert response.provider == "bedrock" and response.model == PROFILE
    assert response.request_id == "4f3a-fake-req"
    assert response.finish_reason == "stop"


async def test_usage_counts_cached_input_as_part_of_the_input(bedrock: FakeBedrock) -> None:
    bedrock.script(converse_answer({"messages": []}, text="ok", cache_read=100))
    c = client(bedrock)
    response = await c.complete("Hi", PROFILE, None, 50)
    await c.aclose()
    assert response.cached_input_tokens == 100
    assert response.input_tokens == 100 + 1  # inputTokens (1) leaves the 100 read from the cache out
    assert response.output_tokens == 7


async def test_tools_and_tool_results_use_converse_blocks(bedrock: FakeBedrock) -> None:
    bedrock.script(converse_answer({}, tool_use={"toolUseId": "tu1", "name": "lookup", "input": {"id": 4}}))
    c = client(bedrock)
    tools = [{"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}]
    first = await c.complete_with_tools([{"role": "user", "content": "go"}], PROFILE, tools, None, 100)
    assert first.tool_calls == [ToolCall("tu1", "lookup", {"id": 4})]
    assert first.finish_reason == "tool_calls"
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": first.tool_calls},
        {"role": "tool", "tool_call_id": "tu1", "name": "lookup", "content": '{"ok": true}'},
    ]
    await c.complete_with_tools(messages, PROFILE, tools, None, 100)
    await c.aclose()
    first_body, second_body = bedrock.requests[0]["body"], bedrock.requests[1]["body"]
    assert first_body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": tools[0]["parameters"]}
    assert second_body["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "tu1", "name": "lookup", "input": {"id": 4}}}],
    }
    assert second_body["messages"][2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tu1", "content": [{"text": '{"ok": true}'}]}}],
    }


async def test_an_output_schema_goes_in_output_config_as_a_json_string(bedrock: FakeBedrock) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    c = client(bedrock)
    response = await c.complete("Sum", PROFILE, None, 100, response_schema=schema)
    await c.aclose()
    fmt = bedrock.requests[0]["body"]["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert json.loads(fmt["structure"]["jsonSchema"]["schema"]) == schema
    assert "total" in json.loads(response.content)


async def test_throttling_is_rate_limited_with_the_retry_after_it_sent(bedrock: FakeBedrock) -> None:
    bedrock.script(("ThrottlingException", "Too many requests, please wait before trying again.", {"retry-after": "3"}))
    c = client(bedrock)
    with pytest.raises(RateLimitError) as caught:
        await c.complete("Hi", PROFILE, None, 10)
    await c.aclose()
    assert caught.value.retriable and caught.value.retry_after == 3.0
    assert "ThrottlingException" in str(caught.value)
    assert caught.value.request_id == "4f3a-fake-req"


async def test_a_validation_error_is_not_retried_and_names_its_kind(bedrock: FakeBedrock) -> None:
    bedrock.script(("ValidationException", "The provided model identifier is invalid."))
    c = client(bedrock)
    with pytest.raises(BadRequestError) as caught:
        await c.complete("Hi", PROFILE, None, 10)
    await c.aclose()
    assert not caught.value.retriable
    assert "ValidationException" in str(caught.value) and "model identifier" in str(caught.value)


@pytest.mark.parametrize(
    "kind", ["ModelNotReadyException", "ModelTimeoutException", "ModelErrorException", "ServiceUnavailableException"]
)
async def test_transient_model_errors_are_retriable(bedrock: FakeBedrock, kind: str) -> None:
    bedrock.script((kind, "try again"))
    c = client(bedrock)
    with pytest.raises((ProviderUnavailableError, RateLimitError)) as caught:
        await c.complete("Hi", PROFILE, None, 10)
    await c.aclose()
    assert caught.value.retriable


async def test_the_key_never_appears_in_an_error(bedrock: FakeBedrock) -> None:
    bedrock.script(("AccessDeniedException", f"key {KEY} is not allowed"))
    c = client(bedrock)
    with pytest.raises(AuthenticationError) as caught:
        await c.complete("Hi", PROFILE, None, 10)
    await c.aclose()
    assert KEY not in str(caught.value)
    assert KEY not in repr(c)


async def test_without_a_key_and_without_botocore_the_error_names_the_extra(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("botocore", "botocore.session"):  # as on a machine without orchestrate[aws]
        monkeypatch.setitem(sys.modules, name, None)
    c = BedrockClient(api_key="", base_url=bedrock.url, region="eu-central-1")
    with pytest.raises(UserInputError, match=r"orchestrate\[aws\]"):
        await c.complete("Hi", PROFILE, None, 10)
    await c.aclose()
    assert bedrock.requests == []
    pool = ClientPool()
    with pytest.raises(MissingAPIKeyError, match="AWS_BEARER_TOKEN_BEDROCK"):
        pool.check_keys([{"model": PROFILE, "provider": "bedrock"}])


def test_the_runtime_endpoint_is_regional_and_the_pool_keeps_one_client_per_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    pool = ClientPool()
    frankfurt = pool.get({"model": PROFILE, "provider": "bedrock", "region": "eu-central-1"})
    ireland = pool.get({"model": PROFILE, "provider": "bedrock", "region": "eu-west-1"})
    assert frankfurt is not ireland
    assert frankfurt.endpoint(PROFILE).startswith(runtime_url("eu-central-1") + "/model/")  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert pool.get({"model": PROFILE, "provider": "bedrock"}).base_url == runtime_url("eu-west-3")  # type: ignore[attr-defined]


def test_profiles_and_model_ids_are_priced_and_have_capabilities_as_their_model() -> None:
    assert infer_provider(PROFILE) == "bedrock"
    assert base_model("bedrock", PROFILE) == "claude-sonnet-4-5"
    assert find_price(base_model("bedrock", "amazon.nova-pro-v1:0")) is not None
    caps = lookup(PROFILE, "bedrock")
    assert caps == lookup("claude-sonnet-4-5", "anthropic")
    assert region_of("bedrock", {"model": PROFILE, "region": "eu-central-1"}) == "eu:eu-central-1"
    assert regional_uplift("bedrock", "claude-sonnet-4-5", "eu:eu-central-1") == pytest.approx(1.1)
    assert regional_uplift("bedrock", "claude-sonnet-4-5", "global") == 1.0
