"""Approvals: a person's decision on an agent with `approval:`, kept in the run folder.

A decision says who decided, when, approved or rejected, and why (a note). It
comes from `orchestrate approve RUN_DIR AGENT` (written to the run folder's
``approvals.json``, atomically, and appended to its ``events.jsonl``), from
`run --approve AGENT` / `--approve-all` (decided up front for unattended
runs), or from the y/N question `orchestrate run` asks in a terminal. Every
decision a run used is in its result.json (the agent's ``metadata.approval``)
and its events.jsonl (``approval_decided``): an audit trail a compliance
officer can read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import MAX_RESULT_BYTES, atomic_write_text, read_bytes_capped

__all__ = [
    "APPROVALS_FILE",
    "Decision",
    "check_unclaimed",
    "claim_approvals",
    "current_user",
    "read_decisions",
    "record_decision",
    "write_decisions",
]

APPROVALS_FILE = "approvals.json"


@dataclass(frozen=True, slots=True)
class Decision:
    """Approved or rejected, by whom, when (UTC ISO 8601), with an optional note."""

    agent: str
    approved: bool
    by: str
    at: str
    note: str | None = None
    source: str = "approve"  # "approve" (the command), "--approve", "--approve-all", "terminal"

    @classmethod
    def now(cls, agent: str, approved: bool, by: str, *, note: str | None = None, source: str = "approve") -> Decision:
        return cls(agent, approved, by, datetime.now(UTC).isoformat(), note, source)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decision"] = "approved" if self.approved else "rejected"
        return data


KIND = "approvals"
_MAX_BYTES = 64 << 20  # a decision is a few hundred bytes


def _load(path: Path) -> Any:
    """The document in `path`, read as a regular file within a limit (a pipe or device put in its
    place is refused, never waited on).

    Raises:
        OSError: It cannot be read, or it is not a regular file (`NotRegularFileError`).
        ValueError: It is not JSON, too large (`TooLargeError`), or another kind of document.
    """
    document = json.loads(read_bytes_capped(path, _MAX_BYTES, special=False).decode("utf-8"))
    # `kind` is written since 2026-12; a file from before has none and is read as it always was.
    if isinstance(document, dict) and document.get("kind", KIND) != KIND:
        raise ValueError(f"a document of kind {document.get('kind')!r}, not {KIND!r}")
    return document


def read_decisions(run_dir: Path) -> dict[str, Decision]:
    """The decisions recorded in a run folder (none when it has no approvals.json)."""
    path = run_dir / APPROVALS_FILE
    if not path.exists():
        return {}
    try:
        document = _load(path)
        rows = document["decisions"]
        return {
            name: Decision(
                agent=name,
                approved=_strict_bool(row["approved"], name),
                by=str(row["by"]),
                at=str(row["at"]),
                note=row.get("note"),
                source=str(row.get("source", "approve")),
            )
            for name, row in rows.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserInputError(f"{path}: not a valid approvals file ({type(exc).__name__}: {exc})") from None


def _strict_bool(value: Any, name: str) -> bool:
    """`approved` as written by `orchestrate approve`: true or false, nothing else.

    ``"false"``, ``"no"``, ``0`` or NaN are truthy or ambiguous in Python; an approval
    that was not clearly given must never count as given.
    """
    if value is True or value is False:
        return value
    raise ValueError(f"decision of {name!r}: 'approved' must be true or false, not {json.dumps(value)[:40]}")


def write_decisions(run_dir: Path, decisions: dict[str, Decision]) -> None:
    """Write `decisions` to the run folder's approvals.json, atomically (keeping which were acted on)."""
    document: dict[str, Any] = {
        "kind": KIND,
        "schema_version": 1,
        "decisions": {name: d.to_dict() for name, d in sorted(decisions.items())},
    }
    acted = _acted_on(run_dir)
    if acted:
        document["acted_on"] = acted
    _write(run_dir, document)


