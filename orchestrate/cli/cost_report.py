"""`orchestrate cost-report`: spend over any number of runs, grouped and filtered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import (
    check_format,
    fail,
    format_option,
    is_interactive,
    json_alias,
    latest_run_dir,
    print_json,
)

__all__ = ["cost_report"]

FORMATS = ("table", "json", "csv", "markdown")


def cost_report(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH",
            show_default=False,
            help="Run folders, cost.json files, or folders of runs (default: ./runs); latest: the newest run.",
            callback=latest_run_dir,
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            "-b",
            metavar="KEY[,KEY]",
            help="Group by: workflow, agent, model, module, provider, run, day, month, mode (batch or "
            "online), row (a dataset row's key), tag (a workflow's or agent's tags). Repeat or "
            "comma-separate to combine.",
            show_default="workflow",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only calls from this month (2026-12), day (2026-12-01) or ISO time on; days and months are UTC.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="WHEN",
            help="Only calls up to the end of this month (2026-12), day (2026-12-31) or ISO time; UTC.",
        ),
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option("--module", "-m", metavar="NAME", help="Only these modules' calls (repeatable: Finance, HR...)."),
    ] = None,
    workflow: Annotated[
        list[str] | None,
        typer.Option("--workflow", "-w", metavar="NAME", help="Only these workflows' calls (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", "-t", metavar="TAG", help="Only calls of a workflow or agent with this tag (repeatable)."
        ),
    ] = None,
    include_simulated: Annotated[
        bool,
        typer.Option(
            "--include-simulated", help="Count simulated calls as spend (left out by default: nothing was paid)."
        ),
    ] = False,
    fmt: format_option(FORMATS) = "table",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """Sum the cost.json of runs: calls, cost and tokens (input, cached, output, reasoning) per group.

    Simulated runs are priced like real ones (a preview of what a real run would
    cost) but are not spend: they are left out of the totals unless
    --include-simulated, and the report says how much was left out.

    Days and months (--by day/month, --since, --until) are UTC. Every format ends
    with the total, each call counted once (by tag a call may sit in several rows).

    \b
    Examples:
      orchestrate cost-report
      orchestrate cost-report runs/ --by module,model
      orchestrate cost-report --by month --since 2026-01 --format csv > spend.csv
      orchestrate cost-report --module Finance --since 2026-12 --until 2026-12 --by agent
      orchestrate cost-report runs/close-20261125T101010Z --include-simulated
    """
    from orchestrate.money.cost_report import (
        GROUP_KEYS,
        aggregate,
        cache_warnings,
        collect,
        render,
        select,
        split_simulated,
    )

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    keys = [k.strip() for item in (by or ["workflow"]) for k in item.split(",") if k.strip()]
    for key in keys:
        if key not in GROUP_KEYS:
            fail(f"--by {key!r}: choose from {', '.join(GROUP_KEYS)}")
    start = _moment("--since", since)
    end = _moment("--until", until, end=True)
    skipped: list[str] = []
    calls = select(
        collect(paths or [Path("runs")], skipped), modules=module or (), workflows=workflow or (), tags=tag or ()
    )
    counted, simulated = split_simulated(calls, include=include_simulated)
    from orchestrate.printable import printable

    for line in skipped:  # named, not counted: a damaged file never turns a total into nonsense
        sys.stderr.write(printable(f"warning: skipped {line}", one_line=True) + "\n")
    rows = aggregate(counted, keys, since=start, until=end)
    # Each call once: by tag, a call with two tags is in two rows but in the total once.
    overall = aggregate(counted, [], since=start, until=end)
    total = overall[0] if overall else None
    left = aggregate(simulated, [], since=start, until=end)
    left_out: dict[str, Any] = (
        {"calls": left[0]["calls"], "cost": left[0]["cost"]} if left else {"calls": 0, "cost": 0.0}
    )
    if fmt == "json":
        from orchestrate.money.cost_report import report_document

        print_json("cost_report", report_document(rows, keys, left_out, total=total))
    elif fmt != "table":
        sys.stdout.write(render(rows, keys, fmt, left_out, total=total))
    elif rows:
        _print_table(rows, keys, total or {})
    else:
        narrowed = " matching --module/--workflow/--tag" if module or workflow or tag else ""
        sys.stdout.write("no calls to report" + (" in that period" if start or end else "") + narrowed + "\n")
    for warning in cache_warnings(counted):
        sys.stderr.write(printable(f"warning: {warning}", one_line=True) + "\n")
    if left_out["calls"] and fmt != "json":
        from orchestrate.money.amounts import usd
        from orchestrate.observe.summary import plural

        sys.stderr.write(
            f"note: {plural(left_out['calls'], 'simulated call')} ({usd(left_out['cost'])} "
            "at real prices) left out; add --include-simulated to count them\n"
        )


def _print_table(rows: list[dict[str, Any]], keys: list[str], total: dict[str, Any]) -> None:
    from orchestrate.money.amounts import usd
    from orchestrate.money.cost_report import TOKEN_FIELDS
    from orchestrate.observe.tables import Column, build_table, plain_console

    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    # Cache writes and reasoning matter least when the screen is narrow; the rest never goes.
    drops = {"cache_creation_input_tokens": 3, "reasoning_tokens": 2, "cached_input_tokens": 1}
    # The prompt cache's read share and dollars saved, where it was used at all.
    cached = any(row.get("cached_input_tokens") or row.get("cache_creation_input_tokens") for row in rows)
    cache_columns = [Column("cache read", "right", "number", drop=4), Column("saved", "right", "number", drop=4)]
    if not cached:
        cache_columns = []
    columns = [Column(key) for key in keys] + [Column("calls", "right", "number"), Column("cost", "right", "number")]
    columns += [
        Column(
            f.replace("_input_tokens", "").replace("_tokens", "").replace("_", " "),
            "right",
            "number",
            drop=drops.get(f, 0),
        )
        for f in TOKEN_FIELDS
    ] + cache_columns
    body = [
        [str(row[k]) for k in keys]
        + [f"{row['calls']:,}", usd(row["cost"])]
        + [f"{row.get(f) or 0:,}" for f in TOKEN_FIELDS]
        + ([f"{row.get('cache_read_share', 0.0):.0%}", usd(row.get("cache_savings", 0.0))] if cached else [])
        for row in rows
    ]
    if rows:
        body.append(
            ["total"]
            + [""] * (len(keys) - 1)
            + [f"{total.get('calls', 0):,}", usd(total.get("cost", 0.0))]
            + [f"{total.get(f) or 0:,}" for f in TOKEN_FIELDS]
            + ([f"{total.get('cache_read_share', 0.0):.0%}", usd(total.get("cache_savings", 0.0))] if cached else [])
        )
    console.print(
        build_table(
            columns, body, width=console.width if interactive else None, title="cost report", total_row=bool(rows)
        )
    )


def _moment(flag: str, text: str | None, *, end: bool = False) -> Any:
    """`--since`/`--until` as a moment; a bad one is refused naming the flag, the value and what would do."""
    from orchestrate.errors import UserInputError
    from orchestrate.money.cost_report import parse_moment

    if not text:
        return None
    try:
        return parse_moment(text, end=end)
    except UserInputError:
        fail(f"{flag} {text!r}: expected a month (2026-11), a day (2026-11-01) or an ISO datetime, in UTC")
