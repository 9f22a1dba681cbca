"""`orchestrate report`: rebuild a run's report.html, or write one report over several runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import latest_run_dir

__all__ = ["report"]


def report(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR",
            help="Run folders, or folders of run folders (like runs/); latest: the newest in ./runs.",
            show_default=False,
            callback=latest_run_dir,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the report (default: RUN_DIR/report.html for one run, ./report.html over several).",
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report (timeline, graph, costs, failures, prompts and answers).

    One run folder: its report.html is rebuilt. Several (or a folder of runs): one report over
    all of them. The file needs no network to open: inline CSS and SVG, no script.

    Examples:

        orchestrate report runs/finance_month_end_close-20261125T101500Z

        orchestrate report runs/ -o month-end.html
    """
    from orchestrate.observe.html_report import write_report
    from orchestrate.observe.run_folder import find_run_folders

    folders = find_run_folders(paths)
    target = (
        output if output is not None else (folders[0] / "report.html" if len(folders) == 1 else Path("report.html"))
    )
    write_report(target, folders)
    sys.stdout.write(f"{target}\n")
