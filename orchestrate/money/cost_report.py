"""cost.json, and `orchestrate cost-report`: spend summed over runs, grouped any way.

`build_cost_document` makes a run's cost.json from the tracker's records;
`collect` reads cost.json files back (from run folders, the files themselves,
or folders of run folders), `aggregate` groups their calls by any of
`GROUP_KEYS`, and `render` prints the rows as JSON, CSV or Markdown. The CLI
adds a rich table. No typer or rich here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate.cells import formula_safe
from orchestrate.errors import UserInputError
from orchestrate.printable import markdown_cell

if TYPE_CHECKING:
    from orchestrate.money.costs import CallRecord, CostTracker

__all__ = [
    "GROUP_KEYS",
    "LOW_READ_SHARE",
    "TOKEN_FIELDS",
    "CostTotals",
    "aggregate",
    "breakdown",
    "build_cost_document",
    "cache_warnings",
    "collect",
    "parse_moment",
    "render",
    "report_document",
    "select",
    "split_simulated",
]

SCHEMA_VERSION = 1
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)
GROUP_KEYS = ("workflow", "agent", "model", "module", "provider", "run", "day", "month", "mode", "row", "tag")


def _empty_totals() -> dict[str, Any]:
    return {"cost": 0.0, "calls": 0, **dict.fromkeys(TOKEN_FIELDS, 0)}


def _totals(rows: Iterable[Any], get: Any) -> dict[str, Any]:
    out = _empty_totals()
    for row in rows:
        out["cost"] += get(row, "cost")
        out["calls"] += 0 if get(row, "reused") else 1
        for f in TOKEN_FIELDS:
            out[f] += get(row, f)
    out["cost"] = round(out["cost"], 10)
    return out


def _attr(row: Any, name: str) -> Any:
    return getattr(row, name)


def breakdown(records: Sequence[CallRecord], key: str) -> dict[str, dict[str, Any]]:
    """Cost, calls and tokens of `records` grouped by one of their fields."""
    groups: dict[str, list[CallRecord]] = {}
    for record in records:
        groups.setdefault(str(getattr(record, key) or "unknown"), []).append(record)
    return {name: _totals(rows, _attr) for name, rows in sorted(groups.items())}


class CostTotals:
    """cost.json's totals and breakdowns of a batch, kept as its calls are journaled.

    A batch's cost.json is made when it ends from calls.jsonl, streamed line by
    line; keeping the sums as the lines are written (and, for a resumed batch,
    as the earlier sessions' lines are read) spares reading them all again.
    Calls are summed by their (agent, model, module, provider), a handful of
    combinations however many calls, and the breakdowns made from those.
    """

    GROUPS = ("agent", "model", "module", "provider")

    def __init__(self) -> None:
        self._by_combination: dict[tuple[str, ...], list[Any]] = {}  # -> [cost, calls, *tokens]

    def add(self, call: Mapping[str, Any]) -> None:
        combination = tuple(str(call.get(g) or "unknown") for g in self.GROUPS)
        sums = self._by_combination.get(combination)
        if sums is None:
            sums = self._by_combination[combination] = [0.0, 0, *(0 for _ in TOKEN_FIELDS)]
        sums[0] += float(call.get("cost") or 0.0)
        sums[1] += 1
        for i, field_name in enumerate(TOKEN_FIELDS, 2):
            sums[i] += int(call.get(field_name) or 0)

    def document(self) -> dict[str, Any]:
        """``totals``, ``by_agent``, ``by_model``, ``by_module``, ``by_provider`` and ``models``."""
        totals = _empty_totals()
        groups: dict[str, dict[str, dict[str, Any]]] = {g: {} for g in self.GROUPS}
        for combination, sums in self._by_combination.items():
            buckets = [
                totals,
                *(groups[g].setdefault(label, _empty_totals()) for g, label in zip(self.GROUPS, combination)),
            ]
            for bucket in buckets:
                bucket["cost"] += sums[0]
                bucket["calls"] += sums[1]
                for i, field_name in enumerate(TOKEN_FIELDS, 2):
                    bucket[field_name] += sums[i]

        def rounded(bucket: dict[str, Any]) -> dict[str, Any]:
            return {**bucket, "cost": round(bucket["cost"], 10)}

        models = {combination[1] for combination in self._by_combination} - {"unknown"}
        return {
            "totals": rounded(totals),
            **{f"by_{g}": {k: rounded(v) for k, v in sorted(rows.items())} for g, rows in groups.items()},
            "models": sorted(models),
        }


def cost_document_head(
    result_doc: Mapping[str, Any], *, workflow_id: str | None, budget: Any, kind: str | None = None
) -> dict[str, Any]:
    """The fields every cost.json starts with: which run, its status and times, and the price table used."""
    from orchestrate.llm.prices import price_table

    table = price_table()
    return {
        "schema_version": SCHEMA_VERSION,
        **({"kind": kind} if kind else {}),
        "workflow": result_doc.get("name"),
        "workflow_id": workflow_id,
        "run_id": result_doc.get("run_id"),
        "status": result_doc.get("status"),
        "simulated": bool(result_doc.get("simulated")),
        "started_at": result_doc.get("started_at"),
        "completed_at": result_doc.get("completed_at"),
        "currency": table["currency"],
        "price_unit": table["unit"],
        "price_table_date": table["date"],
        "budget": budget,
    }


def build_cost_document(tracker: CostTracker, workflow_id: str, result_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The cost.json of one run: totals, breakdowns, the prices used and every call."""
    records = tracker.records(workflow_id)
    models = sorted({r.model for r in records if r.model})
    # An Azure deployment is priced as the model it runs (llm_config.price_as).
    priced_as = {r.model: r.metadata["price_as"] for r in records if r.metadata and r.metadata.get("price_as")}
    return {
        **cost_document_head(result_doc, workflow_id=workflow_id, budget=result_doc.get("cost_budget"), kind="run"),
        "totals": _totals(records, _attr),
        "by_agent": breakdown(records, "agent"),
        "by_model": breakdown(records, "model"),
        "by_module": breakdown(records, "module"),
        "by_provider": breakdown(records, "provider"),
        "prices_used": {m: tracker.price_of(priced_as.get(m, m)) for m in models},
        "tags": list(result_doc.get("tags") or []),
        "agent_tags": {
            row["name"]: list(row.get("tags") or [])
            for row in result_doc.get("agents", [])
            if isinstance(row, Mapping) and "name" in row
        },
        "calls": [r.to_dict() for r in records],
        "usage_anomalies": sum(1 for r in records if r.usage_anomaly),
        "budget_overrun": result_doc.get("budget_overrun"),
    }


def parse_moment(text: str, *, end: bool = False) -> datetime:
    """A --since/--until value: a month (``2026-12``, the whole month), a date (the whole day) or an
    ISO datetime; all in UTC unless the datetime names its offset. `end` takes the period's last moment."""
    try:
        if len(text) == 7 and text[4] == "-":
            first = date.fromisoformat(f"{text}-01")
            if not end:
                return datetime(first.year, first.month, 1, tzinfo=UTC)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return datetime(following.year, following.month, 1, tzinfo=UTC) - timedelta(microseconds=1)
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment.replace(hour=23, minute=59, second=59, microsecond=999999) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserInputError(f"{text!r} is not a month (2026-11), a date (2026-11-01) or an ISO datetime") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select(
    calls: Iterable[Mapping[str, Any]],
    *,
    modules: Sequence[str] = (),
    workflows: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> list[Mapping[str, Any]]:
    """The calls of any of these modules, workflows and tags (each case-insensitive; an empty list keeps all)."""
    wanted_modules = {m.lower() for m in modules}
    wanted_workflows = {w.lower() for w in workflows}
    wanted_tags = {t.lower() for t in tags}
    kept = []
    for call in calls:
        if wanted_modules and str(call.get("module") or "").lower() not in wanted_modules:
            continue
        if (
            wanted_workflows
            and str(call.get("workflow") or call.get("workflow_id") or "").lower() not in wanted_workflows
        ):
            continue
        if wanted_tags and not wanted_tags & {str(t).lower() for t in call.get("tags") or []}:
            continue
        kept.append(call)
    return kept


def _cost_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.rglob("cost.json"))
        if not found:
            raise UserInputError(f"{path}: no cost.json found in this folder")
        return found
    raise UserInputError(f"{path}: no such file or folder")


MAX_COST_FILE_BYTES = 256 * 1024 * 1024
MAX_PLAUSIBLE_COST = 1e9  # USD in one call: more is a damaged or forged file, and sums must stay finite


def _call_problem(call: Any) -> str | None:
    """Why a call of a cost.json cannot be counted, or None."""
    from orchestrate.finite import is_finite_number

    if not isinstance(call, dict):
        return f"a call that is not an object: {str(call)[:60]}"
    cost = call.get("cost")
    if cost is None or not is_finite_number(cost) or not 0 <= cost <= MAX_PLAUSIBLE_COST:
        return f"a call whose cost is not a number from 0 to {MAX_PLAUSIBLE_COST:g}: {str(cost)[:40]}"
    for name in TOKEN_FIELDS:
        value = call.get(name, 0)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"a call whose {name} is not a count: {str(value)[:40]}"
    return None


def _read_cost_file(file: Path) -> tuple[dict[str, Any] | None, str | None]:
    from orchestrate.finite import loads_strict
    from orchestrate.fsutil import TooLargeError, read_bytes_capped

    try:
        # Regular files only: a pipe found in a run folder would be waited on forever (one named on
        # its own is refused already: `_cost_files` takes only regular files and folders).
        document = loads_strict(read_bytes_capped(file, MAX_COST_FILE_BYTES, special=False).decode("utf-8"))
    except TooLargeError:
        return None, f"larger than {MAX_COST_FILE_BYTES:,} bytes"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    except ValueError as exc:  # not UTF-8, not JSON, NaN or Infinity
        return None, f"not valid JSON: {exc}"
    if not isinstance(document, dict) or not isinstance(document.get("calls"), list):
        return None, "not a cost report (no 'calls' list)"
    for call in document["calls"]:
        problem = _call_problem(call)
        if problem is not None:
            return None, problem
    return document, None


def collect(paths: Sequence[Path], skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every call of every cost.json under `paths`, each tagged with its run's workflow and start.

    A run folder named twice (``cost-report A B A``, or a folder and a run inside it) is counted
    once. A cost.json that is not a cost report (bad JSON, NaN, a string cost, a negative token
    count) is left out whole and named in `skipped` (``"FILE: why"``), never half-counted; with
    no `skipped` list given it is an error instead.
    """
    calls: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for path in paths:
        for file in _cost_files(path):
            real = file.resolve()
            if real in seen:
                continue
            seen.add(real)
            document, problem = _read_cost_file(file)
            if document is None:
                if skipped is None or path.is_file():  # a file named on its own is the user's input
                    raise UserInputError(f"{file}: {problem}")
                skipped.append(f"{file}: {problem}")
                continue
            for call in document["calls"]:
                simulated = bool(document.get("simulated")) or call.get("provider") == "simulated"
                tags = (document.get("agent_tags") or {}).get(call.get("agent")) or document.get("tags") or []
                calls.append(
                    {
                        **call,
                        "workflow": document.get("workflow") or "unknown",
                        "run_id": document.get("run_id"),
                        "run": document.get("run_id") or file.parent.name,
                        "simulated": simulated,
                        "source": str(file),
                        "tags": tags,
                    }
                )
    return calls


def split_simulated(
    calls: Iterable[Mapping[str, Any]], *, include: bool = False
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The calls to count, and the simulated ones left out (none when `include`).

    A simulated call is priced like the model it stands in for (a cost preview),
    but no money was paid; counted by default it would inflate every total.
    """
    kept: list[Mapping[str, Any]] = []
    left: list[Mapping[str, Any]] = []
    for call in calls:
        (left if call.get("simulated") and not include else kept).append(call)
    return kept, left


def _when(call: Mapping[str, Any]) -> datetime | None:
    stamp = call.get("timestamp")
    if not stamp:
        return None
    try:
        return parse_moment(str(stamp))
    except UserInputError:
        return None


def aggregate(
    calls: Iterable[Mapping[str, Any]],
    by: Sequence[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows of cost, calls and tokens, one per combination of the `by` keys (sorted by them)."""
    for key in by:
        if key not in GROUP_KEYS:
            raise UserInputError(f"cannot group by {key!r}; choose from {', '.join(GROUP_KEYS)}")
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for call in calls:
        moment = _when(call)
        if (since or until) and moment is None:
            continue
        if since is not None and moment is not None and moment < since:
            continue
        if until is not None and moment is not None and moment > until:
            continue
        # A call with several tags counts under each of them (so tag rows may add up to more
        # than the total); one without tags is "untagged".
        tags = ([str(t) for t in call.get("tags") or []] or ["untagged"]) if "tag" in by else [""]
        for tag in tags:
            group = tuple(tag if k == "tag" else _group_value(call, k, moment) for k in by)
            groups.setdefault(group, []).append(call)
    rows = []
    for group, members in sorted(groups.items()):
        row: dict[str, Any] = dict(zip(by, group))
        row.update(_totals(members, lambda c, name: c.get(name) or 0))
        row.update(_cache_figures(members, row))
        rows.append(row)
    return rows


def _cache_figures(calls: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> dict[str, Any]:
    """The share of input tokens read from the provider's prompt cache, and the dollars it saved
    against the same calls uncached (net of what writing the cache cost)."""
    share = totals["cached_input_tokens"] / totals["input_tokens"] if totals["input_tokens"] else 0.0
    saved = sum(float(c.get("cache_savings") or 0.0) for c in calls)
    return {"cache_read_share": round(share, 4), "cache_savings": round(saved, 10)}


LOW_READ_SHARE = 0.25
_MIN_WARNED_INPUT = 10_000  # tokens: below this an agent's share says little


def cache_warnings(calls: Iterable[Mapping[str, Any]]) -> list[str]:
    """A warning per agent of a dataset run whose calls read under 25% of their input from the
    provider's prompt cache, with the likely cause (calls of a dataset run carry their ``row``)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for call in calls:
        if call.get("row") is None or call.get("cached") or call.get("reused"):
            continue
        key = (str(call.get("workflow") or call.get("workflow_id") or "?"), str(call.get("agent") or "?"))
        entry = sums.setdefault(key, [0, 0, 0])
        entry[0] += int(call.get("input_tokens") or 0)
        entry[1] += int(call.get("cached_input_tokens") or 0)
        entry[2] += int(call.get("cache_creation_input_tokens") or 0)
    warnings = []
    for (workflow, agent), (tokens, read, written) in sorted(sums.items()):
        if tokens < _MIN_WARNED_INPUT or read >= LOW_READ_SHARE * tokens:
            continue
        if written:
            cause = (
                "the cache was written again and again: the shared prefix changes between calls "
                "(a date, an id, unsorted JSON early in the prompt)"
            )
        else:
            cause = (
                "nothing was cached: the shared prefix is under the model's minimum (1,024 tokens for most), "
                "or prompt caching was off"
            )
        warnings.append(
            f"agent {agent} of {workflow} read {read / tokens:.0%} of its input from the prompt cache "
            f"on a dataset run (under {LOW_READ_SHARE:.0%}): {cause}"
        )
    return warnings


def _group_value(call: Mapping[str, Any], key: str, moment: datetime | None) -> str:
    if key == "day":
        return moment.date().isoformat() if moment is not None else "unknown"
    if key == "mode":  # a judge's call (agent "<name>.judge"), else how it was sent: a provider batch, or online
        if str(call.get("agent") or "").endswith(".judge"):
            return "judge"
        return "batch" if call.get("batch") else "online"
    if key == "month":
        return moment.strftime("%Y-%m") if moment is not None else "unknown"
    return str(call.get(key) or "unknown")


def report_document(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    left_out: Mapping[str, Any] | None = None,
    *,
    total: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON of a cost report: the grouping, the rows, the total and the simulated calls left out."""
    if total is None:  # the rows' sum, unless given (by tag a call may be in several rows)
        total = _totals(rows, lambda r, name: r.get(name) or 0)
        total["calls"] = sum(r["calls"] for r in rows)
    return {
        "group_by": list(by),
        "rows": list(rows),
        "total": total,
        "simulated_left_out": dict(left_out or {"calls": 0, "cost": 0.0}),
    }


def render(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    fmt: str,
    left_out: Mapping[str, Any] | None = None,
    *,
    total: Mapping[str, Any] | None = None,
) -> str:
    """Rows as ``json``, ``csv`` or ``markdown``.

    JSON carries the total and, under ``simulated_left_out``, the simulated
    calls and cost that were not counted. CSV and Markdown hold plain decimals
    (``0.00002055``, never ``2.055e-05``).
    """
    columns = [*by, "calls", "cost", *TOKEN_FIELDS]
    if any(r.get("cached_input_tokens") or r.get("cache_creation_input_tokens") for r in rows):
        columns += ["cache_read_share", "cache_savings"]  # only where the provider's prompt cache was used
    if fmt == "json":
        return json.dumps(report_document(rows, by, left_out, total=total), indent=2) + "\n"
    footer = _total_row(rows, by, total) if rows else []
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        # A group's name (a dataset key, an agent, a tag) is text: never a formula in a spreadsheet.
        writer.writerows(
            {k: formula_safe(_cell(v)) if isinstance(v, str) else _cell(v) for k, v in row.items()}
            for row in [*rows, *footer]
        )
        return buffer.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        for row in rows:
            lines.append("| " + " | ".join(markdown_cell(_cell(row.get(c))) for c in columns) + " |")
        for row in footer:
            lines.append(
                "| "
                + " | ".join(f"**{markdown_cell(_cell(row.get(c)))}**" if row.get(c) != "" else "" for c in columns)
                + " |"
            )
        return "\n".join(lines) + "\n"
    raise UserInputError(f"unknown format {fmt!r}; choose table, json, csv or markdown")


def _total_row(
    rows: Sequence[Mapping[str, Any]], by: Sequence[str], total: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The last line of a CSV or Markdown report: ``total`` under the first grouping key, the sums beside it
    (each call once, also when by tag a call sits in several rows)."""
    document = report_document(rows, by, total=total)
    summed = dict(document["total"])
    cached = {k: summed.pop(k) for k in ("cache_read_share", "cache_savings") if k in summed}
    if any(r.get("cached_input_tokens") or r.get("cache_creation_input_tokens") for r in rows):
        share = summed["cached_input_tokens"] / summed["input_tokens"] if summed.get("input_tokens") else 0.0
        cached = {
            "cache_read_share": round(share, 4),
            "cache_savings": round(sum(float(r.get("cache_savings") or 0.0) for r in rows), 10),
            **cached,
        }
    labels = {key: ("total" if i == 0 else "") for i, key in enumerate(by)}
    if not by:
        return []  # a report not grouped is its total already
    return [{**labels, **summed, **cached}]


def _cell(value: Any) -> str:
    from orchestrate.money.amounts import plain_decimal

    if isinstance(value, float):
        return plain_decimal(value)
    return str(value)
