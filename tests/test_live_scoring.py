"""Expectations scored as each agent finishes (`orchestrate.run.live_scoring`): the outcome told as
an ``expectations_checked`` event the moment its agent ends (before the next agent starts), a
judge asked while the run goes on, expectations that read a later agent's output waiting for it,
the workflow's own as the run ends, the same evaluation document as scoring after the run, and
nothing added for a workflow without expectations. Against loopback OpenAI servers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate.llm.openai import OpenAIClient
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.run.evaluation import Evaluator
from orchestrate.run.events import Event, EventType
from orchestrate.run.live_scoring import LiveScoring
from orchestrate.workflow.loader import load_workflow_text
from tests import cli
from tests.fake_provider import FakeProvider

KEY = "sk-test-SECRET-0123456789abcdef"


def answering(answers: dict[str, str], *, slow: str | None = None, judge: Any = None) -> Any:
    """A server rewrite: each agent (known by a word of its prompt) gets its answer; the one whose
    prompt holds `slow` takes a second; the judge (asked with 'Rubric:') answers `judge`."""
    lock = threading.Lock()

    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        asked = json.dumps(request.get("messages", []))
        if "Rubric:" in asked:
            answer["choices"][0]["message"]["content"] = json.dumps(judge)
            return answer
        if slow is not None and slow in asked:
            time.sleep(1.0)
        with lock:
            for word, text in answers.items():
                if word in asked:
                    answer["choices"][0]["message"]["content"] = text
        return answer

    return rewrite


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def two_agents(server: FakeProvider, first_expect: str, *, outputs: bool = True) -> str:
    llm = f"{{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}"
    text = (
        "name: chain\ncost_budget: 0.5\nagents:\n"
        f"  - name: first\n    module: Finance\n    llm_config: {llm}\n    prompt_template: 'FIRST: decide'\n"
        f"    expect:\n{first_expect}"
        f"  - name: second\n    module: Finance\n    llm_config: {llm}\n    prompt_template: 'SECOND: explain'\n"
        "    dependencies: [first]\n"
    )
    if outputs:
        text += (
            "outputs:\n  decision: '{first.output}'\nexpect:\n"
            "  - {equals: approve, path: output.decision, name: decided approve}\n"
        )
    return text


def events_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def test_a_failed_expectation_is_journaled_and_shown_when_its_agent_ends(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = answering({"FIRST": "hold", "SECOND": "because"})
    expect = "      - {equals: approve, name: approves}\n      - {contains: o, name: has an o}\n"
    (tmp_path / "wf.yaml").write_text(two_agents(server, expect))
    proc = cli.orchestrate("run", "wf.yaml", "-o", "runs", cwd=tmp_path, env={"OPENAI_API_KEY": KEY}, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = events_of(run_dir)
    kinds = [(e["type"], e["agent"]) for e in events]
    checked = kinds.index(("expectations_checked", "first"))
    # Told after the agent's end and before the next agent started: not after the run.
    assert kinds.index(("agent_finished", "first")) < checked < kinds.index(("agent_started", "second"))
    data = events[checked]["data"]
    assert (data["owner"], data["passed"], data["failed"], data["total"]) == ("first", 1, 1, 2)
    (failed,) = data["outcomes"]
    assert (failed["name"], failed["expected"], failed["got"]) == ("approves", "approve", "hold")
    # The workflow's own, on its outputs, as the run ends.
    (outputs,) = [e for e in events if e["type"] == "expectations_checked" and e["agent"] is None]
    assert outputs["data"]["owner"] == "outputs" and outputs["data"]["failed"] == 1
    assert kinds.index(("agent_finished", "second")) < events.index(outputs) < kinds.index(("workflow_finished", None))
    assert events[-1]["type"] == "workflow_finished"  # the journal still closes with the run's end
    # The plain progress log says it when it happens, before the next agent starts.
    log = proc.stderr
    said = log.index("chain/first expectations: 1/2 passed, 1 failed; approves: expected 'approve', got 'hold'")
    assert said < log.index("chain/second started")
    # result.json holds the same evaluation as ever.
    result = json.loads((run_dir / "result.json").read_text())
    assert [(o["agent"], o["name"], o["status"]) for o in result["expectations"]["outcomes"]] == [
        ("first", "approves", "fail"),
        ("first", "has an o", "pass"),
        ("outputs", "decided approve", "fail"),
    ]
    assert result["agents"][0]["metadata"]["expectations"][0]["status"] == "fail"


WITH_RUBRIC = "      - {rubric: 'Says hold.', threshold: 0.7, name: judged}\n"


async def test_a_judge_is_asked_while_the_later_agents_run(server: FakeProvider) -> None:
    server.rewrite = answering(
        {"FIRST": "hold", "SECOND": "because"}, slow="SECOND", judge={"score": 0.2, "reason": "no"}
    )
    workflow = load_workflow_text(two_agents(server, WITH_RUBRIC, outputs=False))
    engine = OrchestrationEngine(
        OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), EngineConfig(rate_limit_config=None)
    )
    seen: list[Event] = []
    engine.add_sink(seen.append)
    scoring = LiveScoring(engine)
    evaluator = Evaluator(workflow)
    scoring.begin(workflow, evaluator)
    await engine.execute_workflow(await engine.register_workflow(workflow))
    kinds = [(e.type, e.agent) for e in seen]
    judged = kinds.index((EventType.EXPECTATIONS_CHECKED, "first"))
    # The judge answered while `second` (a second's call) still ran: before the workflow ended.
    assert kinds.index((EventType.LLM_CALL, "first.judge")) < judged < kinds.index((EventType.WORKFLOW_FINISHED, None))
    document = await scoring.finish(workflow)
    await engine.shutdown()
    assert document is not None and workflow.evaluation is document
    (outcome,) = document["outcomes"]
    assert outcome["status"] == "fail" and outcome["score"] == 0.2  # the threshold, enforced by us
    judge_cost = sum(r.cost for r in engine.cost_tracker.records() if r.agent == "first.judge")
    assert judge_cost > 0 and document["judge_cost"] == pytest.approx(judge_cost)
    assert workflow.total_cost == pytest.approx(sum(r.cost for r in engine.cost_tracker.records()))


async def test_scored_live_or_after_the_run_the_document_is_the_same(server: FakeProvider) -> None:
    # `first`'s expectation reads `second`'s output, which comes later: it waits for it.
    expect = "      - {equals: '{second.output}', name: agrees with second}\n      - {max_cost: 1, name: cheap}\n"
    server.rewrite = answering({"FIRST": "same", "SECOND": "same"})
    documents = []
    for live in (True, False):
        workflow = load_workflow_text(two_agents(server, expect))
        engine = OrchestrationEngine(
            OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), EngineConfig(rate_limit_config=None)
        )
        seen: list[Event] = []
        engine.add_sink(seen.append)
        evaluator = Evaluator(workflow)
        scoring = LiveScoring(engine) if live else None
        if scoring is not None:
            scoring.begin(workflow, evaluator)
        await engine.execute_workflow(await engine.register_workflow(workflow))
        if scoring is not None:
            document = await scoring.finish(workflow)
            kinds = [(e.type, e.agent) for e in seen]
            assert kinds.index((EventType.AGENT_FINISHED, "second")) < kinds.index(
                (EventType.EXPECTATIONS_CHECKED, "first")
            )
        else:
            document = await evaluator.evaluate(workflow, engine=engine)
        await engine.shutdown()
        documents.append(document)
    assert documents[0] == documents[1]
    assert [o["status"] for o in documents[0]["outcomes"]] == ["pass", "pass", "fail"]


def test_a_workflow_without_expectations_adds_no_sink(server: FakeProvider) -> None:
    from orchestrate.app.session import _scoring
    from orchestrate.run.dataset_run import DatasetRunner

    workflow = load_workflow_text(two_agents(server, "      []\n", outputs=False))
    engine = OrchestrationEngine(None, EngineConfig(rate_limit_config=None))
    before = len(engine.sinks)
    assert _scoring(engine, [workflow]) is None
    runner = DatasetRunner(
        engine, workflow, [], sinks=[], run_id="d", budget=None, max_rows_parallel=1, evaluator=Evaluator.of(workflow)
    )
    assert runner.scoring is None
    assert [s for s in engine.sinks[before:] if isinstance(s, LiveScoring)] == []


def test_a_dataset_row_tells_each_agents_outcome_before_the_row_ends(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = answering({"FIRST": "hold", "SECOND": "because"})
    text = two_agents(server, "      - {equals: approve, name: approves}\n", outputs=False)
    (tmp_path / "wf.yaml").write_text(
        text.replace("cost_budget: 0.5\n", "cost_budget: 0.5\ninputs:\n  v: {type: string}\n")
    )
    (tmp_path / "rows.csv").write_text("v\nA\nB\n")
    proc = cli.orchestrate(
        "run", "wf.yaml", "--data", "rows.csv", "--key", "v", "-o", "runs", cwd=tmp_path,
        env={"OPENAI_API_KEY": KEY}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = events_of(run_dir)
    for row_run in {e["workflow_id"] for e in events if e["type"] == "row_started"}:
        mine = [(e["type"], e["agent"]) for e in events if e["workflow_id"] == row_run]
        checked = mine.index(("expectations_checked", "first"))
        assert mine.index(("agent_finished", "first")) < checked < mine.index(("row_finished", None))
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [line["expectations"]["failed"] for line in lines] == [1, 1]
    # The dataset's progress log names each row whose agent missed, as it ends, and counts them.
    for key in ("A", "B"):
        assert (
            f"chain row {key!r} first expectations: 0/1 passed, 1 failed; approves: expected 'approve'" in proc.stderr
        )
    assert "expectations missed by 2 of 2 agents scored" in proc.stderr


def test_the_live_table_marks_an_agent_whose_expectation_failed() -> None:
    from io import StringIO

    from rich.console import Console

    from orchestrate.observe.progress import LiveTable

    out = StringIO()
    table = LiveTable(Console(file=out, width=300, height=30), clock=lambda: 0.0)
    spec = {"name": "code", "module": "Finance", "model": "gpt-4o-mini"}
    table(Event(EventType.WORKFLOW_STARTED, "w", None, {"agents": [spec], "cost_budget": 1.0}, workflow_name="inv"))
    table(Event(EventType.AGENT_FINISHED, "w", "code", {"status": "completed", "cost": 0.001}, workflow_name="inv"))
    failed = {"name": "GL account", "kind": "equals", "status": "fail", "expected": "6100", "got": "6200"}
    data = {"owner": "code", "passed": 1, "failed": 1, "errors": 0, "skipped": 0, "total": 2, "outcomes": [failed]}
    table(Event(EventType.EXPECTATIONS_CHECKED, "w", "code", data, workflow_name="inv"))
    outputs = {"owner": "outputs", "passed": 1, "failed": 0, "errors": 0, "skipped": 0, "total": 1, "outcomes": []}
    table(Event(EventType.EXPECTATIONS_CHECKED, "w", None, outputs, workflow_name="inv"))
    table.console.print(table.render())
    shown = out.getvalue()
    row = table.state.workflows["w"].rows["code"]
    assert row.expect_brief == "1 failed" and "(expect: 1" in shown  # the status cell (it may wrap)
    assert row.expect == "expectations: 1/2 passed, 1 failed; GL account: expected '6100', got '6200'"
    assert "expectations: 1/2 passed, 1 failed; GL account" in shown  # the why column
    assert "outputs: expectations: 1/1 passed" in shown
    assert "?" not in [row.name for row in table.state.workflows["w"].rows.values()]  # no row for the outputs


def test_a_judge_is_retried_and_answered_from_the_response_cache_like_an_agent(
    tmp_path: Path, server: FakeProvider
) -> None:
    from tests.fake_provider import Fault

    server.rewrite = answering({"FIRST": "hold"}, judge={"score": 0.9, "reason": "says hold"})
    llm = f"{{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}"
    (tmp_path / "wf.yaml").write_text(
        f"name: judged\nagents:\n  - name: first\n    module: Finance\n    llm_config: {llm}\n"
        f"    prompt_template: 'FIRST: decide'\n    expect:\n{WITH_RUBRIC}"
    )
    server.script(Fault(), Fault(status=503, body={"error": {"message": "overloaded"}}))  # the judge's first try
    env = {"OPENAI_API_KEY": KEY}
    proc = cli.orchestrate("run", "wf.yaml", "--cache", "cache", "-o", "a", cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(server.requests) == 3  # the agent, the judge refused with a 503, the judge again
    (run_dir,) = (tmp_path / "a").iterdir()
    events = events_of(run_dir)
    assert [e["agent"] for e in events if e["type"] == "agent_retrying"] == ["first.judge"]
    (checked,) = [e for e in events if e["type"] == "expectations_checked"]
    assert checked["data"]["passed"] == 1
    # Again, with the same cache: the agent and its judge are answered from it, nothing is asked.
    again = cli.orchestrate("run", "wf.yaml", "--cache", "cache", "-o", "b", cwd=tmp_path, env=env, timeout=120)
    assert again.returncode == 0 and len(server.requests) == 3, again.stdout + again.stderr
    (run_dir,) = (tmp_path / "b").iterdir()
    calls = json.loads((run_dir / "cost.json").read_text())["calls"]
    assert sorted((c["agent"], c["cached"]) for c in calls) == [("first", True), ("first.judge", True)]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["expectations"]["outcomes"][0]["score"] == 0.9


def test_judges_go_out_in_a_provider_batch_like_the_agents(tmp_path: Path) -> None:
    from tests.fake_batch import FakeBatchProvider, FakeClock

    with FakeBatchProvider(FakeClock(), validate_s=0.0, process_s=0.0, finalize_s=0.0) as server:
        server.rewrite = answering({"FIRST": "hold"}, judge={"score": 0.9, "reason": "says hold"})
        llm = f"{{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}"
        (tmp_path / "wf.yaml").write_text(
            f"name: judged\ninputs:\n  v: {{type: string}}\nagents:\n  - name: first\n    module: Finance\n"
            f"    llm_config: {llm}\n    prompt_template: 'FIRST: decide {{v}}'\n    expect:\n{WITH_RUBRIC}"
        )
        (tmp_path / "rows.csv").write_text("v\n" + "".join(f"V{i}\n" for i in range(6)))
        proc = cli.orchestrate(
            "run", "wf.yaml", "--data", "rows.csv", "--key", "v", "-o", "runs", "--provider-batch",
            "--batch-window", "0.3", "--batch-poll-max", "0.2", cwd=tmp_path, env={"OPENAI_API_KEY": KEY},
            timeout=120,
        )  # fmt: skip
        submitted = [{i["custom_id"].split("-a")[0] for i in s["items"]} for s in server.submitted]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The agents' batch, then the judges' (asked as the agents' answers came back; ids have no dots).
    assert submitted[0] == {"first"} and len(submitted) >= 2 and all(s == {"first_judge"} for s in submitted[1:])
    (run_dir,) = (tmp_path / "runs").iterdir()
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    judged = [c for c in calls if c["agent"] == "first.judge"]
    assert len(judged) == 6 and all(c["batch"] and c["batch_id"] for c in judged)
    assert "expectations: 6/6 passed" in proc.stdout


def slow_judge(seconds: float, verdict: Any) -> Any:
    """A server rewrite: agents answer as usual, the judge (asked with 'Rubric:') after `seconds`."""

    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if "Rubric:" in json.dumps(request.get("messages", [])):
            time.sleep(seconds)
            answer["choices"][0]["message"]["content"] = json.dumps(verdict)
        return answer

    return rewrite


def judged_outputs(server: FakeProvider) -> str:
    """`two_agents` with a rubric on `first` and one on the workflow's outputs."""
    judge = f"{{model: gpt-4o-mini, max_tokens: 50, base_url: '{server.url}/v1'}}"
    return two_agents(server, WITH_RUBRIC, outputs=False) + (
        f"outputs:\n  decision: '{{first.output}}'\nexpect:\n  - {{rubric: 'Decides.', name: decides, judge: {judge}}}\n"
    )


