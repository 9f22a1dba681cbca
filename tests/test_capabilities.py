"""The capability table, the response-format choice and its remembered fallback, Azure and
per-agent keys through the engine, and what `validate` says about refused parameters.

Provider calls go over real sockets to `tests/fake_provider.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Agent, AnthropicClient, EngineConfig, OpenAIClient, OrchestrationEngine, Workflow
from orchestrate.errors import MissingAPIKeyError, ProviderUnavailableError, UserInputError
from orchestrate.llm.capabilities import capability_table, family_of, lookup, refused
from orchestrate.llm.providers import ClientPool
from orchestrate.run.events import EventType
from orchestrate.workflow.loader import load_workflow_text
from tests.fake_provider import FakeProvider, Fault

KEY = "sk-test-SECRET-0123456789abcdef"
SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


# -- the table --------------------------------------------------------------------------------


def test_the_table_is_dated_and_every_family_uses_known_keys() -> None:
    table = capability_table()
    date.fromisoformat(table["date"])  # a real date: the day the table was last checked against the docs
    keys = set(lookup("gpt-4o").to_dict())
    for provider, entry in table["defaults"].items():
        assert set(entry) == keys, provider
    for family, entry in table["families"].items():
        assert set(entry) <= keys, family


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-5-mini", "gpt-5"),
        ("gpt-5.1", "gpt-5"),
        ("o3-2025-04-16", "o3"),
        ("o3-mini", "o3-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-mini", "gpt-4.1"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-opus-4-7-20260301", "claude-opus-4-7"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3-5-haiku-20241022", "claude-3-5"),
        ("llama-3.1-8b", None),
    ],
)
def test_a_model_belongs_to_its_longest_family(model: str, family: str | None) -> None:
    assert family_of(model, capability_table()["families"]) == family


def test_what_families_accept() -> None:
    assert not lookup("gpt-5-mini").top_p and not lookup("gpt-5-mini").stop
    assert lookup("gpt-5-mini").max_tokens_field == "max_completion_tokens"
    assert lookup("gpt-4o").temperature and lookup("gpt-4o").response_format == "json_schema"
    assert lookup("gpt-4-turbo").response_format == "json_object"
    assert not lookup("claude-opus-4-7", "anthropic").temperature
    assert not lookup("claude-fable-5", "anthropic").temperature  # unknown current Claude: none
    sonnet = lookup("claude-sonnet-4-5", "anthropic")
    assert sonnet.temperature and sonnet.top_p and not sonnet.temperature_and_top_p
    assert lookup("claude-3-7-sonnet-latest", "anthropic").response_format == "prompt"
    assert lookup("llama-3.1-8b").response_format == "json_schema"  # unknown OpenAI-compatible


def test_a_workflow_overrides_the_table() -> None:
    local = lookup("llama-3.1-8b-instruct", "openai", {"llama-3.1": {"response_format": "json_object"}})
    assert local.response_format == "json_object" and local.temperature
    opus = lookup("claude-opus-4-7", "anthropic", {"claude-opus-4-7": {"temperature": True}})
    assert opus.temperature and not opus.top_p


def test_refused_names_every_rule() -> None:
    assert refused(lookup("claude-opus-4-7", "anthropic"), {"model": "claude-opus-4-7", "temperature": 0.2}) == [
        ("temperature", "claude-opus-4-7 does not accept temperature; it will not be sent")
    ]
    keys = [
        k
        for k, _ in refused(lookup("gpt-5-mini"), {"model": "gpt-5-mini", "temperature": 1, "top_p": 0.5, "stop": "x"})
    ]
    assert keys == ["temperature", "top_p", "stop"]
    both = refused(
        lookup("claude-sonnet-4-5", "anthropic"), {"model": "claude-sonnet-4-5", "temperature": 0.2, "top_p": 0.5}
    )
    assert both == [
        ("top_p", "claude-sonnet-4-5 does not accept temperature and top_p together; top_p will not be sent")
    ]
    hot = refused(lookup("claude-3-haiku", "anthropic"), {"model": "claude-3-haiku", "temperature": 1.5})
    assert hot[0][0] == "temperature" and "up to 1" in hot[0][1]
    assert refused(lookup("gpt-4o"), {"model": "gpt-4o", "temperature": 0.2, "top_p": 0.5, "stop": "x"}) == []
    assert refused(lookup("claude-opus-4-7", "anthropic"), {"model": "claude-opus-4-7", "temperature": None}) == []


# -- temperature: optional ----------------------------------------------------------------------


async def test_temperature_absent_in_a_file_is_not_sent_but_the_python_api_keeps_0_7(server: FakeProvider) -> None:
    wf = load_workflow_text(
        "name: t\nagents:\n  - {name: a, module: Finance, prompt_template: go, llm_config: {model: gpt-4o}}\n"
    )
    assert wf.agents[0].llm_config["temperature"] is None
    api = Workflow("api", "d", [Agent("b", "Finance", "d", {"model": "gpt-4o"}, "go")])
    engine = OrchestrationEngine(
        OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), EngineConfig(rate_limit_config=None)
    )
    for workflow in (wf, api):
        await engine.execute_workflow(await engine.register_workflow(workflow))
    await engine.shutdown()
    from_file, from_api = (r["body"] for r in server.requests)
    assert "temperature" not in from_file
    assert from_api["temperature"] == 0.7


# -- structured output: fallback remembered ------------------------------------------------------


@pytest.mark.parametrize("status", [500, 400])
async def test_json_schema_refused_falls_back_once_and_is_remembered(status: int) -> None:
    with FakeProvider(refuse_json_schema=status) as server:
        client = OpenAIClient(base_url=f"{server.url}/v1")
        first = await client.complete("Total it", "llama-3.1-8b", None, 100, response_schema=SCHEMA)
        second = await client.complete("Total it again", "llama-3.1-8b", None, 100, response_schema=SCHEMA)
        await client.aclose()
    refused_call, fallback, remembered = (r["body"] for r in server.requests)
    assert refused_call["response_format"]["type"] == "json_schema"
    assert fallback["response_format"] == {"type": "json_object"}
    assert "JSON Schema" in fallback["messages"][0]["content"]
    assert remembered["response_format"] == {"type": "json_object"}  # no second refusal
    assert "refused response_format json_schema" in first.metadata["notice"]
    assert "notice" not in second.metadata
    assert json.loads(first.content)["total"] is not None


async def test_a_500_that_does_not_name_response_format_is_not_a_refusal(server: FakeProvider) -> None:
    server.script(Fault(500, None))
    client = OpenAIClient(base_url=f"{server.url}/v1")
    with pytest.raises(ProviderUnavailableError):
        await client.complete("x", "gpt-4o", None, 10, response_schema=SCHEMA)
    await client.aclose()
    assert len(server.requests) == 1


async def test_anthropic_output_config_refused_falls_back_to_the_prompt() -> None:
    with FakeProvider(refuse_json_schema=400) as server:
        client = AnthropicClient(api_key=KEY, base_url=server.url)
        reply = await client.complete("x", "claude-opus-4-7", None, 100, response_schema=SCHEMA)
        await client.aclose()
    native, fallback = (r["body"] for r in server.requests)
    assert "output_config" in native and "output_config" not in fallback
    assert "JSON Schema" in fallback["system"] and "notice" in reply.metadata


async def test_the_engine_says_so_once_per_run() -> None:
    events: list[Any] = []
    agents = [
        Agent(n, "Finance", "d", {"model": "llama-3.1-8b", "base_url": "http://x"}, "go", output_schema=SCHEMA)
        for n in ("a", "b", "c")
    ]
    with FakeProvider(refuse_json_schema=500) as server:
        for agent in agents:
            agent.llm_config["base_url"] = f"{server.url}/v1"
        engine = OrchestrationEngine(config=EngineConfig(rate_limit_config=None), sinks=[events.append])
        wf = Workflow("local", "d", agents, max_parallel_agents=1, prices={"llama-3.1-8b": {"input": 0, "output": 0}})
        result = await engine.execute_workflow(await engine.register_workflow(wf))
        await engine.shutdown()
    assert result.status.value == "completed"
    notices = [e for e in events if e.type is EventType.LLM_CALL and e.data.get("notice")]
    assert len(notices) == 1
    assert len(server.requests) == 4  # one refusal, then three answers


async def test_llm_config_response_format_and_workflow_capabilities_choose_the_way(server: FakeProvider) -> None:
    wf = Workflow(
        "modes",
        "d",
        [
            Agent(
                "by_agent", "Finance", "d", {"model": "gpt-4o", "response_format": "prompt"}, "go", output_schema=SCHEMA
            ),
            Agent("by_table", "Finance", "d", {"model": "my-llama"}, "go", output_schema=SCHEMA),
        ],
        max_parallel_agents=1,
        prices={"my-llama": {"input": 0, "output": 0}},
        capabilities={"my-llama": {"response_format": "json_object", "stop": False}},
    )
    engine = OrchestrationEngine(
        OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), EngineConfig(rate_limit_config=None)
    )
    result = await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert result.status.value == "completed"
    prompt_only, json_object = (r["body"] for r in server.requests)
    assert "response_format" not in prompt_only
    assert json_object["response_format"] == {"type": "json_object"}


# -- Azure and per-agent keys through the client pool ------------------------------------------


async def test_azure_agent_is_priced_as_its_model(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    llm = {
        "provider": "azure",
        "model": "erp-gpt4o",
        "price_as": "gpt-4o",
        "api_version": "2024-10-21",
        "temperature": None,
    }
    wf = Workflow("azure", "d", [Agent("a", "Finance", "d", llm, "go", output_schema=SCHEMA)])
    pool = ClientPool()
    pool.check_keys([llm])
    engine = OrchestrationEngine(config=EngineConfig(rate_limit_config=None), clients=pool)
    result = await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert result.status.value == "completed"
    (request,) = server.requests
    assert request["path"].startswith("/openai/deployments/erp-gpt4o/chat/completions?api-version=")
    assert request["body"]["response_format"]["type"] == "json_schema"  # gpt-4o's capabilities
    record = engine.cost_tracker.records()[0]
    assert record.model == "erp-gpt4o"
    assert result.total_cost == pytest.approx(
        engine.cost_tracker.calculate_cost("gpt-4o", record.input_tokens, record.output_tokens), rel=1e-9
    )
    assert result.total_cost > 0


def test_azure_needs_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    with pytest.raises(UserInputError, match="AZURE_OPENAI_ENDPOINT"):
        ClientPool().check_keys([{"provider": "azure", "model": "dep"}])


async def test_two_departments_bill_to_two_keys(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINANCE_OPENAI_KEY", "sk-finance-0123456789")
    monkeypatch.setenv("HR_OPENAI_KEY", "sk-hr-0123456789abcd")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared-0123456789")
    base = f"{server.url}/v1"
    agents = [
        Agent(
            "ledger", "Finance", "d", {"model": "gpt-4o", "base_url": base, "api_key_env": "FINANCE_OPENAI_KEY"}, "go"
        ),
        Agent("payroll", "HR", "d", {"model": "gpt-4o", "base_url": base, "api_key_env": "HR_OPENAI_KEY"}, "go"),
        Agent("shared", "General", "d", {"model": "gpt-4o", "base_url": base}, "go"),
    ]
    engine = OrchestrationEngine(config=EngineConfig(rate_limit_config=None), clients=ClientPool())
    wf = Workflow("keys", "d", agents, max_parallel_agents=1)
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    sent = sorted(r["headers"]["Authorization"] for r in server.requests)
    assert sent == ["Bearer sk-finance-0123456789", "Bearer sk-hr-0123456789abcd", "Bearer sk-shared-0123456789"]


def test_a_missing_agent_key_is_named_and_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared-0123456789")
    llm = {"model": "gpt-4o", "api_key_env": "FINANCE_OPENAI_KEY"}
    with pytest.raises(MissingAPIKeyError, match="FINANCE_OPENAI_KEY"):
        ClientPool().check_keys([llm])
    client = ClientPool().get(llm)
    assert isinstance(client, OpenAIClient) and client.api_key == ""


# -- validate -----------------------------------------------------------------------------------


WORKFLOW = """\
name: refused_params
defaults:
  module: Finance
  llm_config: {model: claude-opus-4-7, temperature: 0.2}
