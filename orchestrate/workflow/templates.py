"""Prompt templates: the reference's `{name}` style, made safe and able to reach upstream outputs.

A placeholder is a dotted path of names and list indexes, nothing else::

    {period}                      a declared input (short form)
    {inputs.period}               the same, spelled out
    {ledger_check}                an upstream agent's output (its JSON if it has one, else its text)
    {ledger_check.output}         the same
    {agents.ledger_check.output}  the same, spelled out
    {ledger_check.output.text}    the raw text of the answer
    {ledger_check.output.total}   a field of its JSON answer (`.json.` may be left out)
    {ledger_check.output.rows.0}  an item of a list

`{{` and `}}` write literal braces. Segments starting with `_`, brackets,
calls, format specs (`:`) and conversions (`!`) are refused, so nothing like
`{x.__class__}` can reach Python internals: rendering only walks dicts and
lists we built from JSON. Values that are dicts or lists are written as JSON.

This module is a leaf: standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from orchestrate.errors import UserInputError

__all__ = [
    "Reference",
    "TemplateError",
    "lookup",
    "references",
    "render",
    "render_value",
    "single_placeholder",
    "static_prefix",
]

_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|[0-9]+")


class TemplateError(UserInputError):
    """A template is malformed or names something that does not exist."""

    def __init__(self, message: str, *, offset: int = 0) -> None:
        self.offset = offset  # position of the offending placeholder in the template
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Reference:
    """One placeholder: what it names and where it sits in the template."""

    text: str  # as written between the braces
    kind: str  # "input", "agent", or "name" (short form: an input or an agent)
    name: str  # the input or agent name
    path: tuple[str, ...]  # keys below the input's value or below the agent's output
    offset: int

    def describe(self) -> str:
        return "{" + self.text + "}"


_BRACE = re.compile(r"[{}]")


def _placeholders(template: str) -> Iterator[tuple[str, int]]:
    """(text, offset) of every `{...}` in `template`; raises on unbalanced braces."""
    i = 0
    while True:
        match = _BRACE.search(template, i)
        if match is None:
            return
        i = match.start()
        if template.startswith("{{", i) or template.startswith("}}", i):
            i += 2
            continue
        if template[i] == "}":
            raise TemplateError(f"single '}}' at position {i}; write '}}}}' for a literal brace", offset=i)
        end = template.find("}", i + 1)
        nested = template.find("{", i + 1)
        if end < 0 or (0 <= nested < end):
            raise TemplateError(f"unclosed '{{' at position {i}; write '{{{{' for a literal brace", offset=i)
        yield template[i + 1 : end], i
        i = end + 1


def _parse(text: str, offset: int) -> Reference:
    raw = text.strip()
    shown = "{" + text + "}"
    if not raw:
        raise TemplateError(f"empty placeholder {shown}", offset=offset)
    for bad, why in (
        ("[", "indexing with [] is not allowed; use .0"),
        ("(", "calls are not allowed"),
        ("!", "conversions (!r, !s) are not allowed"),
        (":", "format specs are not allowed"),
    ):
        if bad in raw:
            raise TemplateError(f"placeholder {shown}: {why}", offset=offset)
    parts = raw.split(".")
    for part in parts:
        if part.startswith("_"):
            raise TemplateError(f"placeholder {shown}: names starting with '_' are not allowed", offset=offset)
        if not _SEGMENT.fullmatch(part):
            raise TemplateError(f"placeholder {shown}: {part!r} is not a name or a list index", offset=offset)
    if parts[0].isdigit():
        raise TemplateError(f"placeholder {shown}: must start with a name", offset=offset)
    head = parts[0]
    if head == "inputs":
        if len(parts) < 2:
            raise TemplateError(f"placeholder {shown}: say which input, e.g. {{inputs.period}}", offset=offset)
        return Reference(raw, "input", parts[1], tuple(parts[2:]), offset)
    if head == "agents":
        if len(parts) < 2:
            raise TemplateError(
                f"placeholder {shown}: say which agent, e.g. {{agents.ledger_check.output}}", offset=offset
            )
        rest = parts[2:]
        if rest and rest[0] == "output":
            rest = rest[1:]
        elif rest:
            raise TemplateError(
                f"placeholder {shown}: only an agent's output can be used, e.g. {{agents.{parts[1]}.output}}",
                offset=offset,
            )
        return Reference(raw, "agent", parts[1], tuple(rest), offset)
    rest = parts[1:]
    if rest and rest[0] == "output":
        return Reference(raw, "agent", head, tuple(rest[1:]), offset)
    return Reference(raw, "name", head, tuple(rest), offset)


def references(template: str) -> list[Reference]:
    """Every placeholder of `template`, parsed; raises TemplateError on the first bad one."""
    return [_parse(text, offset) for text, offset in _placeholders(template)]


def _walk(value: Any, path: tuple[str, ...], ref: Reference) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise TemplateError(f"placeholder {ref.describe()}: no {key!r} in the value")
    return value


def _agent_value(output: Any, path: tuple[str, ...], ref: Reference) -> Any:
    if not isinstance(output, dict):
        return _walk(output, path, ref)
    if not path:
        return output["json"] if "json" in output else output.get("text", "")
    if path[0] in output:
        return _walk(output, path, ref)
    if "json" in output:  # {a.output.total} is short for {a.output.json.total}
        return _walk(output["json"], path, ref)
    raise TemplateError(
        f"placeholder {ref.describe()}: the agent's output has no {path[0]!r} "
        "(it has no JSON answer; give the agent an output_schema)"
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@lru_cache(maxsize=1024)
def _compile(template: str) -> tuple[tuple[tuple[str, Reference], ...], str]:
    """A template as (literal text before, placeholder) pairs and the text after the last.

    Cached: a workflow run over thousands of dataset rows renders the same templates each time.
    """
    pairs: list[tuple[str, Reference]] = []
    last = 0
    for text, offset in _placeholders(template):
        pairs.append((template[last:offset].replace("{{", "{").replace("}}", "}"), _parse(text, offset)))
        last = offset + len(text) + 2
    return tuple(pairs), template[last:].replace("{{", "{").replace("}}", "}")


def lookup(ref: Reference, *, inputs: dict[str, Any], outputs: dict[str, Any]) -> Any:
    """The value one placeholder names (an input's, or an upstream agent's output)."""
    name = ref.name
    if ref.kind == "input" or (ref.kind == "name" and name in inputs):
        if name not in inputs:
            raise TemplateError(f"placeholder {ref.describe()}: no input named {name!r}")
        return _walk(inputs[name], ref.path, ref) if ref.path else inputs[name]
    if name in outputs:
        if outputs[name] is None:  # a skipped agent: its output is null, and so is all below it
            return None
        return _agent_value(outputs[name], ref.path, ref)
    raise TemplateError(f"placeholder {ref.describe()}: no input or upstream agent named {name!r}")


def static_prefix(template: str) -> str:
    """The text `template` renders to before its first placeholder (all of it when it has none):
    what every rendering of it starts with."""
    if "{" not in template and "}" not in template:  # as `render`: no placeholder, nor a cache entry
        return template
    pairs, tail = _compile(template)
    return pairs[0][0] if pairs else tail


def single_placeholder(template: str) -> Reference | None:
    """The placeholder when `template` is exactly one (spaces around allowed), else None."""
    text = template.strip()
    if not (text.startswith("{") and text.endswith("}")) or text.startswith("{{"):
        return None
    found = list(_placeholders(text))
    if len(found) != 1 or found[0][1] != 0 or len(found[0][0]) + 2 != len(text):
        return None
    return _parse(found[0][0], 0)


def render_value(value: Any, *, inputs: dict[str, Any], outputs: dict[str, Any]) -> Any:
    """A code step's argument: strings are templates, and a string that is exactly one
    placeholder gives the value itself (a dict, list or number), not its text; dicts and
    lists are rendered item by item; anything else is passed as it is."""
    if isinstance(value, str):
        ref = single_placeholder(value)
        if ref is not None:
            return lookup(ref, inputs=inputs, outputs=outputs)
        return render(value, inputs=inputs, outputs=outputs)
    if isinstance(value, dict):
        return {k: render_value(v, inputs=inputs, outputs=outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, inputs=inputs, outputs=outputs) for v in value]
    return value


def render(template: str, *, inputs: dict[str, Any], outputs: dict[str, Any]) -> str:
    """Fill `template` from input values and upstream outputs (agent name -> output dict)."""
    if "{" not in template and "}" not in template:
        return template
    pairs, tail = _compile(template)
    pieces: list[str] = []
    for literal, ref in pairs:
        pieces.append(literal)
        value = lookup(ref, inputs=inputs, outputs=outputs)
        pieces.append(_text(value))
    pieces.append(tail)
    return "".join(pieces)
