"""Looking at a dataset run: its overview, and any one row shown like a single run.

`load_row` streams ``rows.jsonl`` for a key (the last line of a key wins, as
a resumed dataset run appends), so even a 100,000-row dataset run is never read whole;
the row's document has the shape of a single run's result.json and goes to
`run_view`'s renderers unchanged. `dataset_renderables` and `dataset_summary`
show the dataset run itself: counts by status, totals, the slowest and dearest rows
and the first rows that did not complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import MAX_RESULT_BYTES, read_bytes_capped
from orchestrate.money.amounts import usd
from orchestrate.observe.dataset_report import read_json_lines
from orchestrate.observe.tables import Column, build_table

__all__ = [
    "dataset_renderables",
    "dataset_summary",
    "is_dataset_run",
    "load_dataset_run",
    "load_row",
    "session_lines",
]

_FAILED_SHOWN = 20
_COLUMNS = (
    Column("row"),
    Column("line", "right", "number", drop=2),
    Column("status"),
    Column("cost", "right", "number", drop=1),
    Column("why", kind="text", drop=3),
)


def is_dataset_run(path: Path) -> bool:
    """True for a dataset run's folder (or its result.json)."""
    folder = path if path.is_dir() else path.parent
    return (folder / "results.jsonl").exists() or (folder / "rows.jsonl").exists()


def load_dataset_run(path: Path) -> tuple[Path, dict[str, Any]]:
    """The dataset run folder and its result.json."""
    folder = path if path.is_dir() else path.parent
    file = folder / "result.json"
    try:
        document = json.loads(read_bytes_capped(file, MAX_RESULT_BYTES, special=False).decode("utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{folder}: no result.json in this dataset run folder") from None
    except OSError as exc:
        raise UserInputError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UserInputError(f"{file}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UserInputError(f"{file}: not a dataset run result")
    return folder, document


def load_row(path: Path, key: str) -> dict[str, Any]:
    """The full result of row `key` of a dataset run, shaped like a single run's result.json."""
    folder = path if path.is_dir() else path.parent
    rows = folder / "rows.jsonl"
    if not rows.exists():
        raise UserInputError(f"{folder}: not a dataset run folder (no rows.jsonl)")
    found: dict[str, Any] | None = None
    for document in read_json_lines(rows):
        if str(document.get("key")) == key:
            found = document
    if found is None:
        status = None
        for line in read_json_lines(folder / "results.jsonl"):
            if str(line.get("key")) == key:
                status = line
        if status is not None:  # invalid, or refused before it started: no agent ever ran
            raise UserInputError(
                f"row {key!r} of {folder} never ran: {status.get('status')}"
                + (f": {status['error']}" if status.get("error") else "")
            )
        raise UserInputError(f"no row {key!r} in {folder}; the keys are in results.jsonl")
    found.setdefault("run_id", f"{folder.name} row {key}")
    return found


def dataset_summary(folder: Path, document: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset run's result.json plus the first rows that did not complete, for `--format json`."""
    from orchestrate.observe.dataset_results import outcome_counts

    return {**document, "run_dir": str(folder), "outcomes": outcome_counts(folder), "not_completed": _failed(folder)}


def _failed(folder: Path) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in read_json_lines(folder / "results.jsonl"):
        key = str(line.get("key"))
        latest.pop(key, None)
        if line.get("status") != "completed":
            latest[key] = {k: line.get(k) for k in ("key", "row", "status", "cost", "error")}
    return list(latest.values())[:_FAILED_SHOWN]


def session_lines(document: Mapping[str, Any]) -> list[str]:
    """For a dataset run resumed at least once: ``sessions: 2`` and a line a session (when it
    started, how long it ran, the rows it finished and what it spent); nothing for one session.
    The run's own totals (rows, cost, tokens, duration) already count every session."""
    sessions = [s for s in document.get("sessions") or [] if isinstance(s, Mapping)]
    if len(sessions) < 2:
        return []
    lines = [f"sessions: {len(sessions)} (totals above count them all)"]
    for number, session in enumerate(sessions, 1):
        lines.append(
            f"  {number}. {readable_time(session.get('started_at'))}  {float(session.get('duration_seconds') or 0):.2f}s, "
            f"{int(session.get('rows') or 0):,} rows, {usd(float(session.get('cost') or 0))}, {session.get('status')}"
        )
    return lines


def readable_time(value: Any) -> str:
    """An ISO time as ``2026-12-03 19:07:07+00:00``: to the second, with its offset."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return str(value or "?")


def dataset_renderables(folder: Path, document: Mapping[str, Any], *, width: int | None) -> list[Any]:
    """The overview of a dataset run: headline, facts, the rows that did not complete."""
    from rich.text import Text

    counts = document.get("counts") or {}
    label = " (simulated)" if document.get("simulated") else ""
    outcome = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    parts: list[Any] = [
        Text(str(folder), style="bold"),
        Text(
            f"{document.get('name')}: {document.get('status')}{label} - {document.get('rows')} rows "
            f"({outcome}); {usd(float(document.get('total_cost') or 0))}, "
            f"{int(document.get('total_tokens') or 0):,} tokens, "
            f"{float(document.get('duration_seconds') or 0):.2f}s"
        ),
    ]
    facts = [f"data {document.get('data')}"]
    if document.get("key"):
        facts.append(f"key {document['key']}")
    if document.get("budget") is not None:
        facts.append(f"dataset budget {usd(float(document['budget']))}")
    if document.get("shard"):
        facts.append(f"shard {document['shard']}")
    parts.append(Text(" | ".join(facts), style="dim"))
    parts.extend(Text(line) for line in session_lines(document))
    from orchestrate.observe.dataset_results import outcome_lines

    outcomes = outcome_lines(folder)
    if outcomes:
        parts.append(Text(outcomes[0], style="bold"))
        parts.extend(Text(line) for line in outcomes[1:])
    for title, items, field, fmt in (
        ("slowest", document.get("slowest_rows"), "seconds", "{:.2f}s"),
        ("dearest", document.get("dearest_rows"), "cost", None),
    ):
        if items:
            shown = ", ".join(
                f"{i['key']} ({usd(float(i[field])) if fmt is None else fmt.format(i[field])})" for i in items
            )
            parts.append(Text(f"{title} rows: {shown}"))
    failed = _failed(folder)
    if failed:
        parts.append(Text("rows that did not complete:", style="bold"))
        rows = [
            [
                str(f["key"]),
                str(f.get("row") or ""),
                str(f["status"]).replace("_", " "),
                usd(float(f.get("cost") or 0)) if f.get("cost") else "",
                str(f.get("error") or "").splitlines()[0] if f.get("error") else "",
            ]
            for f in failed
        ]
        parts.append(build_table(_COLUMNS, rows, width=width))
    return parts