prices:
  claude-opus-4-7: {input: 0.005, output: 0.025}
agents:
  - name: screen
    prompt_template: go
  - name: reason
    llm_config: {model: gpt-5-mini, top_p: 0.9}
    prompt_template: go
"""


def _validate(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", "validate", str(path), *args], capture_output=True, text=True, timeout=60
    )


def test_validate_warns_at_the_line_and_still_passes(tmp_path: Path) -> None:
    proc = _validate(tmp_path, WORKFLOW)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert (
        f"{tmp_path / 'wf.yaml'}:4:40: warning: agent 'screen': claude-opus-4-7 does not accept "
        "temperature; it will not be sent" in lines
    )
    assert any(":11:37: warning: agent 'reason': gpt-5-mini does not accept top_p" in line for line in lines)
    assert "Traceback" not in proc.stderr
    data = json.loads(_validate(tmp_path, WORKFLOW, "--format", "json").stdout)
    assert data["valid"] is True
    assert {p["severity"] for p in data["files"][0]["problems"]} == {"warning"}


def test_validate_refuses_tools_for_a_model_without_them(tmp_path: Path) -> None:
    text = (
        WORKFLOW + "  - name: tooled\n    llm_config: {model: o1-mini}\n"
        "    tools: [{function: 'json:dumps', name: dumps}]\n    prompt_template: go\n"
    )
    proc = _validate(tmp_path, text)
    assert proc.returncode == 2
    assert ":15:12: agent 'tooled': o1-mini does not accept tools" in proc.stderr


def test_the_schema_takes_the_new_keys() -> None:
    wf = load_workflow_text(
        "name: k\ncapabilities:\n  my-llama: {response_format: json_object, temperature: false}\n"
        "prices:\n  gpt-4o-mini: {input: 0, output: 0}\nagents:\n"
        "  - name: a\n    module: Finance\n    prompt_template: go\n"
        "    llm_config: {provider: azure, model: dep, price_as: gpt-4o-mini, api_version: '2024-10-21',"
        " api_key_env: FIN_KEY, response_format: prompt, temperature: null}\n"
    )
    assert wf.capabilities == {"my-llama": {"response_format": "json_object", "temperature": False}}
    assert wf.to_dict()["capabilities"] == wf.capabilities
    with pytest.raises(UserInputError, match="response_format"):
        load_workflow_text(
            "name: k\nagents:\n  - {name: a, module: Finance, prompt_template: go,"
            " llm_config: {model: gpt-4o, response_format: xml}}\n"
        )


# -- the CLI, end to end over HTTP ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC", "AZURE"))}
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env={**clean, "CI": "true", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_azure_example_runs_on_its_department_key(tmp_path: Path) -> None:
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

    from tests.sdk_types import problems

    example = str(ROOT / "workflows" / "finance_invoice_intake_azure.yaml")
    with FakeProvider() as fake:
        missing = _run(["run", example, "-o", str(tmp_path)], {"AZURE_OPENAI_ENDPOINT": fake.url}, tmp_path)
        assert missing.returncode == 2 and "FINANCE_AZURE_OPENAI_KEY" in missing.stderr
        assert not fake.requests
        proc = _run(
            ["run", example, "-o", str(tmp_path), "--json"],
            {"AZURE_OPENAI_ENDPOINT": fake.url, "FINANCE_AZURE_OPENAI_KEY": KEY},
            tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)["runs"][0]
    run_dir = Path(summary["run_dir"])
    for report in run_dir.iterdir():
        assert KEY not in report.read_text(errors="replace"), report
    assert len(fake.requests) == 3
    for request in fake.requests:
        assert request["headers"]["api-key"] == KEY and "Authorization" not in request["headers"]
        assert request["path"].endswith("/chat/completions?api-version=2024-10-21")
        assert problems(request["body"], CompletionCreateParamsNonStreaming) == []
    decision = fake.requests[-1]
    assert decision["path"].startswith("/openai/deployments/finance-o4-mini/")
    assert "temperature" not in decision["body"] and decision["body"]["max_completion_tokens"] == 1500
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["totals"]["cost"] > 0
    assert cost["prices_used"]["finance-o4-mini"] == engine_price("o4-mini")
    assert {a["provider"] for a in json.loads((run_dir / "result.json").read_text())["agents"]} == {"azure"}


def test_a_server_without_json_schema_is_noted_once_in_the_log(tmp_path: Path) -> None:
    with FakeProvider(refuse_json_schema=500) as fake:
        workflow = tmp_path / "local.yaml"
        workflow.write_text(
            "name: local\nmax_parallel_agents: 1\nprices:\n  llama-3.1-8b: {input: 0, output: 0}\n"
            f"defaults:\n  module: Inventory\n  llm_config: {{model: llama-3.1-8b, base_url: '{fake.url}/v1'}}\n"
            "agents:\n"
            "  - {name: count, prompt_template: Count the stock, output_schema: {type: object, required: [n],"
            " properties: {n: {type: integer}}}}\n"
            "  - {name: value, prompt_template: Value the stock, output_schema: {type: object, required: [v],"
            " properties: {v: {type: number}}}}\n"
        )
        proc = _run(["run", str(workflow), "-o", str(tmp_path), "--no-progress"], {}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if " note: " in line]
    assert len(notes) == 1
    assert "llama-3.1-8b refused response_format json_schema; using json_object" in notes[0]
    assert len(fake.requests) == 3


def engine_price(model: str) -> dict[str, float]:
    from orchestrate.money.costs import CostTracker

    return dict(CostTracker().price_of(model))
