"""Expectations evaluated in runs: the judge through the engine (loopback OpenAI and Anthropic
servers), its threshold, its budget, errors for agents that did not complete, exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate.llm.anthropic import AnthropicClient
from orchestrate.llm.openai import OpenAIClient
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.run.evaluation import EXIT_EXPECTATIONS, Evaluator
from orchestrate.workflow.loader import load_workflow_text
from tests import cli
from tests.fake_provider import FakeProvider, Fault

KEY = "sk-test-SECRET-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def judged_by(verdict: Any) -> Any:
    """A server rewrite: the judge (asked with 'Rubric:') answers `verdict`; agents as usual."""

    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if "Rubric:" not in json.dumps(request.get("messages", [])):
            return answer
        text = verdict if isinstance(verdict, str) else json.dumps(verdict)
        if "choices" in answer:
            answer["choices"][0]["message"]["content"] = text
        else:
            answer["content"] = [{"type": "text", "text": text}]
        return answer

    return rewrite


WORKFLOW = """\
name: judged
agents:
  - name: hold_reason
    module: Finance
    llm_config: {{model: {model}, max_tokens: 50}}
    prompt_template: "Why hold invoice INV-1?"
    expect:
      - contains: answer
      - rubric: Cites the policy clause that justifies a hold.
        threshold: 0.7
        name: cites policy
