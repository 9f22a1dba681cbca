"""Which run folders are past the retention their audit trail records (deletion stays the user's decision)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from orchestrate.fsutil import open_regular
from orchestrate.observe.audit_chain import AUDIT_FILE

__all__ = ["expired_runs", "retention_of"]

_DAY = 86400.0


def retention_of(run_dir: Path) -> tuple[float, int] | None:
    """(started, retention_days) from the first record of a run's trail, or None without one."""
    try:
        with open_regular(run_dir / AUDIT_FILE) as handle:  # a pipe: no retention read, never a wait
            first = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    data = first.get("data") if isinstance(first, dict) else None
    if not isinstance(data, dict) or first.get("type") != "run_started":
        return None
    try:
        return float(first["time"]), int(data["retention_days"])
    except (KeyError, TypeError, ValueError):
        return None


def expired_runs(folder: Path, *, now: float) -> list[dict[str, Any]]:
    """The run folders directly under `folder` whose retention has passed at `now`, oldest first."""
    found = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        kept = retention_of(run_dir)
        if kept is None:
            continue
        started, days = kept
        until = started + days * _DAY
        if now >= until:
            found.append(
                {
                    "run_dir": str(run_dir),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "retention_days": days,
                    "days_past": int((now - until) // _DAY),
                }
            )
    found.sort(key=lambda item: str(item["started"]))
    return found
