"""Expectations scored as each agent finishes, and the workflow's as the run ends.

`LiveScoring` is a sink of the engine's ``agent_finished`` events. When an agent
of a run it was told about (`begin`) ends, that agent's expectations are scored
at once: the deterministic kinds there and then, a rubric by its judge, asked
through the engine's executor like any call (the same budgets, rate limits,
retries, cache and batches) while the rest of the run goes on. The outcome is
told as an ``expectations_checked`` event, so the live view and events.jsonl show
a failed expectation as soon as its agent ends: the engine hands this sink an
``agent_finished`` after every other sink (`answers_events`), so the outcome it emits
there and then follows the agent's end everywhere. Expectations that read another
agent's output wait for that agent to end too. A judge's call is reserved against
the run's budgets like an agent's, so it competes with the agents still to run: the
agents released by the same end reserve first, later ones after it.

`settle` is one of the engine's settlers: once a run's agents are done, and before
its ``workflow_finished`` is told, it waits for the judges still asking (or, when the
run was stopped or timed out, cancels them: their expectations are errors, not
judged) and scores what could not be scored earlier (an agent that never ended, one
that ended again, the workflow's own `expect:` on its outputs, judges included), so
every ``expectations_checked`` and every judge's call comes before the run's end in
events.jsonl. `finish`, once the run has ended, assembles the evaluation document,
the same one `Evaluator.evaluate` makes after the run: result.json, results.jsonl
and the reports are as they were.

Only runs with expectations make one (`Evaluator.of` is None otherwise): a workflow
without them has no sink added and pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from orchestrate.run.evaluation import WORKFLOW_OWNER, Evaluator, _document, _live, _Target, outputs_of
from orchestrate.run.events import Event, EventType
from orchestrate.run.protection import outcome_without_content
from orchestrate.workflow.expectations import Outcome
from orchestrate.workflow.models import Agent, AgentResult, Workflow

__all__ = ["LiveScoring", "checked_data"]


class _Run:
    __slots__ = (
        "ended",
        "evaluator",
        "judge_cost",
        "judging",
        "owners",
        "row",
        "scored",
        "settled",
        "waiting",
        "workflow",
    )

    def __init__(
        self, workflow: Workflow, evaluator: Evaluator, row: Mapping[str, Any] | None, owners: dict[str, _Target]
    ) -> None:
        self.workflow = workflow
        self.evaluator = evaluator
        self.row = row
        self.owners = owners
        self.ended: set[str] = set()  # agents whose end was told
        self.waiting: list[_Target] | None = None  # targets reading agents not ended yet
        # Per target: the agent (None: the workflow's own), the result its outcomes were scored on.
        self.scored: dict[str, tuple[Agent | None, AgentResult | None, list[Outcome]]] = {}
        self.judging: list[asyncio.Task[None]] | None = None
        self.judge_cost = [0.0]
        self.settled = False  # everything scored and told before the run's end


class LiveScoring:
    """Scores each agent's expectations as it finishes (a sink; see the module docstring).

    Args:
        engine: Asks the judges (its executor) and is told the outcomes (its `emit`).
    """

    event_types = frozenset({EventType.AGENT_FINISHED})
    answers_events = True  # told after the other sinks: what it emits in answer comes after the event

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._runs: dict[str, _Run] = {}
        self._owners: dict[int, tuple[Evaluator, dict[str, _Target]]] = {}  # per evaluator: its agents' targets
        engine.add_sink(self)
        engine.settlers.append(self.settle)

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
        if run is None or event.agent is None:
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
        run.scored[target.owner] = (agent, agent.result, outcomes)
        if pending:
            task = asyncio.ensure_future(self._judged(run, target, outcomes, pending))
            run.judging = [*(run.judging or ()), task]
        else:
            self.engine.emit(_checked(workflow, target.owner, outcomes))

    def settle(self, workflow: Workflow, cancel: bool) -> Awaitable[None] | None:
        """The engine's settler (see the module docstring): None when nothing is left to wait for."""
        run = self._runs.get(workflow.id)
        if run is None or run.settled:
            return None
        if not run.judging:
            late, pending = self._late(run, engine=None if cancel else self.engine)
            if not pending:  # all decided now: told at once, nothing to await
                run.settled = True
                for owner, outcomes in late:
                    self._tell(workflow, owner, outcomes)
                return None
            return self._settle(run, late, pending, cancel)
        return self._settle(run, None, None, cancel)

    async def _settle(
        self,
        run: _Run,
        late: list[tuple[str, list[Outcome]]] | None,
        pending: list[Any] | None,
        cancel: bool,
    ) -> None:
        judging, run.judging = run.judging, None
        try:
            if judging:
                if cancel:  # stopped or timed out: the judges still asking are not waited for
                    for task in judging:
                        task.cancel()
                await asyncio.gather(*judging, return_exceptions=cancel)
            if late is None:
                late, pending = self._late(run, engine=None if cancel else self.engine)
            if pending:
                await asyncio.gather(*pending)
        except asyncio.CancelledError:  # the run was stopped meanwhile (its judges are cancelled too)
            cancel = True
            raise
        finally:
            if late is not None:  # scored: told, judged or not (else the next call scores them)
                run.settled = True
                for owner, outcomes in late:
                    if cancel:
                        _not_judged(outcomes, run.workflow)
                    self._tell(run.workflow, owner, outcomes)

    def _late(self, run: _Run, *, engine: Any) -> tuple[list[tuple[str, list[Outcome]]], list[Any]]:
        """Score each target not scored on its agent's current result (the workflow's own, an
        agent that never ended or ended again); its judges (with `engine`) left in `pending`."""
        workflow = run.workflow
        recorded: dict[str, Any] | None = None  # every agent's result, made only when something is left
        outputs: dict[str, Any] = {}
        pending: list[Any] = []
        late: list[tuple[str, list[Outcome]]] = []
        for target in run.evaluator.targets:
            scored = run.scored.get(target.owner)
            if scored is not None and scored[0] is not None and scored[0].result is scored[1]:
                continue  # scored as its agent ended
            agent = workflow.get_agent_by_name(target.owner) if target.agent is not None else None
            if recorded is None:
                recorded = {a.name: _live(a) for a in workflow.agents}
                outputs = outputs_of(recorded)
            outcomes = run.evaluator.score(
                target, workflow, recorded, outputs, run.row, engine, run.judge_cost, pending
            )
            run.scored[target.owner] = (agent, agent.result if agent is not None else None, outcomes)
            late.append((target.owner, outcomes))
        return late, pending

    async def _judged(self, run: _Run, target: _Target, outcomes: list[Outcome], pending: list[Any]) -> None:
        # The agents this end released start first (their tasks were made after this one, in the
        # same turn): a judge's reservation then comes after theirs, as when judges came last.
        try:
            await asyncio.sleep(0)
            await asyncio.gather(*pending)
        except asyncio.CancelledError:  # the run was stopped or timed out: not judged, and said so
            _not_judged(outcomes, run.workflow)
            self._tell(run.workflow, target.owner, outcomes)
            raise
        self._tell(run.workflow, target.owner, outcomes)

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
        if not score:
            for task in run.judging or ():
                task.cancel()
            if run.judging:
                await asyncio.gather(*run.judging, return_exceptions=True)
            return None
        if not run.settled:  # a run whose end was told without settling (not the engine's): after it
            await self._settle(run, None, None, False)
        per_target = [(target, run.scored[target.owner][2]) for target in run.evaluator.targets]
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


