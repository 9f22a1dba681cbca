"""The workflow language end to end in the engine: code steps, when, foreach, approvals, outputs."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrate import AgentStatus, EngineConfig, OrchestrationEngine, RetryPolicy, WorkflowStatus
from orchestrate.errors import UserInputError, WorkflowValidationError
from orchestrate.run.approvals import Decision
from orchestrate.workflow.loader import load_workflow_text
from orchestrate.workflow.models import Workflow
from tests.scripted import FakeSleep, ScriptedClient

STEPS = """
import asyncio
import json
import threading

CALLS = []

def lines(count):
    CALLS.append(("lines", threading.current_thread() is threading.main_thread()))
    return {"lines": [{"sku": f"S{i}", "qty": i + 1} for i in range(count)]}

async def total(values, tolerance=0):
    CALLS.append(("total", values))
    return {"total": sum(v["qty"] if isinstance(v, dict) else 1 for v in values), "tolerance": tolerance}

def echo(**kwargs):
    return kwargs

def flaky(fail_times):
    CALLS.append("flaky")
    if CALLS.count("flaky") <= fail_times:
        raise RuntimeError(f"attempt {CALLS.count('flaky')} failed")
    return {"ok": True}

async def slow():
    await asyncio.sleep(30)

def not_json():
    return {1, 2}

def check(item, index):
    CALLS.append(("check", index))
    if item.get("bad"):
        raise ValueError(f"line {index} is bad")
    return {"sku": item["sku"], "ok": True}
"""


@pytest.fixture
def steps(tmp_path: Path) -> str:
    """A module of step functions next to the workflow, under a name unique to this test."""
    name = f"steps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(STEPS, encoding="utf-8")
    return name


def load(tmp_path: Path, text: str, **inputs: Any) -> Workflow:
    return load_workflow_text(textwrap.dedent(text), file=str(tmp_path / "wf.yaml"), inputs=inputs)


def engine(client: ScriptedClient | None = None, **kwargs: Any) -> OrchestrationEngine:
    config = EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False))
    return OrchestrationEngine(client or ScriptedClient(), config, sleep=kwargs.pop("sleep", FakeSleep()), **kwargs)


async def run(wf: Workflow, client: ScriptedClient | None = None, **kwargs: Any) -> Workflow:
    decisions = kwargs.pop("decisions", None)
    reuse = kwargs.pop("reuse", None)
    eng = engine(client, **kwargs)
    result = await eng.execute_workflow(await eng.register_workflow(wf), decisions=decisions, reuse=reuse)
    await eng.shutdown()
    return result


def statuses(wf: Workflow) -> dict[str, str]:
    return {a.name: a.status.value for a in wf.agents}


HEAD = """
name: lang
allow_partial_completion: {partial}
defaults:
  module: Finance
  llm_config: {{model: gpt-4o-mini, max_tokens: 50}}
  retry: {{strategy: immediate}}
"""


def head(partial: bool = False) -> str:
    return HEAD.format(partial=str(partial).lower())


# -- code steps ------------------------------------------------------------------------------------


async def test_code_steps_sync_in_a_thread_async_awaited_and_values_passed_whole(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head()
        + f"""
inputs:
  count: {{type: integer, default: 3}}
agents:
  - name: fetch
    function: "{steps}:lines"
    arguments: {{count: "{{count}}"}}
  - name: add
    function: "{steps}:total"
    dependencies: [fetch]
    arguments: {{values: "{{fetch.output.lines}}", tolerance: 0.5}}
  - name: write
    dependencies: [add]
    prompt_template: "Total {{add.output.total}} within {{add.output.tolerance}}"
