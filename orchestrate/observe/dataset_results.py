"""A dataset run's results as a table: one line per row key, its latest state.

``results.jsonl`` keeps every line a run ever wrote (a resumed dataset run
appends the new state of a row it ran again), so every reader here collapses
to the last line of each key: a key is never listed twice. The file is read
twice, streaming: first to find each key's last line (its byte offset), then
to read those lines in data-file order, so a 100,000-row run is never held in
memory whole. A row's inputs come from ``rows.jsonl`` (rows that never ran,
being invalid or refused, have none).

`export_rows` writes CSV (declared outputs flattened to dotted columns such as
``payment_decision.decision``, inputs as ``inputs.NAME``), JSON Lines (nested
as written), and `count_by` counts rows by the value at an output path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrate.cells import formula_safe
from orchestrate.fsutil import open_regular
from orchestrate.jsonline import json_line, read_line
from orchestrate.observe.answer import flatten, inline

__all__ = [
    "Outcome",
    "categorical_paths",
    "count_by",
    "export_rows",
    "latest_rows",
    "outcome_counts",
    "outcome_lines",
    "output_paths",
]

_MAX_CATEGORIES = 12  # an output path with more distinct values than this is not an outcome
_NO_VALUE = "(none)"


def _last_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """key -> (data-file row, byte offset of its last line) in a JSON-lines file."""
    offsets: dict[str, tuple[int, int]] = {}
    if not path.exists():
        return offsets
    with open_regular(path) as handle:  # a pipe in its place: refused, not waited on
        offset = 0
        for raw in handle:
            start, offset = offset, offset + len(raw)
            line = _parse(raw)
            if line is None or "key" not in line:
                continue
            row = line.get("row")
            offsets[str(line["key"])] = (int(row) if isinstance(row, int) else 0, start)
    return offsets


def _parse(raw: bytes) -> dict[str, Any] | None:
    text = raw.strip()
    if not text:
        return None
    try:
        value = read_line(text)
    except ValueError:  # a torn last line (a kill -9 mid-write): the next session ends it
        return None
    return value if isinstance(value, dict) else None


def _read_at(handle: IO[bytes], offset: int) -> dict[str, Any]:
    handle.seek(offset)
    return _parse(handle.readline()) or {}


def latest_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """Each row key's latest state, in data-file order: key, row, status, inputs, outputs, cost, tokens,
    seconds, error."""
    results = _last_offsets(folder / "results.jsonl")
    if not results:
        return
    full = _last_offsets(folder / "rows.jsonl")
    order = sorted(results.items(), key=lambda item: (item[1][0], item[0]))
    rows_handle = open_regular(folder / "rows.jsonl") if full else None
    try:
        with open_regular(folder / "results.jsonl") as handle:
            for key, (_, offset) in order:
                line = _read_at(handle, offset)
                inputs: Any = {}
                if rows_handle is not None and key in full:
                    inputs = _read_at(rows_handle, full[key][1]).get("inputs") or {}
                yield {
                    "key": key,
                    "row": line.get("row"),
                    "status": line.get("status"),
                    "inputs": inputs if isinstance(inputs, Mapping) else {},
                    "outputs": line.get("outputs") if isinstance(line.get("outputs"), Mapping) else {},
                    "cost": line.get("cost"),
                    "tokens": line.get("tokens"),
                    "seconds": line.get("seconds"),
                    "error": line.get("error"),
                }
    finally:
        if rows_handle is not None:
            rows_handle.close()


def output_paths(folder: Path) -> list[str]:
    """The dotted paths of the outputs the rows hold, in the order first seen."""
    seen: dict[str, None] = {}
    for row in latest_rows(folder):
        for path in flatten(row["outputs"]):
            seen.setdefault(path, None)
    return list(seen)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # a plain decimal, never 5.85e-05
        from decimal import Decimal

        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):  # text, never a formula when the file is opened in a spreadsheet
        return str(formula_safe(inline(value)))
    return inline(value)


def export_rows(folder: Path, fmt: str, out: IO[str]) -> int:
    """Write each key's latest row to `out` as ``csv`` or ``jsonl``; the number of rows written."""
    count = 0
    if fmt == "jsonl":
        for row in latest_rows(folder):
            out.write(json_line(row).decode("utf-8").rstrip("\n") + "\n")
            count += 1
        return count
    inputs: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for row in latest_rows(folder):  # first pass: the columns
        inputs.update(dict.fromkeys(row["inputs"]))
        outputs.update(dict.fromkeys(flatten(row["outputs"])))
    header = [
        "key",
        "row",
        "status",
        *(f"inputs.{name}" for name in inputs),
        *outputs,
        "cost",
        "tokens",
        "seconds",
        "error",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in latest_rows(folder):
        flat = flatten(row["outputs"])
        writer.writerow(
            [
                formula_safe(str(row["key"])),
                _cell(row["row"]),
                row["status"],
                *(_cell(row["inputs"].get(name)) for name in inputs),
                *(_cell(flat.get(path)) for path in outputs),
                _cell(row["cost"]),
                _cell(row["tokens"]),
                _cell(row["seconds"]),
                _cell(row["error"]),
            ]
        )
        count += 1
        if buffer.tell() > 1 << 16:
            out.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    out.write(buffer.getvalue())
    return count


@dataclass
class Outcome:
    """The rows that share one value at an output path (or one status, for rows without it)."""

    value: str
    rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def _value_of(row: Mapping[str, Any], path: str) -> str:
    if row.get("status") != "completed":
        return f"({str(row.get('status')).replace('_', ' ')})"
    flat = flatten(row.get("outputs") or {})
    if path not in flat:
        return _NO_VALUE
    return _cell(flat[path]) or "null"


def count_by(folder: Path, path: str, *, examples: int = 0) -> list[Outcome]:
    """Rows counted by their value at output `path`, most frequent first.

    Rows that did not complete are counted under their status (``(failed)``); with
    `examples`, each outcome keeps its first rows (key, row, status, flattened outputs, error).
    """
    outcomes: dict[str, Outcome] = {}
    for row in latest_rows(folder):
        value = _value_of(row, path)
        outcome = outcomes.setdefault(value, Outcome(value))
        outcome.rows += 1
        if len(outcome.examples) < examples:
            outcome.examples.append(
                {
                    "key": row["key"],
                    "row": row["row"],
                    "status": row["status"],
                    "outputs": flatten(row["outputs"]),
                    "error": row["error"],
                }
            )
    return sorted(outcomes.values(), key=lambda o: (o.value.startswith("("), -o.rows, o.value))


def categorical_paths(folder: Path) -> list[str]:
    """Output paths whose values fall into a few categories (a decision, a flag): the outcomes worth counting.

    A path qualifies when its values are strings or booleans, at most 12 distinct, and
    fewer distinct than rows (a reason or an id is not an outcome).
    """
    values: dict[str, set[str]] = {}
    rejected: set[str] = set()
    rows = 0
    for row in latest_rows(folder):
        if row["status"] != "completed":
            continue
        rows += 1
        for path, value in flatten(row["outputs"]).items():
            if path in rejected:
                continue
            if not isinstance(value, (str, bool)) or (isinstance(value, str) and len(value) > 60):
                rejected.add(path)
                values.pop(path, None)
                continue
            seen = values.setdefault(path, set())
            seen.add(_cell(value))
            if len(seen) > _MAX_CATEGORIES:
                rejected.add(path)
                values.pop(path, None)
    return [path for path, seen in values.items() if len(seen) < rows or (rows > 1 and len(seen) == 1)]


def outcome_counts(folder: Path) -> dict[str, dict[str, int]]:
    """For each output path with a few categories: rows by value, most frequent first, then the rows
    that did not complete by status (``(failed)``). One pass over the results."""
    counters: dict[str, dict[str, int]] = {}
    rejected: set[str] = set()
    unfinished: dict[str, int] = {}
    rows = 0
    for row in latest_rows(folder):
        if row["status"] != "completed":
            status = f"({str(row['status']).replace('_', ' ')})"
            unfinished[status] = unfinished.get(status, 0) + 1
            continue
        rows += 1
        for path, value in flatten(row["outputs"]).items():
            if path in rejected:
                continue
            if not isinstance(value, (str, bool)) or (isinstance(value, str) and len(value) > 60):
                rejected.add(path)
                counters.pop(path, None)
                continue
            counts = counters.setdefault(path, {})
            cell = _cell(value)
            counts[cell] = counts.get(cell, 0) + 1
            if len(counts) > _MAX_CATEGORIES:
                rejected.add(path)
                counters.pop(path, None)
    found: dict[str, dict[str, int]] = {}
    for path, counts in counters.items():
        if len(counts) < rows or (rows > 1 and len(counts) == 1):
            ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
            found[path] = {**ordered, **dict(sorted(unfinished.items(), key=lambda item: -item[1]))}
    return found


def outcome_lines(folder: Path, *, indent: str = "  ") -> list[str]:
    """``outcomes:`` and a line per categorical output: ``payment_decision.decision: 10 hold, 8 reject``."""
    counts = outcome_counts(folder)
    if not counts:
        return []
    lines = ["outcomes:"]
    for path, values in counts.items():
        lines.append(f"{indent}{path}: " + ", ".join(f"{n:,} {value}" for value, n in values.items()))
    return lines
