"""A dataset run's run folder: one line per row as it finishes, and reports that stay small.

- ``results.jsonl``: one line per row as it finishes (key, row line, status,
  the workflow's outputs, cost, tokens, seconds, error). A ``kill -9`` leaves
  every line but at most a torn last one, which readers skip and the next
  session ends. A resumed dataset run appends to it: the last line of a key is its state.
- ``rows.jsonl``: each finished row's full result (a single run's result.json
  document), for ``orchestrate show RUN_DIR --row KEY``.
- ``calls.jsonl``: every priced call, with its row key; the journal cost.json
  is made from.
- ``result.json``: counts by status, totals, the slowest and dearest rows;
  rewritten atomically every few seconds and at the end.
- ``cost.json``: shaped like a single run's, every call carrying its ``row``;
  made at the end by streaming the journal (never all calls in memory).
- ``events.jsonl``: every event, written by the event log.

The append-only files are `JsonLines` journals (`orchestrate.observe.journal`):
under the dataset run's group commit, the lines of one turn of the event loop are
written together at its end, and fsynced every second and when the dataset run ends.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate.fsutil import atomic_write_chunks, open_regular_text, read_regular_text
from orchestrate.jsonline import read_line_strict
from orchestrate.money.cost_report import CostTotals, cost_document_head
from orchestrate.money.costs import CallRecord, CostTracker
from orchestrate.observe.eventlog import read_events
from orchestrate.observe.journal import GroupCommit, JsonLines
from orchestrate.observe.reports import SCHEMA_VERSION, result_document, write_json
from orchestrate.run.events import Event, EventType
from orchestrate.run.protection import withheld
from orchestrate.workflow.models import AgentResult, AgentStatus, Workflow

if TYPE_CHECKING:
    from orchestrate.workflow.dataset import BadRow, Row

__all__ = ["DatasetRecorder", "JsonLines", "PriorDatasetRun", "load_prior", "read_json_lines", "row_outputs"]

_TOP = 5


def read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file, skipping a torn or unparsable line."""
    if path.exists():
        yield from read_events(path)


