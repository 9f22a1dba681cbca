"""Approvals as a person meets them: the question, what it is about, and who decided what, when and how.

A run waiting on a person shows which agent waits, its question, the answers
of the agents it depends on (what the question is about) and the command that
decides it. A decided approval shows who, when, how (`orchestrate approve`,
the terminal, ``--approve``, ``--approve-all``) and the note. All from a result
document (result.json as a dict).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate.observe.answer import agent_answer, default_width, fit, inline

__all__ = ["approval_lines", "decided", "how_decided", "pending", "when_decided"]

_HOW = {
    "approve": "with orchestrate approve",
    "terminal": "in the terminal",
    "--approve": "by run --approve",
    "--approve-all": "by run --approve-all",
}


def how_decided(source: Any) -> str:
    """``with orchestrate approve``, ``in the terminal``, ``by run --approve-all``."""
    return _HOW.get(str(source), f"by {source}")


def when_decided(at: Any) -> str:
    """An ISO time as ``2026-12-03 15:07:22 UTC`` (seconds, the zone named)."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return str(at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pending(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The agents waiting for a decision: name, question, and the upstream answers it is about."""
    agents = {str(a.get("name")): a for a in document.get("agents", []) if isinstance(a, Mapping)}
    found = []
    for name, agent in agents.items():
        if agent.get("status") != "waiting_approval":
            continue
        approval = (agent.get("metadata") or {}).get("approval") or {}
        about = {
            dep: agent_answer(agents[dep])
            for dep in agent.get("dependencies") or []
            if dep in agents and agents[dep].get("status") == "completed"
        }
        found.append({"agent": name, "message": approval.get("message"), "about": about})
    return found


def decided(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The approvals decided in this run (or carried into it): agent, decision, by, at, how, note."""
    found = []
    for agent in document.get("agents", []):
        approval = (agent.get("metadata") or {}).get("approval") if isinstance(agent, Mapping) else None
        if not isinstance(approval, Mapping) or "decision" not in approval:
            continue
        found.append(
            {
                "agent": str(agent.get("name")),
                "decision": approval.get("decision"),
                "by": approval.get("by"),
                "at": approval.get("at"),
                "how": how_decided(approval.get("source")),
                "source": approval.get("source"),
                "note": approval.get("note"),
                "message": approval.get("message"),
            }
        )
    return found


def _verb(decision: Any) -> str:
    text = str(decision)
    return {"approve": "approved", "approved": "approved", "reject": "rejected", "rejected": "rejected"}.get(text, text)


def approval_lines(
    document: Mapping[str, Any], run_dir: Path | str | None = None, *, width: int | None = None
) -> list[str]:
    """``waiting for approval:`` (each question, what it is about, the command) and ``approvals:`` (decided)."""
    room = width or default_width()
    lines: list[str] = []
    waiting = pending(document)
    if waiting:
        lines.append("waiting for approval:")
        for item in waiting:
            lines.append(f"  {item['agent']}: {item['message'] or '(no question recorded)'}")
            for dep, value in item["about"].items():
                prefix = f"    {dep}: "
                text, _ = fit(inline(value), max(room - len(prefix), 20))
                lines.append(prefix + text)
            if run_dir is not None:
                folder = shlex.quote(str(run_dir))
                lines.append(
                    f"    decide: orchestrate approve {folder} {shlex.quote(item['agent'])} [--reject] [--note TEXT]"
                )
    done = decided(document)
    if done:
        lines.append("approvals:")
        for item in done:
            note = f': "{item["note"]}"' if item.get("note") else ""
            lines.append(
                f"  {item['agent']}: {_verb(item['decision'])} by {item['by']} at {when_decided(item['at'])} "
                f"{item['how']}{note}"
            )
    return lines
