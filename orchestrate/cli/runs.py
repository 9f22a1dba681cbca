"""`orchestrate runs [DIR]`: the run folders, newest first, with their workflow, status, rows and cost."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import check_format, format_option, is_interactive, json_alias, print_json

__all__ = ["runs"]

FORMATS = ("table", "json")


def runs(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="The folder holding run folders (default: ./runs).")
    ] = Path("runs"),
    fmt: format_option(FORMATS) = "table",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
    expired: Annotated[
        bool,
        typer.Option(
            "--expired",
            help="Only the run folders past the retention their audit trail records (retention_days); deletes nothing.",
        ),
    ] = False,
) -> None:
    """List the run folders (single runs and dataset runs), newest first: workflow, status, rows,
    cost (simulated runs marked: their cost is a preview, not spend), started, duration.

    The newest one can be named `latest` wherever a RUN_DIR is taken (show, report,
    approve, cost-report, eval, run --resume).

    \b
    Examples:
      orchestrate runs
      orchestrate runs ci/runs --format json
      orchestrate show latest
      orchestrate runs --expired
    """
    from orchestrate.observe.run_list import find_runs

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    if expired:
        _expired(folder, fmt)
        return
    entries = find_runs(folder)
    if fmt == "json":
        print_json("run_list", {"folder": str(folder), "runs": [e.to_dict() for e in entries]})
        return
    if not entries:
        sys.stderr.write(f"no run folders in {folder}\n")
        return
    from orchestrate.money.amounts import usd
    from orchestrate.observe.tables import Column, build_table, plain_console

    columns = (
        Column("run folder"),
        Column("workflow", drop=3),
        Column("status"),
        Column("rows", "right", "number", drop=2),
        Column("cost", "right", "number"),
        Column("started", drop=4),
        Column("duration", "right", "number", drop=1),
    )
    rows = [
        [
            str(e.path),
            e.workflow,
            e.status.replace("_", " "),
            f"{e.rows:,}" if e.rows is not None else "",
            usd(e.cost) + (" (simulated)" if e.simulated else ""),
            _started(e.started_at),
            f"{e.duration_seconds:.2f}s" if e.duration_seconds is not None else "",
        ]
        for e in entries
    ]
    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    console.print(build_table(columns, rows, width=console.width if interactive else None))


def _expired(folder: Path, fmt: str) -> None:
    """The folders whose audit trail's retention has passed: deleting them stays the user's decision."""
    import time

    from orchestrate.observe.audit_retention import expired_runs

    found = expired_runs(folder, now=time.time()) if folder.is_dir() else []
    if fmt == "json":
        print_json("expired_runs", {"folder": str(folder), "runs": found})
        return
    if not found:
        sys.stderr.write(f"no run folders in {folder} past their retention\n")
        return
    for item in found:
        sys.stdout.write(
            f"{item['run_dir']}  started {item['started'][:10]}, kept {item['retention_days']} days, "
            f"expired {item['days_past']} days ago\n"
        )


def _started(at: str | None) -> str:
    if not at:
        return ""
    from orchestrate.observe.approval_view import when_decided

    return when_decided(at)
