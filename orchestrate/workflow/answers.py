"""Fixed answers for offline runs (``--simulate --answers answers.yaml``), read and checked.

A YAML (or JSON) mapping from agent names to what each answers instead of
the simulated provider::

    code_invoice: {gl_account: "6100", decision: approve}    # a JSON answer
    explain: "Held: the IBAN changed last week."             # a text answer
    route: [approve, hold, hold]                             # one per call, in order (the last repeats)
    classify: "{row.expected_output}"                        # from a dataset column (or an input)
    code_invoice.judge: {score: 0.9, reason: fine}           # a rubric's judge

Strings may hold ``{row.COLUMN}`` and ``{inputs.NAME}`` placeholders (a
string that is exactly one placeholder keeps the column's value: a JSON text
in a CSV cell is sent as it is). A JSON array answer is written as a list of
one list. Agents without an answer are simulated as before. Every problem is
reported at its line and column, as for a workflow file.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate.errors import Problem, WorkflowValidationError
from orchestrate.workflow.models import Workflow
from orchestrate.workflow.templates import Reference, TemplateError, references

__all__ = ["Answers", "load_answers"]

_JUDGE = ".judge"


@dataclass(frozen=True)
class Answers:
    """What each agent answers: a list of answers per agent name (a text, or a JSON value)."""

    by_agent: dict[str, list[Any]]
    file: str = "<answers>"

    def columns(self) -> set[str]:
        """The dataset columns the answers read (``{row.COLUMN}``)."""
        found: set[str] = set()
        for answers in self.by_agent.values():
            for answer in answers:
                for text in _strings(answer):
                    try:
                        found.update(r.path[0] for r in references(text) if _is_row(r) and r.path)
                    except TemplateError:
                        continue
        return found

    def text(self, agent: str, call: int, row: dict[str, Any], inputs: dict[str, Any]) -> str | None:
        """The answer of `agent`'s call number `call` (0-based) as the text a model would send,
        or None when the file has none for it."""
        answers = self.by_agent.get(agent)
        if not answers:
            return None
        answer = _fill(answers[min(call, len(answers) - 1)], row, inputs)
        return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def _is_row(ref: Reference) -> bool:
    return ref.kind == "name" and ref.name == "row"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _fill(value: Any, row: dict[str, Any], inputs: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, row, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, row, inputs) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    refs = references(value)
    if len(refs) == 1 and refs[0].offset == 0 and len(refs[0].text) + 2 == len(value):
        return _value(refs[0], row, inputs)
    out, last = [], 0
    for ref in refs:
        out.append(value[last : ref.offset].replace("{{", "{").replace("}}", "}"))
        found = _value(ref, row, inputs)
        out.append(found if isinstance(found, str) else json.dumps(found, ensure_ascii=False))
        last = ref.offset + len(ref.text) + 2
    out.append(value[last:].replace("{{", "{").replace("}}", "}"))
    return "".join(out)


def _value(ref: Reference, row: dict[str, Any], inputs: dict[str, Any]) -> Any:
    source = row if _is_row(ref) else inputs
    key = ref.path[0] if _is_row(ref) else ref.name
    value = source.get(key, "")
    for part in ref.path[1:] if _is_row(ref) else ref.path:
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def load_answers(path: Path, workflow: Workflow) -> Answers:
    """Read and check an answers file against `workflow`.

    Raises:
        WorkflowValidationError: every problem, each at its file:line:col.
    """
    from orchestrate.workflow.loader import parse_yaml, read_text

    file = str(path)
    text, problems = read_text(path)
    if text is None:
        raise WorkflowValidationError(problems)
    located, problems = parse_yaml(text, file, what="answers (a mapping of agent names to answers)")
    if located is None or problems:
        raise WorkflowValidationError(problems)
    names = {a.name for a in workflow.agents if not a.is_code_step}
    judged = {a.name + _JUDGE for a in workflow.agents if any("rubric" in str(e) for e in a.expect)}
    if any("rubric" in str(e) for e in workflow.expect):
        judged.add("outputs" + _JUDGE)
    by_agent: dict[str, list[Any]] = {}
    for name, value in located.value.items():
        if name not in names and name not in judged:
            close = difflib.get_close_matches(name, sorted(names | judged), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"agents that call a model: {', '.join(sorted(names))}"
            problems.append(
                located.at(
                    (name,),
                    f"{name!r} is not an agent of workflow {workflow.name!r} that calls a model",
                    key=True,
                    hint=hint,
                )
            )
            continue
        answers = value if isinstance(value, list) else [value]
        if not answers:
            problems.append(located.at((name,), f"{name}: an empty list answers nothing; give at least one answer"))
            continue
        for j, answer in enumerate(answers):
            where = (name, j) if isinstance(value, list) else (name,)
            if answer is None:
                problems.append(located.at(where, f"{name}: an answer cannot be null"))
            for text_value in _strings(answer):
                problems += _check_refs(located, where, text_value, name, workflow)
        by_agent[name] = answers
    if problems:
        raise WorkflowValidationError(sorted(problems, key=lambda p: (p.line, p.column)))
    return Answers(by_agent, file)


def _check_refs(located: Any, where: tuple[Any, ...], text: str, name: str, workflow: Workflow) -> list[Problem]:
    span = text.count("\n") + 3
    try:
        refs = references(text)
    except TemplateError as exc:
        return [located.within(where, text[exc.offset :][:40], f"{name}: {exc}", span)]
    problems = []
    for ref in refs:
        if _is_row(ref):
            if not ref.path:
                problems.append(
                    located.within(where, ref.describe(), f"{name}: {ref.describe()}: say which column", span)
                )
        elif ref.name not in workflow.inputs:
            problems.append(
                located.within(
                    where,
                    ref.describe(),
                    f"{name}: {ref.describe()} names no row column or input of the workflow",
                    span,
                )
            )
    return problems