""",
    )
    client = ScriptedClient()
    done = await run(wf, client)
    assert done.status is WorkflowStatus.COMPLETED, statuses(done)
    module = __import__(steps)
    assert ("lines", False) in module.CALLS  # not on the event loop's thread
    assert ("total", [{"sku": "S0", "qty": 1}, {"sku": "S1", "qty": 2}, {"sku": "S2", "qty": 3}]) in module.CALLS
    add = done.get_agent_by_name("add").result
    assert add.output["json"] == {"total": 6, "tolerance": 0.5} and add.cost == 0 and add.tokens_used == 0
    assert client.started == ["Total 6 within 0.5"]


async def test_a_code_step_exception_is_a_failed_attempt_and_is_retried(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head()
        + f"""
agents:
  - name: flaky
    function: "{steps}:flaky"
    arguments: {{fail_times: 2}}
    max_retries: 3
""",
    )
    sleep = FakeSleep()
    done = await run(wf, sleep=sleep)
    result = done.agents[0].result
    assert result.status is AgentStatus.COMPLETED and result.retry_count == 2
    assert result.metadata["attempts"] == 3


async def test_a_code_step_fails_after_max_retries_and_on_a_value_that_is_not_json(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head(partial=True)
        + f"""
agents:
  - name: flaky
    function: "{steps}:flaky"
    arguments: {{fail_times: 10}}
    max_retries: 1
  - name: odd
    function: "{steps}:not_json"
    max_retries: 3
""",
    )
    done = await run(wf)
    flaky, odd = (a.result for a in done.agents)
    assert flaky.status is AgentStatus.FAILED and flaky.retry_count == 1
    assert "RuntimeError: attempt 2 failed" in flaky.error
    assert odd.status is AgentStatus.FAILED and odd.retry_count == 0 and "not JSON" in odd.error


async def test_a_code_step_output_is_checked_against_its_output_schema(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head()
        + f"""
agents:
  - name: echo
    function: "{steps}:echo"
    arguments: {{amount: "not a number"}}
    output_schema: {{type: object, properties: {{amount: {{type: number}}}}}}
""",
    )
    done = await run(wf)
    assert done.agents[0].status is AgentStatus.FAILED
    assert "does not satisfy output_schema" in done.agents[0].result.error


async def test_a_slow_code_step_times_out(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head(partial=True)
        + f"""
agents:
  - name: slow
    function: "{steps}:slow"
    timeout: 0.05
  - name: other
    prompt_template: independent
""",
    )
    done = await run(wf)
    assert done.agents[0].status is AgentStatus.CANCELLED
    assert "timed out after 0.05s" in done.agents[0].result.error
    assert done.agents[1].status is AgentStatus.COMPLETED


# -- when and skipping -------------------------------------------------------------------------------


def conditions(steps: str, level: str) -> str:
    return (
        head()
        + f"""
inputs:
  region: {{type: string, default: eu}}
agents:
  - name: risk
    function: "{steps}:echo"
    arguments: {{level: {level}}}
  - name: escalate
    dependencies: [risk]
    when: "risk.output.level == 'high' && inputs.region != 'test'"
    prompt_template: escalate
  - name: notify
    dependencies: [escalate]
    prompt_template: "notify {{escalate}}"
  - name: archive
    dependencies: [escalate]
    when: "escalate.status == 'skipped' || escalate.output != null"
    function: "{steps}:echo"
    arguments: {{escalated: "{{escalate.output}}"}}
