"""`foreach`: one call (or code-step run) per item of a list, each with its own result.

Items run in parallel under the workflow's `max_parallel_agents` (a semaphore
of the run shared by every fan-out), each with its own retries and budget
reservations; the agent's `cost_limit` caps the whole fan-out. The agent's
output is the list of item outputs in item order. Every item's status, cost
and fingerprint is kept in ``metadata["items"]``, so `--resume` redoes only
the items that did not complete (or whose prompt changed).

Progress (``items_started``, then ``item_finished`` per item with the counts so far
and how many items wait to try again) is sent only when a sink reads it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from orchestrate.run.events import Event, EventType
from orchestrate.run.executor import AgentExecutor, fold_usage
from orchestrate.run.resume import fingerprint
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow
from orchestrate.workflow.templates import TemplateError, lookup, render, render_value, single_placeholder

__all__ = ["run_items", "step_input"]


def step_input(agent: Agent, inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[Any, str]:
    """What one run of `agent` is given (its prompt, or a code step's arguments) and its text."""
    if agent.function is not None:  # `is_code_step`, without the property's call (every agent asks)
        arguments = render_value(agent.arguments, inputs=inputs, outputs=outputs)
        return arguments, json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)
    prompt = render(agent.prompt_template, inputs=inputs, outputs=outputs)
    return prompt, prompt


def _items_of(agent: Agent, inputs: dict[str, Any], outputs: dict[str, Any]) -> list[Any]:
    ref = single_placeholder(agent.foreach or "")
    if ref is None:
        raise TemplateError(f"foreach {agent.foreach!r} is not one placeholder")
    items = lookup(ref, inputs=inputs, outputs=outputs)
    if not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        raise TemplateError(f"foreach {ref.describe()} is {kind}, not a list")
    limit = agent.max_items or 0
    if len(items) > limit:
        raise TemplateError(
            f"foreach {ref.describe()} has {len(items)} items, more than max_items ({limit}); no item was run"
        )
    return items


def _value(output: dict[str, Any] | None) -> Any:
    if output is None:
        return None
    return output["json"] if "json" in output else output.get("text")


async def run_items(
    workflow: Workflow,
    agent: Agent,
    executor: AgentExecutor,
    outputs: dict[str, Any],
    prior: AgentResult | None,
    slots: asyncio.Semaphore,
    result: AgentResult,
) -> None:
    """Run every item of `agent`'s foreach list, filling in `result` as items finish."""

    items = _items_of(agent, workflow.input_values, outputs)
    count = len(items)
    values: list[Any] = [None] * count
    rows: list[dict[str, Any]] = [{"index": k, "status": "pending"} for k in range(count)]
    result.metadata["items"] = rows
    prior_rows = (prior.metadata.get("items") if prior is not None else None) or []
    prior_values = _value(prior.output) if prior is not None else None
    report = executor.wants(EventType.ITEM_FINISHED)
    live: dict[int, AgentResult] = {}  # items in flight, while progress is reported
    tally = [0, 0]  # items finished, and of those the ones that did not complete
    if report:
        executor.emit(
            Event(EventType.ITEMS_STARTED, workflow.id, agent.name, {"total": count}, workflow_name=workflow.name)
        )

    def finished(k: int) -> None:
        live.pop(k, None)
        row = rows[k]
        tally[0] += 1
        if row["status"] != "completed":
            tally[1] += 1
        executor.emit(
            Event(
                EventType.ITEM_FINISHED,
                workflow.id,
                agent.name,
                {
                    "index": k,
                    "status": row["status"],
                    "error": row.get("error"),
                    "done": tally[0],
                    "failed": tally[1],
                    "total": count,
                    # A failed attempt waiting for its next one is `failed` while its item is in flight.
                    "retrying": sum(1 for sub in live.values() if sub.status is AgentStatus.FAILED),
                },
                workflow_name=workflow.name,
            )
        )

    async def one(k: int) -> None:
        sub = AgentResult(agent_id=f"{agent.name}[{k}]", status=AgentStatus.RUNNING, started_at=datetime.now(UTC))
        digest = None
        try:
            given, text = step_input(agent, {**workflow.input_values, "item": items[k], "item_index": k}, outputs)
            digest = fingerprint(agent, text)
            old = prior_rows[k] if k < len(prior_rows) and isinstance(prior_rows[k], dict) else {}
            if (
                old.get("status") == "completed"
                and old.get("fingerprint") == digest
                and isinstance(prior_values, list)
                and k < len(prior_values)
            ):
                values[k] = prior_values[k]
                cost = float(old.get("cost") or 0.0)
                executor.book_reused(
                    workflow,
                    agent,
                    cost,
                    prior.metadata.get("model") if prior else None,
                    prior.metadata.get("provider") if prior else None,
                )
                rows[k] = {**old, "reused": True}
                result.cost += cost
                result.tokens_used += int(old.get("tokens_used") or 0)
                return
            async with slots:
                if report:
                    live[k] = sub
                if agent.is_code_step:
                    await executor.execute_code(workflow, agent, given, sub)
                else:
                    await executor.execute(workflow, agent, given, sub)
        except TemplateError as exc:
            sub.status, sub.error = AgentStatus.FAILED, str(exc)
        finally:
            fold_usage(sub)
            result.cost += sub.cost
            result.tokens_used += sub.tokens_used
            result.retry_count = max(result.retry_count, sub.retry_count)
            if rows[k].get("status") == "pending":
                if sub.status is AgentStatus.RUNNING:
                    sub.status = AgentStatus.CANCELLED
                rows[k] = {
                    "index": k,
                    "status": sub.status.value,
                    "error": sub.error,
                    "cost": sub.cost,
                    "tokens_used": sub.tokens_used,
                    "retry_count": sub.retry_count,
                    "fingerprint": digest if sub.status is AgentStatus.COMPLETED else None,
                }
                if sub.status is AgentStatus.COMPLETED:
                    values[k] = _value(sub.output)
                for key in ("model", "provider"):
                    if key in sub.metadata:
                        result.metadata[key] = sub.metadata[key]
            if report:
                finished(k)

    await asyncio.gather(*(one(k) for k in range(count)))
    failed = [row["index"] for row in rows if row["status"] != "completed"]
    result.output = {"text": json.dumps(values, ensure_ascii=False, sort_keys=True), "json": values}
    result.metadata["fingerprint"] = fingerprint(agent, json.dumps([r.get("fingerprint") for r in rows]))
    if not failed:
        result.status = AgentStatus.COMPLETED
        return
    first = next(row["error"] for row in rows if row["status"] != "completed")
    summary = f"{len(failed)} of {count} items failed (indexes {failed}); first: {first}"
    if workflow.allow_partial_completion and len(failed) < count:
        result.status = AgentStatus.COMPLETED
        result.metadata["failed_items"] = failed
        result.error = summary
    else:
        result.status = AgentStatus.FAILED
        result.error = summary