def scored_by_loopback(server: FakeProvider, workflow: Any) -> tuple[OrchestrationEngine, LiveScoring, list[Event]]:
    """An engine on the loopback server scoring `workflow` live, and the events it told."""
    engine = OrchestrationEngine(
        OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1"), EngineConfig(rate_limit_config=None)
    )
    seen: list[Event] = []
    engine.add_sink(seen.append)
    scoring = LiveScoring(engine)
    scoring.begin(workflow, Evaluator(workflow))
    return engine, scoring, seen


async def test_a_judge_still_asking_when_the_agents_are_done_is_waited_for_before_the_run_ends(
    server: FakeProvider,
) -> None:
    server.rewrite = slow_judge(1.0, {"score": 0.9, "reason": "fine"})
    workflow = load_workflow_text(judged_outputs(server))
    engine, scoring, seen = scored_by_loopback(server, workflow)
    await engine.execute_workflow(await engine.register_workflow(workflow))
    document = await scoring.finish(workflow)
    await engine.shutdown()
    kinds = [(e.type, e.agent) for e in seen]
    # `second` ended long before `first`'s judge answered; the end is told after both judges.
    assert kinds[-1] == (EventType.WORKFLOW_FINISHED, None), kinds[-6:]
    for judged in ("first", None):
        assert (EventType.EXPECTATIONS_CHECKED, judged) in kinds
    assert {(EventType.LLM_CALL, "first.judge"), (EventType.LLM_CALL, "outputs.judge")} <= set(kinds)
    assert document is not None and [(o["agent"], o["status"]) for o in document["outcomes"]] == [
        ("first", "pass"),
        ("outputs", "pass"),
    ]
    assert document["judge_cost"] > 0 and workflow.status.value == "completed"