"""


async def run_judged(client: Any, model: str) -> Any:
    workflow = load_workflow_text(WORKFLOW.format(model=model))
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None))
    await engine.execute_workflow(await engine.register_workflow(workflow))
    document = await Evaluator(workflow).evaluate(workflow, engine=engine)
    await engine.shutdown()
    return workflow, engine, document


async def test_the_threshold_decides_not_the_judge_who_says_pass_with_a_low_score() -> None:
    with FakeProvider(rewrite=judged_by({"score": 0.3, "reason": "PASS: fine"})) as server:
        workflow, engine, document = await run_judged(
            OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), "gpt-4o-mini"
        )
        judge_request = server.requests[-1]["body"]
    contains, rubric = document["outcomes"]
    assert contains["status"] == "pass"
    assert (rubric["status"], rubric["score"], rubric["reason"], rubric["name"]) == (
        "fail",
        0.3,
        "PASS: fine",
        "cites policy",
    )
    assert judge_request["response_format"]["type"] == "json_schema"  # structured output
    assert workflow.agents[0].result.metadata["expectations"][1]["status"] == "fail"
    judge_calls = [r for r in engine.cost_tracker.records() if r.agent == "hold_reason.judge"]
    assert len(judge_calls) == 1 and judge_calls[0].cost > 0
    assert document["judge_cost"] == pytest.approx(judge_calls[0].cost)


async def test_an_anthropic_judge_scoring_above_the_threshold_passes() -> None:
    with FakeProvider(rewrite=judged_by({"score": 0.9, "reason": "cites clause 4.2"})) as server:
        _, _, document = await run_judged(AnthropicClient(api_key=KEY, base_url=server.url), "claude-haiku-4-5")
        assert "output_config" in server.requests[-1]["body"]
    assert document["outcomes"][1]["status"] == "pass" and document["passed"] == 2


async def test_a_judge_answer_that_cannot_be_read_is_an_error() -> None:
    with FakeProvider(rewrite=judged_by("I think it is good")) as server:
        _, _, document = await run_judged(OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), "gpt-4o-mini")
    rubric = document["outcomes"][1]
    assert rubric["status"] == "error" and rubric["reason"].startswith("judge failed")


async def test_a_failed_agent_makes_its_expectations_errors(server: FakeProvider) -> None:
    server.script(Fault(400, None))
    _, _, document = await run_judged(OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), "gpt-4o-mini")
    assert [o["status"] for o in document["outcomes"]] == ["error", "error"]
    assert "agent 'hold_reason' ended failed" in document["outcomes"][0]["reason"]
    assert len(server.requests) == 1  # no judge was asked about an answer that never came


def orchestrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, env=env, timeout=120)


def test_failed_expectations_exit_5_unless_no_fail_on_expect(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: t\nagents:\n  - name: a\n    module: Finance\n    llm_config: {model: gpt-4o-mini}\n"
        "    prompt_template: go\n    expect:\n      - equals: never this\n        name: exact\n      - max_cost: 1\n"
    )
    proc = orchestrate("run", "wf.yaml", "--simulate", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == EXIT_EXPECTATIONS == 5, proc.stderr
    assert "expectations: 1/2 passed, 1 failed" in proc.stdout
    assert "fail: a: exact: expected 'never this'" in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["expectations"]["failed"] == 1
    again = orchestrate("run", "wf.yaml", "--simulate", "-o", "runs", "--no-fail-on-expect", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_a_judge_is_refused_by_a_small_budget_under_concurrency(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = judged_by({"score": 1.0, "reason": "fine"})
    (tmp_path / "wf.yaml").write_text(
        "name: t\ncost_budget: 0.001\ninputs:\n  vendor: {type: string}\nagents:\n  - name: a\n    module: Finance\n"
        f"    llm_config: {{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}\n"
        "    prompt_template: 'Hold {vendor}?'\n    expect:\n      - equals: '{row.expected}'\n"
        "      - rubric: Says why\n        judge: {model: gpt-4o-mini, max_tokens: 4000, base_url: '"
        + server.url
        + "/v1'}\n"
    )
    rows = "vendor,expected\n" + "".join(f"V{i},answer to 9 bytes\n" for i in range(8))
    (tmp_path / "rows.csv").write_text(rows)
    common = ("run", "wf.yaml", "--data", "rows.csv", "--max-rows-parallel", "8", "-o")
    env = {"OPENAI_API_KEY": KEY}
    # Each row's budget ($0.001) admits its agent's call but not its judge's worst case (4,000 tokens
    # out): eight rows at once, every judge refused before any judge call is made, and said so.
    proc = orchestrate(*common, "runs", "--budget", "0.05", cwd=tmp_path, env=env)
    assert proc.returncode == EXIT_EXPECTATIONS, proc.stdout + proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(line["status"] == "completed" for line in lines)
    rubric = [
        o for line in lines for o in line.get("expectations", {}).get("outcomes", []) if o["name"].endswith("rubric")
    ]
    assert len(rubric) == 8 and all(o["status"] == "error" and "refused by the budget" in o["reason"] for o in rubric)
    assert all("Rubric:" not in json.dumps(r["body"]) for r in server.requests)
    assert sum(line["cost"] for line in lines) <= 0.05
    # A dataset budget smaller than a row's worst case, judge included, starts no row at all.
    calls = len(server.requests)
    small = orchestrate(*common, "small", "--budget", "0.0005", cwd=tmp_path, env=env)
    assert small.returncode != 0 and len(server.requests) == calls
    assert "budget" in small.stdout + small.stderr


def test_the_dataset_budget_refuses_a_judge_mid_row_and_is_never_overrun(tmp_path: Path, server: FakeProvider) -> None:
    # The row is admitted on its worst case (agent and judge). Its agent's usage then comes back
    # far above what was reserved for it (booked as reported: it is what the provider bills), so
    # when its judge asks, the judge's reservation no longer fits in what the dataset budget has left.
    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if "Rubric:" in json.dumps(request.get("messages", [])):
            answer["choices"][0]["message"]["content"] = json.dumps({"score": 1.0, "reason": "fine"})
        else:
            answer["choices"][0]["message"]["content"] = "approve"
            answer["usage"]["prompt_tokens"] = 63_000  # $0.00945 at gpt-4o-mini's $0.15 per million
            answer["usage"]["total_tokens"] = 63_000 + answer["usage"]["completion_tokens"]
        return answer

    server.rewrite = rewrite
    llm = f"{{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}"
    judge = f"{{model: gpt-4o-mini, max_tokens: 1000, base_url: '{server.url}/v1'}}"
    (tmp_path / "wf.yaml").write_text(
        "name: t\ncost_budget: 1.0\ninputs:\n  vendor: {type: string}\nagents:\n  - name: a\n    module: Finance\n"
        f"    llm_config: {llm}\n    max_retries: 0\n    prompt_template: 'Hold {{vendor}}?'\n    expect:\n"
        f"      - {{equals: approve, name: approves}}\n      - {{rubric: Says why, name: says why, judge: {judge}}}\n"
    )
    (tmp_path / "rows.csv").write_text("vendor\nV1\n")
    proc = orchestrate(
        "run", "wf.yaml", "--data", "rows.csv", "--budget", "0.01", "-o", "runs", cwd=tmp_path,
        env={"OPENAI_API_KEY": KEY},
    )  # fmt: skip
    assert proc.returncode == EXIT_EXPECTATIONS, proc.stdout + proc.stderr
    assert all("Rubric:" not in json.dumps(r["body"]) for r in server.requests)  # the judge never went out
    (run_dir,) = (tmp_path / "runs").iterdir()
    (line,) = [json.loads(text) for text in (run_dir / "results.jsonl").read_text().splitlines()]
    assert line["status"] == "completed"  # its agent's answer stands; only its judging could not be paid
    approves, says_why = line["expectations"]["outcomes"]
    assert approves["status"] == "pass"
    assert says_why["status"] == "error" and says_why["reason"].startswith(
        "judge refused by the budget: dataset budget of $0.0100 would be passed"
    ), says_why
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["budget"] == 0.01 and cost["totals"]["calls"] == 1  # the agent's call; no judge's
    assert 0.009 < cost["totals"]["cost"] <= 0.01 and line["cost"] == cost["totals"]["cost"]  # never overrun
    assert "expectations: 1/2 passed, 1 error" in proc.stdout


def test_a_column_neither_input_nor_expected_is_one_error_at_the_header(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: t\ninputs:\n  vendor: {type: string}\nagents:\n  - name: a\n    module: Finance\n"
        "    llm_config: {model: gpt-4o-mini}\n    prompt_template: '{vendor}'\n"
        "    expect:\n      - equals: '{row.expected}'\n"
    )
    (tmp_path / "rows.csv").write_text("vendor,expected,colour\nA,x,red\nB,y,blue\n")
    proc = orchestrate("run", "wf.yaml", "--data", "rows.csv", "--simulate", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "rows.csv:1:3: column 'colour'" in proc.stderr
    (tmp_path / "rows.csv").write_text("vendor,expected\nA,x\nB,y\n")
    ok = orchestrate("run", "wf.yaml", "--data", "rows.csv", "--simulate", "-o", "runs", cwd=tmp_path)
    assert ok.returncode == EXIT_EXPECTATIONS, ok.stderr
    assert "expectations: 0/2 passed, 2 failed" in ok.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    totals = json.loads((run_dir / "evaluation.json").read_text())
    assert totals["by_agent"]["a"]["failed"] == 2 and totals["pass_rate"] == 0.0


def test_plan_bounds_include_the_judges(tmp_path: Path) -> None:
    from orchestrate.money.costs import CostTracker
    from orchestrate.money.planning import plan_workflow

    workflow = load_workflow_text(WORKFLOW.format(model="gpt-4o-mini"))
    plan = plan_workflow(workflow, CostTracker())
    judge = next(row for row in plan.agents if row.name == "hold_reason.judge")
    assert judge.conditional and judge.min_cost == 0.0 and judge.max_cost > 0
    assert plan.max_cost == pytest.approx(sum(row.max_cost for row in plan.agents))
    workflow.agents[0].expect = [e for e in workflow.agents[0].expect if "rubric" not in e]
    assert plan_workflow(workflow, CostTracker()).max_cost < plan.max_cost
