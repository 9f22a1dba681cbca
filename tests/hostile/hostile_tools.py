"""Tool modules for the hostile tool tests: each records what reached it."""

from __future__ import annotations

from pathlib import Path

CALLS: list[dict[str, object]] = []


def touch(path: str) -> str:
    """Create a file (stands in for any tool with an effect)."""
    Path(path).write_text("made")
    CALLS.append({"path": path})
    return "done"


def no_arguments() -> str:
    """A tool that takes nothing."""
    CALLS.append({})
    return "ok"