def _numbered_lines(path: Path, torn: set[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line index, object) of a JSON-lines file; the indexes of lines that do not parse go to `torn`."""
    if not path.exists():
        return
    with open_regular_text(path, errors="replace") as handle:  # a pipe in its place: refused, not waited on
        for number, line in enumerate(handle):
            line = line.strip()
            if not line:
                continue
            try:
                value = read_line_strict(line)  # NaN and Infinity, never written, count as torn
            except ValueError:
                torn.add(number)
                continue
            if isinstance(value, dict):
                yield number, value
            else:
                torn.add(number)


def row_outputs(workflow: Workflow) -> dict[str, Any]:
    """What a row produced: the workflow's declared `outputs:`, else the answers of the agents
    nothing depends on (JSON if any, else text)."""
    protector = workflow.protector
    if workflow.outputs:
        return protector.outputs(workflow.output_values) if protector is not None else dict(workflow.output_values)
    needed = {dep for agent in workflow.agents for dep in agent.dependencies}
    outputs: dict[str, Any] = {}
    for agent in workflow.agents:
        if agent.name in needed:
            continue
        result = agent.result
        if result is not None and result.status is AgentStatus.COMPLETED and result.output is not None:
            outputs[agent.name] = result.output.get("json", result.output.get("text"))
    if protector is not None and not protector.policy.store_content:  # not declared: not kept
        return {name: withheld(value) for name, value in outputs.items()}
    return outputs


class PriorDatasetRun:
    """What earlier sessions of a dataset run recorded: the state of each row, and reusable agents."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # key -> its last results.jsonl line (trimmed)
        self.reuse: dict[str, dict[str, AgentResult]] = {}
        self.spent = 0.0
        self.costs = CostTotals()  # of every call in calls.jsonl
        self.torn_calls: set[int] = set()  # lines of calls.jsonl a kill cut short
        self.name: str | None = None
        self.key_column: str | None = None  # the --key it ran with (None: line and digest)
        self.sessions: list[dict[str, Any]] = []  # each earlier session: when, how long, rows, cost

    @property
    def completed(self) -> set[str]:
        return {key for key, row in self.rows.items() if row["status"] == "completed"}


def load_prior(run_dir: Path) -> PriorDatasetRun:
    """Read a dataset run folder for `--resume`: rows done, money spent, agents to carry over."""
    from orchestrate.errors import UserInputError
    from orchestrate.money.amounts import read_spend
    from orchestrate.run.resume import _from_row, refuse_special_files

    refuse_special_files(run_dir)
    if not (run_dir / "results.jsonl").exists() and not (run_dir / "events.jsonl").exists():
        raise UserInputError(f"{run_dir}: not a dataset run folder (no results.jsonl or events.jsonl)")
    prior = PriorDatasetRun()
    try:
        earlier = json.loads(read_regular_text(run_dir / "result.json"))
    except (OSError, ValueError):
        earlier = {}  # killed before its first report: the journals say the rest
    if isinstance(earlier, dict):
        prior.name = earlier.get("name")
        prior.key_column = earlier.get("key")
        prior.sessions = _sessions_of(earlier)
    for line in read_json_lines(run_dir / "results.jsonl"):
        if "key" in line and "status" in line:
            read_spend(line.get("cost"), f"{run_dir / 'results.jsonl'}: row {str(line['key'])[:40]!r}")
            prior.rows[str(line["key"])] = {
                k: line.get(k) for k in ("key", "row", "status", "cost", "tokens", "seconds", "error")
            }
            if line.get("expectations") is not None:  # counted again in evaluation.json when resumed
                prior.rows[str(line["key"])]["expectations"] = line["expectations"]
    for number, call in _numbered_lines(run_dir / "calls.jsonl", prior.torn_calls):
        cost = read_spend(call.get("cost"), f"{run_dir / 'calls.jsonl'}:{number + 1}")
        prior.costs.add(call)
        if not call.get("reused"):
            prior.spent += cost
    done = prior.completed
    key_of: dict[str, str] = {}
    events_path = run_dir / "events.jsonl"
    for event in read_json_lines(events_path):
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "row_started":
            key = str(data.get("key"))
            if key not in done:
                key_of[str(event.get("workflow_id"))] = key
            prior.name = prior.name or event.get("workflow")
        elif kind == "agent_finished":
            row_key = key_of.get(str(event.get("workflow_id")))
            if row_key is None or data.get("status") != "completed" or not data.get("fingerprint"):
                continue
            name = str(event.get("agent"))
            prior.reuse.setdefault(row_key, {})[name] = _from_row(
                name,
                {
                    **data,
                    "metadata": {
                        "model": data.get("model"),
                        "provider": data.get("provider"),
                        "fingerprint": data["fingerprint"],
                    },
                },
                f"{events_path}: {name}",
            )
        elif kind == "row_finished" and data.get("status") == "completed":
            key_of.pop(str(event.get("workflow_id")), None)
            prior.reuse.pop(str(data.get("key")), None)
    return prior


def _sessions_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sessions an earlier result.json lists; one made from its own times when it lists none
    (a folder written before sessions were recorded)."""
    listed = document.get("sessions")
    if isinstance(listed, list):
        return [dict(s) for s in listed if isinstance(s, Mapping)]
    if not document.get("started_at"):
        return []
    return [
        {
            "started_at": document.get("started_at"),
            "completed_at": document.get("completed_at"),
            "duration_seconds": float(document.get("duration_seconds") or 0.0),
            "status": document.get("status"),
            "rows": int(document.get("rows") or 0),
            "cost": float(document.get("total_cost") or 0.0),
        }
    ]


class DatasetRecorder:
    """Keeps a dataset run's run folder: a sink of row outcomes (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        template: Workflow,
        tracker: CostTracker,
        *,
        run_id: str,
        simulated: bool,
        budget: float | None,
        extra: Mapping[str, Any] | None = None,
        prior: PriorDatasetRun | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        commit: GroupCommit | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.template = template
        self.tracker = tracker
        self.run_id = run_id
        self.simulated = simulated
        self.budget = budget
        self.extra = dict(extra or {})
        self.interval = interval
        self.clock = clock
        # Opened calls first: under a group commit a row's calls reach the disk before its result.
        self.calls = JsonLines(run_dir / "calls.jsonl", clock=clock, commit=commit)
        self.full = JsonLines(run_dir / "rows.jsonl", clock=clock, commit=commit)
        self.results = JsonLines(run_dir / "results.jsonl", clock=clock, commit=commit)
        self.counts: dict[str, int] = {}
        self.cost = 0.0
        self.tokens = 0
        self.slowest: list[tuple[float, str, int]] = []
        self.dearest: list[tuple[float, str, int]] = []
        self.failures: list[dict[str, Any]] = []  # the first few, for the summary
        self.started_at = datetime.now(UTC)
        self.completed_at: datetime | None = None
        self.status = "running"
        self.error: str | None = None
        self._last = float("-inf")
        self.previous: dict[str, str] = {}  # earlier sessions: key -> status, unless completed
        self._journaled: dict[str, list[Any]] = {}  # row run id -> [key, calls already in calls.jsonl]
        self.costs = prior.costs if prior is not None else CostTotals()
        self.torn_calls = prior.torn_calls if prior is not None else set()
        self.earlier_sessions = list(prior.sessions) if prior is not None else []
        self.session_rows = 0  # rows this session finished (or refused)
        self.cost_before = prior.spent if prior is not None else 0.0
        if prior is not None:
            self.cost = prior.spent
            for key, row in prior.rows.items():
                self._count(row["status"], 1)
                self.tokens += int(row.get("tokens") or 0)
                self._rank(row)
                if row["status"] != "completed":
                    self.previous[key] = row["status"]

    # -- outcomes -----------------------------------------------------------------------------

    event_types = frozenset({EventType.AGENT_FINISHED, EventType.ROW_STARTED})  # all it reads

    def __call__(self, event: Event) -> None:
        """Journal each agent's calls as it finishes, so a kill loses only the calls in flight."""
        kind = event.type
        if kind is EventType.AGENT_FINISHED:
            entry = self._journaled.get(event.workflow_id or "")
            if entry is not None:
                self._journal(self.tracker.records(event.workflow_id), entry)
        elif kind is EventType.ROW_STARTED and event.workflow_id is not None:
            self._journaled[event.workflow_id] = [event.data["key"], 0]

    def _journal(self, records: list[CallRecord], entry: list[Any]) -> None:
        key, written = entry
        for record in records[written:]:
            if record.reused:  # paid for, and journaled, by an earlier session
                continue
            call = record.to_dict()
            call["row"] = key
            self.calls.write(call)
            self.costs.add(call)
            self.cost += record.cost
        entry[1] = len(records)

    def _count(self, status: str, delta: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + delta

    def _rank(self, line: Mapping[str, Any]) -> None:
        seconds, cost = float(line.get("seconds") or 0.0), float(line.get("cost") or 0.0)
        item = (str(line["key"]), int(line.get("row") or 0))
        for heap, value in ((self.slowest, seconds), (self.dearest, cost)):
            entry = (value, *item)
            if len(heap) < _TOP:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)

    def _line(self, line: dict[str, Any]) -> None:
        key, status = line["key"], line["status"]
        earlier = self.previous.pop(key, None)
        if earlier is not None:
            self._count(earlier, -1)
        self._count(status, 1)
        self.session_rows += 1
        self.results.write(line)
        if status != "completed" and len(self.failures) < 50:
            self.failures.append({k: line.get(k) for k in ("key", "row", "status", "error")})
        self.maybe_flush()

    def row_finished(self, row: Row, workflow: Workflow, records: list[CallRecord], status: str) -> None:
        duration = (
            (workflow.completed_at - workflow.started_at).total_seconds()
            if workflow.completed_at and workflow.started_at
            else 0.0
        )
        cost = round(sum(r.cost for r in records), 10)  # carried-over agents included, as in a single run
        tokens = workflow.total_tokens
        error = workflow.error
        if error is None and status != "completed":
            error = next(
                (
                    f"{a.name}: {a.result.error}"
                    for a in workflow.agents
                    if a.result is not None and a.result.error and a.result.status is not AgentStatus.COMPLETED
                ),
                None,
            )
        entry = self._journaled.pop(workflow.id, None)
        self._journal(records, entry or [row.key, 0])
        self.tokens += tokens
        document = result_document(
            workflow,
            simulated=self.simulated,
            run_id=self.run_dir.name,
            extra={"key": row.key, "row": row.line, **({"columns": row.columns} if row.columns else {})},
        )
        document["status"] = status
        self.full.write(document)
        line = {
            "key": row.key,
            "row": row.line,
            "status": status,
            "outputs": row_outputs(workflow),
            "cost": cost,
            "tokens": tokens,
            "seconds": round(duration, 6),
            "error": error,
        }
        if workflow.evaluation is not None:
            from orchestrate.run.evaluation import row_line

            scored = row_line(workflow.evaluation)
            protector = workflow.protector
            if protector is not None and not protector.policy.store_content:  # expected and got quote content
                from orchestrate.run.protection import evaluation_without_content

                scored = evaluation_without_content(scored)
            line["expectations"] = scored
        self._rank(line)
        self._line(line)

    def row_invalid(self, bad: BadRow) -> None:
        key = bad.key if bad.key is not None else f"{bad.line}-invalid"
        self._line(
            {
                "key": key,
                "row": bad.line,
                "status": "invalid",
                "outputs": {},
                "cost": 0.0,
                "tokens": 0,
                "seconds": 0.0,
                "error": bad.reason,
            }
        )

    def row_refused(self, row: Row, reason: str | None = None) -> None:
        self._line(
            {
                "key": row.key,
                "row": row.line,
                "status": "budget_exceeded",
                "outputs": {},
                "cost": 0.0,
                "tokens": 0,
                "seconds": 0.0,
                "error": reason or f"not started: the dataset budget of ${self.budget or 0:.4f} is spent",
            }
        )

    # -- reports ------------------------------------------------------------------------------

    def maybe_flush(self) -> None:
        if self.clock() - self._last >= self.interval:
            self.flush()

    def document(self) -> dict[str, Any]:
        """result.json of the dataset run as it stands."""
        end = self.completed_at or datetime.now(UTC)
        rows = sum(self.counts.values())
        wf = self.template
        session = {
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_seconds": (end - self.started_at).total_seconds(),
            "status": self.status,
            "rows": self.session_rows,
            "cost": round(self.cost - self.cost_before, 10),
        }
        sessions = [*self.earlier_sessions, session]
        first = sessions[0].get("started_at") or session["started_at"]
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "dataset_run",  # "batch" before 2026-12; readers take both
            "run_id": self.run_dir.name,
            "name": wf.name,
            "description": wf.description,
            "source": wf.source,
            "status": self.status,
            "simulated": self.simulated,
            "budget": self.budget,
            "cost_budget_per_row": wf.cost_budget,
            "max_parallel_agents": wf.max_parallel_agents,
            "rows": rows,
            "counts": {status: n for status, n in sorted(self.counts.items()) if n},
            "total_cost": round(self.cost, 10),
            "total_tokens": self.tokens,
            "spent_and_reserved": round(self.tracker.spent(self.run_id) + self.tracker.reserved(self.run_id), 10),
            "error": self.error,
            # Across every session of a resumed run: its first start, the time spent running.
            "started_at": first,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_seconds": round(sum(float(s.get("duration_seconds") or 0.0) for s in sessions), 6),
            "sessions": sessions,
            "slowest_rows": [{"key": k, "row": r, "seconds": v} for v, k, r in sorted(self.slowest, reverse=True)],
            "dearest_rows": [{"key": k, "row": r, "cost": v} for v, k, r in sorted(self.dearest, reverse=True)],
            **self.extra,
        }

    def flush(self) -> dict[str, Any]:
        self._last = self.clock()
        document = self.document()
        write_json(self.run_dir / "result.json", document)
        return document

    def finish(self, status: str, error: str | None = None) -> dict[str, Any]:
        """Close the journals and write result.json and cost.json for the last time."""
        self.status, self.error = status, error
        self.completed_at = datetime.now(UTC)
        for journal in (self.results, self.full, self.calls):
            journal.close()
        models = self.costs.document().get("models") or []
        prices = {m: self.tracker.price_of(m) for m in models if isinstance(m, str)}
        write_cost_document(self.run_dir, self.document(), self.costs, self.torn_calls, prices=prices)
        return self.flush()