def _not_judged(outcomes: list[Outcome], workflow: Workflow) -> None:
    """The expectations whose judge was cancelled (the run stopped or timed out first): errors
    that say so, not "not judged" nor a rubric "skipped" as `orchestrate eval` says without --judge."""
    why = "timed out" if (workflow.error or "").startswith("timed out") else "was stopped"
    for i, outcome in enumerate(outcomes):
        if outcome.status == "skipped" or (outcome.status == "error" and outcome.reason == "not judged"):
            outcomes[i] = Outcome(
                outcome.name, outcome.kind, "error", reason=f"not judged: the run {why} before its judge answered"
            )


def checked_data(owner: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """An ``expectations_checked`` event's data: whose (an agent, or ``outputs``), the counts, and
    each expectation that did not pass (name, kind, status, expected, got, reason, score)."""
    failed = errors = skipped = 0
    for outcome in outcomes:  # mostly passes: one comparison each
        status = outcome.status
        if status != "pass":
            if status == "fail":
                failed += 1
            elif status == "error":
                errors += 1
            else:
                skipped += 1
    total = len(outcomes)
    return {
        "owner": owner,
        "passed": total - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "total": total,
        "outcomes": [o.to_dict() for o in outcomes if o.status != "pass"] if failed or errors or skipped else [],
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
