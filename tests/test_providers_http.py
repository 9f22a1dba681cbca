"""The OpenAI and Anthropic clients against a real HTTP server on 127.0.0.1.

Nothing of ours is patched: the clients send real requests over sockets to
`tests/fake_provider.py`, which answers in each provider's wire format,
error bodies and headers included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import (
    Agent,
    AnthropicClient,
    EngineConfig,
    OpenAIClient,
    OrchestrationEngine,
    RetryPolicy,
    Workflow,
)
from orchestrate.errors import (
    AuthenticationError,
    BadRequestError,
    LLMConnectionError,
    LLMTimeoutError,
    MalformedResponseError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)
from orchestrate.llm.base import ToolCall
from orchestrate.llm.providers import ClientPool, infer_provider
from tests.fake_provider import FakeProvider, Fault, anthropic_message, openai_completion
from tests.scripted import FakeSleep

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def openai(server: FakeProvider, **kw: Any) -> OpenAIClient:
    return OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1", **kw)


def anthropic(server: FakeProvider, **kw: Any) -> AnthropicClient:
    return AnthropicClient(api_key=KEY, base_url=server.url, **kw)


def add_numbers(a: float, b: float) -> float:
    """A tool for the tool-loop test."""
    return a + b


# -- request bodies -------------------------------------------------------------------------


async def test_openai_request_is_a_chat_completion(server: FakeProvider) -> None:
    client = openai(server)
    reply = await client.complete(
        "Reconcile the bank", "gpt-4o-mini", 0.2, 300, system="Be terse", response_schema={"type": "object"}
    )
    await client.aclose()
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 300 and body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "Be terse"},
        {"role": "user", "content": "Reconcile the bank"},
    ]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert json.loads(reply.content) == {} and reply.request_id == "req_fake_123"
    assert reply.provider == "openai" and reply.finish_reason == "stop"


async def test_reasoning_models_get_max_completion_tokens_and_no_temperature(server: FakeProvider) -> None:
    client = openai(server)
    await client.complete("x", "o3-mini", 0.7, 500)
    await client.complete("x", "gpt-5-mini", 0.7, 500)
    await client.aclose()
    for request in server.requests:
        assert request["body"]["max_completion_tokens"] == 500
        assert "max_tokens" not in request["body"] and "temperature" not in request["body"]


async def test_anthropic_request_is_a_message(server: FakeProvider) -> None:
    client = anthropic(server)
    await client.complete("Screen the vendor", "claude-haiku-4-5", 0.0, 256, system="You are careful", stop=["END"])
    await client.aclose()
    (request,) = server.requests
    assert request["path"] == "/v1/messages"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    body = request["body"]
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "temperature": 0.0,
        "system": "You are careful",
        "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "Screen the vendor"}],
    }


# -- usage ----------------------------------------------------------------------------------


async def test_openai_usage_with_cached_and_reasoning_tokens(server: FakeProvider) -> None:
    server.script(
        Fault(
            200,
            {
                **openai_completion({}, content="done", cached=1024, reasoning=300),
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 500,
                    "total_tokens": 2500,
                    "prompt_tokens_details": {"cached_tokens": 1024},
                    "completion_tokens_details": {"reasoning_tokens": 300},
                },
            },
        )
    )
    client = openai(server)
    reply = await client.complete("x", "gpt-4o", max_tokens=600)
    await client.aclose()
    assert (reply.input_tokens, reply.cached_input_tokens, reply.output_tokens, reply.reasoning_tokens) == (
        2000,
        1024,
        500,
        300,
    )


async def test_anthropic_usage_counts_cache_reads_and_writes(server: FakeProvider) -> None:
    body = anthropic_message({}, content=[{"type": "text", "text": "ok"}])
    body["usage"] = {
        "input_tokens": 100,
        "output_tokens": 40,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
    }
    server.script(Fault(200, body))
    client = anthropic(server)
    reply = await client.complete("x", "claude-sonnet-4-5")
    await client.aclose()
    assert (reply.input_tokens, reply.cached_input_tokens, reply.cache_creation_input_tokens, reply.output_tokens) == (
        2600,
        2000,
        500,
        40,
    )


async def test_usage_feeds_the_cost_tracker_exactly(server: FakeProvider) -> None:
    server.script(
        Fault(
            200,
            {
                **openai_completion({}, content="done"),
                "usage": {
                    "prompt_tokens": 10_000,
                    "completion_tokens": 1000,
                    "prompt_tokens_details": {"cached_tokens": 8000},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            },
        )
    )
    engine = OrchestrationEngine(openai(server), EngineConfig(rate_limit_config=None))
    wf = Workflow("priced", "d", [Agent("a", "Finance", "d", {"model": "gpt-4o", "max_tokens": 1000}, "go")])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    price = engine.cost_tracker.price_of("gpt-4o")
    expected = (2000 * price["input"] + 8000 * price["cached_input"] + 1000 * price["output"]) / 1000
    assert wf.total_cost == pytest.approx(expected, rel=1e-9)
    assert engine.cost_tracker.records()[0].cached_input_tokens == 8000


# -- tool calls -----------------------------------------------------------------------------


async def test_openai_tool_calls_round_trip(server: FakeProvider) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "ledger_balance", "arguments": '{"account": "1200"}'},
    }
    server.script(Fault(200, openai_completion({}, content=None, tool_calls=[call])))
    client = openai(server)
    tools = [
        {
            "name": "ledger_balance",
            "description": "Balance of an account",
            "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
        }
    ]
    first = await client.complete_with_tools([{"role": "user", "content": "balance?"}], "gpt-4o", tools)
    assert first.tool_calls == [ToolCall("call_1", "ledger_balance", {"account": "1200"})]
    assert first.finish_reason == "tool_calls"
    messages = [
        {"role": "user", "content": "balance?"},
        {"role": "assistant", "content": "", "tool_calls": first.tool_calls},
        {"role": "tool", "tool_call_id": "call_1", "name": "ledger_balance", "content": '{"balance": 5}'},
    ]
    await client.complete_with_tools(messages, "gpt-4o", tools)
    await client.aclose()
    sent = server.requests[1]["body"]
    assert sent["tools"][0] == {"type": "function", "function": tools[0]}
    assert sent["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"balance": 5}'}


async def test_anthropic_tool_use_round_trip(server: FakeProvider) -> None:
    blocks = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "stock_level", "input": {"sku": "A-1"}},
    ]
    server.script(Fault(200, anthropic_message({}, content=blocks)))
    client = anthropic(server)
    tools = [
        {
            "name": "stock_level",
            "description": "Units on hand",
            "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}},
        }
    ]
    first = await client.complete_with_tools([{"role": "user", "content": "stock?"}], "claude-haiku-4-5", tools)
    assert first.tool_calls == [ToolCall("toolu_1", "stock_level", {"sku": "A-1"})]
    assert first.finish_reason == "tool_calls" and first.content == "Checking."
    messages = [
        {"role": "user", "content": "stock?"},
        {"role": "assistant", "content": first.content, "tool_calls": first.tool_calls},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "stock_level", "content": "42"},
    ]
    await client.complete_with_tools(messages, "claude-haiku-4-5", tools)
    await client.aclose()
    sent = server.requests[1]["body"]
    assert sent["tools"] == [
        {"name": "stock_level", "description": "Units on hand", "input_schema": tools[0]["parameters"]}
    ]
    assert sent["messages"][1] == {"role": "assistant", "content": blocks}
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}],
    }


async def test_a_tool_loop_through_the_engine_over_http(server: FakeProvider) -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    server.script(
        Fault(200, openai_completion({}, content=None, tool_calls=[call])),
        Fault(200, openai_completion({}, content="the sum is 5")),
    )
    engine = OrchestrationEngine(openai(server), EngineConfig(rate_limit_config=None))
    agent = Agent(
        "calc",
        "General",
        "d",
        {"model": "gpt-4o-mini"},
        "add 2 and 3",
        tools=[
            {
                "function": "tests.test_providers_http:add_numbers",
                "name": "add",
                "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
            }
        ],
    )
    wf = Workflow("tools", "d", [agent])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert agent.result is not None and agent.result.output == {"text": "the sum is 5"}
    tool_message = server.requests[1]["body"]["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": "call_9", "content": "5"}


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, kind, retry_after",
    [
        (Fault(429, None, {"retry-after": "7"}), RateLimitError, 7.0),
        (Fault(429, None, {"retry-after-ms": "1500", "retry-after": "9"}), RateLimitError, 1.5),
        (Fault(500, None), ProviderUnavailableError, None),
        (Fault(503, None), ProviderUnavailableError, None),
        (Fault(529, None), ProviderUnavailableError, None),
        (Fault(408, None), ProviderUnavailableError, None),
        (Fault(409, None), ProviderUnavailableError, None),
        (Fault(200, None, truncate=True), LLMConnectionError, None),
        (Fault(200, b"<html>502 Bad Gateway</html>"), MalformedResponseError, None),
        (Fault(200, {"choices": []}), MalformedResponseError, None),
    ],
)
@pytest.mark.parametrize("make", [openai, anthropic], ids=["openai", "anthropic"])
async def test_transient_failures_are_retriable(
    server: FakeProvider, make: Any, fault: Fault, kind: type, retry_after: float | None
) -> None:
    server.script(fault)
    client = make(server)
    with pytest.raises(kind) as caught:
        await client.complete("x", "claude-haiku-4-5" if make is anthropic else "gpt-4o-mini")
    await client.aclose()
    assert caught.value.retriable
    assert caught.value.retry_after == retry_after
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "status, kind",
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, ModelNotFoundError),
        (422, BadRequestError),
    ],
)
@pytest.mark.parametrize("make", [openai, anthropic], ids=["openai", "anthropic"])
async def test_client_errors_are_not_retriable_and_carry_the_providers_text(
    server: FakeProvider, make: Any, status: int, kind: type
) -> None:
    server.script(Fault(status, None))
    client = make(server)
    with pytest.raises(kind) as caught:
        await client.complete("x", "gpt-4o-mini")
    await client.aclose()
    assert not caught.value.retriable and caught.value.status_code == status
    assert f"fake {status} from the test server" in str(caught.value)
    assert "req_fake_123" in str(caught.value)


async def test_a_500_reporting_the_validation_of_the_request_body_is_a_bad_request(server: FakeProvider) -> None:
    """llama-cpp-python's server answers a body it refuses with a 500 (tests/test_llama_server.py
    meets the real one): the same body would be refused again, so it is not retried."""
    detail = (
        "1 validation error:\n  {'type': 'less_than_equal', 'loc': ('body', 'top_p'), "
        "'msg': 'Input should be less than or equal to 1', 'input': 5.0}"
    )
    server.script(Fault(500, {"error": {"message": detail, "type": "internal_server_error"}}), Fault(500, None))
    client = openai(server)
    with pytest.raises(BadRequestError) as caught:
        await client.complete("x", "gpt-4o-mini")
    with pytest.raises(ProviderUnavailableError):  # any other 500 is still the server's own trouble
        await client.complete("x", "gpt-4o-mini")
    await client.aclose()
    assert not caught.value.retriable and "'loc': ('body', 'top_p')" in str(caught.value)


async def test_a_time_out_is_retriable(server: FakeProvider) -> None:
    server.script(Fault(200, None, delay=1.0))
    client = openai(server, timeout=0.2)
    with pytest.raises(LLMTimeoutError):
        await client.complete("x", "gpt-4o-mini")
    await client.aclose()


async def test_a_refused_connection_is_retriable() -> None:
    with FakeProvider() as fake:
        url = fake.url
    client = OpenAIClient(api_key=KEY, base_url=f"{url}/v1", connect_timeout=1.0)
    with pytest.raises(LLMConnectionError) as caught:
        await client.complete("x", "gpt-4o-mini")
    await client.aclose()
    assert KEY not in str(caught.value)


async def test_the_key_never_appears_even_when_the_provider_echoes_it(server: FakeProvider) -> None:
    server.script(
        Fault(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {KEY}. You can find "
                    "your API key at https://platform.openai.com.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    client = openai(server)
    with pytest.raises(AuthenticationError) as caught:
        await client.complete("x", "gpt-4o-mini")
    await client.aclose()
    assert KEY not in str(caught.value) and "Incorrect API key provided" in str(caught.value)
    assert KEY not in repr(client)


# -- through the engine: retried, then succeeding; 401 fails fast --------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(429, None, {"retry-after": "3"}),
        Fault(500, None),
        Fault(529, None),
        Fault(200, None, delay=1.0),
        Fault(200, None, truncate=True),
    ],
    ids=["429", "500", "529", "timeout", "truncated"],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_engine_retries_transient_failures_then_succeeds(
    server: FakeProvider, fault: Fault, provider: str
) -> None:
    server.script(fault)
    sleep = FakeSleep()
    client = openai(server, timeout=0.3) if provider == "openai" else anthropic(server, timeout=0.3)
    engine = OrchestrationEngine(
        client,
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(max_retries=3, jitter=False)),
        sleep=sleep,
    )
    model = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    agent = Agent("a", "Finance", "d", {"model": model}, "close the books")
    wf = Workflow("retry", "d", [agent])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert agent.result is not None and agent.result.is_success(), agent.result
    assert agent.result.retry_count == 1 and len(server.requests) == 2
    if fault.status == 429:
        assert sleep.delays[0] >= 3.0  # the provider's retry-after is honoured


async def test_engine_fails_fast_on_401(server: FakeProvider) -> None:
    server.script(Fault(401, None))
    sleep = FakeSleep()
    engine = OrchestrationEngine(openai(server), EngineConfig(rate_limit_config=None), sleep=sleep)
    agent = Agent("a", "Finance", "d", {"model": "gpt-4o-mini"}, "close the books")
    wf = Workflow("auth", "d", [agent])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert agent.result is not None and agent.result.status.value == "failed"
    assert len(server.requests) == 1 and sleep.delays == []
    assert "401" in (agent.result.error or "") and KEY not in (agent.result.error or "")


async def test_a_429_pauses_every_caller_of_that_provider(server: FakeProvider) -> None:
    from orchestrate.money.rate_limit import RateLimitConfig

    server.script(Fault(429, None, {"retry-after": "0.6"}))
    engine = OrchestrationEngine(
        openai(server),
        EngineConfig(
            rate_limit_config=RateLimitConfig(
                requests_per_minute=100_000,
                requests_per_hour=10**7,
                requests_per_day=10**8,
                tokens_per_minute=10**9,
                concurrent_requests=100,
            ),
            default_retry_policy=RetryPolicy(max_retries=2, base_delay=0.0, jitter=False),
        ),
    )
    first = Agent("first", "Finance", "d", {"model": "gpt-4o-mini"}, "one", priority=10)
    later = Agent("later", "Finance", "d", {"model": "gpt-4o-mini"}, "two", dependencies=["first"])
    wf = Workflow("pause", "d", [first, later])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    times = [r["time"] for r in server.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.5  # the retry waited out the retry-after
    assert wf.status.value == "completed"


# -- choosing the client -------------------------------------------------------------------


def test_provider_is_inferred_from_the_model_name() -> None:
    assert infer_provider("claude-sonnet-4-5") == "anthropic"
    assert infer_provider("gpt-4o") == "openai" and infer_provider("llama3.1") == "openai"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ClientPool()
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        pool.check_keys([{"model": "claude-haiku-4-5"}])
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        pool.check_keys([{"model": "gpt-4o", "provider": "openai"}])
    pool.check_keys([{"model": "llama3", "base_url": "http://127.0.0.1:11434/v1"}])  # local server: no key
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    pool.check_keys([{"model": "claude-haiku-4-5"}])


async def test_pool_shares_one_client_per_provider_and_base_url() -> None:
    pool = ClientPool()
    a = pool.get({"model": "gpt-4o"})
    assert pool.get({"model": "gpt-4o-mini"}) is a
    assert pool.get({"model": "gpt-4o", "base_url": "http://127.0.0.1:1/v1"}) is not a
    assert isinstance(pool.get({"model": "claude-haiku-4-5"}), AnthropicClient)
    await pool.aclose()


def test_env_supplies_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    client = OpenAIClient()
    assert client.api_key == "sk-env" and client.base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:8")
    assert AnthropicClient(api_key="k").base_url == "http://127.0.0.1:8"


# -- the CLI against the loopback server ---------------------------------------------------


def test_orchestrate_run_against_openai_and_anthropic_over_http(tmp_path: Path) -> None:
    with FakeProvider(failure_rate=0.3, seed=3) as fake:
        env = {
            **os.environ,
            "CI": "true",
            "OPENAI_API_KEY": KEY,
            "ANTHROPIC_API_KEY": KEY,
            "OPENAI_BASE_URL": f"{fake.url}/v1",
            "ANTHROPIC_BASE_URL": fake.url,
        }
        for example in ("finance_month_end_close", "compliance_vendor_due_diligence"):
            out = tmp_path / example
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "orchestrate",
                    "run",
                    str(ROOT / "workflows" / f"{example}.yaml"),
                    "-o",
                    str(out),
                    "--json",
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            assert KEY not in proc.stdout + proc.stderr
            summary = json.loads(proc.stdout)["runs"][0]
            assert summary["simulated"] is False and summary["status"] == "completed"
            result = json.loads((Path(summary["run_dir"]) / "result.json").read_text())
            providers = {a["provider"] for a in result["agents"] if a["provider"]}  # code steps: none
            assert providers == ({"openai"} if example.startswith("finance") else {"anthropic"})
            assert result["total_cost"] > 0
        paths = {r["path"] for r in fake.requests}
        assert paths == {"/v1/chat/completions", "/v1/messages"}
        assert len(fake.requests) > 10  # some calls failed and were retried


def test_the_reference_complete_example_runs_over_http(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference's Complete Example verbatim (our import path), its OpenAIClient on the loopback server."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    from orchestrate import CostConfig, MonitorConfig, RateLimitConfig

    async def main() -> None:
        # Initialize client
        llm_client = OpenAIClient(api_key="your-key")

        # Configure engine
        config = EngineConfig(
            rate_limit_config=RateLimitConfig(requests_per_minute=60),
            cost_config=CostConfig(),
            monitor_config=MonitorConfig(),
            default_retry_policy=RetryPolicy(max_retries=3),
        )

        # Create engine
        engine = OrchestrationEngine(llm_client, config)

        # Define workflow
        agent = Agent(
            name="analyzer",
            module="Finance",
            description="Analyze data",
            llm_config={"model": "gpt-4"},
            prompt_template="Analyze...",
        )

        workflow = Workflow(name="analysis", description="Data analysis", agents=[agent], cost_budget=5.0)

        # Execute
        wf_id = await engine.register_workflow(workflow)
        result = await engine.execute_workflow(wf_id)

        # Get results
        print(f"Status: {result.status.value}")
        print(f"Cost: ${result.total_cost:.4f}")

        # Get system status
        status = engine.get_system_status()
        print(f"Total calls: {status['rate_limiting']['total_requests']}")
        await engine.shutdown()

    asyncio.run(main())
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Status: completed" and out[1].startswith("Cost: $0.") and out[1] != "Cost: $0.0000"
    assert out[2] == "Total calls: 1"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer your-key"