def write_cost_document(
    run_dir: Path,
    result_doc: Mapping[str, Any],
    costs: CostTotals,
    torn: set[int] | frozenset[int] = frozenset(),
    *,
    prices: Mapping[str, Mapping[str, float]] | None = None,
) -> None:
    """cost.json of a dataset run: its `costs` summed already, then every call streamed from calls.jsonl
    (never all in memory), less the lines of earlier sessions a kill cut short (`torn`).

    Shaped as `schemas/cost.schema.json` asks: `workflow_id` is the dataset run's id (each call
    carries its row), `prices_used` the prices of its models (empty when not known, as after a merge).
    """
    calls_path = run_dir / "calls.jsonl"
    document = {
        **cost_document_head(
            result_doc,
            workflow_id=str(result_doc.get("run_id") or ""),
            budget=result_doc.get("budget"),
            kind="dataset_run",
        ),
        **costs.document(),
        "prices_used": dict(prices or {}),
        "calls": "\x00CALLS\x00",
    }
    head, tail = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True).split('"\\u0000CALLS\\u0000"')

    def chunks() -> Iterator[str]:
        yield head + "["
        first = True
        if calls_path.exists():
            with open_regular_text(calls_path, errors="replace") as handle:
                for number, line in enumerate(handle):
                    line = line.strip()
                    if not line or number in torn:
                        continue
                    yield ("\n    " if first else ",\n    ") + line
                    first = False
        yield ("\n  ]" if not first else "]") + tail + "\n"

    atomic_write_chunks(run_dir / "cost.json", chunks())
