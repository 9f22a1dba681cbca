"""Prompt caching on the wire: the loopback server caches as the providers do, and the
clients mark the stable prefix so that it does.

The server's cache (`tests/fake_prompt_cache.py`) follows the providers' documentation;
the clients are orchestrate's. Requests go over real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

from orchestrate import AnthropicClient, OpenAIClient
from orchestrate.llm.capabilities import lookup
from orchestrate.llm.prompt_cache import CachePlan
from tests.fake_prompt_cache import ProviderCache
from tests.fake_provider import FakeProvider
from tests.sdk_types import problems

KEY = "sk-test-SECRET-0123456789abcdef"
POLICY = "Accounts-payable policy, clause {n}: invoices above the tolerance need a second approver. " * 1
LONG_SYSTEM = "".join(POLICY.format(n=n) for n in range(120))  # about 2,800 tokens at 4 characters a token
TOOLS = [
    {"name": "lookup_po", "description": "Find a purchase order", "parameters": {"type": "object", "properties": {}}},
    {"name": "add", "description": "Add two numbers", "parameters": {"type": "object", "properties": {}}},
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[FakeProvider]:
    with FakeProvider(prompt_cache=ProviderCache(clock)) as fake:
        yield fake


def anthropic(server: FakeProvider) -> AnthropicClient:
    return AnthropicClient(api_key=KEY, base_url=server.url)


def openai(server: FakeProvider) -> OpenAIClient:
    return OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1")


def _messages(row: str, system: str = LONG_SYSTEM) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Review invoice {row}."}]


def _marks(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = [t["cache_control"] for t in body.get("tools", []) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        found += [b["cache_control"] for b in system if "cache_control" in b]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            found += [b["cache_control"] for b in message["content"] if "cache_control" in b]
    return found


# -- the loopback server's cache --------------------------------------------------------------


async def _anthropic_usage(client: AnthropicClient, row: str, **options: Any) -> Any:
    model = options.pop("model", "claude-sonnet-4-5")
    return await client.complete_with_tools(_messages(row), model, [], None, 50, **options)


async def test_anthropic_reads_a_marked_prefix_only_after_a_first_call_wrote_it(server: FakeProvider) -> None:
    client = anthropic(server)
    plan = CachePlan()
    first = await _anthropic_usage(client, "A-1", prompt_cache=plan)
    second = await _anthropic_usage(client, "A-2", prompt_cache=plan)
    await client.aclose()
    assert first.cached_input_tokens == 0 and first.cache_creation_input_tokens > 1024
    assert second.cached_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens == first.input_tokens  # every prompt token, cached ones included


async def test_anthropic_caches_nothing_unmarked_and_nothing_under_the_minimum(server: FakeProvider) -> None:
    client = anthropic(server)
    for _ in range(2):
        unmarked = await _anthropic_usage(client, "A-1")
    short = [{"role": "system", "content": "Be brief. " * 200}, {"role": "user", "content": "Review A-1."}]
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": [{"type": "text", "text": short[0]["content"], "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Review A-1."}],
    }
    use = [server.prompt_cache.anthropic(body) for _ in range(2)]  # type: ignore[union-attr]
    for u in use:
        u.commit()
    await client.aclose()
    assert unmarked.cached_input_tokens == 0 and unmarked.cache_creation_input_tokens == 0
    assert [(u.read, u.write) for u in use] == [(0, 0), (0, 0)]  # 500 tokens: under 1,024, silently


async def test_anthropic_cache_expires_after_its_ttl_and_is_refreshed_by_use(
    server: FakeProvider, clock: Clock
) -> None:
    client = anthropic(server)
    await _anthropic_usage(client, "A-1", prompt_cache=CachePlan())
    clock.now += 299
    refreshed = await _anthropic_usage(client, "A-2", prompt_cache=CachePlan())
    clock.now += 299  # 598 s after the write, 299 s after the last use
    still = await _anthropic_usage(client, "A-3", prompt_cache=CachePlan())
    clock.now += 301
    expired = await _anthropic_usage(client, "A-4", prompt_cache=CachePlan())
    await _anthropic_usage(client, "A-5", prompt_cache=CachePlan(ttl="1h"))
    clock.now += 3000
    hour = await _anthropic_usage(client, "A-6", prompt_cache=CachePlan(ttl="1h"))
    await client.aclose()
    assert refreshed.cached_input_tokens > 0 and still.cached_input_tokens > 0
    assert expired.cached_input_tokens == 0 and expired.cache_creation_input_tokens > 0
    assert hour.cached_input_tokens > 0


async def test_anthropic_refuses_more_than_four_marks(server: FakeProvider) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)],
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert "maximum of 4" in (server.prompt_cache.anthropic(body).error or "")  # type: ignore[union-attr]


async def test_a_first_wave_of_concurrent_calls_all_miss(clock: Clock) -> None:
    with FakeProvider(prompt_cache=ProviderCache(clock), latency=0.2) as server:
        client = anthropic(server)
        wave = await asyncio.gather(*(_anthropic_usage(client, f"A-{i}", prompt_cache=CachePlan()) for i in range(4)))
        after = await _anthropic_usage(client, "A-9", prompt_cache=CachePlan())
        await client.aclose()
    assert all(r.cached_input_tokens == 0 and r.cache_creation_input_tokens > 0 for r in wave)
    assert after.cached_input_tokens > 0


async def test_openai_caches_from_1024_tokens_per_key_and_ttl(server: FakeProvider, clock: Clock) -> None:
    client = openai(server)

    async def call(row: str, key: str | None = "k1", system: str = LONG_SYSTEM, model: str = "gpt-4o") -> Any:
        return await client.complete_with_tools(
            _messages(row, system), model, [], None, 50, prompt_cache=CachePlan(key=key)
        )

    first = await call("1")
    second = await call("2")
    other_key = await call("3", key="k2")
    short = [await call(str(i), system="Short policy. " * 100) for i in range(2)]
    clock.now += 301
    expired = await call("4")
    await client.aclose()
    assert first.cached_input_tokens == 0
    assert second.cached_input_tokens >= 1024 and second.cached_input_tokens % 128 == 0
    assert second.cached_input_tokens > first.input_tokens - 64  # all but the changing tail
    assert other_key.cached_input_tokens == 0
    assert [r.cached_input_tokens for r in short] == [0, 0]
    assert expired.cached_input_tokens == 0


# -- what the clients send ------------------------------------------------------------------


async def test_anthropic_marks_tools_system_and_the_static_user_text_within_the_limit(server: FakeProvider) -> None:
    client = anthropic(server)
    messages = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "Check against the policy above. Invoice A-1: 120 EUR."},
    ]
    plan = CachePlan(ttl="1h", user_prefix=len("Check against the policy above. "))
    await client.complete_with_tools(messages, "claude-sonnet-4-5", TOOLS, None, 50, prompt_cache=plan)
    await client.aclose()
    body = server.requests[-1]["body"]
    assert problems(body, MessageCreateParamsNonStreaming) == []
    assert _marks(body) == [{"type": "ephemeral", "ttl": "1h"}] * 2  # the tools alone are under 1,024
    assert body["messages"][0]["content"][0] == {
        "type": "text",
        "text": "Check against the policy above. ",
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "Invoice A-1: 120 EUR."}


def test_at_most_the_models_limit_of_marks_the_longest_prefixes_kept() -> None:
    caps = lookup("claude-sonnet-4-5", "anthropic")
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "static " * 10 + "row"}]
    big_tools = [{**t, "description": LONG_SYSTEM} for t in TOOLS]
    two = AnthropicClient.request_body(
        messages,
        "claude-sonnet-4-5",
        big_tools,
        None,
        10,
        capabilities=caps.__class__(**{**caps.to_dict(), "cache_breakpoints": 2}),
        prompt_cache=CachePlan(user_prefix=70),
    )
    four = AnthropicClient.request_body(
        messages, "claude-sonnet-4-5", big_tools, None, 10, prompt_cache=CachePlan(user_prefix=70)
    )
    assert len(_marks(four)) == 3  # tools, system, user prefix
    assert len(_marks(two)) == 2 and "cache_control" not in two["tools"][-1]
    assert isinstance(two["system"], list) and "cache_control" in two["messages"][0]["content"][0]


def test_nothing_is_marked_under_the_models_minimum() -> None:
    messages = _messages("A-1")  # about 2,800 tokens of stable prefix
    sonnet = AnthropicClient.request_body(messages, "claude-sonnet-4-5", [], None, 10, prompt_cache=CachePlan())
    haiku = AnthropicClient.request_body(messages, "claude-haiku-4-5", [], None, 10, prompt_cache=CachePlan())
    dated = AnthropicClient.request_body(messages, "claude-3-5-haiku-20241022", [], None, 10, prompt_cache=CachePlan())
    assert len(_marks(sonnet)) == 1
    assert _marks(haiku) == [] and isinstance(haiku["system"], str)  # its minimum is 4,096
    assert len(_marks(dated)) == 1  # 2,048 for Haiku 3.5


async def test_anthropic_usage_split_by_ttl_is_read(server: FakeProvider) -> None:
    client = anthropic(server)
    hour = await _anthropic_usage(client, "A-1", prompt_cache=CachePlan(ttl="1h"))
    await client.aclose()
    assert hour.cache_creation_1h_input_tokens == hour.cache_creation_input_tokens > 0


async def test_openai_key_and_retention_only_where_the_model_takes_them(server: FakeProvider) -> None:
    client = openai(server)
    plan = CachePlan(ttl="1h", key="invoice_review:po_match:ab12")
    for model in ("gpt-4o", "gpt-4.1-mini", "llama3.1:8b"):
        await client.complete_with_tools(_messages("1"), model, [], None, 50, prompt_cache=plan)
    await client.aclose()
    gpt4o, gpt41, llama = (r["body"] for r in server.requests[-3:])
    for body in (gpt4o, gpt41):
        assert problems(body, CompletionCreateParamsNonStreaming) == []
    assert gpt4o["prompt_cache_key"] == plan.key and "prompt_cache_retention" not in gpt4o
    assert gpt41["prompt_cache_retention"] == "24h"
    assert not any(k.startswith("prompt_cache") for k in llama)  # an unknown server may refuse them


def test_gpt_5_6_gets_an_explicit_breakpoint_at_the_end_of_the_stable_prefix() -> None:
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Static part. Row 7."}]
    body = OpenAIClient.request_body(
        messages, "gpt-5.6", [], None, 10, prompt_cache=CachePlan(key="k", user_prefix=len("Static part. "))
    )
    assert body["prompt_cache_options"] == {"mode": "explicit"}
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Static part. ", "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "text", "text": "Row 7."},
    ]
    short = OpenAIClient.request_body(_messages("1", "Short."), "gpt-5.6", [], None, 10, prompt_cache=CachePlan())
    assert "prompt_cache_breakpoint" not in str(short["messages"])
