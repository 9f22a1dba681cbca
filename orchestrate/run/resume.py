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
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow

__all__ = [
    "definition_digest",
    "definition_text",
    "fingerprint",
    "plan_resume",
    "prior_results",
    "refuse_special_files",
]


def fingerprint(agent: Agent, prompt: str) -> str:
    """A digest of what decides an agent's answer: its definition and its rendered prompt."""
    # One hash of the whole text: the same digest as the definition's hash updated with the
    # rest, without the two updates.
    return _blake2b(f"{definition_text(agent)}\x00{prompt}".encode(), digest_size=16).hexdigest()


def definition_digest(agent: Agent) -> Any:
    """A hash (hashlib object) of an agent's definition, to which `fingerprint` adds the prompt."""
    return hashlib.blake2b(definition_text(agent).encode(), digest_size=16)


def definition_text(agent: Agent) -> str:
    """The text of an agent's definition that its fingerprint hashes.

    Written through `repr` (with llm_config's keys sorted), which is stable for the
    same workflow file and several times cheaper than JSON.
    """
    # `batch` says how the call is sent, not what it asks: switching it keeps the answers.
    function = "" if agent.function is None else f", {agent.function!r}"
    return f"({_config_repr(agent.llm_config)}, {agent.tools!r}, {agent.output_schema!r}, {agent.dependencies!r}{function})"


_blake2b = hashlib.blake2b

# llm_config items as given, and their values' types (1, 1.0 and True are equal keys) -> their text
_CONFIGS: dict[tuple[Any, ...], str] = {}
_PLAIN = frozenset({str, int, float, bool, type(None)})
# The last plain config seen (a copy) and its text; replaced whole, never changed.
_LAST: tuple[dict[str, Any] | None, str] = (None, "")


def _config_repr(llm: dict[str, Any]) -> str:
    """``repr(sorted(llm_config.items()))`` without ``batch``: the same text as ever, kept per
    distinct llm_config of plain values (agents mostly share a few), and built without the
    containers' own repr. (0.0 and -0.0 are one key: a -0.0 may be written as the 0.0 seen first.)"""
    global _LAST
    last, text = _LAST  # read once: another thread may replace it (never change it)
    if llm == last:
        # The config of the agent before (most agents share one): its text, without the key below
        # built and hashed, if each value also has the type of the one it equals (1, 1.0 and True
        # are equal), compared key by key (equal dicts may hold their items in another order).
        for name, value in llm.items():
            if type(value) is not type(last[name]):
                break
        else:
            return text
    types = tuple(map(type, llm.values()))
    key = (tuple(llm.items()), types) if _PLAIN.issuperset(types) else None
    known = _CONFIGS.get(key) if key is not None else None
    if known is not None:
        _LAST = (dict(llm), known)
        return known
    config = sorted(llm.items()) if "batch" not in llm else sorted(i for i in llm.items() if i[0] != "batch")
    text = "[" + ", ".join([f"({name!r}, {value!r})" for name, value in config]) + "]"
    if key is not None:
        if len(_CONFIGS) >= 4096:
            _CONFIGS.clear()
        _CONFIGS[key] = text
        _LAST = (dict(llm), text)  # a copy: the agent's own dict may change later
    return text


MAX_REPORT_BYTES = 256 * 1024 * 1024

_EVENT = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string"}, "agent": {"type": ["string", "null"]}, "data": {"type": "object"}},
}
_FINISHED = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "fingerprint": {"type": ["string", "null"]},
        "tokens_used": {"type": "integer", "minimum": 0},
        "cost": {"type": "number", "minimum": 0},
        "execution_time": {"type": ["number", "null"], "minimum": 0},
        "retry_count": {"type": "integer", "minimum": 0},
        "started_at": {"type": ["string", "null"]},
        "completed_at": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]},
        "provider": {"type": ["string", "null"]},
        "metadata": {"type": "object"},
    },
}


def _parse_time(value: Any, where: str) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserInputError(f"{where}: {value[:40]!r} is not an ISO 8601 time") from None


def _reusable(row: dict[str, Any]) -> bool:
    """A completed agent, or a foreach agent whose completed items can be reused one by one."""
    metadata = row.get("metadata") or {}
    if row.get("status") == "completed" and metadata.get("fingerprint"):
        return True
    return isinstance(metadata.get("items"), list)


def _from_row(name: str, row: dict[str, Any], where: str) -> AgentResult:
    from orchestrate.money.amounts import read_spend

    metadata = dict(row.get("metadata") or {})
    items = metadata.get("items")
    if isinstance(items, list):  # a foreach agent's items are carried over (and booked) one by one
        for k, item in enumerate(items):
            if isinstance(item, dict):
                read_spend(item.get("cost"), f"{where}.metadata.items[{k}]")
    try:
        status = AgentStatus(row.get("status"))
    except ValueError:
        status = AgentStatus.FAILED
    return AgentResult(
        agent_id=name,
        status=status,
        output=row.get("output"),
        tokens_used=int(row.get("tokens_used") or 0),
        cost=read_spend(row.get("cost"), where),
        execution_time=float(row.get("execution_time") or 0.0),
        started_at=_parse_time(row.get("started_at"), f"{where}.started_at"),
        completed_at=_parse_time(row.get("completed_at"), f"{where}.completed_at"),
        retry_count=int(row.get("retry_count") or 0),
        metadata=metadata,
    )