"""
    )


async def test_a_false_condition_skips_the_agent_and_its_dependents_without_a_when(tmp_path: Path, steps: str) -> None:
    client = ScriptedClient()
    done = await run(load(tmp_path, conditions(steps, "low")), client)
    assert statuses(done) == {"risk": "completed", "escalate": "skipped", "notify": "skipped", "archive": "completed"}
    assert done.status is WorkflowStatus.COMPLETED
    assert client.calls == []  # skipped agents cost nothing
    assert done.get_agent_by_name("archive").result.output["json"] == {"escalated": None}
    assert "was false" in done.get_agent_by_name("escalate").result.metadata["skipped"]
    assert "dependency 'escalate' was skipped" in done.get_agent_by_name("notify").result.metadata["skipped"]


async def test_a_true_condition_runs_the_agent(tmp_path: Path, steps: str) -> None:
    client = ScriptedClient()
    done = await run(load(tmp_path, conditions(steps, "high")), client)
    assert statuses(done) == {
        "risk": "completed",
        "escalate": "completed",
        "notify": "completed",
        "archive": "completed",
    }
    assert client.started[0] == "escalate"


async def test_inputs_decide_conditions_too(tmp_path: Path, steps: str) -> None:
    done = await run(load(tmp_path, conditions(steps, "high"), region="test"))
    assert done.get_agent_by_name("escalate").status is AgentStatus.SKIPPED


async def test_a_failed_upstream_cancels_a_conditional_dependent(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head(partial=True)
        + f"""
agents:
  - name: broken
    function: "{steps}:flaky"
    arguments: {{fail_times: 99}}
    max_retries: 0
  - name: after
    dependencies: [broken]
    when: "broken.status == 'completed'"
    prompt_template: never
  - name: fine
    prompt_template: fine
""",
    )
    done = await run(wf)
    assert statuses(done) == {"broken": "failed", "after": "cancelled", "fine": "completed"}
    assert done.status is WorkflowStatus.PARTIALLY_COMPLETED


async def test_a_condition_that_cannot_be_evaluated_fails_the_agent(tmp_path: Path, steps: str) -> None:
    wf = load(
        tmp_path,
        head()
        + f"""
agents:
  - name: risk
    function: "{steps}:echo"
    arguments: {{level: 3}}
  - name: next
    dependencies: [risk]
    when: "risk.output.level == 'high'"
    prompt_template: never
""",
    )
    done = await run(wf)
    assert done.get_agent_by_name("next").status is AgentStatus.FAILED
    assert "when " in done.get_agent_by_name("next").result.error


# -- foreach -------------------------------------------------------------------------------------------


def fan_out(steps: str, *, partial: bool = False, max_items: int = 3, llm: bool = False) -> str:
    body = (
        'prompt_template: "Check {item.sku} qty {item.qty} (line {item_index})"'
        if llm
        else f'function: "{steps}:check"\n    arguments: {{item: "{{item}}", index: "{{item_index}}"}}'
    )
    return (
        head(partial)
        + f"""
inputs:
  lines: {{type: array, default: []}}
outputs:
  checked: "{{check_line.output}}"
  first_sku: "{{check_line.output.0.sku}}"
agents:
  - name: check_line
    foreach: "{{lines}}"
    max_items: {max_items}
    {body}
  - name: report
    dependencies: [check_line]
    prompt_template: "Report on {{check_line.output}}"
