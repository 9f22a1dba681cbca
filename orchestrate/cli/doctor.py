"""`orchestrate doctor [WORKFLOW...]`: is this machine ready to run these workflows?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import StateOption, check_format, format_option, json_alias, print_json

__all__ = ["doctor"]

FORMATS = ("text", "json")
MARKS = {"ok": "ok", "problem": "PROBLEM", "warning": "warning", "skipped": "skipped"}


def doctor(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="WORKFLOW", show_default=False, help="Workflow files or folders to check for."),
    ] = None,
    state: StateOption = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Where run folders would be created.")
    ] = Path("runs"),
    offline: Annotated[bool, typer.Option("--offline", help="Ask no server: keys, prices and folders only.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="How long each server may take to answer.")
    ] = 5.0,
    fmt: format_option(FORMATS) = "text",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """Check this machine for the workflows: Python, each provider's key (never printed) and
    endpoint (one cheap request: list the models), the prices of the models, the shared state
    (--state, ORCHESTRATE_STATE_URL) and the run folder. One line a check, each problem with
    its fix; exit 1 when anything is wrong, 0 when all is well.

    \b
    Examples:
      orchestrate doctor workflows/finance_month_end_close.yaml
      orchestrate doctor workflows/ --offline
      orchestrate doctor close.yaml --state redis://localhost:6379/0 --format json
    """
    from orchestrate.app.doctor import diagnose
    from orchestrate.workflow.loader import find_workflow_files

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    files = find_workflow_files(list(paths or []))
    checks = diagnose(files, state_url=state, output_dir=output_dir, offline=offline, timeout=timeout)
    problems = [c for c in checks if c.status == "problem"]
    if fmt == "json":
        print_json("doctor", {"ok": not problems, "checks": [c.to_dict() for c in checks]})
    else:
        _print(checks)
    if problems:
        raise typer.Exit(1)


def _print(checks: list[Any]) -> None:
    from orchestrate.observe.summary import plural
    from orchestrate.printable import printable

    width = max(len(c.name) for c in checks)
    out = sys.stdout
    for check in checks:
        out.write(f"{MARKS[check.status]:<7}  {check.name:<{width}}  {printable(check.detail)}\n")
        if check.fix:
            out.write(f"{'':<7}  {'':<{width}}  fix: {printable(check.fix)}\n")
    problems = sum(1 for c in checks if c.status == "problem")
    if problems:
        out.write(f"{plural(problems, 'problem')}\n")
    else:
        out.write(f"ready: {plural(len(checks), 'check')} passed or skipped\n")