def _read_result(path: Path) -> dict[str, Any]:
    """result.json read back within a size limit, strictly (no NaN), and checked against its schema."""
    from orchestrate.finite import loads_strict
    from orchestrate.fsutil import TooLargeError, read_bytes_capped
    from orchestrate.workflow.schema import report_problem

    try:
        document = loads_strict(read_bytes_capped(path, MAX_REPORT_BYTES, special=False).decode("utf-8"))
    except TooLargeError:
        raise UserInputError(f"{path}: larger than {MAX_REPORT_BYTES:,} bytes; not a result.json") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, not JSON, NaN or Infinity
        raise UserInputError(f"{path}: not valid JSON: {exc}") from None
    problem = report_problem(document, "result")
    if problem is not None:
        raise UserInputError(f"{path}: not a result.json to resume from (tampered?): {problem}")
    return document


def _journal(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The events of a run's journal with their line numbers, each checked; a torn line (a crash
    mid-write) is skipped, a line that parses but is not an event is an error."""
    from orchestrate.finite import loads_strict
    from orchestrate.fsutil import open_regular, read_lines_capped
    from orchestrate.jsonline import MAX_JOURNAL_LINE_BYTES
    from orchestrate.workflow.schema import check_instance

    found: list[tuple[int, dict[str, Any]]] = []
    with open_regular(path) as handle:
        lines = read_lines_capped(handle, path, MAX_JOURNAL_LINE_BYTES, skip_long=True)
        for number, raw in enumerate(lines, 1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event = loads_strict(line)
            except ValueError:
                continue  # torn by a crash: what it recorded is in result.json or is run again
            problem = check_instance(event, _EVENT)
            if problem is None and event.get("type") == "agent_finished":
                problem = check_instance(event.get("data", {}), _FINISHED)
                problem = problem and problem.replace("$", "data", 1).replace("the answer", "data")
            if problem is not None:
                raise UserInputError(
                    f"{path}:{number}: not an event this version can resume from "
                    f"(tampered?): {problem.replace('the answer', 'the line')}"
                )
            found.append((number, event))
    return found


def refuse_special_files(run_dir: Path) -> None:
    """A run folder to resume holds files and folders only: a named pipe would hang the reader,
    a link to a device (``/dev/zero``) fill memory.

    Raises:
        UserInputError: Naming each entry that is neither, and what it is.
    """
    from orchestrate.fsutil import special_entries

    try:
        found = special_entries(run_dir)
    except OSError as exc:
        raise UserInputError(f"{run_dir}: cannot list the run folder: {exc.strerror or exc}") from None
    if found:
        listed = "; ".join(f"{path} is {what}" for path, what in found)
        raise UserInputError(f"{run_dir}: a run folder holds only files orchestrate wrote: {listed}; nothing was run")


def prior_results(run_dir: Path) -> tuple[str | None, dict[str, AgentResult]]:
    """The workflow name and the completed agents recorded in a run folder.

    Both files are checked before anything is taken from them: a tampered result.json or
    journal line is a UserInputError naming the file (and line) and what is wrong.
    """
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: --resume needs a run folder (holding events.jsonl or result.json)")
    refuse_special_files(run_dir)
    name: str | None = None
    found: dict[str, AgentResult] = {}
    result_path = run_dir / "result.json"
    if result_path.exists():
        document = _read_result(result_path)
        name = document.get("name")
        for i, row in enumerate(document.get("agents", [])):
            if _reusable(row):
                found[row["name"]] = _from_row(row["name"], row, f"{result_path}: agents[{i}]")
    events_path = run_dir / "events.jsonl"
    if events_path.exists():
        for number, event in _journal(events_path):
            data = event.get("data") or {}
            if event.get("type") == "workflow_started":
                name = name or (data.get("name") if isinstance(data.get("name"), str) else None)
            if event.get("type") != "agent_finished" or not event.get("agent"):
                continue
            if event.get("try", 1) != 1:  # --repeat K: a later try's answer; the run's are the first's
                continue
            row = {
                **data,
                "metadata": {
                    **data.get("metadata", {}),
                    "model": data.get("model"),
                    "provider": data.get("provider"),
                    "fingerprint": data.get("fingerprint"),
                },
            }
            if data.get("items") is not None:
                row["metadata"]["items"] = data["items"]
            if _reusable(row):
                found[event["agent"]] = _from_row(event["agent"], row, f"{events_path}:{number}")
    if name is None and not found:
        raise UserInputError(f"{run_dir}: no events.jsonl or result.json to resume from")
    return name, found


def _still_valid(agent: Agent, prior: AgentResult) -> bool:
    """True when a carried-over output is one this agent could have produced: a mapping with its
    text and, under an output_schema, JSON that satisfies it (else the agent runs again)."""
    output = prior.output
    if not isinstance(output, dict) or not isinstance(output.get("text"), str):
        return False
    if agent.output_schema is None:
        return True
    from orchestrate.workflow.schema import check_instance

    return "json" in output and check_instance(output["json"], agent.output_schema) is None


def plan_resume(run_dir: Path, workflow: Workflow) -> dict[str, AgentResult]:
    """Candidates for reuse in `workflow`, by agent name; the scheduler checks fingerprints."""
    name, found = prior_results(run_dir)
    if name is not None and name != workflow.name:
        raise UserInputError(f"{run_dir}: this run folder is of workflow {name!r}, not {workflow.name!r}")
    return {
        agent.name: found[agent.name]
        for agent in workflow.agents
        if agent.name in found and _still_valid(agent, found[agent.name])
    }