async def test_a_run_stopped_while_its_judge_asks_ends_with_the_judge_cancelled_and_said(server: FakeProvider) -> None:
    server.rewrite = slow_judge(3.0, {"score": 0.9, "reason": "fine"})
    workflow = load_workflow_text(judged_outputs(server))
    engine, scoring, seen = scored_by_loopback(server, workflow)
    running = asyncio.ensure_future(engine.execute_workflow(await engine.register_workflow(workflow)))
    while (EventType.AGENT_FINISHED, "second") not in [(e.type, e.agent) for e in seen]:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # `first`'s judge is asking (for 3 s)
    started = time.monotonic()
    await engine.stop()
    await running
    assert time.monotonic() - started < 2.0  # not waited for
    kinds = [(e.type, e.agent) for e in seen]
    assert kinds[-1] == (EventType.WORKFLOW_FINISHED, None), kinds[-6:]
    told = {e.agent: e.data for e in seen if e.type is EventType.EXPECTATIONS_CHECKED}
    for owner in ("first", None):
        (outcome,) = told[owner]["outcomes"]
        assert outcome["status"] == "error" and "not judged: the run was stopped" in outcome["reason"], outcome
    assert workflow.status.value == "cancelled"
    await scoring.finish(workflow, score=False)
    await engine.shutdown()


