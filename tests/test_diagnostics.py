"""Validation messages like a compiler's: one error per mistake, the line, a caret, help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate.errors import Problem, WorkflowValidationError
from orchestrate.workflow.diagnostics import render_problem, token_length
from orchestrate.workflow.loader import load_workflow_text

BASE = """\
name: close
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini}
agents:
  - name: bank_reconciliation
    prompt_template: reconcile
    output_schema:
      type: object
      properties:
        adjusted_balance: {type: number}
        lines:
          type: array
          items:
            type: object
            properties: {amount: {type: number}}
        notes: {type: object, additionalProperties: true}
  - name: variance
    dependencies: [bank_reconciliation]
    prompt_template: "Balance {PLACEHOLDER}"
"""


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow_text(text, file="close.yaml")
    return caught.value.problems


def valid(text: str) -> None:
    load_workflow_text(text, file="close.yaml")


def test_a_misspelled_key_is_one_error_with_did_you_mean() -> None:
    text = BASE.replace("PLACEHOLDER", "bank_reconciliation.output.adjusted_balance").replace(
        "    dependencies: [bank_reconciliation]", "    dependancies: [bank_reconciliation]"
    )
    (problem,) = problems_of(text)
    assert problem.message == "unknown key 'dependancies' in agents[1]"
    assert problem.hint == "did you mean 'dependencies'?"
    assert (problem.line, problem.column) == (19, 5)


def test_a_misspelled_required_key_is_not_also_missing() -> None:
    text = BASE.replace("PLACEHOLDER", "bank_reconciliation.output").replace(
        '    prompt_template: "Balance', '    promt_template: "Balance'
    )
    (problem,) = problems_of(text)
    assert "unknown key 'promt_template'" in problem.message and "prompt_template" in problem.hint


@pytest.mark.parametrize(
    "field", ["adjusted_balance", "lines.0.amount", "notes.anything", "json.adjusted_balance", "text"]
)
def test_fields_the_output_schema_declares_are_valid(field: str) -> None:
    valid(BASE.replace("PLACEHOLDER", f"bank_reconciliation.output.{field}"))


@pytest.mark.parametrize(
    "field, missing, hint",
    [
        ("adjusted_balanse", "adjusted_balanse", "did you mean 'adjusted_balance'?"),
        ("lines.0.amout", "amout", "did you mean 'amount'?"),
        ("total", "total", "declared: adjusted_balance, lines, notes"),
    ],
)
def test_a_field_the_output_schema_does_not_declare_is_an_error(field: str, missing: str, hint: str) -> None:
    (problem,) = problems_of(BASE.replace("PLACEHOLDER", f"bank_reconciliation.output.{field}"))
    assert f"declares no field {missing!r}" in problem.message
    assert problem.hint == hint
    assert problem.line == 20 and problem.length == len(f"{{bank_reconciliation.output.{field}}}")


def test_json_in_a_prompt_gets_the_double_brace_hint() -> None:
    text = BASE.replace('"Balance {PLACEHOLDER}"', """'Answer as {"ok": true}'""")
    (problem,) = problems_of(text)
    assert "{{" in problem.hint and "}}" in problem.hint
    valid(BASE.replace('"Balance {PLACEHOLDER}"', """'Answer as {{"ok": true}}'"""))


def test_render_shows_the_line_a_caret_under_the_node_and_help() -> None:
    lines = ["agents:", "  - name: a", "    dependancies: [b]"]
    problem = Problem(
        "w.yaml",
        3,
        5,
        "unknown key 'dependancies' in agents[0]",
        "agents[0]",
        hint="did you mean 'dependencies'?",
        length=len("dependancies"),
    )
    assert render_problem(problem, lines) == (
        "w.yaml:3:5: unknown key 'dependancies' in agents[0]\n"
        "  |\n"
        "3 |     dependancies: [b]\n"
        "  |     ^^^^^^^^^^^^\n"
        "  = help: did you mean 'dependencies'?"
    )
    # Without a length, the token at the column is underlined; a position off the file is just the line.
    assert render_problem(Problem("w.yaml", 3, 20, "x"), lines).splitlines()[-1] == "  |                    ^"
    assert render_problem(Problem("w.yaml", 9, 1, "x", hint="h"), lines) == "w.yaml:9:1: x\n  = help: h"


@pytest.mark.parametrize(
    "line, column, length",
    [
        ("    model: gpt-4o-mni", 12, 10),
        ("  module: finance  # comment", 11, 7),
        ('    name: "two words"', 11, 11),
        ("    dependencies: [a, bb]", 23, 2),
        ("key: value", 1, 3),
    ],
)
def test_token_length(line: str, column: int, length: int) -> None:
    assert token_length(line, column) == length


def test_validate_prints_carets_and_help_and_json_carries_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "close.yaml"
    path.write_text(BASE.replace("PLACEHOLDER", "bank_reconciliation.output.adjusted_balanse"))
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:20:")
    assert '20 |     prompt_template: "Balance {bank_reconciliation.output.adjusted_balanse}"' in proc.stderr
    caret_line = next(line for line in proc.stderr.splitlines() if "^" in line)
    assert caret_line.count("^") == len("{bank_reconciliation.output.adjusted_balanse}")
    assert "= help: did you mean 'adjusted_balance'?" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "validate", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert '"hint": "did you mean \'adjusted_balance\'?"' in proc.stdout
