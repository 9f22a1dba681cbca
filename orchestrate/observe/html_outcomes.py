"""report.html's "Outcomes" section of a dataset run: rows counted by what they decided.

For each output whose values fall into a few categories (a payment decision, a
flag), the rows are counted by value, and each value unfolds to the rows
behind it with their other outputs (every held invoice with its reason). Rows
that did not complete are counted under their status. Read from the run
folder's results, each key once at its latest state.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from orchestrate.observe.answer import inline
from orchestrate.observe.dataset_results import categorical_paths, count_by
from orchestrate.observe.summary import plural

__all__ = ["MAX_OUTCOME_ROWS", "outcomes_section"]

MAX_OUTCOME_ROWS = 200  # rows listed under one value; the rest: orchestrate show --format csv


def _e(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def outcomes_section(folder: Path) -> str:
    """The Outcomes section of the dataset run in `folder` ("" when no output has categories)."""
    paths = categorical_paths(folder)
    if not paths:
        return ""
    parts = [
        '<section class="outcomes"><h3>Outcomes</h3>'
        '<p class="note">Rows counted by each output that takes a few values; open a value for its rows. '
        f"Every row: <code>orchestrate show RUN_DIR --format csv</code> (this run: {_e(folder.name)}).</p>"
    ]
    for path in paths:
        outcomes = count_by(folder, path, examples=MAX_OUTCOME_ROWS)
        total = sum(o.rows for o in outcomes) or 1
        parts.append(f"<h4>{_e(path)}</h4>")
        for outcome in outcomes:
            others = sorted({p for e in outcome.examples for p in e["outputs"] if p != path})
            head = "".join(f"<th>{_e(h)}</th>" for h in ("key", "row", *others, "error"))
            body = "".join(
                "<tr>"
                + f"<td>{_e(e['key'])}</td><td class=num>{_e(e['row'])}</td>"
                + "".join(f"<td>{_e(_text(e['outputs'].get(p)))}</td>" for p in others)
                + f"<td>{_e(e['error'] or '')}</td></tr>"
                for e in outcome.examples
            )
            more = outcome.rows - len(outcome.examples)
            note = f'<p class="note">{plural(more, "more row", "more rows")} with this value.</p>' if more > 0 else ""
            parts.append(
                f"<details><summary><b>{_e(outcome.value)}</b> "
                f'<span class="meta">{plural(outcome.rows, "row")} · {outcome.rows / total * 100:.0f}%</span></summary>'
                f'<div class="detail"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}</div>'
                "</details>"
            )
    parts.append("</section>")
    return "".join(parts)


def _text(value: object) -> str:
    return "" if value is None else inline(value)
