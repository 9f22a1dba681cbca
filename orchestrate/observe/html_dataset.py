"""The report of a dataset run folder (``run --data``): rows, not one run's agents.

A dataset run folder holds ``results.jsonl`` (a line per row), ``rows.jsonl`` (each
row's full result document) and the events of every row. The page shows the
rows' timeline, the workflow's graph coloured by how each agent fared across
rows, each agent's outcomes and its first failure reasons, and, for a few rows
that did not complete, their prompts and answers. Everything is read line by
line: a dataset run of 100,000 rows is never held in memory at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.observe.dataset_report import read_json_lines
from orchestrate.observe.html_svg import Lane, Segment
from orchestrate.observe.summary import status_text

__all__ = ["MAX_EXAMPLE_ROWS", "MAX_ROW_LANES", "DatasetFacts", "read_dataset_run"]

MAX_ROW_LANES = 500
MAX_EXAMPLE_ROWS = 20


@dataclass
class DatasetFacts:
    """What the page shows of a dataset run, gathered in one pass over its files."""

    agents: list[tuple[str, list[str]]] = field(default_factory=list)  # (name, dependencies), file order
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # agent -> status -> rows
    reasons: dict[str, list[str]] = field(default_factory=dict)  # agent -> first distinct errors
    examples: list[dict[str, Any]] = field(default_factory=list)  # rows that did not complete, in full
    lanes: list[Lane] = field(default_factory=list)
    duration: float = 0.0

    def graph_status(self, name: str) -> str:
        """An agent's colour in the graph: completed only if it completed in every row."""
        counts = self.outcomes.get(name) or Counter()
        others = [(n, s) for s, n in counts.items() if s != "completed"]
        return max(others)[1] if others else ("completed" if counts else "pending")


def read_dataset_run(path: Path, events: list[dict[str, Any]]) -> DatasetFacts:
    facts = DatasetFacts()
    rows_file = path / "rows.jsonl"
    if rows_file.is_file():
        # A resumed dataset run appends a row again when it runs it again: only its last document
        # counts. Two passes, so that only the keys, not the documents, are held.
        last = {str(row.get("key")): number for number, row in enumerate(read_json_lines(rows_file))}
        wanted = set(last.values())
        for number, row in enumerate(read_json_lines(rows_file)):
            if number in wanted:
                _add_row(facts, row)
    _row_lanes(facts, events)
    return facts


def _add_row(facts: DatasetFacts, row: dict[str, Any]) -> None:
    agents = [a for a in row.get("agents") or [] if isinstance(a, dict)]
    if not facts.agents:
        facts.agents = [(str(a.get("name")), [str(d) for d in a.get("dependencies") or []]) for a in agents]
    for agent in agents:
        name, status = str(agent.get("name")), str(agent.get("status"))
        facts.outcomes.setdefault(name, Counter())[status] += 1
        error = agent.get("error")
        reasons = facts.reasons.setdefault(name, [])
        if error and status != "completed" and len(reasons) < 3 and error not in reasons:
            reasons.append(str(error))
    if row.get("status") != "completed" and len(facts.examples) < MAX_EXAMPLE_ROWS:
        facts.examples.append(row)


def _row_lanes(facts: DatasetFacts, events: list[dict[str, Any]]) -> None:
    times = [e["timestamp"] for e in events if isinstance(e.get("timestamp"), (int, float))]
    if not times:
        return
    t0 = min(times)
    facts.duration = max(times) - t0
    open_rows: dict[str, Lane] = {}
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        at = event.get("timestamp", t0) - t0
        if kind == "row_started" and len(facts.lanes) < MAX_ROW_LANES:
            lane = Lane(
                f"row {data.get('row')} · {data.get('key')}",
                "running",
                [Segment("attempt", at, at, f"row {data.get('row')}")],
            )
            open_rows[str(event.get("workflow_id"))] = lane
            facts.lanes.append(lane)
        elif kind == "row_finished":
            found = open_rows.pop(str(event.get("workflow_id")), None)
            if found is not None:
                status = str(data.get("status"))
                found.status = found.segments[0].status = status
                found.segments[0].end = at
                found.segments[0].label = f"row {data.get('row')}: {status_text(status)}" + (
                    f": {data.get('error')}" if data.get("error") else ""
                )
        elif kind == "llm_call":
            found = open_rows.get(str(event.get("workflow_id")))
            if found is not None:
                took = float(data.get("duration") or 0.0)
                found.segments.append(Segment("call", at - took, at, f"{event.get('agent')}: {data.get('model')}"))
    for lane in open_rows.values():  # rows still running when the dataset run was stopped
        lane.segments[0].end = facts.duration
