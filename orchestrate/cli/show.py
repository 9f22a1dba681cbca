"""`orchestrate show`: a run, or one agent of it, without reaching for jq."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import check_format, format_option, is_interactive, json_alias, latest_run_dir, print_json

__all__ = ["show"]

FORMATS = ("text", "json", "table", "csv", "jsonl")
DATASET_FORMATS = ("table", "csv", "jsonl")


def show(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            show_default=False,
            help="A run folder (or its result.json); latest: the newest in ./runs.",
            callback=latest_run_dir,
        ),
    ],
    agent: Annotated[
        str | None, typer.Argument(metavar="AGENT", show_default=False, help="Show this agent in full.")
    ] = None,
    row: Annotated[
        str | None,
        typer.Option(
            "--row", metavar="KEY", help="In a dataset run's folder: show this row (by its key) like a single run."
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="OUTPUT_PATH",
            help="In a dataset run's folder: count rows by the value of an output, e.g. payment_decision.decision.",
        ),
    ] = None,
    fmt: format_option(FORMATS) = "text",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """Show a run: its status and each agent's status, reason, tokens, cost and time.

    With AGENT: that agent's rendered system prompt and prompt, its answer
    (JSON pretty-printed), its failed attempts' errors and its tool calls.

    \b
    Examples:
      orchestrate show runs/finance_month_end_close-20261125T101010Z
      orchestrate show runs/finance_month_end_close-20261125T101010Z bank_reconciliation
      orchestrate show runs/finance_month_end_close-20261125T101010Z --format json
      orchestrate show runs/invoice_review-20261125T101010Z --row INV-2026-10231
      orchestrate show runs/invoice_review-20261125T101010Z --format csv > results.csv
      orchestrate show runs/invoice_review-20261125T101010Z --by payment_decision.decision

    A dataset run's folder: --format table, csv or jsonl lists one line per row
    key (its latest state, after any resume) with its inputs, status, outputs
    (nested ones as dotted columns), cost and error; --by OUTPUT_PATH counts
    rows by an output's value.
    """
    from orchestrate.observe.answer import show_command
    from orchestrate.observe.run_view import (
        agent_document,
        agent_renderables,
        load_result,
        run_renderables,
        run_summary,
    )

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    from orchestrate.observe.dataset_view import is_dataset_run

    dataset = row is None and is_dataset_run(run_dir)
    if (fmt in DATASET_FORMATS or by is not None) and not dataset:
        from orchestrate.cli.common import fail

        what = f"--by {by}" if by is not None else f"--format {fmt}"
        fail(f"{what} lists the rows of a dataset run; {run_dir} is a single run (try --format json)")
    if dataset and (fmt in DATASET_FORMATS or by is not None):
        from orchestrate.cli.show_rows import show_rows

        show_rows(run_dir, fmt, by)
        return
    if dataset:
        _show_batch(run_dir, fmt, agent)
        return
    if row is not None:
        from orchestrate.observe.dataset_view import load_row

        document = load_row(run_dir, row)
    else:
        document = load_result(run_dir)
    from orchestrate.run.batch_ledger import batch_summaries

    folder = run_dir if run_dir.is_dir() else run_dir.parent
    batches = batch_summaries(folder) if row is None else []
    if fmt == "json":
        payload = agent_document(document, agent) if agent else {**run_summary(document), "batches": batches}
        if not agent and document.get("expectations"):
            payload["expectations"] = document["expectations"]
        print_json("agent" if agent else "run", payload, ensure_ascii=False, default=str)
        return
    from orchestrate.observe.tables import plain_console

    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    if agent:
        parts = agent_renderables(document, agent)
    else:
        parts = run_renderables(
            document,
            width=console.width if interactive else None,
            title=str(folder),
            show=show_command(folder, row),
        )
        parts.extend(provider_batches(batches, folder, document))
        parts.extend(_expectations(document))
    for part in parts:
        console.print(part)
    if not agent:  # a command to copy: one line, whatever the width (the terminal may wrap it, never we)
        console.print(_hint(folder) if row is None else _row_hint(folder, row), soft_wrap=True)


def _show_batch(run_dir: Path, fmt: str, agent: str | None) -> None:
    """A dataset batch: its counts, totals and the rows that did not complete."""
    from orchestrate.cli.common import fail
    from orchestrate.observe.dataset_view import dataset_renderables, dataset_summary, load_dataset_run

    if agent is not None:
        fail(f"{run_dir} is a dataset run: name the row too, e.g. --row KEY {agent}")
    from orchestrate.run.batch_ledger import batch_summaries

    folder, document = load_dataset_run(run_dir)
    batches = batch_summaries(folder)
    if fmt == "json":
        body = {**dataset_summary(folder, document), "provider_batches": batches}
        print_json("dataset_run", body, ensure_ascii=False, default=str)
        return
    import shlex

    from rich.text import Text

    from orchestrate.observe.tables import plain_console

    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    for part in dataset_renderables(folder, document, width=console.width if interactive else None):
        console.print(part)
    for part in provider_batches(batches, folder, document, data=True):
        console.print(part)
    if (folder / "evaluation.json").is_file():  # the expectations' pass rates over the rows
        from orchestrate.fsutil import read_regular_text
        from orchestrate.run.evaluation import dataset_lines

        for line in dataset_lines(json.loads(read_regular_text(folder / "evaluation.json"))):
            console.print(Text(line))
    quoted = shlex.quote(str(folder))
    console.print(Text(f"one row like a single run: orchestrate show {quoted} --row KEY", style="dim"), soft_wrap=True)
    console.print(
        Text(f"every row: orchestrate show {quoted} --format csv (or table, jsonl)", style="dim"), soft_wrap=True
    )
    console.print(Text(f"rows by an output: orchestrate show {quoted} --by OUTPUT_PATH", style="dim"), soft_wrap=True)


def provider_batches(
    batches: list[dict[str, object]], folder: Path, document: dict[str, object], *, data: bool = False
) -> list[object]:
    """The provider batches of a run (``--provider-batch``): the open ones each on a line, with
    the command that collects them."""
    if not batches:
        return []
    import shlex

    from rich.text import Text

    from orchestrate.observe.progress import batch_line

    still = [b for b in batches if b["open"]]
    if not still:
        return [Text(f"provider batches: {len(batches)}, all collected", style="dim")]
    parts: list[object] = [
        Text(
            f"open provider batches ({len(still)} of {len(batches)}; 'orchestrate run "
            f"--resume {shlex.quote(str(folder))}' collects them):",
            style="bold",
        )
    ]
    parts.extend(Text(f"  {batch_line(b)}, {b['requests']} of this run's requests") for b in still)
    return parts


def _row_hint(folder: Path, row: str) -> object:
    import shlex

    from rich.text import Text

    return Text(
        f"one agent in full: orchestrate show {shlex.quote(str(folder))} --row {shlex.quote(row)} AGENT", style="dim"
    )


def _expectations(document: dict[str, object]) -> list[object]:
    """The run's (or row's) expectations: the count line, then what did not pass."""
    from rich.text import Text

    from orchestrate.run.evaluation import expectation_lines

    found = document.get("expectations")
    return [Text(line) for line in expectation_lines(found if isinstance(found, dict) else None)]


def _hint(folder: Path) -> object:
    import shlex

    from rich.text import Text

    return Text(f"one agent in full: orchestrate show {shlex.quote(str(folder))} AGENT", style="dim")