async def test_a_workflow_timeout_cuts_a_judge_still_asking_after_the_agents_are_done(server: FakeProvider) -> None:
    # The agents are done in well under a second; `first`'s judge would take 4 s and the
    # workflow's own judge after it: the workflow's timeout (1.5 s) ends the run, not the judges.
    server.rewrite = slow_judge(4.0, {"score": 0.9, "reason": "fine"})
    workflow = load_workflow_text(judged_outputs(server).replace("cost_budget: 0.5", "cost_budget: 0.5\ntimeout: 1.5"))
    engine, scoring, seen = scored_by_loopback(server, workflow)
    started = time.monotonic()
    await engine.execute_workflow(await engine.register_workflow(workflow))
    took = time.monotonic() - started
    assert 1.4 < took < 3.5, took  # cut at its timeout, not after the 4 s judge (and the next one)
    kinds = [(e.type, e.agent) for e in seen]
    assert kinds[-1] == (EventType.WORKFLOW_FINISHED, None), kinds[-6:]
    told = {e.agent: e.data for e in seen if e.type is EventType.EXPECTATIONS_CHECKED}
    for owner in ("first", None):
        (outcome,) = told[owner]["outcomes"]
        assert outcome["status"] == "error", outcome
        assert outcome["reason"] == "not judged: the run timed out before its judge answered", outcome
    # The agents' work is done and kept; the run says why its evaluation is not.
    assert [a.status.value for a in workflow.agents] == ["completed", "completed"]
    assert workflow.status.value == "completed" and workflow.error == "timed out after 1.5s"
    document = await scoring.finish(workflow)
    assert document is not None and {o["status"] for o in document["outcomes"]} == {"error"}
    await engine.shutdown()