"""
    )


async def test_foreach_over_an_empty_list_completes_at_once_with_an_empty_list(tmp_path: Path, steps: str) -> None:
    client = ScriptedClient()
    done = await run(load(tmp_path, fan_out(steps, llm=True)), client)
    assert done.status is WorkflowStatus.COMPLETED
    assert done.agents[0].result.output["json"] == []
    assert client.started == ["Report on []"]
    assert done.output_values == {"checked": [], "first_sku": None}


async def test_foreach_over_one_item_calls_once_with_the_item(tmp_path: Path, steps: str) -> None:
    client = ScriptedClient()
    done = await run(load(tmp_path, fan_out(steps, llm=True), lines=[{"sku": "A1", "qty": 2}]), client)
    assert done.status is WorkflowStatus.COMPLETED
    assert client.started[0] == "Check A1 qty 2 (line 0)"
    assert done.agents[0].result.output["json"] == ["ok: Check A1 qty 2 (line 0)"]


async def test_foreach_items_run_in_parallel_under_max_parallel_agents(tmp_path: Path, steps: str) -> None:
    lines = [{"sku": f"S{i}", "qty": i} for i in range(12)]
    text = fan_out(steps, llm=True, max_items=20).replace(
        "allow_partial_completion", "max_parallel_agents: 4\nallow_partial_completion"
    )
    client = ScriptedClient(delay=0.005)
    done = await run(load(tmp_path, text, lines=lines), client)
    assert done.status is WorkflowStatus.COMPLETED
    assert 1 < client.max_in_flight <= 4
    outputs = done.agents[0].result.output["json"]
    assert outputs == [f"ok: Check S{i} qty {i} (line {i})" for i in range(12)]  # item order kept


async def test_foreach_with_more_than_max_items_fails_before_any_item_runs(tmp_path: Path, steps: str) -> None:
    client = ScriptedClient()
    lines = [{"sku": f"S{i}", "qty": i} for i in range(4)]
    done = await run(load(tmp_path, fan_out(steps, llm=True, max_items=3), lines=lines), client)
    first = done.agents[0]
    assert first.status is AgentStatus.FAILED and "has 4 items, more than max_items (3)" in first.result.error
    assert client.calls == []
    assert done.get_agent_by_name("report").status is AgentStatus.CANCELLED


async def test_an_item_failure_fails_the_agent_without_partial_completion(tmp_path: Path, steps: str) -> None:
    lines = [{"sku": "A"}, {"sku": "B", "bad": True}, {"sku": "C"}]
    done = await run(load(tmp_path, fan_out(steps), lines=lines))
    first = done.agents[0]
    assert first.status is AgentStatus.FAILED
    assert "1 of 3 items failed (indexes [1])" in first.result.error and "line 1 is bad" in first.result.error
    assert done.status is WorkflowStatus.FAILED


async def test_item_failures_with_partial_completion_list_the_failed_indexes(tmp_path: Path, steps: str) -> None:
    lines = [{"sku": "A"}, {"sku": "B", "bad": True}, {"sku": "C"}]
    client = ScriptedClient()
    done = await run(load(tmp_path, fan_out(steps, partial=True), lines=lines), client)
    first = done.agents[0].result
    assert first.status is AgentStatus.COMPLETED and first.metadata["failed_items"] == [1]
    assert first.output["json"] == [{"sku": "A", "ok": True}, None, {"sku": "C", "ok": True}]
    assert [row["status"] for row in first.metadata["items"]] == ["completed", "failed", "completed"]
    assert done.status is WorkflowStatus.PARTIALLY_COMPLETED
    assert done.get_agent_by_name("report").status is AgentStatus.COMPLETED  # downstream sees the list


async def test_resume_redoes_only_the_items_that_did_not_complete(tmp_path: Path, steps: str) -> None:
    lines = [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}, {"sku": "C", "qty": 3}]

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        from orchestrate.errors import BadRequestError

        return BadRequestError("refused") if " B " in messages[-1]["content"] else "fine"

    refuse_b = ScriptedClient(answer)
    first = await run(load(tmp_path, fan_out(steps, partial=True, llm=True), lines=lines), refuse_b)
    prior = first.agents[0].result
    assert prior.metadata["failed_items"] == [1]
    again = ScriptedClient()
    second = await run(
        load(tmp_path, fan_out(steps, partial=True, llm=True), lines=lines), again, reuse={"check_line": prior}
    )
    assert again.started[:1] == ["Check B qty 2 (line 1)"] and len(again.started) == 2  # item B, then report
    result = second.agents[0].result
    assert result.status is AgentStatus.COMPLETED and "failed_items" not in result.metadata
    assert [row.get("reused", False) for row in result.metadata["items"]] == [True, False, True]
    assert result.output["json"] == ["fine", "ok: Check B qty 2 (line 1)", "fine"]


# -- approvals -----------------------------------------------------------------------------------------


def approvals(partial: bool = False) -> str:
    return (
        head(partial)
        + """
agents:
  - name: adjustments
    prompt_template: adjustments
  - name: post
    dependencies: [adjustments]
    approval: {message: "Post {adjustments.output} to the ledger?"}
    prompt_template: post
  - name: notify
    dependencies: [post]
    prompt_template: notify
  - name: independent
    prompt_template: independent