def _write(run_dir: Path, document: dict[str, Any]) -> None:
    atomic_write_text(
        run_dir / APPROVALS_FILE, json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def _acted_on(run_dir: Path) -> dict[str, Any]:
    try:
        document = _load(run_dir / APPROVALS_FILE)
    except (OSError, ValueError):
        return {}
    acted = document.get("acted_on") if isinstance(document, dict) else None
    return dict(acted) if isinstance(acted, dict) else {}


def check_unclaimed(run_dir: Path, agents: list[str]) -> None:
    """Refuse at once (before anything is said or made) when one of `agents` was acted on already.

    `claim_approvals` makes the same check under the lock; this one only lets the
    usual case fail before the run starts.
    """
    _refuse_acted_on(run_dir, agents, _acted_on(run_dir))


def _refuse_acted_on(run_dir: Path, agents: list[str], acted: dict[str, Any]) -> None:
    for name in agents:
        earlier = acted.get(name)
        if earlier is not None:
            where = earlier.get("run_dir") if isinstance(earlier, dict) else None
            at = earlier.get("at") if isinstance(earlier, dict) else None
            raise UserInputError(
                f"{run_dir}: the approval of {name!r} was already acted on by the resumed run {where} "
                f"(at {at}); an approval runs its agent once: resume {where} instead"
            )


def claim_approvals(run_dir: Path, agents: list[str], by_run: Path) -> None:
    """Record that the resumed run `by_run` acts on the approvals of `agents` in `run_dir`: once only.

    An approval lets its agent run once. Resuming the same waiting folder a second
    time (after an interruption, or twice at once) would run the approved agent (a
    payment, a posting) again; the second resume is refused instead, naming the run
    that acted on it, which is the one to resume. The check and the record are made
    under an exclusive lock on the folder, so two resumes at once cannot both pass.

    Raises:
        UserInputError: One of `agents` was acted on already by another run.
    """
    if not agents:
        return
    import fcntl

    handle = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            document = _load(run_dir / APPROVALS_FILE)
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{run_dir / APPROVALS_FILE}: cannot be read ({exc})") from None
        if not isinstance(document, dict):
            raise UserInputError(f"{run_dir / APPROVALS_FILE}: not a valid approvals file (not an object)")
        document["kind"] = KIND  # a file from before kinds gets one as it is rewritten
        acted = document.get("acted_on")
        acted = dict(acted) if isinstance(acted, dict) else {}
        _refuse_acted_on(run_dir, agents, acted)
        moment = datetime.now(UTC).isoformat()
        for name in agents:
            acted[name] = {"run_dir": str(by_run), "at": moment}
        document["acted_on"] = acted
        _write(run_dir, document)
    finally:
        os.close(handle)  # releases the lock


def record_decision(run_dir: Path, decision: Decision) -> None:
    """Add a decision to a run folder: approvals.json, and an event in events.jsonl.

    Raises:
        UserInputError: when the folder is not a run, the agent is not in it or has
            no approval, or it was already decided.
    """
    result_path = run_dir / "result.json"
    if not run_dir.is_dir() or not result_path.exists():
        raise UserInputError(f"{run_dir}: not a run folder (no result.json)")
    from orchestrate.run.resume import refuse_special_files

    refuse_special_files(run_dir)  # a pipe as events.jsonl would hold the append below forever
    try:
        document = json.loads(read_bytes_capped(result_path, MAX_RESULT_BYTES, special=False).decode("utf-8"))
    except OSError as exc:
        raise UserInputError(f"{result_path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserInputError(f"{result_path}: not valid JSON: {exc}") from None
    agents = document.get("agents") if isinstance(document, dict) else None
    if not isinstance(agents, list):
        raise UserInputError(f"{result_path}: not a run's result.json (no list of agents)")
    rows = {row["name"]: row for row in agents if isinstance(row, dict) and isinstance(row.get("name"), str)}
    row = rows.get(decision.agent)
    if row is None:
        names = ", ".join(sorted(rows)) or "none"
        raise UserInputError(f"{run_dir}: no agent {decision.agent!r} in this run (agents: {names})")
    if row.get("status") != "waiting_approval":
        waiting = sorted(n for n, r in rows.items() if r.get("status") == "waiting_approval")
        hint = f"; waiting: {', '.join(waiting)}" if waiting else "; no agent is waiting for approval"
        raise UserInputError(
            f"{run_dir}: agent {decision.agent!r} is {row.get('status')}, not waiting for approval{hint}"
        )
    decisions = read_decisions(run_dir)
    earlier = decisions.get(decision.agent)
    if earlier is not None:
        verb = "approved" if earlier.approved else "rejected"
        raise UserInputError(
            f"{run_dir}: agent {decision.agent!r} was already {verb} by {earlier.by} "
            f"at {earlier.at}; resume the run to act on it"
        )
    decisions[decision.agent] = decision
    write_decisions(run_dir, decisions)
    events = run_dir / "events.jsonl"
    line = json.dumps(
        {
            "type": "approval_decided",
            "workflow_id": document.get("workflow_id"),
            "workflow": document.get("name"),
            "agent": decision.agent,
            "timestamp": datetime.now(UTC).timestamp(),
            "data": decision.to_dict(),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    torn = events.exists() and events.stat().st_size > 0 and not events.read_bytes().endswith(b"\n")
    with events.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if torn else "") + line + "\n")


def current_user() -> str:
    """Who is deciding, when no one is named: the operating system's user name, else ``unknown``."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container: say so rather than guess
        return "unknown"
