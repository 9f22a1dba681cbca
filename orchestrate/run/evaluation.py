"""Evaluating a run's expectations: the deterministic checks, and the judge through the engine.

When a run (or a dataset row) has finished, each agent's `expect:` list is
evaluated on its answer, and the workflow's on its declared outputs. An
expectation that cannot be evaluated (the agent failed, was skipped, or the
path is missing) is an ``error`` with its reason, never a pass.

A ``rubric`` is scored by a judge model, asked as an agent of the run would be:
through the engine's executor, so the call is reserved against the same hard
budgets (the agent's run, the dataset's ceiling, a shared scope), waits on the
same rate limits, is retried, cached and batched like any other. Its calls are
booked under the agent name ``<agent>.judge`` (``outputs.judge`` for the
workflow's), which no agent can have, so cost reports show them on their own
line (`cost-report --by mode` groups them as ``judge``). The judge answers
``{score, reason}`` with structured output; orchestrate compares the score with
the expectation's `threshold` itself. An answer that cannot be read is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.errors import ExitCode
from orchestrate.money.costs import agent_key
from orchestrate.workflow.expectations import (
    JUDGE_SCHEMA,
    Context,
    Expectation,
    Outcome,
    combine,
    compile_expectations,
    output_value,
)
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow

__all__ = [
    "EXIT_EXPECTATIONS",
    "EXIT_REGRESSION",
    "JUDGE_SUFFIX",
    "EvaluationTotals",
    "Evaluator",
    "closing_line",
    "judge_name",
]

EXIT_EXPECTATIONS = (
    ExitCode.EXPECTATIONS_FAILED
)  # the agents completed, but some expectation failed or could not be evaluated
EXIT_REGRESSION = (
    ExitCode.REGRESSED
)  # against --baseline: a case went pass -> fail, or a pass rate fell past --tolerance
JUDGE_SUFFIX = ".judge"
WORKFLOW_OWNER = "outputs"
_QUESTION_CHARS = 4000
_ANSWER_CHARS = 12000


def judge_name(owner: str) -> str:
    """The agent name a judge's calls are booked under: ``code_invoice.judge``."""
    return owner + JUDGE_SUFFIX


@dataclass(slots=True)
class _Target:
    owner: str  # agent name, or "outputs" for the workflow's
    expectations: list[Expectation]
    agent: Agent | None
    reads: frozenset[str] = frozenset()  # the other agents whose outputs its expectations read


def _agents_read(expectations: list[Expectation], agents: frozenset[str], owner: str) -> frozenset[str]:
    """The agents (other than `owner`) whose outputs `expectations` read: placeholders' and cel's names."""
    names: set[str] = set()
    stack = list(expectations)
    while stack:
        expectation = stack.pop()
        values = [*([expectation.value] if expectation.value is not None else []), *expectation.values]
        for value in values:
            if value.single is not None:
                names.add(value.single.name)
            names.update(ref.name for _literal, ref in value.pieces or ())
        names.update(expectation.reads)
        stack += expectation.children
    return frozenset(names & agents) - {owner}


