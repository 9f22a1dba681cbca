"""`orchestrate merge SHARD_DIR... -o DIR`: the run folders of a sharded dataset run as one.

Each shard of a dataset run (``--shard K/N`` or ``--shard auto``) leaves its own
folder. Merging them writes one folder shaped like a dataset run's:

- ``results.jsonl``: one line per row key (a resumed shard's last line of a
  key), in row order; ``rows.jsonl`` and ``calls.jsonl`` of every shard;
- ``cost.json`` summed over every shard's calls; ``report.html``;
- ``result.json``: counts across shards, and what is missing: the shards no
  folder was given for (their rows named by their numbers, K, K+N, ...), and,
  per incomplete shard, the rows that did not complete or never ran.

Nothing of the shard folders is changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import open_regular_text, read_regular_text
from orchestrate.money.cost_report import CostTotals
from orchestrate.observe.dataset_report import read_json_lines, write_cost_document
from orchestrate.observe.journal import JsonLines
from orchestrate.observe.reports import DATASET_KINDS, SCHEMA_VERSION, write_json

__all__ = ["MergedRun", "ShardFolder", "merge_shards"]

_LISTED = 100  # rows named per list in result.json; the counts are always whole


@dataclass
class ShardFolder:
    """One shard's folder as read: its result.json and its rows' last states."""

    path: Path
    result: dict[str, Any]
    shard: tuple[int, int]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> last results.jsonl line

    @property
    def rows_in_data(self) -> int | None:
        value = self.result.get("rows_in_data")
        return int(value) if isinstance(value, int) else None


@dataclass
class MergedRun:
    """What `merge_shards` wrote, and what it found missing."""

    run_dir: Path
    document: dict[str, Any]

    @property
    def complete(self) -> bool:
        return bool(self.document["status"] == "completed")


def _shard_of(path: Path, result: dict[str, Any]) -> tuple[int, int]:
    text = result.get("shard")
    if text is None:
        return 1, 1  # a dataset run without --shard: the whole dataset
    found = re.fullmatch(r"(\d+)/(\d+)", str(text))
    if found is None:
        raise UserInputError(f"{path}/result.json: shard {text!r} is not K/N")
    return int(found[1]), int(found[2])


def read_shard(path: Path) -> ShardFolder:
    """A dataset run's folder, or a clear refusal."""
    try:
        result = json.loads(read_regular_text(path / "result.json"))
    except FileNotFoundError:
        raise UserInputError(f"{path}: not a dataset run folder (no result.json)") from None
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}/result.json: cannot read it: {exc}") from None
    if not isinstance(result, dict) or result.get("kind") not in DATASET_KINDS:
        raise UserInputError(f"{path}: not the folder of a dataset run (run ... --data FILE)")
    folder = ShardFolder(path, result, _shard_of(path, result))
    for line in read_json_lines(path / "results.jsonl"):
        if "key" in line and "status" in line:
            folder.rows[str(line["key"])] = line
    return folder


def _check(folders: list[ShardFolder]) -> int:
    """The shard count they agree on."""
    first = folders[0]
    seen: dict[int, Path] = {}
    for folder in folders:
        if folder.result.get("name") != first.result.get("name"):
            raise UserInputError(
                f"{folder.path}: a run of workflow {folder.result.get('name')!r}, not {first.result.get('name')!r}"
            )
        if folder.shard[1] != first.shard[1]:
            raise UserInputError(
                f"{folder.path}: shard {folder.shard[0]}/{folder.shard[1]}, but {first.path} is one of {first.shard[1]}"
            )
        if folder.result.get("key") != first.result.get("key"):
            raise UserInputError(f"{folder.path}: ran with a different --key than {first.path}")
        earlier = seen.get(folder.shard[0])
        if earlier is not None:
            raise UserInputError(f"{folder.path}: shard {folder.shard[0]}/{folder.shard[1]} again (also {earlier})")
        seen[folder.shard[0]] = folder.path
    _check_pseudonyms(folders)
    return first.shard[1]


def _check_pseudonyms(folders: list[ShardFolder]) -> None:
    """Shards whose pseudonyms were keyed apart name one person with several tokens: not one run."""
    from orchestrate.run.pseudonym_key import KEY_ENV, kept_secret

    first: tuple[Path, tuple[Any, Any]] | None = None
    for folder in folders:
        kept = kept_secret(folder.path)
        if kept is None:
            continue
        keyed = (kept.get("salt"), kept.get("key_id"))
        if first is None:
            first = folder.path, keyed
        elif keyed != first[1]:
            what = "another key" if keyed[1] != first[1][1] else "another salt (a run of its own)"
            raise UserInputError(
                f"{folder.path}/pseudonyms.json: its pseudonyms were made with {what} than {first[0]}'s, "
                f"so a person has another token in each; run every shard with the same {KEY_ENV}"
            )


def _lines(path: Path) -> Iterator[str]:
    if path.exists():
        with open_regular_text(path, errors="replace") as handle:
            for line in handle:
                if line.strip():
                    yield line.strip()


