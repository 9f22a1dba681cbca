"""The OpenAI-compatible presets (gemini, mistral, ollama, vllm, openrouter) and Vertex, against
the loopback server of tests/fake_provider.py (Chat Completions on any path)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate.errors import MissingAPIKeyError, UserInputError
from orchestrate.llm.compatible import CompatibleClient, VertexClient, vertex_base_url
from orchestrate.llm.presets import PRESETS, base_model, ollama_base_url
from orchestrate.llm.prices import find_price
from orchestrate.llm.providers import PROVIDERS, ClientPool
from orchestrate.workflow.loader import validate_file
from tests.fake_provider import FakeProvider

KEY = "sk-preset-SECRET-0123456789abcdef"
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
TOOLS = [{"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def test_every_preset_is_a_provider_with_its_own_key_variable() -> None:
    for name, preset in PRESETS.items():
        assert name in PROVIDERS
        assert preset.base_url.startswith(("https://", "http://127.0.0.1"))
        assert preset.key_env.endswith("_API_KEY")


async def test_gemini_sends_its_key_to_its_base_url_under_its_name(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", f"{server.url}/v1beta/openai")
    pool = ClientPool()
    pool.check_keys([{"model": "gemini-2.5-flash", "provider": "gemini"}])
    client = pool.get({"model": "gemini-2.5-flash", "provider": "gemini"})
    response = await client.complete("Hi", "gemini-2.5-flash", 0.3, 50, response_schema=SCHEMA)
    await pool.aclose()
    sent = server.requests[0]
    assert sent["path"] == "/v1beta/openai/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sent["body"]["response_format"]["type"] == "json_schema"
    assert response.provider == "gemini" and json.loads(response.content)["ok"] in (True, False)
    assert find_price("gemini-2.5-flash") is not None


async def test_gemini_with_tools_and_a_schema_asks_for_the_schema_in_the_prompt(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = CompatibleClient("gemini", api_key=KEY, base_url=f"{server.url}/v1beta/openai")
    await client.complete_with_tools(
        [{"role": "user", "content": "go"}], "gemini-2.5-pro", TOOLS, None, 50, response_schema=SCHEMA
    )
    await client.aclose()
    body = server.requests[0]["body"]
    assert "tools" in body and "response_format" not in body
    assert "satisfies this JSON Schema" in body["messages"][0]["content"]


def test_validate_warns_about_gemini_tools_with_an_output_schema(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    (tmp_path / "m.py").write_text("def f():\n    return 1\n")
    path.write_text(
        """name: w
agents:
  - name: a
    module: Finance
    prompt_template: hi
    llm_config: {model: gemini-2.5-pro, provider: gemini}
    tools: [{function: "m:f"}]
    output_schema: {type: object}
