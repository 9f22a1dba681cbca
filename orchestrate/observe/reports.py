"""The run folder: result.json and cost.json, kept current while a run goes on.

A run folder holds ``result.json`` (the workflow and every agent's result,
described by ``schemas/result.schema.json``), ``cost.json`` (see
``schemas/cost.schema.json``) and ``events.jsonl`` (every event, appended and
flushed as it happens). The JSON files are always replaced atomically, so a
reader, or a run killed mid-write, never sees a torn file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.finite import scrub_non_finite
from orchestrate.fsutil import atomic_write_text
from orchestrate.money.costs import CostTracker
from orchestrate.run.events import Event, EventType
from orchestrate.run.waits import WaitClock
from orchestrate.workflow.models import Workflow

__all__ = ["DATASET_KINDS", "SCHEMA_VERSION", "RunRecorder", "new_run_dir", "result_document", "write_json"]

SCHEMA_VERSION = 1
# result.json's "kind" of a run over a data file: "dataset_run" since 2026-12, "batch" before (still read).
DATASET_KINDS = ("dataset_run", "batch")


def new_run_dir(output_dir: Path, workflow_name: str, now: datetime | None = None) -> Path:
    """Create and return ``output_dir/<workflow>-<UTC timestamp>``, unique even within a second."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", workflow_name).strip("-") or "workflow"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            candidate = output_dir / (f"{slug}-{moment}" + (f"-{n}" if n else ""))
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:  # before any call: a bad --output-dir is the user's input
        raise UserInputError(f"{output_dir}: cannot create a run folder: {exc.strerror or exc}") from None
    raise UserInputError(
        f"{output_dir}: cannot create a run folder for {workflow_name!r}: 1000 runs started in the same second"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def result_document(
    workflow: Workflow, *, simulated: bool, run_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The result.json document of `workflow` as it stands now (it shares the results' own
    outputs and metadata: write it out, do not change it)."""
    duration = None
    if workflow.started_at is not None and workflow.completed_at is not None:
        duration = (workflow.completed_at - workflow.started_at).total_seconds()
    agents = []
    for agent in workflow.agents:
        result = agent.result
        llm = agent.llm_config
        row: dict[str, Any] = {
            "name": agent.name,
            "module": agent.module,
            "dependencies": list(agent.dependencies),
            "model": llm.get("model"),
            "tags": list(agent.tags),
            "provider": (result.metadata.get("provider") if result is not None else None) or llm.get("provider"),
        }
        if result is None:
            row.update(
                agent_id=agent.name,
                status=agent.status.value,
                output=None,
                error=None,
                tokens_used=0,
                cost=0.0,
                execution_time=0.0,
                started_at=None,
                completed_at=None,
                retry_count=0,
                metadata={},
            )
        else:
            row.update(result.to_dict())
            meta = result.metadata
            if "usage" in meta:  # a running agent's live counters: not part of the record
                row["metadata"] = {k: v for k, v in meta.items() if k != "usage"}
        agents.append(row)
    document: dict[str, Any] = {
        "kind": "run",  # a workflow run; a dataset run's result.json is "dataset_run"
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "workflow_id": workflow.id,
        "name": workflow.name,
        "description": workflow.description,
        "source": workflow.source,
        "max_parallel_agents": workflow.max_parallel_agents,
        "cost_budget": workflow.cost_budget,
        "timeout": workflow.timeout,
        "allow_partial_completion": workflow.allow_partial_completion,
        "inputs": workflow.input_values,
        "status": workflow.status.value,
        "simulated": simulated,
        # Every agent's calls, the judges' (their own line in cost.json) and a --repeat's later tries'.
        "total_cost": round(sum(a["cost"] for a in agents) + _judge_cost(workflow) + _repeated(workflow, "cost"), 10),
        "total_tokens": sum(a["tokens_used"] for a in agents) + int(_repeated(workflow, "tokens")),
        "retries": sum(a["retry_count"] for a in agents),
        "error": workflow.error,
        "started_at": _iso(workflow.started_at),
        "completed_at": _iso(workflow.completed_at),
        "duration_seconds": duration,
        "outputs": workflow.output_values,
        "tags": list(workflow.tags),
        "agents": agents,
    }
    anomalies = [
        {"agent": a["name"], "anomaly": text}
        for a in agents
        for text in (a.get("metadata") or {}).get("usage_anomalies", ())
    ]
    document["usage_anomalies"] = anomalies
    tries = int(_repeated(workflow, "tries") or 1)  # each try has the budget of its own
    document["budget_overrun"] = budget_overrun(workflow.cost_budget * tries, document["total_cost"], anomalies)
    if workflow.evaluation is not None:
        document["expectations"] = workflow.evaluation
    if workflow.repeats is not None:
        document["repeat"] = dict(workflow.repeats)
    if extra:
        document.update(extra)
    if "reused_agents" in document:  # those carried over, not those merely offered for reuse
        document["reused_agents"] = sorted(a["name"] for a in agents if (a.get("metadata") or {}).get("reused"))
    if workflow.protector is not None:  # data_protection: outputs restored, content withheld
        document = workflow.protector.result_document(document)
    return document


def _judge_cost(workflow: Workflow) -> float:
    return float((workflow.evaluation or {}).get("judge_cost") or 0.0)


def _repeated(workflow: Workflow, name: str) -> float:
    return float((workflow.repeats or {}).get(name) or 0.0)


def budget_overrun(budget: float | None, spent: float, anomalies: list[Any]) -> dict[str, Any] | None:
    """None while spend is within the budget; else what was passed and why.

    Reservations keep an honest provider's spend within the budget, so an
    overrun can only come from usage above a call's reservation.
    """
    if budget is None or spent <= budget + 1e-9:
        return None
    cause = (
        "a provider reported more usage than the call's reserved worst case; later calls were refused"
        if anomalies
        else "spend carried over from a resumed run"
    )
    return {"budget": budget, "spent": spent, "over_by": round(spent - budget, 10), "cause": cause}


def write_json(path: Path, document: Any) -> None:
    """Write `document` as indented JSON with sorted keys (reports diff cleanly), atomically.

    Never NaN or Infinity (invalid JSON for strict parsers): numbers are refused where
    they enter, and any that got through anyway is written as null.
    """
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(scrub_non_finite(document), indent=2, ensure_ascii=False, sort_keys=True, default=str)
    atomic_write_text(path, text + "\n")


class RunRecorder:
    """A sink that keeps a workflow's result.json and cost.json current on disk.

    Files are rewritten when an agent finishes, at most once per `interval`
    seconds (the event log is the per-agent journal), and always on `flush()`.
    """

    def __init__(
        self,
        run_dir: Path,
        workflow: Workflow,
        tracker: CostTracker,
        *,
        simulated: bool,
        extra: Mapping[str, Any] | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir = run_dir
        self.workflow = workflow
        self.tracker = tracker
        self.simulated = simulated
        self.extra = dict(extra or {})
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")
        self.waits = WaitClock()  # its calls' rate-limit waits, wall-clock and summed

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"

    @property
    def cost_path(self) -> Path:
        return self.run_dir / "cost.json"

    def __call__(self, event: Event) -> None:
        if event.workflow_id != self.workflow.id:
            return
        if event.type is EventType.AGENT_RATE_LIMITED:
            self.waits.add(event.timestamp, float(event.data.get("waited") or 0.0))
        elif event.type is EventType.WORKFLOW_FINISHED:
            self.flush()
        elif event.type is EventType.AGENT_FINISHED and self.clock() - self._last >= self.interval:
            self.flush()

    def flush(self) -> dict[str, Any]:
        """Write both reports now; returns the result document."""
        self._last = self.clock()
        document = result_document(self.workflow, simulated=self.simulated, run_id=self.run_dir.name, extra=self.extra)
        document["rate_limit_waits"] = self.waits.as_dict()
        write_json(self.result_path, document)
        write_json(self.cost_path, self.tracker.cost_report(self.workflow.id, document))
        return document
