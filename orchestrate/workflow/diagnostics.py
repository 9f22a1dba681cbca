"""Problems shown the way compilers show them: the source line, a caret under the node, help.

    bad.yaml:81:5: unknown key 'dependancies' in agents[3]
       |
    81 |     dependancies: [bank_reconciliation, accruals_review]
       |     ^^^^^^^^^^^^
       = help: did you mean 'dependencies'?

The first line is the one-line form (`FILE:LINE:COL: message`) that editors
and CI annotations read; the rest is for people. Plain text, no colour.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrate.errors import Problem

__all__ = ["render_problem", "token_length"]

# A YAML token from a column: a quoted string, or plain text up to what ends a flow item or a key.
_QUOTED = re.compile(r"""("(?:[^"\\]|\\.)*"?|'(?:[^']|'')*'?)""")
_PLAIN = re.compile(r"[^\s,\[\]{}#:]+(?:[ \t]+[^\s,\[\]{}#:]+)*")


def token_length(line: str, column: int) -> int:
    """How many characters the token starting at `column` (1-based) of `line` spans (at least 1)."""
    rest = line[column - 1 :]
    if not rest:
        return 1
    match = _QUOTED.match(rest) if rest[0] in "\"'" else _PLAIN.match(rest)
    return max(1, len(match.group(0)) if match else 1)


def render_problem(problem: Problem, lines: Sequence[str]) -> str:
    """`problem` with its source line, a caret under the offending node and a help line."""
    label = "warning: " if getattr(problem, "severity", "error") == "warning" else ""
    head = f"{problem.file}:{problem.line}:{problem.column}: {label}{problem.message}"
    if not 1 <= problem.line <= len(lines):
        return head + (f"\n  = help: {problem.hint}" if problem.hint else "")
    source = lines[problem.line - 1].replace("\t", " ")
    number = str(problem.line)
    gutter = " " * len(number)
    column = max(1, min(problem.column, len(source) + 1))
    length = problem.length or token_length(source, column)
    length = max(1, min(length, max(1, len(source) - column + 1)))
    out = [head, f"{gutter} |", f"{number} | {source}", f"{gutter} | {' ' * (column - 1)}{'^' * length}"]
    if problem.hint:
        out.append(f"{gutter} = help: {problem.hint}")
    return "\n".join(out)
