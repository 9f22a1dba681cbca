"""report.html's "Evaluation" section: what the run's expectations came to.

A run: the counts, then every expectation that did not pass with what was
expected, what came and why (a judge's reason and score). A dataset run: each
expectation's pass rate over the rows (evaluation.json), then the failing cases
from results.jsonl, the first `MAX_CASES` of them.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from orchestrate.fsutil import read_regular_text, regular_lines
from orchestrate.run.protection import not_kept, shown, shown_reason

__all__ = ["MAX_CASES", "evaluation_section"]

MAX_CASES = 200


def _e(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def _value(value: Any) -> str:
    if not_kept(value):  # store_content: false
        return shown(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _cases_table(cases: list[tuple[str, dict[str, Any]]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("case", "agent", "expectation", "status", "expected", "got", "why"))
    body = "".join(
        f'<tr><td class="case">{_e(key)}</td>'  # a row's key kept whole (INV-2026-20103 broke at its hyphens)
        + "".join(
            f"<td>{_e(cell)}</td>"
            for cell in (
                o.get("agent"),
                o.get("name"),
                o.get("status"),
                _value(o.get("expected")),
                _value(o.get("got")) if o.get("score") is None else f"score {o['score']:g}",
                shown_reason(o.get("reason")),
            )
        )
        + "</tr>"
        for key, o in cases
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rate(rate: Any) -> str:
    return f"{rate * 100:.1f}%" if isinstance(rate, (int, float)) else ""


def _counts(totals: dict[str, Any]) -> str:
    from orchestrate.run.evaluation import repeat_lines

    rate = totals.get("pass_rate")
    shown = f" · pass rate {rate * 100:.1f}%" if isinstance(rate, (int, float)) else ""
    repeats = "".join(f'<p class="meta">{_e(line.strip())}</p>' for line in repeat_lines(totals))
    return (
        f'<p class="meta">{totals.get("passed", 0)}/{totals.get("total", 0)} passed · '
        f"{totals.get('failed', 0)} failed · {totals.get('errors', 0)} errors{shown}</p>{repeats}"
    )


def evaluation_section(folder: Path, result: dict[str, Any]) -> str:
    """The Evaluation section of the run in `folder` ("" when it has no expectations)."""
    totals_file = folder / "evaluation.json"
    if totals_file.is_file():
        return _dataset(folder, json.loads(read_regular_text(totals_file)))
    evaluation = result.get("expectations")
    if not evaluation:
        return ""
    bad = [("run", o) for o in evaluation.get("outcomes", ()) if o.get("status") != "pass"]
    table = _cases_table(bad) if bad else '<p class="ok">Every expectation passed.</p>'
    return f'<section class="evaluation"><h3>Evaluation</h3>{_counts(evaluation)}{table}</section>'


def _dataset(folder: Path, totals: dict[str, Any]) -> str:
    repeat = int(totals.get("repeat") or 1)
    rates = "".join(
        f"<tr><td>{_e(e['agent'])}</td><td>{_e(e['name'])}</td><td class=num>{e['passed']}</td>"
        f"<td class=num>{e['failed']}</td><td class=num>{e['errors']}</td>"
        f"<td class=num>{_rate(e.get('pass_rate'))}</td>"
        + (f"<td class=num>{_rate(e.get('pass_k'))}</td>" if repeat > 1 else "")
        + "</tr>"
        for e in totals.get("by_expectation", ())
    )
    parts = [
        '<section class="evaluation"><h3>Evaluation</h3>',
        _counts(totals),
        "<table><thead><tr><th>agent</th><th>expectation</th><th>passed</th><th>failed</th><th>errors</th>"
        "<th>pass rate</th>"
        + (f"<th>pass^{repeat} (every try)</th>" if repeat > 1 else "")
        + f"</tr></thead><tbody>{rates}</tbody></table>",
    ]
    cases: list[tuple[str, dict[str, Any]]] = []
    results = folder / "results.jsonl"
    if results.is_file():
        for line in regular_lines(results):
            if not line.strip():
                continue
            entry = json.loads(line)
            for o in (entry.get("expectations") or {}).get("outcomes", ()):
                if o.get("status") in ("fail", "error") and len(cases) < MAX_CASES:
                    cases.append((str(entry.get("key")), o))
    if cases:
        parts.append(f"<h4>Failing cases</h4>{_cases_table(cases)}")
    parts.append("</section>")
    return "".join(parts)