class Evaluator:
    """The compiled expectations of one workflow; `evaluate` scores one run (or row) of it."""

    def __init__(self, workflow: Workflow) -> None:
        base = workflow.base_dir
        names = frozenset(a.name for a in workflow.agents)
        self.targets = []
        for a in workflow.agents:
            if a.expect:
                compiled = compile_expectations(a.expect, base_dir=base, owner=a.name)
                self.targets.append(_Target(a.name, compiled, a, _agents_read(compiled, names, a.name)))
        if workflow.expect:
            self.targets.append(
                _Target(WORKFLOW_OWNER, compile_expectations(workflow.expect, base_dir=base, owner="expect"), None)
            )
        self.needs_judge = any(e.needs_judge for t in self.targets for e in t.expectations)

    @classmethod
    def of(cls, workflow: Workflow) -> Evaluator | None:
        """An evaluator when the workflow has expectations, else None."""
        if not workflow.expect and not any(a.expect for a in workflow.agents):
            return None
        return cls(workflow)

    def judge_configs(self) -> list[dict[str, Any]]:
        """The llm_config of every judge (to check their API keys before any call)."""
        return [llm for _who, llm in self.judges()]

    def judges(self) -> list[tuple[str, dict[str, Any]]]:
        """Each judge as ``(who, llm_config)``: "judge of agent 'x'" (or of the workflow's outputs)."""
        found = []
        stack = [(e, t) for t in self.targets for e in t.expectations]
        while stack:
            expectation, target = stack.pop()
            if expectation.kind == "rubric":
                who = f"judge of agent {target.owner!r}" if target.agent is not None else "judge of the outputs"
                found.append((who, judge_llm(expectation, target.agent)))
            stack += [(child, target) for child in expectation.children]
        return found

    def judge_keys(self, workflow_id: str) -> list[str]:
        """The tracker accounts this workflow's judges reserve against (to forget with a row's)."""
        return [
            agent_key(workflow_id, judge_name(t.owner))
            for t in self.targets
            if any(e.needs_judge for e in t.expectations)
        ]

    async def evaluate(
        self,
        workflow: Workflow,
        *,
        engine: Any = None,
        row: Mapping[str, Any] | None = None,
        judge: bool = True,
        results: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Score `workflow` as it ended; stores and returns its evaluation document.

        Args:
            workflow: A finished run (its agents hold their results).
            engine: Asks the judges; without one (or with `judge` false) a rubric is ``skipped``.
            row: The dataset row's columns, for ``{row.COLUMN}``.
            results: Recorded results by agent name (``orchestrate eval``) instead of the live ones:
                ``status``, ``output``, ``cost``, ``execution_time``, ``error``.
        """
        recorded = results if results is not None else {a.name: _live(a) for a in workflow.agents}
        outputs = {  # as `outputs_of`, inline: a dataset's rows each come here
            name: (r.get("output") or {"text": ""}) if r.get("status") == "completed" else None
            for name, r in recorded.items()
        }
        judge_cost = [0.0]
        per_target: list[tuple[_Target, list[Outcome]]] = []
        pending: list[Any] = []
        for target in self.targets:
            outcomes = self.score(
                target, workflow, recorded, outputs, row, engine if judge else None, judge_cost, pending
            )
            per_target.append((target, outcomes))
        if pending:
            await asyncio.gather(*pending)
        document = _document(per_target, judge_cost[0], live=results is None, workflow=workflow)
        if results is None:
            workflow.total_cost += judge_cost[0]
        workflow.evaluation = document
        return document

    def score(
        self,
        target: _Target,
        workflow: Workflow,
        recorded: Mapping[str, Mapping[str, Any]],
        outputs: Mapping[str, Any],
        row: Mapping[str, Any] | None,
        engine: Any,
        judge_cost: list[float],
        pending: list[Any],
    ) -> list[Outcome]:
        """One target's outcomes: the deterministic ones decided now, a rubric's left as a slot
        that a coroutine added to `pending` fills (its judge asked through `engine`, its cost
        added to `judge_cost`)."""
        if target.agent is not None:
            result = recorded.get(target.owner) or {"status": "pending"}
            ctx = Context(  # positional: one of these a row
                row or {},
                workflow.input_values,
                outputs,
                float(result.get("cost") or 0.0),
                float(result.get("execution_time") or 0.0),
            )
            if result.get("status") != "completed":
                why = _not_completed(target.owner, result)
                return [Outcome(e.name, e.kind, "error", reason=why) for e in target.expectations]
            output: Any = result.get("output") or {"text": ""}
        else:
            duration = 0.0
            if workflow.started_at is not None and workflow.completed_at is not None:
                duration = (workflow.completed_at - workflow.started_at).total_seconds()
            cost = sum(float(r.get("cost") or 0.0) for r in recorded.values())
            ctx = Context(row=row or {}, inputs=workflow.input_values, outputs=outputs, cost=cost, seconds=duration)
            output = {"json": dict(workflow.output_values)}
        outcomes: list[Outcome] = []
        value = output_value(output)  # the answer as every expectation reads it, read once
        for expectation in target.expectations:
            done = expectation.check(output, ctx, value)
            if done is None and expectation.kind == "any":  # a deterministic pass decides it now
                settled = [child.check(output, ctx) for child in expectation.children if not child.needs_judge]
                if any(o is not None and o.status == "pass" for o in settled):
                    done = combine(expectation, [o for o in settled if o is not None])
            if done is not None:
                outcomes.append(done)
                continue
            slot = len(outcomes)
            outcomes.append(Outcome(expectation.name, expectation.kind, "error", reason="not judged"))
            pending.append(self._judged(outcomes, slot, expectation, output, ctx, target, workflow, engine, judge_cost))
        return outcomes

    async def _judged(
        self,
        outcomes: list[Outcome],
        slot: int,
        expectation: Expectation,
        output: Any,
        ctx: Context,
        target: _Target,
        workflow: Workflow,
        engine: Any,
        spent: list[float],
    ) -> None:
        outcomes[slot] = await self._score(expectation, output, ctx, target, workflow, engine, spent)

    async def _score(
        self,
        expectation: Expectation,
        output: Any,
        ctx: Context,
        target: _Target,
        workflow: Workflow,
        engine: Any,
        spent: list[float],
    ) -> Outcome:
        if expectation.kind == "any":  # a deterministic pass decides it: no judge is paid for
            settled = [child.check(output, ctx) for child in expectation.children if not child.needs_judge]
            if any(o is not None and o.status == "pass" for o in settled):
                return combine(expectation, [o for o in settled if o is not None])
        if expectation.kind in ("any", "all"):
            children = await asyncio.gather(
                *(self._score(child, output, ctx, target, workflow, engine, spent) for child in expectation.children)
            )
            return combine(expectation, list(children))
        done = expectation.check(output, ctx)
        if done is not None:
            return done
        if engine is None:
            return Outcome(
                expectation.name, "rubric", "skipped", reason="not judged (orchestrate eval --judge asks the judge)"
            )
        try:
            answer = expectation.target(output)
        except Exception as exc:  # the path is missing: nothing to judge
            return Outcome(expectation.name, "rubric", "error", reason=str(exc))
        return await _ask_judge(engine, workflow, target, expectation, answer, spent)


async def _ask_judge(
    engine: Any, workflow: Workflow, target: _Target, expectation: Expectation, answer: Any, spent: list[float]
) -> Outcome:
    from orchestrate.workflow.expectations import _text

    owner = target.agent
    llm = judge_llm(expectation, owner)
    judge = Agent(
        name=judge_name(target.owner),
        module=owner.module if owner is not None else "General",
        description=f"judge of {target.owner}",
        llm_config=llm,
        prompt_template="",
        output_schema=JUDGE_SCHEMA,
        max_retries=owner.max_retries if owner is not None else 3,
        cost_limit=max(workflow.cost_budget, 1e-9),
        tags=[*(owner.tags if owner is not None else workflow.tags), "judge"],
    )
    question = ""
    if owner is not None and owner.result is not None:
        question = str(owner.result.metadata.get("prompt") or "")[:_QUESTION_CHARS]
    prompt = f"Rubric: {expectation.raw['rubric']}\n\n"
    if question:
        prompt += f"The task the answer was given:\n{question}\n\n"
    prompt += f"The answer:\n{_text(answer)[:_ANSWER_CHARS]}\n\nScore the answer against the rubric."
    result = AgentResult(agent_id=judge.name, status=AgentStatus.RUNNING)
    try:
        await engine.executor.execute(workflow, judge, prompt, result)
    finally:
        usage = result.metadata.get("usage")
        cost = float(getattr(usage, "cost", 0.0) or 0.0)
        spent[0] += cost
    name, threshold = expectation.name, expectation.threshold
    if result.status is AgentStatus.BUDGET_EXCEEDED:
        return Outcome(name, "rubric", "error", threshold, None, f"judge refused by the budget: {result.error}")
    if result.status is not AgentStatus.COMPLETED:
        return Outcome(name, "rubric", "error", threshold, None, f"judge failed: {result.error}")
    verdict = (result.output or {}).get("json")
    score = verdict.get("score") if isinstance(verdict, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        return Outcome(name, "rubric", "error", threshold, None, "the judge's answer has no score between 0 and 1")
    reason = str(verdict.get("reason") or "") if isinstance(verdict, dict) else ""
    status = "pass" if score >= threshold else "fail"
    return Outcome(name, "rubric", status, threshold, float(score), reason, float(score))


def judge_llm(expectation: Expectation, owner: Agent | None) -> dict[str, Any]:
    """The judge's llm_config (`orchestrate.workflow.expectations.judge_llm`)."""
    from orchestrate.workflow.expectations import judge_llm as configured

    return configured(expectation.judge, owner.llm_config if owner is not None else None)


def _live(agent: Agent) -> dict[str, Any]:
    result = agent.result
    if result is None:
        return {"status": agent.status.value}
    return {
        "status": result.status.value,
        "output": result.output,
        "cost": result.cost,
        "execution_time": result.execution_time,
        "error": result.error,
        "metadata": result.metadata,
    }


def outputs_of(recorded: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every agent's output as expectations read it (None unless it completed)."""
    return {
        name: (r.get("output") or {"text": ""}) if r.get("status") == "completed" else None
        for name, r in recorded.items()
    }


def _not_completed(name: str, result: Mapping[str, Any]) -> str:
    status = result.get("status") or "pending"
    if status == "skipped":
        why = (result.get("metadata") or {}).get("skipped")
        return f"agent {name!r} was skipped" + (f" ({why})" if why else "")
    error = result.get("error")
    return f"agent {name!r} ended {status}" + (f": {error}" if error else "")


def _document(
    per_target: list[tuple[_Target, list[Outcome]]],
    judge_cost: float,
    *,
    live: bool,
    workflow: Workflow | None = None,
) -> dict[str, Any]:
    """The evaluation document; with `live`, each agent's outcomes also go into its result's
    metadata (result.json's agents[].metadata.expectations), the same dictionaries, when the
    evaluator's agent is `workflow`'s own (not a template's, nor the first try's scoring a repeat)."""
    counts = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
    outcomes: list[dict[str, Any]] = []
    add = outcomes.append
    for target, found in per_target:
        owner = target.owner
        agent = target.agent
        if (
            live
            and agent is not None
            and agent.result is not None
            and (workflow is None or workflow.get_agent_by_name(owner) is agent)
        ):
            own: list[dict[str, Any]] = []
            keep = own.append
            for outcome in found:  # a loop over every expectation of every row: kept lean
                counts[outcome.status] += 1
                entry, listed = outcome.entries(owner)
                keep(entry)
                add(listed)
            agent.result.metadata["expectations"] = own
        else:  # not kept in the agent's result (a dataset row's evaluator is its template's): one dict each
            for outcome in found:
                counts[outcome.status] += 1
                add(outcome.listed(owner))
    passed, failed, errors, skipped = counts["pass"], counts["fail"], counts["error"], counts["skipped"]
    return {
        "passed": passed,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "total": passed + failed + errors + skipped,
        "judge_cost": round(judge_cost, 10) if judge_cost else 0.0,  # (round() is dear; most rows judge nothing)
        "outcomes": outcomes,
    }


def closing_line(totals: Mapping[str, Any]) -> str:
    """``expectations: 47/50 passed, 2 failed, 1 error``."""
    total = int(totals.get("total", 0))
    parts = [f"{int(totals.get('passed', 0))}/{total} passed"]
    failed, errors, skipped = (int(totals.get(k, 0)) for k in ("failed", "errors", "skipped"))
    if failed:
        parts.append(f"{failed} failed")
    if errors:
        parts.append(f"{errors} error" + ("s" if errors != 1 else ""))
    if skipped:
        parts.append(f"{skipped} not judged")
    return "expectations: " + ", ".join(parts)


def expectations_failed(totals: Mapping[str, Any] | None) -> bool:
    """True when some expectation failed or could not be evaluated; with a ``--min-pass-rate``
    bar, when some case's pass rate over its tries is under it."""
    if not totals:
        return False
    bad = int(totals.get("failed", 0)) + int(totals.get("errors", 0))
    bar = totals.get("min_pass_rate")
    if "cases" in totals:  # a dataset run's totals
        return int(totals.get("cases_below_min", 0)) > 0
    if "tries_passed" in totals or bar is not None:  # one case: its tries against the bar
        tries = int(totals.get("tries") or 1)
        passed = int(totals["tries_passed"]) if "tries_passed" in totals else (0 if bad else tries)
        return passed / tries < (1.0 if bar is None else float(bar)) - 1e-12
    return bad > 0


_COUNT_OF = {"pass": "passed", "fail": "failed", "error": "errors", "skipped": "skipped"}


def repeated(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One case tried K times (``--repeat K``): its K evaluation documents as one.

    The counts are over every try. ``tries`` is K and ``tries_passed`` how many tries passed
    every expectation. Each expectation appears once, with its counts over the tries
    (``passed``, ``failed``, ``errors``, ``skipped``) and the status ``pass`` only when it
    passed every time (``skipped`` when never judged); otherwise the first try that did not
    pass gives its status, expected, got and reason.
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    tries_passed = 0
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    judge_cost = 0.0
    for document in documents:
        judge_cost += float(document.get("judge_cost") or 0.0)
        ok = True
        for outcome in document.get("outcomes", ()):
            status = outcome["status"]
            counts[_COUNT_OF[status]] += 1
            ok = ok and status in ("pass", "skipped")
            entry = merged.get((outcome["agent"], outcome["name"]))
            if entry is None:
                entry = merged[(outcome["agent"], outcome["name"])] = {**outcome, **_empty()}
            entry[_COUNT_OF[status]] += 1
            if status in ("fail", "error") and entry["status"] in ("pass", "skipped"):
                entry.update({k: v for k, v in outcome.items() if k not in _COUNT_OF.values()})
            elif status == "pass" and entry["status"] == "skipped":
                entry["status"] = "pass"
        tries_passed += ok
    outcomes = []
    for entry in merged.values():
        entry["tries"] = len(documents)
        outcomes.append(entry)
    return {
        **counts,
        "total": sum(counts.values()),
        "judge_cost": round(judge_cost, 10),
        "tries": len(documents),
        "tries_passed": tries_passed,
        "outcomes": outcomes,
    }


@dataclass
class EvaluationTotals:
    """Pass rates over many evaluations (a dataset's rows): per expectation, per agent, overall.

    A case is a row (or the single run). With ``--repeat K`` each case was tried K times
    (`repeated` documents): its pass rate is the share of tries that passed every
    expectation, and it counts towards pass^K when every try did. `min_pass_rate` is
    the bar a case's pass rate must reach (None: every try must pass).
    """

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    judge_cost: float = 0.0
    rows: int = 0
    rows_all_passed: int = 0
    tries: int = 0
    repeat: int = 1
    min_pass_rate: float | None = None
    cases_below: int = 0  # cases whose pass rate is under the bar
    case_rate_sum: float = 0.0
    below: list[dict[str, Any]] = field(default_factory=list)  # the first few cases under the bar
    by_expectation: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    by_agent: dict[str, dict[str, int]] = field(default_factory=dict)
    always: dict[tuple[str, str], int] = field(default_factory=dict)  # cases where it passed every try

    def add(self, document: Mapping[str, Any], key: str | None = None) -> None:
        """Count one case's evaluation document (an `evaluate` document, a `repeated` one, or
        either as results.jsonl keeps it)."""
        tries = int(document.get("tries") or 1)
        self.rows += 1
        self.tries += tries
        self.judge_cost += float(document.get("judge_cost") or 0.0)
        ok = True
        for outcome in document.get("outcomes", ()):
            status = outcome["status"]
            if "tries" in outcome:  # a repeated case: its counts over the tries
                got = {name: int(outcome.get(name) or 0) for name in _COUNT_OF.values()}
            else:
                got = {name: 0 for name in _COUNT_OF.values()}
                got[_COUNT_OF.get(status, "errors")] = 1
            every = got["failed"] + got["errors"] == 0
            ok = ok and every
            exp_key = (outcome["agent"], outcome["name"])
            for name, n in got.items():
                setattr(self, name, getattr(self, name) + n)
                self.by_expectation.setdefault(exp_key, _empty())[name] += n
                self.by_agent.setdefault(outcome["agent"], _empty())[name] += n
            self.always[exp_key] = self.always.get(exp_key, 0) + every
        passed_tries = int(document["tries_passed"]) if "tries_passed" in document else (tries if ok else 0)
        self.rows_all_passed += passed_tries == tries
        rate = passed_tries / tries if tries else 0.0
        self.case_rate_sum += rate
        bar = 1.0 if self.min_pass_rate is None else self.min_pass_rate
        if rate < bar - 1e-12:
            self.cases_below += 1
            if len(self.below) < 50:
                self.below.append({"key": key, "pass_rate": round(rate, 6), "tries": tries})

    def to_dict(self) -> dict[str, Any]:
        total = self.passed + self.failed + self.errors + self.skipped
        judged = self.passed + self.failed + self.errors
        document: dict[str, Any] = {
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "total": total,
            "pass_rate": round(self.passed / judged, 6) if judged else None,
            "rows": self.rows,
            "rows_all_passed": self.rows_all_passed,
            "judge_cost": round(self.judge_cost, 10),
            "by_expectation": [
                {
                    "agent": agent,
                    "name": name,
                    **counts,
                    "pass_rate": _rate(counts),
                    **({"pass_k": self._share(self.always.get((agent, name), 0))} if self.repeat > 1 else {}),
                }
                for (agent, name), counts in self.by_expectation.items()
            ],
            "by_agent": {agent: {**counts, "pass_rate": _rate(counts)} for agent, counts in self.by_agent.items()},
        }
        if self.repeat > 1 or self.min_pass_rate is not None:
            document.update(self.cases())
        return document

    def cases(self) -> dict[str, Any]:
        """The per-case figures of a repeated run: pass^K, mean pass rate, cases under the bar."""
        return {
            "repeat": self.repeat,
            "tries": self.tries,
            "cases": self.rows,
            "pass_k": self._share(self.rows_all_passed),
            "cases_all_passed": self.rows_all_passed,
            "case_pass_rate": round(self.case_rate_sum / self.rows, 6) if self.rows else None,
            "min_pass_rate": self.min_pass_rate,
            "cases_below_min": self.cases_below,
            "below_min": list(self.below),
        }

    def _share(self, n: int) -> float | None:
        return round(n / self.rows, 6) if self.rows else None


def _empty() -> dict[str, int]:
    return {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}


def _rate(counts: Mapping[str, int]) -> float | None:
    judged = counts["passed"] + counts["failed"] + counts["errors"]
    return round(counts["passed"] / judged, 6) if judged else None


def write_evaluation(
    run_dir: Path, document: Mapping[str, Any], name: str = "evaluation.json", *, kind: str = "evaluation"
) -> Path:
    """Write an evaluation document into a run folder, atomically, with its `kind` and schema version
    (`schemas/evaluation.schema.json`)."""
    import json

    from orchestrate.fsutil import atomic_write_text

    path = run_dir / name
    document = {"kind": kind, "schema_version": 1, **document}
    atomic_write_text(path, json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True, default=str) + "\n")
    return path


def exit_code(code: int, evaluations: list[Mapping[str, Any] | None], *, fail_on_expect: bool = True) -> int:
    """`code` (the runs' own), or EXIT_EXPECTATIONS when the runs completed but expectations did not pass."""
    if code != 0 or not fail_on_expect:
        return code
    return EXIT_EXPECTATIONS if any(expectations_failed(e) for e in evaluations) else code


def failure_lines(document: Mapping[str, Any], *, limit: int = 5, indent: str = "  ") -> list[str]:
    """A line per expectation that did not pass (the first `limit`): who, what, expected, got, why."""
    from orchestrate.run.protection import shown, shown_reason

    lines = []
    bad = [o for o in document.get("outcomes", ()) if o.get("status") in ("fail", "error")]
    for o in bad[:limit]:
        detail = shown_reason(o.get("reason"))
        if o.get("status") == "fail" and o.get("kind") != "rubric":
            detail = f"expected {shown(o.get('expected'))}, got {shown(o.get('got'))}" + (
                f" ({detail})" if detail else ""
            )
        elif o.get("kind") == "rubric" and o.get("score") is not None:
            detail = f"score {o['score']:g} < {shown(o.get('expected'))}: {detail}"
        if "tries" in o:  # a repeated case: how often it passed
            detail += f" [{o.get('passed', 0)}/{o['tries']} tries passed]"
        lines.append(f"{indent}{o['status']}: {o['agent']}: {o['name']}: {detail}")
    if len(bad) > limit:
        lines.append(f"{indent}... and {len(bad) - limit} more")
    return lines


def dataset_lines(totals: Mapping[str, Any] | None, *, limit: int = 8) -> list[str]:
    """The closing lines of a dataset run: the count line, then each expectation that did not
    always pass, with its pass rate."""
    if not totals:
        return []
    lines = [closing_line(totals)]
    lines += repeat_lines(totals)
    short = [e for e in totals.get("by_expectation", ()) if e["failed"] or e["errors"]]
    for e in short[:limit]:
        judged = e["passed"] + e["failed"] + e["errors"]
        rate = f" ({e['pass_rate']:.0%})" if e.get("pass_rate") is not None else ""
        errors = f", {e['errors']} error(s)" if e["errors"] else ""
        every = f"; every try in {e['pass_k']:.0%} of cases" if e.get("pass_k") is not None else ""
        lines.append(f"  {e['agent']}: {e['name']}: {e['passed']}/{judged} passed{rate}{errors}{every}")
    if len(short) > limit:
        lines.append(f"  ... and {len(short) - limit} more in evaluation.json")
    return lines


def repeat_lines(totals: Mapping[str, Any]) -> list[str]:
    """With ``--repeat K`` (or ``--min-pass-rate``): a run's tries passed; a dataset's pass^K over
    the cases, their mean pass rate, and the cases under the bar."""
    if "tries_passed" in totals:  # one case (a single run) tried K times
        tries, passed = int(totals.get("tries") or 1), int(totals["tries_passed"])
        line = f"repeat {tries}: {passed}/{tries} tries passed every expectation ({passed / tries:.0%})"
        line += f" - pass^{tries}" if passed == tries else ""
        if totals.get("min_pass_rate") is not None:
            under = passed / tries < float(totals["min_pass_rate"]) - 1e-12
            line += f"; {'under' if under else 'meets'} --min-pass-rate {totals['min_pass_rate']:g}"
        return [line]
    if "cases" not in totals:
        return []
    k, cases, every = int(totals.get("repeat") or 1), int(totals.get("cases") or 0), int(totals["cases_all_passed"])
    mean = totals.get("case_pass_rate")
    line = f"repeat {k}: pass^{k} {every}/{cases} case(s)" + (
        f", mean pass rate {mean:.0%}" if mean is not None else ""
    )
    bar = totals.get("min_pass_rate")
    below = int(totals.get("cases_below_min") or 0)
    if bar is not None:
        line += f"; {below} case(s) under --min-pass-rate {bar:g}"
    lines = [line]
    for case in (totals.get("below_min") or ())[:5] if bar is not None else ():
        passed = round(float(case["pass_rate"]) * int(case["tries"]))
        who = case.get("key") or "run"
        lines.append(f"  under the bar: {who}: {passed}/{case['tries']} tries passed ({case['pass_rate']:.0%})")
    return lines


def expectation_lines(document: Mapping[str, Any] | None) -> list[str]:
    """The closing lines of a run with expectations: the count line, then what did not pass."""
    if not document:
        return []
    return [closing_line(document), *repeat_lines(document), *failure_lines(document)]


def row_line(document: Mapping[str, Any]) -> dict[str, Any]:
    """A row's evaluation as results.jsonl keeps it: counts, and each outcome (details only where
    it did not pass)."""
    outcomes = []
    for o in document.get("outcomes", ()):
        if o["status"] == "pass":
            short = {"agent": o["agent"], "name": o["name"], "status": "pass"}
            if "tries" in o:  # a repeated case: its counts over the tries
                short.update({k: o[k] for k in ("passed", "failed", "errors", "skipped", "tries")})
            outcomes.append(short)
        else:
            outcomes.append(o)
    keep = ("passed", "failed", "errors", "skipped", "total", "judge_cost", "tries", "tries_passed")
    counts = {k: document[k] for k in keep if k in document}
    return {**counts, "outcomes": outcomes}


class DatasetScoring:
    """A dataset run's expectations: the evaluator its rows use, and the totals over them
    (a batch sink), written to evaluation.json in the run folder when the run ends."""

    def __init__(
        self, evaluator: Evaluator | None, run_dir: Path, *, repeat: int = 1, min_pass_rate: float | None = None
    ) -> None:
        self.evaluator = evaluator
        self.run_dir = run_dir
        self.totals = EvaluationTotals(repeat=repeat, min_pass_rate=min_pass_rate)
        self.sinks: list[Any] = [self] if evaluator is not None else []

    @classmethod
    def of(
        cls, template: Workflow, run_dir: Path, *, repeat: int = 1, min_pass_rate: float | None = None
    ) -> DatasetScoring:
        return cls(Evaluator.of(template), run_dir, repeat=repeat, min_pass_rate=min_pass_rate)

    def carry(self, lines: Mapping[str, Mapping[str, Any]], keys: set[str]) -> None:
        """Count the rows an earlier session of a resumed run completed (their results.jsonl
        lines, by key), so evaluation.json covers every session, not only this one."""
        if self.evaluator is None:
            return
        for key in sorted(keys):
            found = (lines.get(key) or {}).get("expectations")
            if isinstance(found, Mapping):
                self.totals.add(found, key)

    def row_finished(self, row: Any, workflow: Workflow, records: list[Any], status: str) -> None:
        if workflow.evaluation is not None:
            self.totals.add(workflow.evaluation, getattr(row, "key", None))

    def row_invalid(self, bad: Any) -> None:
        return None  # an invalid row never ran: nothing to score

    def row_refused(self, row: Any, reason: str | None = None) -> None:
        return None  # a row the budget kept from starting: counted by the batch, not here

    def finish(self) -> dict[str, Any] | None:
        """The totals (None without expectations), written to evaluation.json."""
        if self.evaluator is None:
            return None
        document = self.totals.to_dict()
        write_evaluation(self.run_dir, document)
        return document
