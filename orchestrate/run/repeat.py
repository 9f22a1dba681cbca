"""``--repeat K``: a case (the single run, or a dataset row) tried K times, scored each time.

A model answers differently from one call to the next, so one passing run says
little; K tries give each case a pass rate and pass^K (it passed every try).
Each try is a run of its own, registered in the same engine: its own tracker
accounts with the workflow's ``cost_budget`` (a try's budget, as a row's is), the
same rate limits and clients. The tries after the first are asked fresh: inside
`fresh_answers` the response cache is neither read nor written, or a repeat
would replay the first try's answer. A case's report shows its first try's
answers; its cost, tokens and call records cover every try, and its evaluation
is the tries' `repeated` document.

A dataset run reserves K times a row's worst case before starting it (see
`orchestrate.run.dataset_run`); `orchestrate plan --repeat K` multiplies the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrate.money.costs import agent_key
from orchestrate.run.cache import fresh_answers
from orchestrate.run.evaluation import Evaluator, repeated
from orchestrate.run.events import try_id
from orchestrate.run.live_scoring import LiveScoring
from orchestrate.run.scheduler import RunShape
from orchestrate.workflow.dataset import instantiate
from orchestrate.workflow.models import Workflow

__all__ = ["later_tries", "recorded_try", "repeat_run"]


def later_tries(tries: list[Workflow]) -> dict[str, Any]:
    """The tries after the first: ``{"tries", "cost", "tokens", "runs"}``, what they spent on
    their agents and, in ``runs``, what each answered (`recorded_try`), so that `orchestrate
    eval` can score every try again."""
    cost = tokens = 0.0
    for twin in tries[1:]:
        for agent in twin.agents:
            if agent.result is not None:
                cost += agent.result.cost
                tokens += agent.result.tokens_used
    return {
        "tries": len(tries),
        "cost": round(cost, 10),
        "tokens": int(tokens),
        "runs": [recorded_try(n, twin) for n, twin in enumerate(tries[1:], 2)],
    }


def recorded_try(n: int, workflow: Workflow) -> dict[str, Any]:
    """Try `n` as result.json keeps it: its status, times, outputs, and each agent's status,
    output, cost, seconds and error (what its expectations read)."""
    agents = []
    for agent in workflow.agents:
        result = agent.result
        entry: dict[str, Any] = {"name": agent.name, "status": agent.status.value}
        if result is not None:
            entry.update(
                status=result.status.value,
                output=result.output,
                cost=result.cost,
                execution_time=result.execution_time,
                error=result.error,
            )
            if result.metadata.get("skipped"):
                entry["metadata"] = {"skipped": result.metadata["skipped"]}
        agents.append(entry)
    return {
        "try": n,
        "status": workflow.status.value,
        "started_at": workflow.started_at.isoformat() if workflow.started_at else None,
        "completed_at": workflow.completed_at.isoformat() if workflow.completed_at else None,
        "outputs": dict(workflow.output_values),
        "agents": agents,
    }


async def repeat_run(
    engine: Any,
    workflow: Workflow,
    repeat: int,
    *,
    decisions: Mapping[str, Any] | None = None,
    stopped: Callable[[], bool] = lambda: False,
    scoring: LiveScoring | None = None,
) -> None:
    """Try `workflow` (finished, and evaluated, once already) `repeat` times in all.

    The tries' calls are listed with the workflow's (its cost.json), their spend and
    tokens kept in `workflow.repeats`, and its evaluation becomes the tries' `repeated`
    document. `stopped` ends the tries early (a signal, a failed journal). With `scoring`,
    each try's agents are scored as they finish (else each try once it has ended).
    """
    if repeat <= 1:
        return
    evaluator = Evaluator.of(workflow)
    documents = [workflow.evaluation] if workflow.evaluation is not None else []
    shape = RunShape.of(workflow, shared=True)
    tracker = engine.cost_tracker
    tries = [workflow]
    for n in range(2, repeat + 1):
        if stopped() or getattr(engine, "halted", None):
            break
        twin = instantiate(workflow, workflow.input_values, try_id(workflow.id, n))
        twin.row = workflow.row
        engine.register_run(twin, shape)
        keys = [agent_key(twin.id, a.name) for a in twin.agents]
        live = evaluator is not None and scoring is not None
        if live:
            assert scoring is not None and evaluator is not None
            scoring.begin(twin, evaluator, row=twin.row)
        try:
            with fresh_answers():
                await engine.execute_workflow(twin.id, decisions=decisions)
                if evaluator is not None and (live or not stopped()):
                    keys += evaluator.judge_keys(twin.id)
                    if scoring is not None:
                        await scoring.finish(twin, score=not stopped())
                    else:
                        await evaluator.evaluate(twin, engine=engine, row=twin.row)
        finally:
            engine.forget(twin.id)
            tracker.adopt(workflow.id, tracker.forget(twin.id, keys))
        tries.append(twin)
        if twin.evaluation is not None:
            documents.append(twin.evaluation)
    workflow.repeats = later_tries(tries)
    if documents:
        workflow.evaluation = repeated(documents)
