"""report.html's first section: what the run was for and what it answered.

The description, the inputs and the declared outputs (or, without `outputs:`,
the last agents' answers) come before the counts, the timeline and the costs,
so a controller opening the report of a month-end close sees the period and
the adjustments total first. Everything from a user or a provider is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from orchestrate.observe.answer import run_answer

__all__ = ["answer_section"]

_MAX_TEXT = 20_000  # characters of one value shown; the rest is in result.json


def _e(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def _value(value: Any) -> str:
    """A value as HTML: short scalars inline, text and JSON in a block."""
    if value is None:
        return '<span class="meta">null</span>'
    if isinstance(value, (bool, int, float)):
        return f"<code>{_e(json.dumps(value))}</code>"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n… ({len(text) - _MAX_TEXT:,} more characters in result.json)"
    if "\n" not in text and len(text) <= 120:
        return _e(text)
    return f"<pre>{_e(text)}</pre>"


def _rows(pairs: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(name)}</th><td>{html}</td></tr>" for name, html in pairs)
    return f'<table class="answer"><tbody>{body}</tbody></table>'


def answer_section(document: Mapping[str, Any], *, heading: str | None = None) -> str:
    """The description, inputs and outputs (or last answers) of one run, as a ``<section>``."""
    parts = ['<section class="answer">']
    if heading:
        parts.append(f"<h2>{_e(heading)}</h2>")
    if document.get("description"):
        parts.append(f'<p class="description">{_e(" ".join(str(document["description"]).split()))}</p>')
    inputs = document.get("inputs")
    if isinstance(inputs, Mapping) and inputs:
        parts.append("<h3>Inputs</h3>" + _rows([(str(k), _value(v)) for k, v in inputs.items()]))
    kind, answers = run_answer(document)
    if answers:
        if kind == "outputs":
            parts.append("<h3>Outputs</h3>" + _rows([(a.name, _value(a.value)) for a in answers]))
        else:
            rows = [
                (
                    a.name,
                    _value(a.value)
                    if a.status == "completed"
                    else f'<span class="meta">no answer: {_e((a.status or "").replace("_", " "))}</span>',
                )
                for a in answers
            ]
            parts.append(
                "<h3>Answers</h3>"
                '<p class="note">This workflow declares no <code>outputs:</code>; these are the answers of '
                "its last agents (those nothing depends on).</p>" + _rows(rows)
            )
    parts.append("</section>")
    return "".join(parts) if len(parts) > 2 or heading else ""
