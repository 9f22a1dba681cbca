"""Benchmark of deterministic expectations: what they add per expectation, per agent, per row.

A workflow of one agent carries eight deterministic expectations of different kinds
(equals against a row column, one_of, contains, regex, approx against an input,
json_schema, cel, max_cost). It is scored over 10,000 dataset rows, each a run of the
workflow with a recorded answer, through the same `Evaluator.evaluate` a dataset run
calls as each row finishes (no judge: nothing is called). Target: <= 10 us per
expectation per agent, measured as the evaluation's wall time (and the thread's CPU
time) over rows x expectations; each kind is also timed alone, and `cel` both ways:
by the closures it is compiled into when the workflow is loaded, and by cel-python's
interpreter alone (what every evaluation cost before, and what an expression outside
the closures' subset still costs).

    python benchmarks/expectations.py            # 10,000 rows
    python benchmarks/expectations.py --rows 2000 --runs 5

Each figure is the median of `--runs` measurements (default 3): on a loaded machine one
measurement is at the mercy of the other processes; CPU time is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from typing import Any

from orchestrate.workflow.dataset import instantiate
from orchestrate.workflow.loader import load_workflow_text
from orchestrate.workflow.models import AgentResult, AgentStatus

TARGET_US = 10.0

EXPECTATIONS = {
    "equals": '- {equals: "{row.expected_account}", path: output.gl_account}',
    "one_of": "- {one_of: [approve, hold, reject], path: output.decision}",
    "contains": "- {contains: AP-7, path: output.reason}",
    "regex": '- {regex: "^CC-\\\\d{3}$", path: output.cost_centre}',
    "approx": '- {approx: "{amount}", path: output.total, tolerance: 0.01}',
    "json_schema": "- {json_schema: {type: object, required: [gl_account, decision]}}",
    "cel": "- {cel: \"!(inputs.bank_account_changed && output.decision == 'approve')\"}",
    "max_cost": "- {max_cost: 0.02}",
}


def workflow_text(kinds: list[str]) -> str:
    lines = "".join(f"      {EXPECTATIONS[k]}\n" for k in kinds)
    return (
        "name: bench\ninputs:\n  amount: {type: number}\n  bank_account_changed: {type: boolean}\n"
        "agents:\n  - name: code\n    module: Finance\n    llm_config: {model: gpt-4o-mini}\n"
        "    prompt_template: '{amount}'\n    expect:" + (f"\n{lines}" if kinds else " []\n")
    )


def rows(count: int) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    made = []
    for i in range(count):
        amount = 100.0 + i
        answer = {
            "gl_account": "6100" if i % 10 else "6200",
            "cost_centre": f"CC-{100 + i % 5 * 100}",
            "decision": "hold" if i % 7 == 0 else "approve",
            "total": amount,
            "reason": "Held under AP-7" if i % 7 == 0 else "Coded from the description",
        }
        inputs = {"amount": amount, "bank_account_changed": i % 7 == 0}
        made.append((inputs, {**inputs, "expected_account": "6100"}, answer))
    return made


async def measure(kinds: list[str], data: list[Any], *, interpreted: bool = False) -> tuple[float, float, int]:
    from orchestrate.run.evaluation import Evaluator

    template = load_workflow_text(workflow_text(kinds), bind=False)
    evaluator = Evaluator(template)
    if interpreted:  # cel by cel-python's interpreter alone, as before the closures
        for target in evaluator.targets:
            for expectation in target.expectations:
                if expectation.condition is not None:
                    expectation.condition = replace(expectation.condition, fast=None)
    runs = []
    for i, (inputs, row, answer) in enumerate(data):
        workflow = instantiate(template, inputs, f"r{i}")
        agent = workflow.agents[0]
        agent.result = AgentResult("code", AgentStatus.COMPLETED, output={"text": "", "json": answer}, cost=0.0001)
        agent.status = AgentStatus.COMPLETED
        runs.append((workflow, row))
    passed = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    for workflow, row in runs:
        document = await evaluator.evaluate(workflow, row=row)
        passed += document["passed"]
    return time.perf_counter() - wall, time.thread_time() - cpu, passed


async def measure_live(kinds: list[str], data: list[Any]) -> tuple[float, float, int]:
    """The same rows scored as a dataset run scores them: `LiveScoring` told of each row's run and
    of its agent's ``agent_finished`` (which a run emits anyway), its ``expectations_checked`` event
    emitted through the engine (its monitor), asked to settle as the run ends, and `finish`
    assembling the document."""
    from orchestrate.run.dataset_run import dataset_engine_config
    from orchestrate.run.engine import OrchestrationEngine
    from orchestrate.run.evaluation import Evaluator
    from orchestrate.run.events import Event, EventType
    from orchestrate.run.live_scoring import LiveScoring

    template = load_workflow_text(workflow_text(kinds), bind=False)
    evaluator = Evaluator(template)
    engine = OrchestrationEngine(None, dataset_engine_config(1))
    scoring = LiveScoring(engine)
    runs = []
    for i, (inputs, row, answer) in enumerate(data):
        workflow = instantiate(template, inputs, f"r{i}")
        agent = workflow.agents[0]
        agent.result = AgentResult("code", AgentStatus.COMPLETED, output={"text": "", "json": answer}, cost=0.0001)
        agent.status = AgentStatus.COMPLETED
        # The agent's end, made before the clock starts: a run makes it with or without expectations.
        runs.append((workflow, row, Event(EventType.AGENT_FINISHED, workflow.id, "code", {"status": "completed"})))
    passed = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    for workflow, row, ended in runs:
        scoring.begin(workflow, evaluator, row=row)
        scoring(ended)  # as the engine routes it
        waiting = scoring.settle(workflow, False)  # as the run's end asks it, before workflow_finished
        if waiting is not None:
            await waiting
        document = await scoring.finish(workflow)
        assert document is not None
        passed += document["passed"]
    return time.perf_counter() - wall, time.thread_time() - cpu, passed


def median_of(runs: int, kinds: list[str], data: list[Any], *, interpreted: bool = False) -> tuple[float, float, int]:
    """The median wall and CPU time of `runs` measurements (and what passed)."""
    found = [asyncio.run(measure(kinds, data, interpreted=interpreted)) for _ in range(max(1, runs))]
    walls, cpus = sorted(f[0] for f in found), sorted(f[1] for f in found)
    return statistics.median(walls), statistics.median(cpus), found[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="measurements per figure; the median is printed")
    args = parser.parse_args()
    data = rows(args.rows)
    n = args.rows
    plain = [k for k in EXPECTATIONS if k != "cel"]
    print(
        f"deterministic expectations over {n:,} rows, 1 agent (target <= {TARGET_US:g} us each; "
        f"median of {args.runs} runs)"
    )
    base_wall, base_cpu, _ = median_of(args.runs, [], data)
    print(
        f"  an evaluation with no expectation: {base_wall / n * 1e6:.2f} us wall, {base_cpu / n * 1e6:.2f} us CPU a row"
    )
    wall, cpu, passed = median_of(args.runs, plain, data)
    checks = n * len(plain)
    per_wall, per_cpu = wall / checks * 1e6, cpu / checks * 1e6
    print(
        f"E1 {len(plain)} kinds (all but cel), the row's whole evaluation counted: {per_wall:.2f} us wall, "
        f"{per_cpu:.2f} us CPU per expectation ({passed:,}/{checks:,} passed); ratio to target "
        f"{per_cpu / TARGET_US:.2f} (CPU), {per_wall / TARGET_US:.2f} (wall)"
    )
    found = [asyncio.run(measure_live(plain, data)) for _ in range(max(1, args.runs))]
    live_cpu = statistics.median(sorted(f[1] for f in found))
    print(
        f"E3 the same, scored as each agent finishes (LiveScoring: the agent_finished sink, the "
        f"expectations_checked event, finish): {live_cpu / checks * 1e6:.2f} us CPU per expectation; "
        f"{(live_cpu - cpu) / n * 1e6:.2f} us CPU a row over E1 (a workflow without expectations has no sink)"
    )
    wall, cpu, passed = median_of(args.runs, list(EXPECTATIONS), data)
    checks = n * len(EXPECTATIONS)
    per_wall, per_cpu = wall / checks * 1e6, cpu / checks * 1e6
    print(
        f"E1b all {len(EXPECTATIONS)} kinds, cel by its closures: {per_wall:.2f} us wall, {per_cpu:.2f} us CPU per "
        f"expectation ({passed:,}/{checks:,} passed); ratio to target {per_cpu / TARGET_US:.2f} (CPU)"
    )
    print("E2 each kind alone, over the evaluation with none (marginal, CPU):")
    for kind in EXPECTATIONS:
        _, cpu, _ = median_of(args.runs, [kind], data)
        per = cpu / n * 1e6 - base_cpu / n * 1e6
        print(f"  {kind:<12} {per:8.2f} us; ratio {per / TARGET_US:.2f}")
    few = data[: max(1, n // 20)]  # the interpreter costs ~100x: a twentieth of the rows
    _, cpu, _ = median_of(args.runs, ["cel"], few, interpreted=True)
    per = cpu / len(few) * 1e6 - base_cpu / n * 1e6
    print(f"  {'cel, interpreter alone':<12} {per:8.2f} us; ratio {per / TARGET_US:.2f} ({len(few):,} rows)")


if __name__ == "__main__":
    main()
