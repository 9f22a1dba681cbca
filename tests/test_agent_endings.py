"""Each agent ends in exactly one recorded state with its reason, whatever user code or the data does:
deep nesting, a BaseException, an exception past the agent's own handling never hang a run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrate import AgentStatus, EngineConfig, OrchestrationEngine, RetryPolicy, WorkflowStatus
from orchestrate.jsonline import nests_too_deep
from orchestrate.run.executor import parse_json_answer
from orchestrate.workflow.loader import load_workflow_text
from orchestrate.workflow.models import Workflow
from tests.scripted import FakeSleep, ScriptedClient

USER = """
class Boom(BaseException):
    pass

def deep():
    value = 1
    for _ in range(600):
        value = [value]
    return value

async def boom():
    raise Boom("out of band")

def fine():
    return {"ok": True}
"""


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.fixture
def mod(tmp_path: Path) -> str:
    name = f"user_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER, encoding="utf-8")
    return name


def load(tmp_path: Path, text: str) -> Workflow:
    head = """
name: endings
allow_partial_completion: true
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 50}
  retry: {strategy: immediate}
"""
    return load_workflow_text(head + textwrap.dedent(text), file=str(tmp_path / "wf.yaml"))


async def run(wf: Workflow, client: ScriptedClient | None = None) -> Workflow:
    engine = OrchestrationEngine(
        client or ScriptedClient(),
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False)),
        sleep=FakeSleep(),
    )
    try:
        # A hang would wait for the workflow's timeout (an hour by default): 30 s says it hung.
        return await asyncio.wait_for(engine.execute_workflow(await engine.register_workflow(wf)), 30)
    finally:
        await engine.shutdown()


async def test_a_deeply_nested_when_fails_its_agent_and_the_run_goes_on(tmp_path: Path) -> None:
    condition = "(" * 400 + "true" + ")" * 400
    wf = load(
        tmp_path,
        f"""
agents:
  - name: a
    prompt_template: hi
  - name: b
    dependencies: [a]
    when: "{condition}"
    prompt_template: there
  - name: c
    prompt_template: independent
""",
    )
    done = await run(wf)
    b = done.get_agent_by_name("b")
    assert b.status is AgentStatus.FAILED
    assert b.result.error == "its when: condition nests too deeply to evaluate"
    assert done.get_agent_by_name("c").status is AgentStatus.COMPLETED
    assert done.status is WorkflowStatus.PARTIALLY_COMPLETED


async def test_a_deep_code_step_value_and_a_base_exception_end_their_agents_alone(tmp_path: Path, mod: str) -> None:
    wf = load(
        tmp_path,
        f"""
agents:
  - name: deep
    function: "{mod}:deep"
  - name: boom
    function: "{mod}:boom"
    max_retries: 0
  - name: fine
    function: "{mod}:fine"
""",
    )
    done = await run(wf)
    by = {a.name: a for a in done.agents}
    assert by["deep"].status is AgentStatus.FAILED and "nests deeper than 100 levels" in by["deep"].result.error
    assert by["boom"].status is AgentStatus.FAILED and by["boom"].result.error == "out of band"
    assert by["fine"].status is AgentStatus.COMPLETED
    assert all(a.status is not AgentStatus.RUNNING for a in done.agents)


async def test_a_deeply_nested_answer_is_refused_where_it_is_read(tmp_path: Path) -> None:
    deep_text = json.dumps(nested(500))
    wf = load(
        tmp_path,
        """
agents:
  - name: ask
    prompt_template: answer
    output_schema: {type: object}
  - name: after
    dependencies: [ask]
    prompt_template: "{ask.output}"
""",
    )
    done = await run(wf, ScriptedClient(lambda messages, model, options: deep_text))
    ask = done.get_agent_by_name("ask")
    assert ask.status is AgentStatus.FAILED
    assert "nests deeper than 100 levels" in ask.result.error
    assert done.get_agent_by_name("after").status is AgentStatus.CANCELLED


def test_nesting_is_measured_without_recursion() -> None:
    assert not nests_too_deep(nested(100))
    assert nests_too_deep(nested(101))
    assert nests_too_deep(nested(100_000))  # far beyond the interpreter's own recursion limit
    with pytest.raises(ValueError, match="nests deeper"):
        parse_json_answer("[" * 5000 + "]" * 5000)


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(CI="true", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


WORKFLOW = """
name: rows
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
inputs:
  q: {type: object}
agents:
  - name: a
    prompt_template: "{q}"
"""


def test_a_deep_dataset_row_is_invalid_with_its_reason_and_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "rows.yaml").write_text(WORKFLOW)
    lines = [json.dumps({"q": {"n": 1}}), json.dumps({"q": nested(500)}), json.dumps({"q": {"n": 3}})]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    proc = orchestrate("run", "rows.yaml", "--simulate", "--data", "rows.jsonl", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "rows.jsonl:2:1: nests deeper than 100 levels" in proc.stderr
    proc = orchestrate(
        "run", "rows.yaml", "--simulate", "--data", "rows.jsonl", "--skip-invalid-rows", "-o", "out", cwd=tmp_path
    )
    assert "nests deeper than 100 levels" in proc.stdout + proc.stderr
    assert "2/3 rows completed" in proc.stdout + proc.stderr or "2 completed" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "text,where",
    [('{\n  "q": {"n": NaN}\n}', "inputs.json:2:14"), ('{"q": {"n": 1e999}}', "inputs.json:1:13")],
)
def test_non_finite_inputs_name_file_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "rows.yaml").write_text(WORKFLOW)
    (tmp_path / "inputs.json").write_text(text)
    proc = orchestrate("run", "rows.yaml", "--simulate", "--inputs", "inputs.json", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {where}: not valid JSON:") or f"{where}: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ['"false"', '"no"', "0", "1", "null"])
def test_an_approval_not_written_as_true_or_false_is_refused(tmp_path: Path, value: str) -> None:
    from orchestrate.errors import UserInputError
    from orchestrate.run.approvals import read_decisions

    row = '{"approved": ' + value + ', "by": "x", "at": "2026-12-03"}'
    (tmp_path / "approvals.json").write_text('{"schema_version": 1, "decisions": {"post": ' + row + "}}")
    with pytest.raises(UserInputError, match="'approved' must be true or false"):
        read_decisions(tmp_path)


@pytest.mark.parametrize("flag", ["--sim-latency", "--batch-window"])
def test_infinite_seconds_are_refused(tmp_path: Path, flag: str) -> None:
    (tmp_path / "rows.yaml").write_text(WORKFLOW)
    proc = orchestrate("run", "rows.yaml", "--simulate", flag, "inf", cwd=tmp_path)
    # refused when the flag is parsed, as any other value that is not a number of seconds
    assert proc.returncode == 2 and f"{flag} 'inf': expected a number of seconds" in proc.stderr


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "AWS_BEARER_TOKEN_BEDROCK", "REDIS_PASSWORD", "my_secret"])
def test_an_input_cannot_read_a_credential_variable(tmp_path: Path, variable: str) -> None:
    from orchestrate.errors import UserInputError
    from orchestrate.workflow.loader import check_inputs

    with pytest.raises(UserInputError, match=f"env: {variable} names a credential"):
        check_inputs("w", {"period": {"type": "string", "env": variable}}, {})
    assert check_inputs("w", {"period": {"type": "string", "env": "CLOSE_PERIOD", "default": "x"}}, {}) == {
        "period": "x"
    }
