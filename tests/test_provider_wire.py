"""Every request body we build, checked strictly against the official SDKs' request types,
and answers built with the SDKs' response models parsed back.

The clients talk to `tests/fake_provider.py` over real sockets; the bodies the
server received are then checked with `tests/sdk_types.problems` against
``openai``'s ``CompletionCreateParamsNonStreaming`` and ``anthropic``'s
``MessageCreateParamsNonStreaming`` (test-only dependencies): no key the SDK
does not declare, no required key missing, every value of its declared type.

The current ``anthropic`` SDK (1.0 and later) declares no sampling parameters
at all: the families it was made for refuse them. Bodies for the older
families that still take ``temperature`` / ``top_p`` are checked against the
current type plus exactly those two keys, as ``float`` (how the 0.x SDKs
declared them), and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types import Message
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

from orchestrate import AnthropicClient, OpenAIClient
from orchestrate.llm.azure import AzureOpenAIClient
from orchestrate.llm.base import ToolCall
from tests.fake_provider import FakeProvider, Fault, anthropic_message, openai_completion
from tests.sdk_types import problems

KEY = "sk-test-SECRET-0123456789abcdef"
SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
TOOLS = [
    {
        "name": "add",
        "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
    }
]


class LegacyMessageCreateParams(MessageCreateParamsNonStreaming, total=False):
    """The current request type plus the sampling keys older families still accept."""

    temperature: float
    top_p: float


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def openai(server: FakeProvider) -> OpenAIClient:
    return OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1")


def anthropic(server: FakeProvider) -> AnthropicClient:
    return AnthropicClient(api_key=KEY, base_url=server.url)


def strict_openai(body: dict[str, Any]) -> None:
    assert problems(body, CompletionCreateParamsNonStreaming) == []


def strict_anthropic(body: dict[str, Any], *, legacy: bool = False) -> None:
    assert problems(body, LegacyMessageCreateParams if legacy else MessageCreateParamsNonStreaming) == []


def test_the_checker_refuses_what_the_sdk_does_not_declare() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    assert problems(body, CompletionCreateParamsNonStreaming) == []
    assert problems({**body, "top_k": 3}, CompletionCreateParamsNonStreaming) != []
    assert problems({**body, "temperature": "hot"}, CompletionCreateParamsNonStreaming) != []
    assert (
        problems(
            {
                "model": "claude-opus-4-7",
                "max_tokens": 5,
                "temperature": 0.2,
                "messages": [{"role": "user", "content": "x"}],
            },
            MessageCreateParamsNonStreaming,
        )
        != []
    )
    assert problems({"model": "m", "messages": []}, MessageCreateParamsNonStreaming) != []  # max_tokens missing


# -- OpenAI ------------------------------------------------------------------------------------


async def test_openai_chat_model_with_tools_schema_and_sampling(server: FakeProvider) -> None:
    client = openai(server)
    await client.complete_with_tools(
        [{"role": "system", "content": "Be terse"}, {"role": "user", "content": "Add"}],
        "gpt-4o-mini",
        TOOLS,
        0.2,
        300,
        top_p=0.9,
        stop=["END"],
        response_schema=SCHEMA,
    )
    await client.aclose()
    body = server.requests[0]["body"]
    strict_openai(body)
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["stop"] == ["END"]
    assert body["max_tokens"] == 300
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


async def test_openai_tool_round_trip_is_valid(server: FakeProvider) -> None:
    client = openai(server)
    messages = [
        {"role": "user", "content": "Add 2 and 3"},
        {"role": "assistant", "content": "", "tool_calls": [ToolCall("call_1", "add", {"a": 2, "b": 3})]},
        {"role": "tool", "tool_call_id": "call_1", "name": "add", "content": "5"},
    ]
    await client.complete_with_tools(messages, "gpt-4.1", TOOLS, None, 100)
    await client.aclose()
    body = server.requests[0]["body"]
    strict_openai(body)
    assert "temperature" not in body  # None: not sent


@pytest.mark.parametrize("model", ["gpt-5-mini", "gpt-5", "o3", "o4-mini", "o1", "gpt-5-mini-2025-08-07"])
async def test_reasoning_models_get_no_temperature_top_p_or_stop(server: FakeProvider, model: str) -> None:
    client = openai(server)
    await client.complete("Close the month", model, 0.7, 400, top_p=0.9, stop=["END"], response_schema=SCHEMA)
    await client.aclose()
    body = server.requests[0]["body"]
    strict_openai(body)
    assert not {"temperature", "top_p", "stop", "max_tokens"} & set(body)
    assert body["max_completion_tokens"] == 400


async def test_a_strict_server_never_refuses_a_reasoning_request() -> None:
    refusing = {"gpt-5": ("temperature", "top_p", "stop"), "claude-opus-4-7": ("temperature", "top_p")}
    with FakeProvider(refused_params=refusing) as server:
        oa, an = openai(server), anthropic(server)
        await oa.complete("x", "gpt-5-mini", 0.7, 50, top_p=0.5, stop="END")
        await an.complete("x", "claude-opus-4-7", 0.7, 50, top_p=0.5)
        await oa.aclose(), await an.aclose()
        # The same server does refuse them when sent: the check above is not vacuous.
        raw = OpenAIClient.request_body([{"role": "user", "content": "x"}], "gpt-4o", [], 0.7, 50, top_p=0.5)
        raw["model"] = "gpt-5-mini"
        import httpx

        answer = httpx.post(f"{server.url}/v1/chat/completions", json=raw)
        assert answer.status_code == 400 and "top_p" in answer.text


async def test_json_object_mode_puts_the_schema_in_the_prompt(server: FakeProvider) -> None:
    client = openai(server)
    reply = await client.complete("Total it", "gpt-4-turbo", 0.1, 200, system="Be exact", response_schema=SCHEMA)
    await client.complete("Total it", "gpt-4o", 0.1, 200, response_schema=SCHEMA, response_format="json_object")
    await client.aclose()
    for request in server.requests:
        body = request["body"]
        strict_openai(body)
        assert body["response_format"] == {"type": "json_object"}
        system = body["messages"][0]
        assert system["role"] == "system" and '"total"' in system["content"]
    assert server.requests[0]["body"]["messages"][0]["content"].startswith("Be exact\n\n")
    assert "total" in reply.content


async def test_prompt_mode_sends_no_response_format(server: FakeProvider) -> None:
    client = openai(server)
    await client.complete("Total it", "gpt-4", 0.1, 200, response_schema=SCHEMA)
    await client.complete("Total it", "gpt-4o", 0.1, 200, response_schema=SCHEMA, response_format="prompt")
    await client.aclose()
    for request in server.requests:
        body = request["body"]
        strict_openai(body)
        assert "response_format" not in body
        assert "JSON Schema" in body["messages"][0]["content"]


# -- Azure ------------------------------------------------------------------------------------


async def test_azure_deployments_endpoint_with_api_version(server: FakeProvider) -> None:
    client = AzureOpenAIClient(api_key=KEY, base_url=server.url, api_version="2024-10-21")
    reply = await client.complete("Post the accruals", "finance-gpt4o", None, 100, response_schema=SCHEMA)
    await client.aclose()
    (request,) = server.requests
    assert request["path"] == "/openai/deployments/finance-gpt4o/chat/completions?api-version=2024-10-21"
    assert request["headers"]["api-key"] == KEY
    assert "Authorization" not in request["headers"]
    strict_openai(request["body"])
    assert request["body"]["model"] == "finance-gpt4o"
    assert reply.provider == "azure" and "total" in reply.content


async def test_azure_v1_endpoint_without_api_version(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", f"{server.url}/openai/v1/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    client = AzureOpenAIClient()
    await client.complete("x", "gpt-5-mini", 0.5, 100, top_p=0.3)
    await client.aclose()
    (request,) = server.requests
    assert request["path"] == "/openai/v1/chat/completions"
    assert request["headers"]["api-key"] == KEY
    strict_openai(request["body"])
    assert "top_p" not in request["body"] and "temperature" not in request["body"]
    assert KEY not in repr(client)


async def test_azure_without_its_key_header_is_refused(server: FakeProvider) -> None:
    from orchestrate.errors import AuthenticationError

    client = AzureOpenAIClient(api_key="", base_url=server.url)
    with pytest.raises(AuthenticationError, match="401"):
        await client.complete("x", "dep", None, 10)
    await client.aclose()


# -- Anthropic --------------------------------------------------------------------------------


async def test_opus_4_7_gets_no_sampling_and_native_structured_output(server: FakeProvider) -> None:
    client = anthropic(server)
    reply = await client.complete(
        "Screen the vendor", "claude-opus-4-7", 0.7, 500, top_p=0.9, system="You are careful", response_schema=SCHEMA
    )
    await client.aclose()
    body = server.requests[0]["body"]
    strict_anthropic(body)
    assert "temperature" not in body and "top_p" not in body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert body["system"] == "You are careful"  # the schema is not repeated in the prompt
    assert "total" in reply.content


async def test_sonnet_4_5_never_gets_temperature_and_top_p_together(server: FakeProvider) -> None:
    client = anthropic(server)
    await client.complete("x", "claude-sonnet-4-5-20250929", 1.5, 100, top_p=0.9, stop="END")
    await client.complete("x", "claude-sonnet-4-5", None, 100, top_p=0.9)
    await client.aclose()
    first, second = (r["body"] for r in server.requests)
    strict_anthropic(first, legacy=True)
    strict_anthropic(second, legacy=True)
    assert first["temperature"] == 1.0 and "top_p" not in first  # capped to Anthropic's range
    assert first["stop_sequences"] == ["END"]
    assert second["top_p"] == 0.9 and "temperature" not in second


async def test_older_claude_gets_both_and_the_schema_in_the_prompt(server: FakeProvider) -> None:
    client = anthropic(server)
    reply = await client.complete("x", "claude-3-5-haiku-20241022", 0.2, 100, top_p=0.5, response_schema=SCHEMA)
    await client.aclose()
    body = server.requests[0]["body"]
    strict_anthropic(body, legacy=True)
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5
    assert "output_config" not in body and "JSON Schema" in body["system"]
    assert "total" in reply.content


async def test_anthropic_tool_round_trip_is_valid(server: FakeProvider) -> None:
    client = anthropic(server)
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "Add 2 and 3"},
        {"role": "assistant", "content": "Adding", "tool_calls": [ToolCall("toolu_1", "add", {"a": 2, "b": 3})]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "add", "content": "5"},
    ]
    await client.complete_with_tools(messages, "claude-opus-4-7", TOOLS, 0.7, 100, response_schema=SCHEMA)
    await client.aclose()
    strict_anthropic(server.requests[0]["body"])


# -- answers built with the SDKs' response models ----------------------------------------------


async def test_openai_answer_built_by_the_sdk_is_parsed(server: FakeProvider) -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1764000000,
            "model": "o3-2025-04-16",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 120,
                "completion_tokens": 80,
                "total_tokens": 200,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 50},
            },
        }
    )
    server.script(Fault(200, completion.model_dump(mode="json")))
    client = openai(server)
    reply = await client.complete_with_tools([{"role": "user", "content": "Add"}], "o3", TOOLS, None, 500)
    await client.aclose()
    assert reply.tool_calls == [ToolCall("call_9", "add", {"a": 1, "b": 2})]
    assert (reply.input_tokens, reply.cached_input_tokens, reply.output_tokens, reply.reasoning_tokens) == (
        120,
        64,
        80,
        50,
    )
    assert reply.finish_reason == "tool_calls" and reply.model == "o3-2025-04-16"


async def test_anthropic_answer_with_thinking_built_by_the_sdk_is_parsed(server: FakeProvider) -> None:
    message = Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-7",
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "content": [
                {"type": "thinking", "thinking": "Sum the lines.", "signature": "sig"},
                {"type": "text", "text": '{"total": 12.5}'},
            ],
            "usage": {
                "input_tokens": 100,
                "output_tokens": 300,
                "cache_read_input_tokens": 40,
                "cache_creation_input_tokens": 10,
                "output_tokens_details": {"thinking_tokens": 220},
            },
        }
    )
    server.script(Fault(200, message.model_dump(mode="json")))
    client = anthropic(server)
    reply = await client.complete("x", "claude-opus-4-7", None, 1000, response_schema=SCHEMA)
    await client.aclose()
    assert reply.content == '{"total": 12.5}'  # the thinking block is not part of the answer
    assert reply.reasoning_tokens == 220 and reply.output_tokens == 300
    assert (reply.input_tokens, reply.cached_input_tokens, reply.cache_creation_input_tokens) == (150, 40, 10)


def test_the_fake_servers_own_answers_are_valid_sdk_responses() -> None:
    request = {
        "model": "claude-opus-4-7",
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }
    Message.model_validate(anthropic_message(request, thinking=12))
    ChatCompletion.model_validate(openai_completion({"model": "gpt-4o", "messages": []}, reasoning=5))
