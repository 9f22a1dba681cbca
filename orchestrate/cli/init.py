"""`orchestrate init`: a commented, valid starter workflow to edit, instead of a blank page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import fail

__all__ = ["init"]

_MODULES = ("HR", "Finance", "Inventory", "Compliance", "General")


def _complete_module(incomplete: str) -> list[str]:
    return [m for m in _MODULES if m.lower().startswith(incomplete.lower())]


def init(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The workflow's name; also its file name.")
    ] = "my_workflow",
    module: Annotated[
        str,
        typer.Option(
            "--module",
            "-m",
            metavar="[" + "|".join(_MODULES) + "]",
            autocompletion=_complete_module,
            help="The ERP module the example is about.",
        ),
    ] = "General",
    tools: Annotated[
        bool, typer.Option("--tools", help="Also write a tool module (NAME_tools.py) and use it.")
    ] = False,
    directory: Annotated[Path, typer.Option("--dir", "-d", metavar="DIR", help="Where to write the files.")] = Path(
        "."
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
) -> None:
    """Write a starter workflow (NAME.yaml) that validates and runs offline as it is.

    \b
    Examples:
      orchestrate init
      orchestrate init invoice_check --module Finance
      orchestrate init vendor_screening --module Compliance --tools --dir workflows/
    """
    from orchestrate.fsutil import atomic_write_text
    from orchestrate.workflow.starter import starter_files

    starter = starter_files(name, module, tools=tools)
    files = [(directory / starter.workflow_file, starter.workflow_text)]
    if starter.tools_file and starter.tools_text:
        files.append((directory / starter.tools_file, starter.tools_text))
    existing = [str(path) for path, _ in files if path.exists()]
    if existing and not force:
        fail(f"{', '.join(existing)}: already exists; choose another NAME or pass --force")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{directory}: cannot create the folder: {exc.strerror or exc}")
    for path, text in files:
        atomic_write_text(path, text)
        sys.stdout.write(f"wrote {path}\n")
    workflow = files[0][0]
    sys.stdout.write(
        "next:\n"
        f"  orchestrate validate {workflow}\n"
        f"  orchestrate plan {workflow}\n"
        f"  orchestrate run {workflow} --simulate\n"
    )