"""
    )


async def test_without_a_decision_the_agent_waits_and_the_run_ends_waiting(tmp_path: Path) -> None:
    client = ScriptedClient()
    done = await run(load(tmp_path, approvals()), client)
    assert statuses(done) == {
        "adjustments": "completed",
        "post": "waiting_approval",
        "notify": "pending",
        "independent": "completed",
    }
    assert done.status is WorkflowStatus.WAITING
    assert done.get_agent_by_name("post").result.metadata["approval"] == {
        "status": "waiting",
        "message": "Post ok: adjustments to the ledger?",
    }


async def test_an_approved_agent_runs_and_carries_the_decision(tmp_path: Path) -> None:
    decision = Decision.now("post", True, "alice", note="checked")
    done = await run(load(tmp_path, approvals()), decisions={"post": decision})
    assert done.status is WorkflowStatus.COMPLETED
    meta = done.get_agent_by_name("post").result.metadata["approval"]
    assert meta["by"] == "alice" and meta["decision"] == "approved" and meta["note"] == "checked"


@pytest.mark.parametrize(
    "partial,expected", [(False, WorkflowStatus.FAILED), (True, WorkflowStatus.PARTIALLY_COMPLETED)]
)
async def test_a_rejected_agent_cancels_its_dependents(tmp_path: Path, partial: bool, expected: WorkflowStatus) -> None:
    client = ScriptedClient()
    done = await run(
        load(tmp_path, approvals(partial)),
        client,
        decisions={"post": Decision.now("post", False, "bob", note="too much")},
    )
    assert statuses(done) == {
        "adjustments": "completed",
        "post": "rejected",
        "notify": "cancelled",
        "independent": "completed",
    }
    assert done.get_agent_by_name("post").result.error == "rejected by bob: too much"
    assert done.status is expected
    assert "post" not in client.started


async def test_an_approver_is_asked_when_the_agent_is_reached(tmp_path: Path) -> None:
    asked: list[str] = []

    async def approver(workflow: Workflow, agent: Any, message: str) -> Decision:
        asked.append(message)
        return Decision.now(agent.name, True, "carol", source="terminal")

    done = await run(load(tmp_path, approvals()), approver=approver)
    assert asked == ["Post ok: adjustments to the ledger?"]
    assert done.status is WorkflowStatus.COMPLETED


# -- outputs, env inputs, prompt files, module resolution ----------------------------------------------


async def test_outputs_name_values_and_keep_their_type(tmp_path: Path, steps: str) -> None:
    done = await run(
        load(
            tmp_path,
            head()
            + f"""
outputs:
  total: "{{add.output.total}}"
  sentence: "Total is {{add.output.total}}"
agents:
  - name: add
    function: "{steps}:echo"
    arguments: {{total: 12.5}}
""",
        )
    )
    assert done.output_values == {"total": 12.5, "sentence": "Total is 12.5"}


def test_an_input_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        head()
        + """
inputs:
  tenant: {type: string, env: ERP_TENANT}
  limit: {type: integer, env: ERP_LIMIT, default: 5}
agents:
  - name: a
    prompt_template: "{tenant} {limit}"
"""
    )
    monkeypatch.delenv("ERP_TENANT", raising=False)
    monkeypatch.delenv("ERP_LIMIT", raising=False)
    with pytest.raises(UserInputError, match="set the environment variable ERP_TENANT"):
        load(tmp_path, text)
    monkeypatch.setenv("ERP_TENANT", "acme")
    monkeypatch.setenv("ERP_LIMIT", "9")
    assert load(tmp_path, text).input_values == {"tenant": "acme", "limit": 9}
    assert load(tmp_path, text, tenant="other").input_values["tenant"] == "other"  # --input wins


def test_prompt_and_system_files_are_read_next_to_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "extract.md").write_text("Extract lines for {period}", encoding="utf-8")
    (tmp_path / "prompts" / "system.md").write_text("You are an AP clerk.", encoding="utf-8")
    wf = load(
        tmp_path,
        head()
        + """
