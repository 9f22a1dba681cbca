"""The answer of a run: its inputs, and its declared outputs or else its last agents' answers.

What a person opens a run for comes first everywhere a run is shown (the
closing lines, `orchestrate show`, report.html, the Markdown summary). A
workflow that declares `outputs:` is answered by them; one that does not is
answered by the agents nothing depends on (its last agents), which is what
the run was for. Everything here reads a result document (result.json as a
dict), so a run that just ended and one read from disk look the same.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Answer",
    "agent_answer",
    "answer_lines",
    "default_width",
    "fit",
    "flatten",
    "inline",
    "input_lines",
    "last_agents",
    "run_answer",
    "show_command",
]

_DEFAULT_WIDTH = 100
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Answer:
    """One named value of a run's answer.

    Attributes:
        name: The output's name, or the agent's for a last agent's answer.
        value: The value (JSON-like), None where what it names did not complete.
        agent: The agent whose answer this is (None for a declared output).
        status: That agent's status (None for a declared output).
    """

    name: str
    value: Any
    agent: str | None = None
    status: str | None = None


def agent_answer(agent: Mapping[str, Any]) -> Any:
    """An agent's answer: its JSON when it gave JSON, else its text (None when it gave none)."""
    output = agent.get("output")
    if isinstance(output, Mapping):
        if "json" in output:
            return output["json"]
        if set(output) == {"text"}:
            return output["text"]
    return output


def last_agents(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The agents no other agent depends on, in file order."""
    agents = [a for a in document.get("agents", []) if isinstance(a, Mapping)]
    needed = {str(dep) for a in agents for dep in (a.get("dependencies") or [])}
    return [a for a in agents if str(a.get("name")) not in needed]


def run_answer(document: Mapping[str, Any]) -> tuple[str, list[Answer]]:
    """``("outputs", ...)`` for a workflow with `outputs:`, else ``("answers", ...)`` of its last agents.

    The last agents that gave no answer (skipped, failed, cancelled, waiting) are
    listed with their status, so an empty answer says why it is empty.
    """
    declared = document.get("outputs")
    if isinstance(declared, Mapping) and declared:
        return "outputs", [Answer(str(name), value) for name, value in declared.items()]
    answers = [
        Answer(str(a.get("name")), agent_answer(a), str(a.get("name")), str(a.get("status")))
        for a in last_agents(document)
    ]
    return "answers", answers


def inline(value: Any) -> str:
    """A value on one line: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def default_width() -> int:
    """The width to trim to when none is given: $COLUMNS, else the terminal's, else 100."""
    import shutil

    return shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns


def fit(text: str, room: int) -> tuple[str, bool]:
    """`text` on one line within `room` characters, and whether anything was cut."""
    first, *rest = text.splitlines() or [""]
    cut = bool(rest)
    if len(first) > room:
        first, cut = first[: max(room - 1, 1)].rstrip(), True
    return (first + _ELLIPSIS if cut else first), cut


def input_lines(document: Mapping[str, Any], *, width: int | None = None, indent: str = "  ") -> list[str]:
    """``inputs:`` and a line per input (``period=2026-10``, as ``--input`` takes it), trimmed to the width."""
    inputs = document.get("inputs")
    if not isinstance(inputs, Mapping) or not inputs:
        return []
    room = width or default_width()
    lines = ["inputs:"]
    for name, value in inputs.items():
        prefix = f"{indent}{name}="
        text, _ = fit(inline(value), max(room - len(prefix), 20))
        lines.append(prefix + text)
    return lines


def show_command(run_dir: Path | str, row: str | None = None) -> str:
    """``orchestrate show RUN_DIR`` (with ``--row KEY``), quoted to be pasted into a shell."""
    command = f"orchestrate show {shlex.quote(str(run_dir))}"
    return f"{command} --row {shlex.quote(row)}" if row is not None else command


def answer_lines(
    document: Mapping[str, Any],
    show: str | None = None,
    *,
    width: int | None = None,
    indent: str = "  ",
) -> list[str]:
    """The run's outputs (or its last agents' answers), a line each, long ones trimmed.

    A trimmed value is followed by the command that prints it in full, built on
    `show` (the run's ``orchestrate show ...`` command, see `show_command`).
    """
    kind, answers = run_answer(document)
    if not answers:
        return []
    room = width or default_width()
    lines = ["outputs:" if kind == "outputs" else ("answer:" if len(answers) == 1 else "answers:")]
    trimmed: list[Answer] = []
    for item in answers:
        prefix = f"{indent}{item.name}: "
        if item.agent is not None and item.status != "completed":
            lines.append(f"{prefix}({(item.status or 'no answer').replace('_', ' ')})")
            continue
        text, cut = fit(inline(item.value), max(room - len(prefix), 20))
        lines.append(prefix + text)
        if cut:
            trimmed.append(item)
    if trimmed and show is not None:
        if kind == "outputs":
            lines.append(f"{indent}(trimmed; in full: {show} --format json)")
        else:
            for item in trimmed:
                lines.append(f"{indent}({item.name} trimmed; in full: {show} {shlex.quote(str(item.agent))})")
    return lines


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (``payment_decision.decision``); lists stay values."""
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value} if prefix else {}
