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

__all__ = ["answer_section", "approvals_section"]

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


def approvals_section(document: Mapping[str, Any]) -> str:
    """Approvals: each waiting question with the upstream answers it is about, and each decision with
    who, when, how and the note ("" when the run has none)."""
    from orchestrate.observe.approval_view import decided, pending, when_decided

    waiting, done = pending(document), decided(document)
    if not waiting and not done:
        return ""
    parts = ['<section class="approvals"><h3>Approvals</h3>']
    for item in waiting:
        about = _rows([(dep, _value(value)) for dep, value in item["about"].items()]) if item["about"] else ""
        parts.append(
            f'<div class="approval waiting"><h4>{_e(item["agent"])}: waiting for approval</h4>'
            f'<p class="question">{_e(item["message"] or "(no question recorded)")}</p>'
            + (f'<p class="note">What it is about (the answers it depends on):</p>{about}' if about else "")
            + f'<p class="note">Decide: <code>orchestrate approve RUN_DIR {_e(item["agent"])} [--reject] '
            "[--note TEXT]</code>, then resume the run.</p></div>"
        )
    if done:
        rows = "".join(
            f"<tr><td>{_e(d['agent'])}</td><td>{_e(d['decision'])}</td><td>{_e(d['by'])}</td>"
            f"<td>{_e(when_decided(d['at']))}</td><td>{_e(d['how'])}</td><td>{_e(d['note'] or '')}</td>"
            f"<td>{_e(d['message'] or '')}</td></tr>"
            for d in done
        )
        head = "".join(f"<th>{h}</th>" for h in ("agent", "decision", "by", "at", "how", "note", "question"))
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    parts.append("</section>")
    return "".join(parts)
