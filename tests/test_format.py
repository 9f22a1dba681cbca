"""The core model's defaults, the workflow format, safe YAML, templates and inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from orchestrate import Agent, AgentResult, AgentStatus, Workflow, WorkflowStatus
from orchestrate.errors import UserInputError, WorkflowValidationError
from orchestrate.workflow.loader import load_workflow, load_workflow_text, validate_file, workflow_from_dict
from orchestrate.workflow.templates import TemplateError, references, render

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "workflows").glob("*.yaml"))


# -- the reference's model ------------------------------------------------------------------


def test_agent_defaults_and_methods_as_the_reference_states() -> None:
    agent = Agent(
        name="data_processor",
        module="Finance",
        description="Process financial data",
        llm_config={"model": "gpt-4", "temperature": 0.7},
        prompt_template="Process the following data: {data}",
        max_retries=3,
        timeout=300.0,
        cost_limit=1.0,
    )
    assert (agent.tools, agent.dependencies, agent.priority) == ([], [], 5)
    assert agent.status is AgentStatus.PENDING and agent.result is None
    assert Agent("a", "HR", "d", {}, "p").max_retries == 3
    assert Agent("a", "HR", "d", {}, "p").timeout == 300.0 and Agent("a", "HR", "d", {}, "p").cost_limit == 1.0
    dependent = Agent("b", "HR", "d", {}, "p", dependencies=["data_processor"])
    assert not dependent.can_execute(set()) and dependent.can_execute({"data_processor"})
    agent.status = AgentStatus.COMPLETED
    agent.result = AgentResult("data_processor", AgentStatus.COMPLETED)
    agent.reset()
    assert agent.status is AgentStatus.PENDING and agent.result is None
    assert agent.to_dict()["prompt_template"] == "Process the following data: {data}"


def test_result_and_workflow_defaults_and_methods() -> None:
    result = AgentResult("a", AgentStatus.FAILED, metadata={"retriable": True})
    assert (result.output, result.error, result.tokens_used, result.cost, result.retry_count) == (None, None, 0, 0.0, 0)
    assert not result.is_success() and result.is_retriable()
    assert AgentResult("a", AgentStatus.RATE_LIMITED).is_retriable()
    assert not AgentResult("a", AgentStatus.BUDGET_EXCEEDED).is_retriable()
    assert AgentResult("a", AgentStatus.COMPLETED).to_dict()["status"] == "completed"
    wf = Workflow(
        name="analysis",
        description="Data analysis",
        agents=[
            Agent("a", "HR", "d", {}, "p", priority=2),
            Agent("b", "HR", "d", {}, "p", priority=9),
            Agent("c", "HR", "d", {}, "p", dependencies=["a"]),
        ],
    )
    assert (wf.max_parallel_agents, wf.cost_budget, wf.timeout, wf.allow_partial_completion) == (
        10,
        100.0,
        3600.0,
        True,
    )
    assert wf.status is WorkflowStatus.PENDING
    assert [a.name for a in wf.get_ready_agents()] == ["b", "a"]
    assert wf.get_agent_by_name("c") is wf.agents[2] and wf.get_agent_by_name("zz") is None
    stats = wf.get_statistics()
    assert stats["total_agents"] == 3 and stats["agents_by_status"]["pending"] == 3
    # The reference's statuses, plus the workflow language's skipped, waiting_approval, rejected.
    assert {s.value for s in AgentStatus} == {
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "rate_limited",
        "budget_exceeded",
        "skipped",
        "waiting_approval",
        "rejected",
    }


def test_a_workflow_file_is_the_to_dict_of_a_workflow(tmp_path: Path) -> None:
    wf = load_workflow(ROOT / "workflows" / "finance_month_end_close.yaml")
    # Its code steps' module (finance_tools) is found next to the file, so the mapping says where.
    again = workflow_from_dict(json.loads(json.dumps(wf.to_dict())), base_dir=ROOT / "workflows")
    assert again.to_dict() == wf.to_dict()
    assert [a.name for a in again.agents] == [a.name for a in wf.agents]


# -- the examples and the schema ------------------------------------------------------------


def test_the_examples_validate_and_cover_every_module() -> None:
    modules = set()
    for path in EXAMPLES:
        assert validate_file(path) == [], path
        wf = load_workflow(path)
        assert 3 <= len(wf.agents) <= 8
        assert any(len(a.dependencies) >= 2 for a in wf.agents), "needs a fan-in"
        modules |= {a.module for a in wf.agents}
    assert modules == {"HR", "Finance", "Inventory", "Compliance", "General"}


def test_schema_command_prints_the_shipped_schema_which_is_the_repo_one() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "schema"],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
    )
    printed = json.loads(proc.stdout)
    assert printed == json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"].endswith("2020-12/schema")


def test_defaults_are_inherited_and_agents_win() -> None:
    wf = load_workflow_text("""
