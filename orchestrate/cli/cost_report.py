"""`orchestrate cost-report`: spend over any number of runs, grouped and filtered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orchestrate.cli.common import FormatOption, fail

__all__ = ["cost_report"]


def cost_report(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Run folders, cost.json files, or folders of runs (default: ./runs).", show_default=False)] = None,
    by: Annotated[Optional[list[str]], typer.Option(
        "--by", "-b", help="Group by workflow|agent|model|module|provider|day|mode (batch or online)|row (a dataset row's key); repeat or comma-separate "
                           "to combine (default: workflow).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only calls at or after this date/time (ISO 8601).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Only calls at or before this date/time (ISO 8601).")] = None,
    fmt: FormatOption = "table",
) -> None:
    """Sum the cost.json of runs: calls, cost and tokens (input, cached, output, reasoning) per group."""
    from orchestrate.money.cost_report import GROUP_KEYS, TOKEN_FIELDS, aggregate, collect, parse_moment, render

    keys = [k.strip() for item in (by or ["workflow"]) for k in item.split(",") if k.strip()]
    for key in keys:
        if key not in GROUP_KEYS:
            fail(f"--by {key!r}: choose from {', '.join(GROUP_KEYS)}")
    fmt = fmt.lower()
    if fmt not in ("table", "json", "csv", "markdown"):
        fail(f"--format {fmt!r}: choose table, json, csv or markdown")
    start = parse_moment(since) if since else None
    end = parse_moment(until, end=True) if until else None
    rows = aggregate(collect(paths or [Path("runs")]), keys, since=start, until=end)
    if fmt != "table":
        sys.stdout.write(render(rows, keys, fmt))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cost report", title_justify="left")
    for key in keys:
        table.add_column(key)
    columns = ["calls", "cost", *TOKEN_FIELDS]
    for column in columns:
        table.add_column(column.replace("_tokens", "").replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(row[k]) for k in keys), str(row["calls"]), f"${row['cost']:.4f}",
                      *(f"{row.get(f) or 0:,}" for f in TOKEN_FIELDS))
    if rows:
        table.add_section()
        table.add_row("total", *([""] * (len(keys) - 1)), str(sum(r["calls"] for r in rows)),
                      f"${sum(r['cost'] for r in rows):.4f}",
                      *(f"{sum(r.get(f) or 0 for r in rows):,}" for f in TOKEN_FIELDS))
    Console(highlight=False).print(table)