"""
    )
    problems = validate_file(path)
    assert [p.severity for p in problems] == ["warning"]
    assert "gemini refuses tools together with a native output schema" in problems[0].message
    assert problems[0].line == 8


async def test_mistral_without_its_key_is_refused_naming_the_variable() -> None:
    with pytest.raises(MissingAPIKeyError, match="MISTRAL_API_KEY"):
        ClientPool().check_keys([{"model": "mistral-large-latest", "provider": "mistral"}])
    assert find_price("mistral-large-latest") is not None


async def test_ollama_needs_no_key_and_reads_ollama_host(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")
    pool = ClientPool()
    pool.check_keys([{"model": "llama3.1:8b", "provider": "ollama"}])
    client = pool.get({"model": "llama3.1:8b", "provider": "ollama"})
    response = await client.complete("Hi", "llama3.1:8b", None, 20)
    await pool.aclose()
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert "Authorization" not in sent["headers"]
    assert response.provider == "ollama"
    assert ollama_base_url("0.0.0.0") == "http://127.0.0.1:11434/v1"
    assert ollama_base_url("http://gpu-box:11500") == "http://gpu-box:11500/v1"


async def test_vllm_takes_its_base_url_from_the_workflow_and_an_optional_key(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = ClientPool()
    llm = {"model": "meta-llama/Llama-3.1-8B-Instruct", "provider": "vllm", "base_url": f"{server.url}/v1"}
    pool.check_keys([llm])
    await pool.get(llm).complete("Hi", llm["model"], None, 20)
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    keyed = CompatibleClient("vllm", base_url=f"{server.url}/v1")
    await keyed.complete("Hi", llm["model"], None, 20)
    await pool.aclose()
    await keyed.aclose()
    assert "Authorization" not in server.requests[0]["headers"]
    assert server.requests[1]["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_openrouter_names_the_model_that_served_and_it_is_priced_by_its_base_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def served(request: dict, answer: dict) -> dict:
        return {**answer, "model": "anthropic/claude-sonnet-4.5"}

    with FakeProvider(rewrite=served) as fake:
        client = CompatibleClient("openrouter", api_key=KEY, base_url=f"{fake.url}/api/v1")
        response = await client.complete("Hi", "openrouter/auto", None, 20)
        await client.aclose()
    assert response.model == "anthropic/claude-sonnet-4.5"
    assert base_model("openrouter", response.model) == "claude-sonnet-4-5"
    assert PRESETS["openrouter"].billed_as_served


async def test_vertex_posts_to_the_regional_endpoint_of_its_project(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vertex_base_url("acme", "europe-west4") == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/endpoints/openapi"
    )
    assert vertex_base_url("acme", "global").startswith("https://aiplatform.googleapis.com/")
    monkeypatch.setenv("VERTEX_ACCESS_TOKEN", "ya29.token-SECRET")
    client = VertexClient(
        project="acme",
        location="europe-west4",
        base_url=f"{server.url}/v1/projects/acme/locations/europe-west4/endpoints/openapi",
    )
    response = await client.complete("Hi", "google/gemini-2.5-flash", None, 20)
    await client.aclose()
    sent = server.requests[0]
    assert sent["path"] == "/v1/projects/acme/locations/europe-west4/endpoints/openapi/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer ya29.token-SECRET"
    assert response.provider == "vertex"


def test_vertex_needs_a_project() -> None:
    with pytest.raises(UserInputError, match="GOOGLE_CLOUD_PROJECT"):
        VertexClient(location="europe-west4")


def test_vertex_without_a_token_or_google_auth_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)  # as on a machine without orchestrate[gcp]
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme")
    with pytest.raises(UserInputError, match=r"orchestrate\[gcp\]"):
        ClientPool().check_keys([{"model": "google/gemini-2.5-flash", "provider": "vertex"}])


async def test_gemini_calls_go_through_its_openai_compatible_batch_api_at_half_price(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
    from orchestrate.llm.batch import BatchHub
    from orchestrate.llm.batch_clients import BatchClients, batch_api_for
    from orchestrate.money.costs import CostTracker
    from tests.fake_batch import FakeBatchProvider, FakeClock

    assert batch_api_for(CompatibleClient("ollama")) is None
    assert batch_api_for(CompatibleClient("openrouter", api_key=KEY)) is None
    clock = FakeClock()
    with FakeBatchProvider(clock) as server:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", f"{server.url}/v1")
        hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
        clients = BatchClients(ClientPool(), hub, everything=True)
        engine = OrchestrationEngine(None, EngineConfig(rate_limit_config=None), clients=clients, sleep=clock.sleep)
        llm = {"model": "gemini-2.5-flash", "provider": "gemini", "max_tokens": 50}
        agent = Agent("a", "Finance", "d", llm, "Extract the total.")
        wf = Workflow("gemini_batch", "d", [agent])
        await engine.register_workflow(wf)
        try:
            await engine.execute_workflow(wf.id)
        finally:
            await engine.shutdown()
        submitted = list(server.submitted)
        uploads = list(server.uploads)
    assert agent.result is not None and agent.result.is_success(), agent.result
    assert len(submitted) == 1 and submitted[0]["items"][0]["body"]["model"] == "gemini-2.5-flash"
    assert uploads[0]["purpose"] == "batch"
    usage = agent.result.metadata
    online = CostTracker().calculate_cost("gemini-2.5-flash", int(usage["input_tokens"]), int(usage["output_tokens"]))
    assert agent.result.cost == pytest.approx(online * 0.5)
