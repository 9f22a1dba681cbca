"""The run folders under a folder, newest first: what `orchestrate runs` lists and `latest` names.

A run folder (a single run's or a dataset run's) is one holding ``result.json``;
its name is ``<workflow>-<UTC time>``, which sorts by time. Only each folder's
result.json is read (a dataset run's is its summary), so listing is quick
however large the runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate.fsutil import MAX_RESULT_BYTES, read_bytes_capped
from orchestrate.observe.reports import DATASET_KINDS

__all__ = ["RunEntry", "find_runs", "newest_run"]

_STAMP = re.compile(r"-(\d{8}T\d{6}Z)(?:-(\d+))?$")


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One run folder as listed: where, what, how it ended, what it cost, when and how long."""

    path: Path
    workflow: str
    kind: str  # "run" or "dataset run"
    status: str
    rows: int | None
    cost: float
    simulated: bool
    started_at: str | None
    duration_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.path),
            "workflow": self.workflow,
            "kind": self.kind,
            "status": self.status,
            "rows": self.rows,
            "cost": self.cost,
            "simulated": self.simulated,
            "started_at": self.started_at,
            "duration_seconds": self.duration_seconds,
        }


def _order(path: Path) -> tuple[str, int, float]:
    match = _STAMP.search(path.name)
    stamp, extra = (match.group(1), int(match.group(2) or 0)) if match else ("", 0)
    try:
        mtime = (path / "result.json").stat().st_mtime
    except OSError:
        mtime = 0.0
    return (stamp, extra, mtime)


def _entry(folder: Path) -> RunEntry | None:
    try:
        document = json.loads(read_bytes_capped(folder / "result.json", MAX_RESULT_BYTES, special=False))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    dataset = (folder / "results.jsonl").exists() or document.get("kind") in DATASET_KINDS
    try:
        cost = float(document.get("total_cost") or 0.0)
    except (TypeError, ValueError):
        cost = 0.0
    duration = document.get("duration_seconds")
    rows = document.get("rows") if dataset else None
    return RunEntry(
        path=folder,
        workflow=str(document.get("name") or folder.name),
        kind="dataset run" if dataset else "run",
        status=str(document.get("status") or "unknown"),
        rows=int(rows) if isinstance(rows, int) else None,
        cost=cost,
        simulated=bool(document.get("simulated")),
        started_at=str(document["started_at"]) if document.get("started_at") else None,
        duration_seconds=float(duration) if isinstance(duration, (int, float)) else None,
    )


def find_runs(base: Path) -> list[RunEntry]:
    """The run folders directly under `base` (or `base` itself if it is one), newest first."""
    if (base / "result.json").is_file():
        folders = [base]
    elif base.is_dir():
        folders = [p for p in base.iterdir() if p.is_dir() and (p / "result.json").is_file()]
    else:
        return []
    entries = [_entry(folder) for folder in sorted(folders, key=_order, reverse=True)]
    return [entry for entry in entries if entry is not None]


def newest_run(base: Path) -> Path | None:
    """The newest run folder under `base`, or None."""
    folders = [p for p in base.iterdir() if p.is_dir() and (p / "result.json").is_file()] if base.is_dir() else []
    return max(folders, key=_order) if folders else None