def merge_shards(shard_dirs: list[Path], output: Path) -> MergedRun:
    """Merge dataset-run folders into `output` (made; it must not hold a run already).

    Raises:
        UserInputError: For a folder that is not a dataset run's, folders of
            different workflows or shard counts, a shard given twice, or an
            `output` that already holds a run.
    """
    if not shard_dirs:
        raise UserInputError("merge: name at least one shard folder")
    folders = sorted((read_shard(p) for p in shard_dirs), key=lambda f: f.shard[0])
    count = _check(folders)
    if (output / "result.json").exists() or (output / "results.jsonl").exists():
        raise UserInputError(f"{output}: already holds a run; merge into a new folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{output}: cannot create it: {exc.strerror or exc}") from None

    rows: dict[str, dict[str, Any]] = {}
    for folder in folders:
        rows.update(folder.rows)
    counts: dict[str, int] = {}
    for line in rows.values():
        counts[line["status"]] = counts.get(line["status"], 0) + 1
    results, calls, full = (JsonLines(output / name) for name in ("results.jsonl", "calls.jsonl", "rows.jsonl"))
    costs, cost = CostTotals(), 0.0
    try:
        for line in sorted(rows.values(), key=lambda r: (int(r.get("row") or 0), str(r["key"]))):
            results.write(line)
        for folder in folders:
            for text in _lines(folder.path / "calls.jsonl"):
                try:
                    call = json.loads(text)
                except ValueError:
                    continue  # a line a kill cut short
                if isinstance(call, dict):
                    calls.write(call)
                    costs.add(call)
                    cost += float(call.get("cost") or 0.0)
            for text in _lines(folder.path / "rows.jsonl"):
                try:
                    full.write(json.loads(text))
                except ValueError:
                    continue
    finally:
        for journal in (results, calls, full):
            journal.close()

    present = {f.shard[0] for f in folders}
    missing = [
        {"shard": f"{k}/{count}", "rows": f"rows {k}, {k + count}, {k + 2 * count}, ... of the data file"}
        for k in range(1, count + 1)
        if k not in present
    ]
    incomplete = [entry for entry in (_shortfall(f) for f in folders) if entry is not None]
    complete = not missing and not incomplete
    done = counts.get("completed", 0)
    first = folders[0].result
    starts = [str(f.result["started_at"]) for f in folders if f.result.get("started_at")]
    ends = [str(f.result["completed_at"]) for f in folders if f.result.get("completed_at")]
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "dataset_run",
        "run_id": output.name,
        "name": first.get("name"),
        "description": first.get("description"),
        "source": first.get("source"),
        "status": "completed" if complete else ("partially_completed" if done else "failed"),
        "simulated": all(bool(f.result.get("simulated")) for f in folders),
        "budget": None,
        "cost_budget_per_row": first.get("cost_budget_per_row"),
        "max_parallel_agents": first.get("max_parallel_agents"),
        "rows": len(rows),
        "counts": {status: n for status, n in sorted(counts.items()) if n},
        "total_cost": round(cost, 10),
        "total_tokens": sum(int(r.get("tokens") or 0) for r in rows.values()),
        "error": None if complete else _why(missing, incomplete),
        "started_at": min(starts) if starts else None,
        "completed_at": max(ends) if ends else None,
        "duration_seconds": _span(min(starts) if starts else None, max(ends) if ends else None),
        "slowest_rows": _top(rows, "seconds"),
        "dearest_rows": _top(rows, "cost"),
        "data": first.get("data"),
        "key": first.get("key"),
        "merged_at": datetime.now(UTC).isoformat(),
        "shards": {
            "count": count,
            "merged": [{"shard": f"{f.shard[0]}/{count}", "run_dir": str(f.path)} for f in folders],
            "missing": missing,
            "incomplete": incomplete,
        },
    }
    write_cost_document(output, document, costs)
    write_json(output / "result.json", document)
    from orchestrate.observe.html_report import write_run_report

    write_run_report(output)
    return MergedRun(output, document)


def _shortfall(folder: ShardFolder) -> dict[str, Any] | None:
    """An incomplete shard: its rows not completed, and those it never reached (when it knows its size)."""
    k, n = folder.shard
    not_completed = sorted(
        ((int(r.get("row") or 0), key, r["status"]) for key, r in folder.rows.items() if r["status"] != "completed"),
    )
    never: list[int] = []
    expected = folder.rows_in_data
    if expected is not None and len(folder.rows) < expected:
        recorded = {int(r.get("row") or 0) for r in folder.rows.values()}
        never = [row for row in (k + i * n for i in range(expected)) if row not in recorded]
    unfinished = folder.result.get("status") not in ("completed", "partially_completed", "failed")
    if not not_completed and not never and not unfinished:
        return None
    return {
        "shard": f"{k}/{n}",
        "run_dir": str(folder.path),
        "status": folder.result.get("status"),
        "rows_in_data": expected,
        "not_completed": len(not_completed),
        "not_completed_rows": [{"row": row, "key": key, "status": s} for row, key, s in not_completed[:_LISTED]],
        "never_run": (expected - len(folder.rows)) if expected is not None else None,
        "never_run_rows": never[:_LISTED],
    }


def _why(missing: list[dict[str, Any]], incomplete: list[dict[str, Any]]) -> str:
    parts = []
    if missing:
        parts.append("no folder for shard " + ", ".join(m["shard"] for m in missing))
    for entry in incomplete:
        bits = []
        if entry["not_completed"]:
            bits.append(f"{entry['not_completed']} row(s) not completed")
        if entry["never_run"]:
            bits.append(f"{entry['never_run']} never run")
        if not bits:
            bits.append(f"ended {entry['status']}")
        parts.append(f"shard {entry['shard']}: " + ", ".join(bits))
    return "; ".join(parts)


def _span(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return 0.0


def _top(rows: dict[str, dict[str, Any]], field_name: str) -> list[dict[str, Any]]:
    ranked = sorted(rows.values(), key=lambda r: float(r.get(field_name) or 0.0), reverse=True)[:5]
    return [{"key": r["key"], "row": r.get("row"), field_name: r.get(field_name)} for r in ranked]
