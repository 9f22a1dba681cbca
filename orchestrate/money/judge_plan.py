"""What a workflow's judges may cost, for `plan`: a row per agent whose expectations hold rubrics.

A judge is asked once per rubric of an agent that completed, with the rubric, the
agent's prompt (up to 4,000 characters) and its answer (up to its max_tokens), and
answers at most its own max_tokens; like any agent it may retry and be asked again
for an answer that does not read. Its calls are booked as ``<agent>.judge``; the row
is conditional (the judge is not asked when the agent did not complete, nor inside
an ``any:`` decided without it), so its least is 0.
"""

from __future__ import annotations

from typing import Any

from orchestrate.money.costs import CostTracker
from orchestrate.workflow.expectations import JUDGE_SCHEMA, judge_llm, rubrics
from orchestrate.workflow.models import Workflow

__all__ = ["judge_rows"]

_QUESTION_CHARS = 4000


def judge_rows(
    workflow: Workflow, tracker: CostTracker, finish_of: dict[str, float], *, output_retries: int = 2
) -> list[dict[str, Any]]:
    """The fields of an AgentPlan per judged agent (``<agent>.judge``), after that agent in time."""
    from orchestrate.llm.presets import base_model
    from orchestrate.llm.providers import resolve_provider

    owners: list[tuple[str, str, dict[str, Any], int, list[dict[str, Any]]]] = [
        (a.name, a.module, a.llm_config, a.max_retries, rubrics(a.expect)) for a in workflow.agents
    ]
    owners.append(("outputs", "General", {}, 3, rubrics(workflow.expect)))
    rows = []
    end = max(finish_of.values(), default=0.0)
    for name, module, owner_llm, retries, items in owners:
        if not items:
            continue
        answer_tokens = int(owner_llm.get("max_tokens", 1000)) if owner_llm else 1000
        worst, calls, model = 0.0, 0, ""
        for item in items:
            llm = judge_llm(item.get("judge") or {}, owner_llm)
            model = str(llm.get("model") or "")
            priced = llm.get("price_as") or base_model(resolve_provider(llm), model)
            prompt = f"Rubric: {item['rubric']}\n" + " " * (_QUESTION_CHARS + 4 * answer_tokens)
            messages = [{"role": "system", "content": llm["system"]}, {"role": "user", "content": prompt}]
            per_call = tracker.max_cost(
                priced, messages, int(llm["max_tokens"]), overrides=workflow.prices, response_schema=JUDGE_SCHEMA
            )
            n = (retries + 1) * (output_retries + 1)
            worst += per_call * n
            calls += n
        at = finish_of.get(name, end)
        rows.append(
            {
                "name": f"{name}.judge",
                "module": module,
                "model": model,
                "start": at,
                "finish": at,
                "min_cost": 0.0,
                "max_cost": min(worst, workflow.cost_budget),
                "max_calls": calls,
                "conditional": True,
            }
        )
    return rows
