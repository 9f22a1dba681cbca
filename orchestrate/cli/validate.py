"""`orchestrate validate`: every problem of every workflow file, each at its line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import check_format, fail, format_option, json_alias, print_json
from orchestrate.errors import Problem

__all__ = ["validate"]

FORMATS = ("text", "json")


def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH", show_default=False, help="Workflow files or folders (searched for *.yaml, *.yml)."
        ),
    ],
    fmt: format_option(FORMATS) = "text",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """Check workflow files against the schema and the semantic rules.

    Prints each problem as FILE:LINE:COL: message, then the source line with a
    caret under the offending node and, when there is one, a help line. Exit 0
    when every file is valid, 2 otherwise. Warnings (a parameter the model does
    not accept, which will not be sent) are printed as FILE:LINE:COL: warning:
    message and do not make a file invalid. --format json prints
    {"valid", "files": [...]} on stdout, each problem with its "hint".

    \b
    Examples:
      orchestrate validate workflows/
      orchestrate validate close.yaml --format json
    """
    from orchestrate.workflow.loader import find_workflow_files, validate_file

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    files = find_workflow_files(paths)
    if not files:
        fail("no workflow files (*.yaml, *.yml) found in " + ", ".join(str(p) for p in paths))
    report = []
    for file in files:
        problems = validate_file(file)
        report.append((file, problems))
    bad = sum(1 for _, problems in report if _errors(problems))
    if fmt == "json":
        payload = {
            "valid": bad == 0,
            "files": [
                {"file": str(file), "valid": not _errors(problems), "problems": [p.to_dict() for p in problems]}
                for file, problems in report
            ],
        }
        print_json("validation", payload)
    else:
        from orchestrate.observe.summary import plural
        from orchestrate.workflow.diagnostics import render_problem

        for file, problems in report:
            lines = _source_lines(file) if problems else []
            for problem in problems:
                sys.stderr.write(render_problem(problem, lines) + "\n\n")
            if not _errors(problems):
                sys.stdout.write(f"{file}: ok\n")
        count = sum(len(_errors(problems)) for _, problems in report)
        if bad:
            checked = plural(len(report), "file")
            sys.stderr.write(
                f"{plural(count, 'problem')} in {bad} of {checked}\n"
                if len(report) > 1
                else f"{plural(count, 'problem')} in {checked}\n"
            )
        else:
            sys.stdout.write(f"{plural(len(report), 'file')} valid\n")
    raise typer.Exit(2 if bad else 0)


def _errors(problems: list[Problem]) -> list[Problem]:
    """The problems that make a file invalid: all but the warnings."""
    return [p for p in problems if p.severity != "warning"]


def _source_lines(file: Path) -> list[str]:
    from orchestrate.fsutil import TooLargeError, read_bytes_capped
    from orchestrate.workflow.loader import MAX_FILE_BYTES

    try:  # never more than the size limit: the file may be /dev/zero or an endless pipe
        return read_bytes_capped(file, MAX_FILE_BYTES).decode("utf-8-sig", errors="replace").splitlines()
    except (OSError, TooLargeError):
        return []