inputs:
  period: {type: string, default: "2026-10"}
agents:
  - name: extract
    prompt_file: prompts/extract.md
    system_file: prompts/system.md
""",
    )
    assert wf.agents[0].prompt_template == "Extract lines for {period}"
    assert wf.agents[0].llm_config["system"] == "You are an AP clerk."


def test_validation_finds_modules_next_to_the_workflow_without_importing_them(tmp_path: Path) -> None:
    name = f"side_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef go():\n    return 1\n", encoding="utf-8"
    )
    text = (
        head()
        + f"""
agents:
  - name: step
    function: "{name}:go"
  - name: llm
    prompt_template: hi
    tools: [{{function: "{name}:go"}}]
"""
    )
    load(tmp_path, text)
    assert not marker.exists()
    with pytest.raises(WorkflowValidationError) as caught:
        load(tmp_path, text.replace(f'"{name}:go"', '"nowhere_to_be_found:go"'))
    messages = [str(p) for p in caught.value.problems]
    assert any(":11:15: agent 'step': cannot find module 'nowhere_to_be_found'" in m for m in messages), messages
    assert any("agent 'llm': tool cannot find module 'nowhere_to_be_found'" in m for m in messages), messages


async def test_a_tool_module_next_to_the_workflow_is_imported_from_there(tmp_path: Path) -> None:
    from orchestrate.llm.base import LLMResponse, ToolCall

    name = f"tools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "def balance(account):\n    return {'account': account, 'balance': 7}\n", encoding="utf-8"
    )
    wf = load(
        tmp_path,
        head()
        + f"""
agents:
  - name: ask
    prompt_template: balance?
    tools: [{{function: "{name}:balance", parameters: {{type: object}}}}]
""",
    )

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        if messages[-1]["role"] == "tool":
            return messages[-1]["content"]
        return LLMResponse(
            content="",
            model=model,
            input_tokens=1,
            output_tokens=1,
            finish_reason="tool_calls",
            tool_calls=[ToolCall(id="1", name="balance", arguments={"account": "1000"})],
        )

    done = await run(wf, ScriptedClient(answer))
    assert json.loads(done.agents[0].result.output["text"]) == {"account": "1000", "balance": 7}


async def test_a_conditional_dependent_of_a_rejected_agent_is_cancelled(tmp_path: Path) -> None:
    text = approvals(partial=True).replace(
        "    prompt_template: notify", "    when: \"post.status == 'completed'\"\n    prompt_template: notify"
    )
    done = await run(load(tmp_path, text), decisions={"post": Decision.now("post", False, "bob")})
    assert statuses(done)["notify"] == "cancelled"
    assert done.get_agent_by_name("notify").result.error == "dependency 'post' rejected"


@pytest.mark.parametrize(
    "answer,expected", [("y\n", True), ("YES\n", True), ("\n", False), ("no\n", False), ("", None)]
)
async def test_the_terminal_asks_and_only_yes_approves(
    answer: str, expected: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrate.cli.approve import TerminalApprover

    paused: list[bool] = []
    approver = TerminalApprover(by="dana", pause=paused.append, read=lambda: answer)
    wf = Workflow(name="w", description="", agents=[])
    from orchestrate import Agent

    decision = await approver(wf, Agent("post", "Finance", "", {}, "p"), "Post 12 EUR?")
    assert "w/post needs approval: Post 12 EUR?" in capsys.readouterr().err
    assert paused == [True, False]  # the live table is stopped while asking, then started again
    if expected is None:
        assert decision is None  # end of input: nobody to ask, the agent waits
    else:
        assert decision is not None and decision.approved is expected and decision.by == "dana"
        assert decision.source == "terminal"
