"""Reading a run folder back for the HTML report: result, costs, events, dataset rows.

The report is built from what is on disk, never from the engine's memory, so
`orchestrate report` rebuilds exactly what the run wrote at its end, from an
archived folder, years later. Per agent it gathers the timeline (attempts,
calls, tool calls, rate-limit waits, back-offs, approvals), the rendered
prompt and the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import MAX_RESULT_BYTES, TooLargeError, read_bytes_capped
from orchestrate.observe.eventlog import read_events
from orchestrate.observe.html_dataset import DatasetFacts, read_dataset_run
from orchestrate.observe.html_svg import Lane, Segment
from orchestrate.observe.reports import DATASET_KINDS

__all__ = ["AgentTrace", "RunFolder", "find_run_folders", "load_run_folder"]


@dataclass
class AgentTrace:
    """What the events say about one agent."""

    name: str
    prompt: str | None = None
    system: str | None = None
    lane: Lane | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {attempt, error, status}
    tools: list[dict[str, Any]] = field(default_factory=list)  # {tool, error}
    rate_limited: float = 0.0


@dataclass
class RunFolder:
    """One run folder, read."""

    path: Path
    result: dict[str, Any]
    cost: dict[str, Any]
    traces: dict[str, AgentTrace]
    duration: float
    rows: list[dict[str, Any]] | None = None  # a dataset batch's results.jsonl
    batch: DatasetFacts | None = None  # a dataset batch's rows.jsonl and row events

    @property
    def name(self) -> str:
        return str(self.result.get("name") or self.path.name)


def find_run_folders(paths: list[Path]) -> list[Path]:
    """Run folders named by `paths`: each a run folder, or a folder of run folders (like runs/)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise UserInputError(f"{path}: no such run folder")
        if (path / "result.json").is_file():
            found.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if (p / "result.json").is_file())
        if not inner:
            raise UserInputError(f"{path}: not a run folder (no result.json in it or in its sub-folders)")
        found.extend(inner)
    return found


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        # A named pipe or a device in its place is refused, never waited on or read without end.
        text = read_bytes_capped(path, MAX_RESULT_BYTES, special=False).decode("utf-8", errors="replace")
    except TooLargeError:
        raise UserInputError(f"{path}: larger than {MAX_RESULT_BYTES:,} bytes; not a file orchestrate wrote") from None
    except FileNotFoundError:
        if required:
            raise UserInputError(f"{path}: not found; is {path.parent} a run folder?") from None
        return {}
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise UserInputError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None  # type: ignore[attr-defined]
    if not isinstance(document, dict):
        raise UserInputError(f"{path}:1:1: expected a JSON object")
    return document


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def load_run_folder(path: Path) -> RunFolder:
    """Read `path` (result.json required; cost.json, events.jsonl and results.jsonl if present)."""
    result = _read_json(path / "result.json", required=True)
    if not isinstance(result.get("agents", []), list):
        raise UserInputError(f"{path / 'result.json'}: 'agents' is not a list; not a run's result")
    cost = _read_json(path / "cost.json", required=False)
    events_path = path / "events.jsonl"
    events = list(read_events(events_path)) if events_path.is_file() else []
    rows = _read_rows(path / "results.jsonl") if (path / "results.jsonl").is_file() else None
    # --repeat K: the agents shown are the first try's, so their lanes are too.
    traces, duration = _timeline(result, [e for e in events if e.get("try", 1) == 1])
    batch = read_dataset_run(path, events) if result.get("kind") in DATASET_KINDS or rows is not None else None
    return RunFolder(path=path, result=result, cost=cost, traces=traces, duration=duration, rows=rows, batch=batch)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Each row's state: the last line of its key (a resumed batch appends), in first-seen order."""
    from orchestrate.observe.dataset_report import read_json_lines

    latest: dict[str, dict[str, Any]] = {}
    for row in read_json_lines(path):  # a line a kill cut short is skipped
        latest[str(row.get("key"))] = row
    return list(latest.values())


