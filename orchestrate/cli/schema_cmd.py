"""`orchestrate schema`: print the JSON Schema of workflow files (for editors and CI)."""

from __future__ import annotations

import sys


def schema() -> None:
    """Print the workflow JSON Schema (2020-12) that `validate` checks against.

    \b
    Examples:
      orchestrate schema > workflow.schema.json
    """
    from orchestrate.workflow.schema import workflow_schema_text

    text = workflow_schema_text()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
