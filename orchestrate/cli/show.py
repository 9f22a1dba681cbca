"""`orchestrate show`: a run, or one agent of it, without reaching for jq."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orchestrate.cli.common import check_format, format_option, is_interactive, json_alias

__all__ = ["show"]

FORMATS = ("text", "json")


def show(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", show_default=False,
                                            help="A run folder (or its result.json).")],
    agent: Annotated[Optional[str], typer.Argument(metavar="AGENT", show_default=False,
                                                   help="Show this agent in full.")] = None,
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
    """
    from orchestrate.observe.run_view import (
        agent_document,
        agent_renderables,
        load_result,
        run_renderables,
        run_summary,
    )

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    document = load_result(run_dir)
    if fmt == "json":
        payload = agent_document(document, agent) if agent else run_summary(document)
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    from orchestrate.observe.tables import plain_console

    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    if agent:
        parts = agent_renderables(document, agent)
    else:
        folder = run_dir if run_dir.is_dir() else run_dir.parent
        parts = run_renderables(document, width=console.width if interactive else None, title=str(folder))
        parts.append(_hint(folder))
    for part in parts:
        console.print(part)


def _hint(folder: Path) -> object:
    import shlex

    from rich.text import Text

    return Text(f"one agent in full: orchestrate show {shlex.quote(str(folder))} AGENT", style="dim")