def _timeline(result: dict[str, Any], events: list[dict[str, Any]]) -> tuple[dict[str, AgentTrace], float]:
    """Per-agent lanes, in seconds from the workflow's start."""
    agents = [a for a in result.get("agents", []) if isinstance(a, dict)]
    traces = {str(a.get("name")): AgentTrace(str(a.get("name"))) for a in agents}
    times = [e["timestamp"] for e in events if isinstance(e.get("timestamp"), (int, float))]
    starts = [e["timestamp"] for e in events if e.get("type") == "workflow_started"]
    t0 = starts[0] if starts else (_epoch(result.get("started_at")) or (min(times) if times else 0.0))
    end = max(times) if times else (_epoch(result.get("completed_at")) or t0)
    open_attempt: dict[str, Segment] = {}
    open_approval: dict[str, float] = {}
    for event in events:
        name, kind, data = event.get("agent"), str(event.get("type")), event.get("data") or {}
        if name not in traces or not isinstance(event.get("timestamp"), (int, float)):
            continue
        trace, at = traces[name], event["timestamp"] - t0
        lane = trace.lane = trace.lane or Lane(name, "pending")
        if kind == "agent_started":
            if data.get("attempt", 1) == 1 and "prompt" in data:  # folders written before result.json kept it
                trace.prompt, trace.system = data.get("prompt"), data.get("system")
            if lane.segments and lane.segments[-1].kind == "backoff":
                lane.segments[-1].end = at
            segment = Segment("attempt", at, at, f"attempt {data.get('attempt', 1)}")
            open_attempt[name] = segment
            lane.segments.append(segment)
        elif kind == "agent_rate_limited":
            waited = float(data.get("waited") or 0.0)
            trace.rate_limited += waited
            lane.segments.append(Segment("wait", at - waited, at, f"rate-limit wait {waited:.3f}s"))
        elif kind == "llm_call":
            took = float(data.get("duration") or 0.0)
            lane.segments.append(
                Segment(
                    "call",
                    at - took,
                    at,
                    f"{data.get('model')} call, {data.get('input_tokens', 0)}+{data.get('output_tokens', 0)} tokens",
                )
            )
        elif kind == "tool_call":
            took = float(data.get("duration") or 0.0)
            trace.tools.append({"tool": data.get("tool"), "error": data.get("error")})
            lane.segments.append(Segment("tool", at - took, at, f"tool {data.get('tool')}"))
        elif kind == "agent_retrying":
            opened = open_attempt.pop(name, None)
            segment = opened or Segment("attempt", at, at)
            segment.end, segment.status = at, "failed"
            segment.label += f": {data.get('error')}"
            trace.attempts.append({"attempt": data.get("attempt"), "status": "failed", "error": data.get("error")})
            delay = float(data.get("delay") or 0.0)
            lane.segments.append(Segment("backoff", at, at + delay, f"back-off {delay:.3f}s before retrying"))
        elif kind == "agent_finished":
            status = str(data.get("status"))
            lane.status = status
            opened = open_attempt.pop(name, None)
            if opened is not None:
                opened.end, opened.status = at, status
                trace.attempts.append(
                    {"attempt": len(trace.attempts) + 1, "status": status, "error": data.get("error")}
                )
            else:
                lane.markers.append((at, status, f"{status}: {data.get('error') or ''}".rstrip(": ")))
        elif "approval" in kind:  # issue 16's approval events: a wait from request to decision
            if name in open_approval and not any(w in kind for w in ("request", "waiting")):
                lane.segments.append(Segment("approval", open_approval.pop(name), at, kind.replace("_", " ")))
            elif any(w in kind for w in ("request", "waiting")):
                open_approval[name] = at
            lane.markers.append((at, "approval", kind.replace("_", " ")))
    for segment in open_attempt.values():  # a killed run: the attempt was still going
        segment.end = end - t0
    for name, since in open_approval.items():
        traces[name].lane.segments.append(Segment("approval", since, end - t0, "waiting for approval"))  # type: ignore[union-attr]
    for agent in agents:  # no events (an old folder): the result's own times
        trace = traces[str(agent.get("name"))]
        if trace.lane is None:
            trace.lane = Lane(trace.name, str(agent.get("status")))
            start, stop = _epoch(agent.get("started_at")), _epoch(agent.get("completed_at"))
            if start is not None and stop is not None:
                trace.lane.segments.append(Segment("attempt", start - t0, stop - t0, "run", str(agent.get("status"))))
                end = max(end, stop)
        trace.lane.status = str(agent.get("status"))
    return traces, max(end - t0, 0.0)
