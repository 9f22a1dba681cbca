"""`orchestrate schema`: print a JSON Schema the package ships: the workflow file's (for editors and
CI), or that of a document a run folder holds."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def schema(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            show_default=False,
            help="workflow (the default), or a run folder's document: result, cost, invocation, approvals, ...",
        ),
    ] = "workflow",
    list_names: Annotated[bool, typer.Option("--list", help="List the names of the schemas, one a line.")] = False,
) -> None:
    """Print a JSON Schema (2020-12): the workflow file's, which `validate` checks against, or the
    schema of a document a run folder holds (`result`, `cost`, `approvals`, `unsettled_scope`, ...).

    \b
    Examples:
      orchestrate schema > workflow.schema.json
      orchestrate schema result > result.schema.json
      orchestrate schema --list
    """
    from orchestrate.workflow.schema import schema_names, schema_text

    if list_names:
        sys.stdout.write("".join(f"{n}\n" for n in schema_names()))
        return
    text = schema_text(name)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
