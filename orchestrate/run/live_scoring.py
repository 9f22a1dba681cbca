"""Expectations scored as each agent finishes, and the workflow's as the run ends.

`LiveScoring` is a sink of the engine's ``agent_finished`` events. When an agent
of a run it was told about (`begin`) ends, that agent's expectations are scored
at once: the deterministic kinds there and then, a rubric by its judge, asked
through the engine's executor like any call (the same budgets, rate limits,
retries, cache and batches) while the rest of the run goes on. The outcome is
told as an ``expectations_checked`` event, so the live view and events.jsonl show
a failed expectation as soon as its agent ends. Expectations that read another
agent's output wait for that agent to end too. A judge's call is reserved against
the run's budgets like an agent's, so it competes with the agents still to run: the
agents released by the same end reserve first, later ones after it.

`finish`, once the run has ended, waits for the judges still asking, scores what
could not be scored earlier (an agent that never ended, one that ended again, the
workflow's own `expect:` on its outputs) and assembles the evaluation document,
the same one `Evaluator.evaluate` makes after the run: result.json, results.jsonl
and the reports are as they were.

Only runs with expectations make one (`Evaluator.of` is None otherwise): a workflow
without them has no sink added and pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from orchestrate.run.evaluation import WORKFLOW_OWNER, Evaluator, _document, _live, _Target, outputs_of
from orchestrate.run.events import Event, EventType
from orchestrate.run.protection import outcome_without_content
from orchestrate.workflow.expectations import Outcome
from orchestrate.workflow.models import AgentResult, Workflow

__all__ = ["LiveScoring", "checked_data"]


class _Run:
    __slots__ = ("ended", "evaluator", "judge_cost", "judging", "owners", "row", "scored", "waiting", "workflow")

    def __init__(
        self, workflow: Workflow, evaluator: Evaluator, row: Mapping[str, Any] | None, owners: dict[str, _Target]
    ) -> None:
        self.workflow = workflow
        self.evaluator = evaluator
        self.row = row
        self.owners = owners
        self.ended: set[str] = set()  # agents whose end was told
        self.waiting: list[_Target] | None = None  # targets reading agents not ended yet
        self.scored: dict[str, tuple[AgentResult | None, list[Outcome]]] = {}
        self.judging: list[asyncio.Task[None]] | None = None
        self.judge_cost = [0.0]


class LiveScoring:
    """Scores each agent's expectations as it finishes (a sink; see the module docstring).

    Args:
        engine: Asks the judges (its executor) and is told the outcomes (its `emit`).
    """

    event_types = frozenset({EventType.AGENT_FINISHED, EventType.WORKFLOW_FINISHED})

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._runs: dict[str, _Run] = {}
        self._owners: dict[int, tuple[Evaluator, dict[str, _Target]]] = {}  # per evaluator: its agents' targets
        self._told: list[Event] = []  # outcomes to emit once the agent_finished in hand reached every sink
        engine.add_sink(self)

    def begin(self, workflow: Workflow, evaluator: Evaluator, *, row: Mapping[str, Any] | None = None) -> None:
        """Score `workflow`'s agents as they finish (before it runs)."""
        known = self._owners.get(id(evaluator))
        if known is None or known[0] is not evaluator:
            known = self._owners[id(evaluator)] = (
                evaluator,
                {t.owner: t for t in evaluator.targets if t.agent is not None},
            )
        self._runs[workflow.id] = _Run(workflow, evaluator, row, known[1])

    def __call__(self, event: Event) -> None:
        run = self._runs.get(event.workflow_id or "")
        if run is None:
            return
        if event.type is EventType.WORKFLOW_FINISHED:
            self._ended(run)
            return
        if event.agent is None:
            return
        run.ended.add(event.agent)
        target = run.owners.get(event.agent)
        if target is not None:
            if not target.reads or target.reads <= run.ended:
                self._score(run, target)
            else:
                run.waiting = [*(run.waiting or ()), target]
        if run.waiting:  # expectations that read this agent's output may now be scored
            ready = [t for t in run.waiting if t.reads <= run.ended]
            if ready:
                run.waiting = [t for t in run.waiting if t not in ready]
                for waiting in ready:
                    self._score(run, waiting)

    def _score(self, run: _Run, target: _Target) -> None:
        workflow = run.workflow
        agent = workflow.get_agent_by_name(target.owner)  # this run's (the evaluator may be a template's)
        assert agent is not None
        # Only the outputs its expectations can read (its own, and the agents in `reads`): the
        # same lookups as over every agent's, without building them all at each agent's end.
        if target.reads:
            recorded = {a.name: _live(a) for a in workflow.agents if a is agent or a.name in target.reads}
        else:
            recorded = {agent.name: _live(agent)}
        pending: list[Any] = []
        outcomes = run.evaluator.score(
            target, workflow, recorded, outputs_of(recorded), run.row, self.engine, run.judge_cost, pending
        )
        run.scored[target.owner] = (agent.result, outcomes)
        if pending:
            task = asyncio.ensure_future(self._judged(run, target, outcomes, pending))
            run.judging = [*(run.judging or ()), task]
        else:
            self._tell_soon(_checked(workflow, target.owner, outcomes))

    def _ended(self, run: _Run) -> None:
        """The run ended (its outputs are set): when no judge is still asking and nothing waits,
        its agents' outcomes and the workflow's own (when they need no judge) are told now, before
        the sinks after this one hear of the end (events.jsonl then closes with ``workflow_finished``)."""
        if self._told:
            self._flush()
        if run.judging and not all(task.done() for task in run.judging) or run.waiting:
            return
        for target in run.evaluator.targets:
            if target.agent is None and not any(e.needs_judge for e in target.expectations):
                workflow = run.workflow
                recorded = {a.name: _live(a) for a in workflow.agents}
                pending: list[Any] = []
                outcomes = run.evaluator.score(
                    target, workflow, recorded, outputs_of(recorded), run.row, self.engine, run.judge_cost, pending
                )
                run.scored[target.owner] = (None, outcomes)
                self._tell(workflow, target.owner, outcomes)

    async def _judged(self, run: _Run, target: _Target, outcomes: list[Outcome], pending: list[Any]) -> None:
        # The agents this end released start first (their tasks were made after this one, in the
        # same turn): a judge's reservation then comes after theirs, as when judges came last.
        await asyncio.sleep(0)
        await asyncio.gather(*pending)
        self._tell(run.workflow, target.owner, outcomes)

    def _tell_soon(self, event: Event) -> None:
        """Emit after the agent_finished being delivered has reached every sink (the next turn;
        the outcomes of every run told in one turn go out together)."""
        self._told.append(event)
        if len(self._told) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        told, self._told = self._told, []
        for event in told:
            self.engine.emit(event)

    def _tell(self, workflow: Workflow, owner: str, outcomes: list[Outcome]) -> None:
        self.engine.emit(_checked(workflow, owner, outcomes))

    async def finish(self, workflow: Workflow, *, score: bool = True) -> dict[str, Any] | None:
        """Complete `workflow`'s evaluation now that it has ended; returns (and stores) its document.

        With `score` false (the run was interrupted) the judges still asking are cancelled and
        nothing is stored (the run has no evaluation, as before it was scored live).
        """
        run = self._runs.pop(workflow.id, None)
        if run is None:
            return None
        if self._told:
            self._flush()
        if not score:
            for task in run.judging or ():
                task.cancel()
            if run.judging:
                await asyncio.gather(*run.judging, return_exceptions=True)
            return None
        if run.judging:
            await asyncio.gather(*run.judging)
        recorded: dict[str, Any] | None = None  # every agent's result, made only when something is left
        outputs: dict[str, Any] = {}
        pending: list[Any] = []
        late: list[tuple[str, list[Outcome]]] = []
        per_target = []
        for target in run.evaluator.targets:
            scored = run.scored.get(target.owner)
            agent = workflow.get_agent_by_name(target.owner) if target.agent is not None else None
            if scored is not None and (scored[0] is agent.result if agent is not None else target.agent is None):
                per_target.append((target, scored[1]))  # scored as its agent (or the run) ended
                continue
            if recorded is None:
                recorded = {a.name: _live(a) for a in workflow.agents}
                outputs = outputs_of(recorded)
            outcomes = run.evaluator.score(
                target, workflow, recorded, outputs, run.row, self.engine, run.judge_cost, pending
            )
            per_target.append((target, outcomes))
            late.append((target.owner, outcomes))
        if pending:
            await asyncio.gather(*pending)
        for owner, outcomes in late:
            self._tell(workflow, owner, outcomes)
        document = _document(per_target, run.judge_cost[0], live=True, workflow=workflow)
        workflow.total_cost += run.judge_cost[0]
        workflow.evaluation = document
        return document

    async def close(self) -> None:
        """Cancel the judges of every run not finished (the engine is going away)."""
        runs, self._runs = list(self._runs.values()), {}
        tasks = [task for run in runs for task in run.judging or ()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def checked_data(owner: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """An ``expectations_checked`` event's data: whose (an agent, or ``outputs``), the counts, and
    each expectation that did not pass (name, kind, status, expected, got, reason, score)."""
    counts = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
    passed = counts["pass"]
    return {
        "owner": owner,
        "passed": passed,
        "failed": counts["fail"],
        "errors": counts["error"],
        "skipped": counts["skipped"],
        "total": len(outcomes),
        "outcomes": [o.to_dict() for o in outcomes if o.status != "pass"] if passed != len(outcomes) else [],
    }


def _checked(workflow: Workflow, owner: str, outcomes: list[Outcome]) -> Event:
    agent = None if owner == WORKFLOW_OWNER else owner
    data = checked_data(owner, outcomes)
    protector = workflow.protector
    if protector is not None and data["outcomes"] and not protector.policy.store_content:
        # A run that keeps no content: the event never holds it, so no sink can show it (the
        # live table, the progress log) or write it.
        data["outcomes"] = [outcome_without_content(o) for o in data["outcomes"]]
    return Event(EventType.EXPECTATIONS_CHECKED, workflow.id, agent, data, workflow_name=workflow.name)
