"""Resuming a run: which agents of an earlier run folder can be carried over.

The earlier run's journal (events.jsonl, flushed as each agent finishes) is
read first, then its result.json fills in anything the journal lacks, so a run
killed with SIGKILL resumes as well as one stopped with Ctrl-C. Only completed
agents are candidates; each carries the fingerprint of its definition and of
the exact prompt it was sent (which holds its inputs and upstream outputs).
The scheduler reuses a candidate only when the agent's fingerprint in the new
run is the same, so a changed agent, input or upstream answer runs again while
everything else is kept.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow

__all__ = ["fingerprint", "plan_resume", "prior_results"]


def fingerprint(agent: Agent, prompt: str) -> str:
    """A digest of what decides an agent's answer: its definition and its rendered prompt.

    The definition is hashed through `repr` (with llm_config's keys sorted), which
    is stable for the same workflow file and several times cheaper than JSON.
    """
    # `batch` says how the call is sent, not what it asks: switching it keeps the answers.
    llm = agent.llm_config
    config = sorted(llm.items()) if "batch" not in llm else sorted(i for i in llm.items() if i[0] != "batch")
    definition = repr((config, agent.tools, agent.output_schema, agent.dependencies))
    digest = hashlib.blake2b(definition.encode(), digest_size=16)
    digest.update(b"\x00")
    digest.update(prompt.encode())
    return digest.hexdigest()


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _from_row(name: str, row: dict[str, Any]) -> AgentResult:
    metadata = dict(row.get("metadata") or {})
    return AgentResult(
        agent_id=name, status=AgentStatus.COMPLETED, output=row.get("output"),
        tokens_used=int(row.get("tokens_used") or 0), cost=float(row.get("cost") or 0.0),
        execution_time=float(row.get("execution_time") or 0.0),
        started_at=_parse_time(row.get("started_at")), completed_at=_parse_time(row.get("completed_at")),
        retry_count=int(row.get("retry_count") or 0), metadata=metadata)


def prior_results(run_dir: Path) -> tuple[str | None, dict[str, AgentResult]]:
    """The workflow name and the completed agents recorded in a run folder."""
    from orchestrate.observe.eventlog import read_events

    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: --resume needs a run folder (holding events.jsonl or result.json)")
    name: str | None = None
    found: dict[str, AgentResult] = {}
    result_path = run_dir / "result.json"
    if result_path.exists():
        try:
            document = json.loads(result_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserInputError(f"{result_path}: not valid JSON: {exc}") from exc
        name = document.get("name")
        for row in document.get("agents", []):
            if row.get("status") == "completed" and row.get("metadata", {}).get("fingerprint"):
                found[row["name"]] = _from_row(row["name"], row)
    events_path = run_dir / "events.jsonl"
    if events_path.exists():
        for event in read_events(events_path):
            data = event.get("data") or {}
            if event.get("type") == "workflow_started":
                name = name or data.get("name")
            if event.get("type") != "agent_finished" or not event.get("agent"):
                continue
            if data.get("status") == "completed" and data.get("fingerprint"):
                found[event["agent"]] = _from_row(event["agent"], {
                    **data, "metadata": {**data.get("metadata", {}), "model": data.get("model"),
                                         "provider": data.get("provider"),
                                         "fingerprint": data["fingerprint"]}})
    if name is None and not found:
        raise UserInputError(f"{run_dir}: no events.jsonl or result.json to resume from")
    return name, found


def plan_resume(run_dir: Path, workflow: Workflow) -> dict[str, AgentResult]:
    """Candidates for reuse in `workflow`, by agent name; the scheduler checks fingerprints."""
    name, found = prior_results(run_dir)
    if name is not None and name != workflow.name:
        raise UserInputError(f"{run_dir}: this run folder is of workflow {name!r}, not {workflow.name!r}")
    return {agent.name: found[agent.name] for agent in workflow.agents if agent.name in found}
