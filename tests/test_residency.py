"""Residency (validate, the run, the engine) and validate's checks of an agent's fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.llm.presets import region_of
from orchestrate.llm.residency import outside
from orchestrate.workflow.loader import validate_file
from tests.fake_provider import FakeProvider

HEAD = "name: w\nresidency: eu\ndefaults: {module: Finance}\nagents:\n"


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return [str(p) for p in validate_file(path) if p.severity == "error"]


def agent(llm: str, extra: str = "") -> str:
    return f"  - name: a\n    prompt_template: hi\n    llm_config: {llm}\n{extra}"


@pytest.mark.parametrize(
    "llm",
    [
        "{model: eu.anthropic.claude-sonnet-4-5-20250929-v1:0, provider: bedrock, region: eu-central-1}",
        "{model: anthropic.claude-3-haiku-20240307-v1:0, provider: bedrock, region: eu-west-1}",
        "{model: google/gemini-2.5-flash, provider: vertex, region: europe-west4, project: acme}",
        "{model: gpt-4o, base_url: 'https://eu.api.openai.com/v1'}",
        "{model: eu-gpt4o, provider: azure, price_as: gpt-4o, region: swedencentral}",
        "{model: mistral-large-latest, provider: mistral}",
        "{model: llama3.1, provider: ollama, base_url: 'http://127.0.0.1:11434/v1'}",
        "{model: gpt-4o, provider: simulated}",
    ],
)
def test_eu_endpoints_pass_validate(tmp_path: Path, llm: str) -> None:
    assert problems_of(tmp_path, HEAD + agent(llm) + "prices: {llama3.1: {input: 0, output: 0}}\n") == []


@pytest.mark.parametrize(
    ("llm", "said"),
    [
        ("{model: gpt-4o}", "openai gpt-4o is routed globally, outside residency eu"),
        ("{model: claude-sonnet-4-5}", "anthropic claude-sonnet-4-5 is routed globally"),
        (
            "{model: us.anthropic.claude-sonnet-4-5-20250929-v1:0, provider: bedrock, region: us-east-1}",
            "served in us:us-east-1",
        ),
        ("{model: global.anthropic.claude-sonnet-4-5-20250929-v1:0, provider: bedrock}", "routed globally"),
        ("{model: google/gemini-2.5-flash, provider: vertex, project: acme}", "routed globally"),
        ("{model: gemini-2.5-flash, provider: gemini}", "routed globally"),
        ("{model: eu-gpt4o, provider: azure, price_as: gpt-4o}", "no region: declared"),
        ("{model: gpt-4o, base_url: 'https://llm.example.com/v1'}", "served in host:llm.example.com"),
    ],
)
def test_validate_refuses_an_endpoint_outside_the_residency_naming_it(tmp_path: Path, llm: str, said: str) -> None:
    found = problems_of(tmp_path, HEAD + agent(llm))
    assert len(found) == 1 and said in found[0], found
    assert ":7:18:" in found[0] or ":7:" in found[0]


def test_validate_refuses_a_fallback_outside_the_residency(tmp_path: Path) -> None:
    llm = (
        "\n      model: eu.anthropic.claude-sonnet-4-5-20250929-v1:0\n      provider: bedrock\n      region: eu-central-1"
        "\n      fallbacks:\n        - {model: gpt-4.1, provider: openai}\n"
    )
    found = problems_of(tmp_path, HEAD + agent(llm))
    assert len(found) == 1 and "openai gpt-4.1 is routed globally" in found[0] and ":12:" in found[0], found


def test_the_run_refuses_before_any_call_and_names_the_endpoint(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("name: w\ndefaults: {module: Finance}\nagents:\n" + agent("{model: gpt-4o}"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrate",
            "run",
            "w.yaml",
            "--simulate",
            "--residency",
            "eu",
            "--output-dir",
            "runs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "agent 'a': openai gpt-4o is routed globally, outside residency eu" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


async def test_the_engine_refuses_a_call_outside_the_residency_without_calling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeProvider() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        engine = OrchestrationEngine(config=EngineConfig(rate_limit_config=None))
        a = Agent("a", "Finance", "d", {"model": "gpt-4o-mini"}, "hi", max_retries=0)
        wf = Workflow("w", "d", [a], residency="eu")
        await engine.execute_workflow(await engine.register_workflow(wf))
        await engine.shutdown()
        assert server.requests == []
    assert a.result is not None and a.result.status.value == "failed"
    assert "outside residency eu" in (a.result.error or "")


def test_regions_as_recorded() -> None:
    assert region_of("openai", {"model": "gpt-4o", "base_url": "https://eu.api.openai.com/v1"}) == "eu"
    assert region_of("vertex", {"model": "x", "region": "europe-west4"}) == "europe-west4"
    assert region_of("ollama", {"model": "x"}) == "local"
    assert outside("us", "bedrock", {"model": "us.amazon.nova-pro-v1:0", "region": "us-west-2"}) is None


# -- fallbacks that lack what the agent uses ------------------------------------------------

PLAIN = "name: w\ndefaults: {module: Finance}\nagents:\n"


def test_a_fallback_without_tools_is_refused_for_an_agent_with_tools(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("def f():\n    return 1\n")
    text = PLAIN + agent("{model: gpt-4o, fallbacks: [{model: o1-mini}]}", "    tools: [{function: 't:f'}]\n")
    found = problems_of(tmp_path, text)
    assert any("fallback o1-mini does not accept tools" in p for p in found), found


def test_a_fallback_without_native_structured_output_is_refused_unless_it_says_how(tmp_path: Path) -> None:
    schema = "    output_schema: {type: object}\n"
    found = problems_of(tmp_path, PLAIN + agent("{model: gpt-4o, fallbacks: [{model: gpt-4}]}", schema))
    assert any("fallback gpt-4 has no native structured output" in p for p in found), found
    said = PLAIN + agent("{model: gpt-4o, fallbacks: [{model: gpt-4, response_format: prompt}]}", schema)
    assert not any("structured output" in p for p in problems_of(tmp_path, said))


def test_a_fallback_with_a_smaller_context_window_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, PLAIN + agent("{model: gpt-4.1, fallbacks: [{model: gpt-4o}]}"))
    assert any("fallback gpt-4o holds 128,000 tokens, fewer than the 1,047,576 of gpt-4.1" in p for p in found)
    assert problems_of(tmp_path, PLAIN + agent("{model: gpt-4o, fallbacks: [{model: claude-sonnet-4-5}]}")) == []


def test_the_example_validates_and_its_routes_stay_in_the_eu(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "workflows" / "finance_supplier_statement_bedrock_eu.yaml"
    assert [p for p in validate_file(example) if p.severity == "error"] == []
    text = example.read_text().replace("region: eu-central-1}", "region: us-east-1}")
    moved = tmp_path / "moved.yaml"
    moved.write_text(text)
    found = [str(p) for p in validate_file(moved) if p.severity == "error"]
    assert len(found) == 3, found  # one per agent, at the fallback's line in defaults
    assert all(":32:" in f and "claude-haiku-4-5" in f and "outside residency eu" in f for f in found)


def test_a_fallback_without_a_price_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, PLAIN + agent("{model: gpt-4o, fallbacks: [{model: gpt-4o-mnii}]}"))
    assert any("no price known for fallback 'gpt-4o-mnii'" in p for p in found), found


JUDGED = (
    "  - name: a\n    prompt_template: hi\n"
    "    llm_config: {model: eu.anthropic.claude-sonnet-4-5-20250929-v1:0, provider: bedrock, region: eu-central-1}\n"
    "    expect:\n      - rubric: the answer is polite\n        judge: {model: gpt-4o-mini}\n"
)


def test_validate_refuses_a_judge_outside_the_residency_at_its_model(tmp_path: Path) -> None:
    found = problems_of(tmp_path, HEAD + JUDGED)
    assert len(found) == 1, found
    assert ":10:" in found[0]
    assert "agent 'a': expect: judge openai gpt-4o-mini is routed globally, outside residency eu" in found[0]
    inherited = JUDGED.replace("        judge: {model: gpt-4o-mini}\n", "        threshold: 0.5\n")
    assert problems_of(tmp_path, HEAD + inherited) == []  # the agent's own EU model judges


def test_the_run_refuses_a_judge_outside_the_residency_before_any_call(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("name: w\ndefaults: {module: Finance}\nagents:\n" + JUDGED)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    command = [sys.executable, "-m", "orchestrate", "run", "w.yaml", "--simulate", "--residency", "eu"]
    proc = subprocess.run(
        [*command, "--output-dir", "runs"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "judge of agent 'a': openai gpt-4o-mini is routed globally, outside residency eu" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_the_engine_never_asks_a_judge_outside_the_residency(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate.run.evaluation import Evaluator

    with FakeProvider() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        engine = OrchestrationEngine(config=EngineConfig(rate_limit_config=None))
        llm = {"model": "gpt-4o-mini", "base_url": f"{server.url}/v1", "region": "eu"}
        a = Agent("a", "Finance", "d", llm, "hi", max_retries=0)
        a.expect = [{"rubric": "the answer is polite", "judge": {"model": "gpt-4o-mini"}}]
        wf = Workflow("w", "d", [a], residency="eu", cost_budget=1.0)
        await engine.execute_workflow(await engine.register_workflow(wf))
        asked = len(server.requests)
        document = await Evaluator(wf).evaluate(wf, engine=engine)
        await engine.shutdown()
        assert len(server.requests) == asked == 1  # the agent (declared in the EU) ran; its judge was not sent
    (outcome,) = document["outcomes"]
    assert outcome["status"] == "error"
    assert outcome["reason"] == "judge failed: openai gpt-4o-mini is routed globally, outside residency eu; not called"


def test_eval_judge_refuses_a_workflow_whose_judge_is_outside_the_residency(tmp_path: Path) -> None:
    from tests.cli import orchestrate

    (tmp_path / "w.yaml").write_text("name: w\ndefaults: {module: Finance}\nagents:\n" + JUDGED)
    ran = orchestrate("run", "w.yaml", "--simulate", "--output-dir", "runs", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (tmp_path / "eu.yaml").write_text("name: w\nresidency: eu\ndefaults: {module: Finance}\nagents:\n" + JUDGED)
    proc = orchestrate("eval", str(run_dir), "--workflow", "eu.yaml", "--judge", "--budget", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "eu.yaml:10:24: agent 'a': expect: judge openai gpt-4o-mini is routed globally, outside residency eu" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