name: d
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, temperature: 0.1, max_tokens: 300}
  max_retries: 5
  retry: {strategy: linear_backoff, base_delay: 2}
agents:
  - name: a
    prompt_template: hi
  - name: b
    module: Finance
    llm_config: {temperature: 0.9}
    max_retries: 1
    retry: {base_delay: 7}
    prompt_template: hi
""")
    a, b = wf.agents
    assert a.module == "HR" and a.llm_config == {"model": "gpt-4o-mini", "temperature": 0.1, "max_tokens": 300}
    assert a.max_retries == 5 and a.retry == {"strategy": "linear_backoff", "base_delay": 2}
    assert b.module == "Finance" and b.llm_config["temperature"] == 0.9 and b.llm_config["max_tokens"] == 300
    assert b.max_retries == 1 and b.retry == {"strategy": "linear_backoff", "base_delay": 7}


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow_text(
            """name: x
agents:
  - name: a
    module: Finanse
    llm_config: {model: gpt-4o}
    prompt_template: hi
    priority: 0
  - name: b
    module: HR
    llm_config: {model: gpt-4o}
    prompt_template: "{a.output}"
    dependancies: [a]
""",
            file="x.yaml",
        )
    lines = [str(p) for p in caught.value.problems]
    # The misspelled `dependancies` is one problem: the template is checked as if it were spelled
    # right, so `{a.output}` is not also reported as "not upstream".
    assert len(lines) == 3, lines
    assert lines[0].startswith("x.yaml:4:13: module: 'Finanse'") and "did you mean 'Finance'" in lines[0]
    assert lines[1].startswith("x.yaml:7:15: priority")
    assert lines[2].startswith("x.yaml:12:5: unknown key 'dependancies'") and "did you mean 'dependencies'" in lines[2]


def test_a_workflows_own_prices_make_an_unknown_model_valid() -> None:
    text = """name: x
prices:
  llama3.1: {input: 0, output: 0}
agents:
  - {name: a, module: General, prompt_template: hi, llm_config: {model: llama3.1, base_url: "http://127.0.0.1:11434/v1"}}