def test_a_command_cut_by_its_timeout_while_judging_exits_5_with_the_reason_kept(
    tmp_path: Path, server: FakeProvider
) -> None:
    server.rewrite = slow_judge(4.0, {"score": 0.9, "reason": "fine"})
    (tmp_path / "wf.yaml").write_text(
        judged_outputs(server).replace("cost_budget: 0.5", "cost_budget: 0.5\ntimeout: 1.5")
    )
    proc = cli.orchestrate("run", "wf.yaml", "-o", "runs", cwd=tmp_path, env={"OPENAI_API_KEY": KEY}, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["error"] == "timed out after 1.5s", result
    assert events_of(run_dir)[-1]["type"] == "workflow_finished"
    assert "2 errors" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_the_journal_of_a_run_with_a_slow_judge_closes_with_its_end(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = slow_judge(1.0, {"score": 0.2, "reason": "no"})
    (tmp_path / "wf.yaml").write_text(judged_outputs(server))
    proc = cli.orchestrate("run", "wf.yaml", "-o", "runs", cwd=tmp_path, env={"OPENAI_API_KEY": KEY}, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = events_of(run_dir)
    assert events[-1]["type"] == "workflow_finished"
    judged = [e for e in events if e["type"] == "expectations_checked"]
    assert {e["agent"] for e in judged} == {"first", None} and all(e["data"]["failed"] == 1 for e in judged)