"""
    assert load_workflow_text(text).prices == {"llama3.1": {"input": 0, "output": 0}}
    with pytest.raises(WorkflowValidationError, match="no price known for model 'llama3.2'"):
        load_workflow_text(text.replace("model: llama3.1", "model: llama3.2"))


# -- safe YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: !!python/object/apply:os.system ['echo owned']\nagents: []\n", "is not allowed"),
        ("name: !custom x\nagents: []\n", "is not allowed"),
        ("base: &b {module: HR}\nname: x\nagents:\n  - <<: *b\n    name: a\n", "merge keys"),
        ("name: x\nname: y\nagents: []\n", "duplicate key 'name'"),
        ("- just\n- a list\n", "expected a workflow"),
        ("", "the file is empty"),
        ("name: x\nagents: [\n", "invalid YAML"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "nesting"),
    ],
)
def test_unsafe_or_malformed_yaml_is_refused_with_a_position(text: str, message: str) -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow_text(text, file="f.yaml")
    problem = caught.value.problems[0]
    assert message in problem.message and problem.line >= 1 and problem.column >= 1


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        ref = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([ref] * 9)}]")
    start = time.monotonic()
    with pytest.raises(WorkflowValidationError, match="alias expansion"):
        load_workflow_text("\n".join(lines) + "\n")
    assert time.monotonic() - start < 2.0


def test_size_limit_and_encoding(tmp_path: Path) -> None:
    from orchestrate.workflow.loader import MAX_FILE_BYTES

    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    assert "the limit is" in validate_file(big)[0].message
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    (problem,) = validate_file(latin)
    assert (problem.line, problem.column) == (1, 10) and "not UTF-8" in problem.message
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + (ROOT / "workflows" / "hr_onboarding.yaml").read_bytes())
    assert validate_file(bom) == []
    assert "cannot read" in validate_file(tmp_path / "missing.yaml")[0].message


# -- templates ------------------------------------------------------------------------------


def test_templates_render_inputs_and_upstream_outputs() -> None:
    outputs = {
        "ledger": {"text": '{"total": 12, "rows": [{"id": 7}]}', "json": {"total": 12, "rows": [{"id": 7}]}},
        "memo": {"text": "plain words"},
    }
    text = render(
        "{period} {inputs.period} {ledger.output.total} {agents.ledger.output.rows.0.id} "
        "{memo} {memo.output.text} {{literal}}",
        inputs={"period": "2026-10"},
        outputs=outputs,
    )
    assert text == "2026-10 2026-10 12 7 plain words plain words {literal}"
    assert render("{ledger}", inputs={}, outputs=outputs) == '{"rows": [{"id": 7}], "total": 12}'


@pytest.mark.parametrize(
    "template",
    ["{x.__class__}", "{a.__globals__}", "{a[0]}", "{a!r}", "{a:>10}", "{a()}", "{}", "{a", "a}", "{a.b c}", "{0}"],
)
def test_templates_refuse_anything_but_names(template: str) -> None:
    with pytest.raises(TemplateError):
        references(template)


def test_rendering_an_unknown_name_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateError, match="no input or upstream agent named 'data'"):
        render("Process {data}", inputs={}, outputs={})
    with pytest.raises(TemplateError, match="no 'missing'"):
        render("{a.output.missing}", inputs={}, outputs={"a": {"text": "", "json": {}}})


# -- inputs ---------------------------------------------------------------------------------


def test_inputs_are_typed_defaulted_and_checked() -> None:
    text = """name: x
inputs:
  period: {type: string}
  threshold: {type: number, default: 5000}
  strict: {type: boolean, default: false}
  entities: {type: array, default: []}
agents:
  - {name: a, module: Finance, prompt_template: "{period} {threshold}", llm_config: {model: gpt-4o}}
"""
    wf = load_workflow_text(
        text, inputs={"period": "2026-11", "threshold": "12.5", "strict": "yes", "entities": '["ACME UK", "ACME DE"]'}
    )
    assert wf.input_values == {
        "period": "2026-11",
        "threshold": 12.5,
        "strict": True,
        "entities": ["ACME UK", "ACME DE"],
    }
    with pytest.raises(UserInputError, match="needs input 'period'"):
        load_workflow_text(text)
    with pytest.raises(UserInputError, match="unknown input 'perod'"):
        load_workflow_text(text, inputs={"period": "x", "perod": "y"})
    with pytest.raises(UserInputError, match="'lots' is not a valid number"):
        load_workflow_text(text, inputs={"period": "x", "threshold": "lots"})


# -- validate and graph on the command line ------------------------------------------------


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
        timeout=60,
    )


def test_validate_reports_every_file_and_exits_by_the_worst(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "workflows" / "hr_onboarding.yaml").read_text())
    bad = tmp_path / "sub" / "bad.yml"
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace("priority: 9", "priority: 12"))
    proc = _cli("validate", str(good))
    assert proc.returncode == 0 and "1 file valid" in proc.stdout
    proc = _cli("validate", str(tmp_path))  # a folder is searched, *.yml too
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(bad))]
    assert ": priority: must be at most 10, got 12" in line
    report = json.loads(_cli("validate", str(tmp_path), "--format", "json").stdout)
    assert report["valid"] is False and {f["valid"] for f in report["files"]} == {True, False}
    assert _cli("validate", str(tmp_path / "nothing-here")).returncode == 2


def test_graph_prints_a_tree_and_mermaid() -> None:
    tree = _cli("graph", "workflows/general_weekly_ops_briefing.yaml")
    assert tree.returncode == 0 and "\x1b[" not in tree.stdout
    assert "general_weekly_ops_briefing (5 agents)" in tree.stdout and "coo_briefing" in tree.stdout
    mermaid = _cli("graph", "workflows/general_weekly_ops_briefing.yaml", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR")
    assert sum(1 for line in mermaid.splitlines() if " --> " in line) == 4
    assert _cli("graph", "workflows/general_weekly_ops_briefing.yaml", "--format", "dot").returncode == 2
