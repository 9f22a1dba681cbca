"""``report.html``: one self-contained page per run (or over several) to open from a CI artefact or an e-mail.

Inline CSS and inline SVG only: no script, no font, no image, no link to
anything; a Content-Security-Policy of ``default-src 'none'`` tells the
browser to fetch nothing even if a provider's answer tried to make it. Every
string that came from a user or a provider is HTML-escaped. Sections: a
summary, the timeline, the graph coloured by status, costs against the
budget, tokens, what did not complete and why, each agent's prompt and
answer folded away, and, for a dataset batch, its rows.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from orchestrate.fsutil import atomic_write_text
from orchestrate.observe import html_svg as svg
from orchestrate.observe.dataset_view import readable_time
from orchestrate.observe.html_answer import answer_section, approvals_section
from orchestrate.observe.html_dataset import MAX_EXAMPLE_ROWS, DatasetFacts
from orchestrate.observe.html_evaluation import evaluation_section
from orchestrate.observe.html_outcomes import outcomes_section
from orchestrate.observe.html_style import CSS
from orchestrate.observe.run_folder import RunFolder, find_run_folders, load_run_folder
from orchestrate.observe.step_view import code_call
from orchestrate.observe.step_view import reason as step_reason
from orchestrate.observe.summary import status_text
from orchestrate.run.waits import wall_seconds

__all__ = ["MAX_DETAILED_AGENTS", "render_report", "write_report", "write_run_report"]

MAX_DETAILED_AGENTS = 500  # past this, the timeline, graph and agent sections show the first ones
_MAX_TEXT = 20_000  # characters of one prompt or answer shown; the rest is in result.json
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _e(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def _money(value: Any) -> str:
    value = float(value or 0.0)
    if value == 0:
        return "$0.00"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def _signed(value: Any) -> str:
    """Money that may be negative (a cache whose writes cost more than its reads saved)."""
    value = float(value or 0.0)
    return ("-" if value < 0 else "") + _money(abs(value))


def _secs(value: Any) -> str:
    value = float(value or 0.0)
    return f"{value:.2f}s" if value < 120 else f"{value / 60:.1f} min"


def _badge(status: Any) -> str:
    """A status as a person reads it (``budget exceeded``), coloured by its value, which it keeps in
    ``data-status`` for a script."""
    return (
        f'<span class="badge" data-status="{_e(status)}" style="background:{svg.status_colour(str(status))}">'
        f"{_e(status_text(status))}</span>"
    )


def _clip(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return _e(text)
    return _e(text[:_MAX_TEXT]) + f"\n… ({len(text) - _MAX_TEXT:,} more characters in result.json)"


def _answer_text(output: Any) -> str:
    if isinstance(output, dict):
        if "json" in output:
            return json.dumps(output["json"], indent=2, ensure_ascii=False)
        if "text" in output and len(output) == 1:
            return str(output["text"])
    if output is None:
        return ""
    return output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False, default=str)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int = 1) -> str:
    cells = "".join(f"<th{' class=num' if i >= numeric_from else ''}>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _percent(spent: float, budget: float) -> str:
    """``12.5%``; a spend too small to show at one decimal is ``under 0.1%``, never ``0.0%``."""
    share = spent / budget * 100 if budget else 0.0
    return "under 0.1%" if 0 < share < 0.05 else f"{share:.1f}%"


def _sessions(doc: dict[str, Any]) -> str:
    """A resumed dataset run's sessions, one row each; the cards above are their totals."""
    sessions = [s for s in doc.get("sessions") or [] if isinstance(s, dict)]
    if len(sessions) < 2:
        return ""
    rows = "".join(
        f"<tr><td>{n}</td><td>{_e(readable_time(s.get('started_at')))}</td><td>{_secs(s.get('duration_seconds'))}</td>"
        f"<td>{int(s.get('rows') or 0):,}</td><td>{_money(s.get('cost') or 0)}</td><td>{_badge(s.get('status'))}</td></tr>"
        for n, s in enumerate(sessions, 1)
    )
    return (
        f'<details class="sessions" open><summary>{len(sessions)} sessions (resumed; the figures above count them all)'
        "</summary><table><thead><tr><th>#</th><th>started</th><th>ran</th><th>rows</th><th>cost</th><th>status</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _summary(run: RunFolder, anchor: str, *, heading: bool) -> str:
    doc = run.result
    counts: dict[str, int] = {}
    for agent in doc.get("agents", []):
        counts[str(agent.get("status"))] = counts.get(str(agent.get("status")), 0) + 1
    is_dataset_run = run.batch is not None
    if is_dataset_run and isinstance(doc.get("counts"), dict):
        counts = {str(k): int(v) for k, v in doc["counts"].items()}
    budget = doc.get("budget") if is_dataset_run else doc.get("cost_budget")
    total = float(doc.get("total_cost") or 0.0)
    waited, summed = _rate_limit_waits(run)
    cards = [
        ("Status", _badge(doc.get("status")) + (' <span class="sim">simulated</span>' if doc.get("simulated") else "")),
        (
            "Rows" if is_dataset_run else "Agents",
            " ".join(f"{_badge(s)}&nbsp;{n:,}" for s, n in sorted(counts.items())) or "none",
        ),
        (
            "Total cost",
            f'<span class="total-cost">{_money(total)}</span>' + (f" of {_money(budget)} budget" if budget else ""),
        ),
        ("Tokens", f"{int(doc.get('total_tokens') or 0):,}"),
        ("Retries", str(doc.get("retries", 0)) if "retries" in doc else "-"),
        ("Duration", _secs(doc.get("duration_seconds") or run.duration)),
        (
            "Rate-limit waits",
            _secs(waited) + (f' <span class="meta">({summed:.2f} call-seconds)</span>' if summed else ""),
        ),
    ]
    if is_dataset_run:
        cards[-1] = (
            "Budget per row",
            _money(doc.get("cost_budget_per_row")) if doc.get("cost_budget_per_row") else "none",
        )
    meter = (
        f'<div class="budget">{svg.meter(total, float(budget), f"{_money(total)} of {_money(budget)}")}'
        f' <span class="meta">{_percent(total, float(budget))} of the budget spent</span></div>'
        if budget and total > 0
        else ""
    )
    facts = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>' for k, v in cards)
    error = f'<p class="error">{_e(doc.get("error"))}</p>' if doc.get("error") else ""
    title = f"<h2>{_e(run.name)}</h2>" if heading else ""
    return (
        f'<section id="{anchor}">{title}'
        f'<p class="meta">run {_e(doc.get("run_id") or run.path.name)} · started {_e(readable_time(doc.get("started_at")))}'
        f" · finished {_e(readable_time(doc.get('completed_at')) if doc.get('completed_at') else '-')}</p>"
        f'{error}<div class="cards">{facts}</div>{meter}{_sessions(doc)}'
        f"{_audit_line(doc)}</section>"
    )


def _rate_limit_waits(run: RunFolder) -> tuple[float, float]:
    """Seconds the run lost waiting on rate limits (wall-clock: calls waiting side by side count
    once), and the waits summed over the calls; from result.json, or its events when it predates them."""
    waits = run.result.get("rate_limit_waits")
    if isinstance(waits, dict):
        return float(waits.get("wall_seconds") or 0.0), float(waits.get("call_seconds") or 0.0)
    spans = [
        (s.start, s.end) for t in run.traces.values() if t.lane is not None for s in t.lane.segments if s.kind == "wait"
    ]
    return wall_seconds(spans), sum(t.rate_limited for t in run.traces.values())


def _audit_line(doc: dict[str, Any]) -> str:
    """The audit trail's head (to compare with `orchestrate audit verify`) and whether content was kept."""
    parts = []
    head = doc.get("audit")
    if isinstance(head, dict) and head.get("hash"):
        parts.append(
            f"audit trail {_e(head.get('file'))}: record {_e(head.get('seq'))}, head "
            f'<code class="audit-head">{_e(head.get("hash"))}</code> ({_e(head.get("algorithm"))})'
        )
    if doc.get("content_kept") is False:
        parts.append("prompts and answers were not kept (data_protection store_content: false): digests only")
    return "".join(f'<p class="meta">{p}</p>' for p in parts)


def _timeline(run: RunFolder) -> str:
    lanes = [t.lane for t in run.traces.values() if t.lane is not None][:MAX_DETAILED_AGENTS]
    if not lanes:
        return ""
    more = len(run.traces) - len(lanes)
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{_e(k)}</span>'
        for k, c in (
            ("attempt", "#64b5f6"),
            ("provider call", "#1565c0"),
            ("tool call", "#00897b"),
            ("rate-limit wait", "#ef6c00"),
            ("back-off before a retry", "#e0e0e0"),
            ("approval", "#f9a825"),
            ("failed attempt", "#c62828"),
        )
    )
    note = f'<p class="note">{more:,} more agents not drawn.</p>' if more > 0 else ""
    return (
        f'<section><h3>Timeline</h3><div class="legend">{legend}</div>{svg.gantt(lanes, run.duration)}{note}</section>'
    )


def _graph(run: RunFolder) -> str:
    agents = run.result.get("agents", [])[:MAX_DETAILED_AGENTS]
    if not agents:
        return ""
    nodes = [(str(a.get("name")), str(a.get("status")), [str(d) for d in a.get("dependencies") or []]) for a in agents]
    return f'<section><h3>Graph</h3><div class="scroll">{svg.dag(nodes)}</div></section>'


def _costs(run: RunFolder) -> str:
    cost = run.cost
    if not cost:
        return ""
    budget = cost.get("budget") or run.result.get("cost_budget")
    parts = ["<section><h3>Cost</h3>"]
    for key, title in (("by_module", "By module"), ("by_model", "By model"), ("by_agent", "By agent")):
        table = cost.get(key) or {}
        rows = sorted(
            (
                (str(k), float(v.get("cost") or 0.0), _money(v.get("cost")) + _share(v.get("cost"), budget))
                for k, v in table.items()
                if isinstance(v, dict)
            ),
            key=lambda r: -r[1],
        )
        if rows:
            parts.append(f"<h4>{title}</h4>{svg.bars(rows[:MAX_DETAILED_AGENTS])}")
    token_rows = []
    for name, row in sorted((cost.get("by_model") or {}).items()):
        token_rows.append(
            [_e(name)]
            + [
                f"{int(row.get(k) or 0):,}"
                for k in ("calls", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
            ]
            + [_money(row.get("cost"))]
        )
    totals = cost.get("totals") or {}
    if token_rows:
        token_rows.append(
            ["<b>total</b>"]
            + [
                f"<b>{int(totals.get(k) or 0):,}</b>"
                for k in ("calls", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
            ]
            + [f"<b>{_money(totals.get('cost'))}</b>"]
        )
        parts.append(
            "<h4>Tokens</h4>"
            + _table(["model", "calls", "input", "cached input", "output", "reasoning", "cost"], token_rows)
        )
    served = _where_served(cost.get("calls") or [])
    if served:
        parts.append(
            "<h4>Where calls were served</h4>"
            + _table(["region", "provider", "model", "asked for", "why", "calls", "cost"], served)
        )
    if len(parts) == 1:  # no call was booked: say so rather than show an empty heading
        parts.append("<p>No provider call was made, so nothing was spent.</p>")
    parts.append(_prompt_cache(cost))
    parts.append("</section>")
    return "".join(parts)


def _where_served(calls: list[Any]) -> list[list[str]]:
    """Rows of region, provider, served model, the model asked for and why (fallbacks), calls, cost."""
    groups: dict[tuple[str, str, str, str, str], list[float]] = {}
    for call in calls:
        if not isinstance(call, dict) or not (call.get("region") or call.get("requested_model")):
            continue
        key = (
            str(call.get("region") or ""),
            str(call.get("provider") or ""),
            str(call.get("model") or ""),
            str(call.get("requested_model") or ""),
            str(call.get("fallback_reason") or ""),
        )
        entry = groups.setdefault(key, [0.0, 0.0])
        entry[0] += 1
        entry[1] += float(call.get("cost") or 0.0)
    return [[_e(v) for v in key] + [f"{int(n):,}", _money(c)] for key, (n, c) in sorted(groups.items())]


def _prompt_cache(cost: dict[str, Any]) -> str:
    """Per agent: the share of input read from the provider's prompt cache, the tokens written to
    it and the dollars saved; and the agents of a dataset run that read too little of it."""
    from orchestrate.money.cost_report import aggregate, cache_warnings

    calls = [c for c in cost.get("calls") or [] if isinstance(c, dict)]
    warnings = cache_warnings(calls)
    if not warnings and not any(c.get("cached_input_tokens") or c.get("cache_creation_input_tokens") for c in calls):
        return ""
    rows = [
        [
            _e(row["agent"]),
            f"{int(row['input_tokens']):,}",
            f"{row['cache_read_share']:.0%}",
            f"{int(row['cache_creation_input_tokens']):,}",
            _signed(row["cache_savings"]),
        ]
        for row in aggregate(calls, ["agent"])
    ]
    total = aggregate(calls, [])
    if total:
        rows.append(
            [
                "<b>total</b>",
                f"<b>{int(total[0]['input_tokens']):,}</b>",
                f"<b>{total[0]['cache_read_share']:.0%}</b>",
                f"<b>{int(total[0]['cache_creation_input_tokens']):,}</b>",
                f"<b>{_signed(total[0]['cache_savings'])}</b>",
            ]
        )
    notes = "".join(f'<p class="error">warning: {_e(w)}</p>' for w in warnings)
    head = ["agent", "input", "read from cache", "written to cache", "saved"]
    return "<h4>Prompt cache</h4>" + _table(head, rows) + notes


def _share(cost: Any, budget: Any) -> str:
    if not budget:
        return ""
    return f" ({_percent(float(cost or 0.0), float(budget))} of the budget)"


def _problems(run: RunFolder) -> str:
    """The agents that did not complete, with why; a skipped agent is not a problem (see `_skipped`)."""
    rows = []
    agents = run.result.get("agents", [])
    for agent in agents:
        if agent.get("status") in ("completed", "skipped"):
            continue
        trace = run.traces.get(str(agent.get("name")))
        earlier = [a["error"] for a in (trace.attempts if trace else []) if a.get("error")][:-1]
        reason = _e(step_reason(agent) or "(no reason recorded)")
        if earlier:
            reason += "".join(f'<div class="earlier">attempt error: {_e(e)}</div>' for e in earlier[-3:])
        rows.append(
            [
                f'<a href="#{_e(_agent_anchor(run, agent))}">{_e(agent.get("name"))}</a>',
                _badge(agent.get("status")),
                reason,
            ]
        )
    if not rows:
        skipped = any(a.get("status") == "skipped" for a in agents)
        done = "Every agent completed or was skipped by a condition." if skipped else "Every agent completed."
        return f'<section><h3>Problems</h3><p class="ok">{done}</p></section>'
    return "<section><h3>Problems</h3>" + _table(["agent", "status", "reason"], rows, numeric_from=9) + "</section>"


def _skipped(run: RunFolder) -> str:
    """The agents a `when` condition skipped (or whose dependency was skipped), each with the
    condition and the value it had: a decision of the workflow, shown beside the statuses."""
    rows = [
        [
            f'<a href="#{_e(_agent_anchor(run, agent))}">{_e(agent.get("name"))}</a>',
            _badge("skipped"),
            _e(step_reason(agent) or "skipped: no reason recorded"),  # as show, JUnit and the summary say it
        ]
        for agent in run.result.get("agents", [])
        if agent.get("status") == "skipped"
    ]
    if not rows:
        return ""
    return "<section><h3>Skipped</h3>" + _table(["agent", "status", "why"], rows, numeric_from=9) + "</section>"


def _served(meta: dict[str, Any]) -> str:
    """' → gpt-4.1 (rate_limited)' when a fallback gave the agent's answer."""
    if not meta.get("served_model"):
        return ""
    return f" → {_e(meta['served_model'])} ({_e(meta.get('fallback_reason') or 'fallback')})"


def _code_step(meta: dict[str, Any]) -> str:
    return f"code step {meta['function']}" if meta.get("function") else ""


def _agent_anchor(run: RunFolder, agent: dict[str, Any]) -> str:
    return f"{run.path.name}--{agent.get('name')}"


def _agents(run: RunFolder) -> str:
    parts = ["<section><h3>Agents</h3>"]
    agents = run.result.get("agents", [])
    for agent in agents[:MAX_DETAILED_AGENTS]:
        name = str(agent.get("name"))
        trace = run.traces.get(name)
        meta = agent.get("metadata") or {}
        head = (
            f'{_badge(agent.get("status"))} <b>{_e(name)}</b> <span class="meta">{_e(agent.get("module"))} · '
            f"{_e(agent.get('model') or _code_step(meta))}"
            f"{_served(meta)} · {_money(agent.get('cost'))} · "
            f"{int(agent.get('tokens_used') or 0):,} tokens · {_secs(agent.get('execution_time'))}"
            f"{' · reused' if meta.get('reused') else ''}</span>"
        )
        body = []
        why = step_reason(agent)
        if why:
            kind = "note" if agent.get("status") in ("skipped", "waiting_approval") else "error"
            body.append(f'<p class="{kind}">{_e(why)}</p>')
        system = meta.get("system_prompt") or (trace.system if trace else None)
        if system:
            body.append(f"<h5>System prompt</h5><pre>{_clip(str(system))}</pre>")
        prompt = meta.get("prompt") if meta.get("prompt") is not None else (trace.prompt if trace else None)
        if meta.get("function"):  # a code step: the call it made, not a prompt
            body.append(f"<h5>Call</h5><pre>{_clip(code_call(agent) or str(meta['function']))}</pre>")
        else:
            body.append(
                "<h5>Prompt</h5>"
                + (
                    f"<pre>{_clip(str(prompt))}</pre>"
                    if prompt is not None
                    else '<p class="note">not recorded in this run folder</p>'
                )
            )
        answer = _answer_text(agent.get("output"))
        heading = "Result" if meta.get("function") else "Answer"
        body.append(f"<h5>{heading}</h5>" + (f"<pre>{_clip(answer)}</pre>" if answer else '<p class="note">none</p>'))
        if trace and len(trace.attempts) > 1:
            body.append(
                "<h5>Attempts</h5><ol>"
                + "".join(f"<li>{_badge(a['status'])} {_e(a.get('error') or '')}</li>" for a in trace.attempts)
                + "</ol>"
            )
        if trace and trace.tools:
            body.append(
                "<h5>Tool calls</h5><ol>"
                + "".join(
                    f"<li>{_e(t['tool'])}{' — ' + _e(t['error']) if t.get('error') else ''}</li>" for t in trace.tools
                )
                + "</ol>"
            )
        parts.append(
            f'<details id="{_e(_agent_anchor(run, agent))}"><summary>{head}</summary>'
            f'<div class="detail">{"".join(body)}</div></details>'
        )
    if len(agents) > MAX_DETAILED_AGENTS:
        parts.append(f'<p class="note">{len(agents) - MAX_DETAILED_AGENTS:,} more agents: see result.json.</p>')
    parts.append("</section>")
    return "".join(parts)


def _rows(run: RunFolder) -> str:
    rows = run.rows
    if rows is None:
        return ""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    costs = [float(r.get("cost") or 0.0) for r in rows]
    times = [float(t) for r in rows if (t := _row_seconds(r)) is not None]
    parts = [
        '<section><h3>Dataset rows</h3><div class="cards">'
        + f'<div class="card"><div class="k">Rows</div><div class="v">{len(rows):,}</div></div>'
        + "".join(
            f'<div class="card"><div class="k">{_badge(s)}</div><div class="v">{n:,}</div></div>'
            for s, n in sorted(counts.items())
        )
        + "</div>"
    ]
    for title, values, show in (("Cost per row", costs, _money), ("Time per row", times, _secs)):
        if values:
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            parts.append(
                f"<h4>{title}</h4><p class=meta>min {show(ordered[0])} · median "
                f"{show(statistics.median(ordered))} · p95 {show(p95)} · max {show(ordered[-1])}</p>"
                + svg.histogram(values, fmt=show)
            )
    failed = [r for r in rows if r.get("status") not in ("completed", "skipped")]
    if failed:
        parts.append(
            "<h4>Rows that did not complete</h4>"
            + _table(
                ["row", "key", "status", "reason"],
                [
                    [_e(r.get("row", r.get("line", ""))), _e(r.get("key")), _badge(r.get("status")), _e(r.get("error"))]
                    for r in failed[:1000]
                ],
                numeric_from=9,
            )
        )
        if len(failed) > 1000:
            parts.append(f'<p class="note">{len(failed) - 1000:,} more in results.jsonl.</p>')
    parts.append("</section>")
    return "".join(parts)


def batch_sections(facts: DatasetFacts) -> str:
    """A batch's agents across rows, its rows' timeline, the graph, and failed rows in full."""
    parts = []
    table = [
        [
            _e(name),
            " ".join(f"{_badge(s)}&nbsp;{n:,}" for s, n in sorted((facts.outcomes.get(name) or {}).items())),
            "".join(f"<div>{_e(r)}</div>" for r in facts.reasons.get(name, [])),
        ]
        for name, _ in facts.agents
    ]
    if table:
        parts.append(
            "<section><h3>Agents across rows</h3>"
            + _table(["agent", "rows by outcome", "first reasons"], table, numeric_from=9)
            + "</section>"
        )
    if facts.lanes:
        more = sum(facts.outcomes[facts.agents[0][0]].values()) - len(facts.lanes) if facts.agents else 0
        note = f'<p class="note">{more:,} more rows not drawn.</p>' if more > 0 else ""
        parts.append(f"<section><h3>Timeline of rows</h3>{svg.gantt(facts.lanes, facts.duration)}{note}</section>")
    if facts.agents:
        nodes = [(name, facts.graph_status(name), deps) for name, deps in facts.agents[:MAX_DETAILED_AGENTS]]
        parts.append(
            '<section><h3>Graph</h3><p class="note">An agent is green when it completed in every row, '
            "else coloured by its most frequent other outcome.</p>"
            f'<div class="scroll">{svg.dag(nodes)}</div></section>'
        )
    if facts.examples:
        parts.append("<section><h3>Rows that did not complete, in full</h3>")
        for row in facts.examples:
            agents = []
            for agent in row.get("agents") or []:
                meta = agent.get("metadata") or {}
                body = [f'<p class="error">{_e(agent.get("error"))}</p>' if agent.get("error") else ""]
                if meta.get("prompt") is not None:
                    body.append(f"<h5>Prompt</h5><pre>{_clip(str(meta['prompt']))}</pre>")
                answer = _answer_text(agent.get("output"))
                if answer:
                    body.append(f"<h5>Answer</h5><pre>{_clip(answer)}</pre>")
                agents.append(f"<h4>{_badge(agent.get('status'))} {_e(agent.get('name'))}</h4>{''.join(body)}")
            parts.append(
                f"<details><summary>{_badge(row.get('status'))} <b>row {_e(row.get('row'))}</b> "
                f'<span class="meta">{_e(row.get("key"))} · {_e(row.get("error") or "")}</span></summary>'
                f'<div class="detail">{"".join(agents)}</div></details>'
            )
        parts.append(
            f'<p class="note">The first {MAX_EXAMPLE_ROWS} such rows; any row in full: '
            "<code>orchestrate show RUN_DIR --row KEY</code>.</p></section>"
        )
    return "".join(parts)


def _row_seconds(row: dict[str, Any]) -> float | None:
    for key in ("seconds", "duration_seconds", "duration", "execution_time", "elapsed"):
        value = row.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _started(value: Any) -> float:
    """A run's start as a number to sort by (offsets counted); an unknown start sorts last."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except (ValueError, OverflowError, OSError):
        return float("inf")


def _overview(runs: Sequence[RunFolder]) -> str:
    rows = [
        [
            f'<a href="#run-{i}">{_e(run.name)}</a>',
            _badge(run.result.get("status"))
            + (' <span class="sim">simulated</span>' if run.result.get("simulated") else ""),
            _e(run.path.name),
            _e(readable_time(run.result.get("started_at")) if run.result.get("started_at") else "-"),
            _money(run.result.get("total_cost")),
            f"{int(run.result.get('total_tokens') or 0):,}",
            _secs(run.result.get("duration_seconds") or run.duration),
        ]
        for i, run in enumerate(runs)
    ]
    # Simulated runs paid nothing: their figures are shown apart, never summed as spend.
    total = sum(float(r.result.get("total_cost") or 0.0) for r in runs if not r.result.get("simulated"))
    simulated = sum(float(r.result.get("total_cost") or 0.0) for r in runs if r.result.get("simulated"))
    apart = f' · <span class="simulated-cost">{_money(simulated)} simulated, not paid</span>' if simulated else ""
    return (
        f'<section><h2>{len(runs)} runs · <span class="total-cost">{_money(total)} spent</span>{apart}</h2>'
        + _table(["workflow", "status", "run", "started", "cost", "tokens", "duration"], rows, numeric_from=4)
        + "</section>"
    )


def render_report(runs: Sequence[RunFolder]) -> str:
    """The whole page for one run or several."""
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} orchestrate runs"
    if len(runs) > 1:  # oldest first, whatever order the folders were named or found in
        runs = sorted(runs, key=lambda run: _started(run.result.get("started_at")))
    body = [_overview(runs)] if len(runs) > 1 else []
    for i, run in enumerate(runs):
        several = len(runs) > 1
        summary = _summary(run, f"run-{i}", heading=several and run.batch is not None)
        if run.batch is not None:
            outcomes = outcomes_section(run.path) + evaluation_section(run.path, run.result)
            body.append(
                f'<article class="run">{summary}{outcomes}{_rows(run)}{batch_sections(run.batch)}{_costs(run)}</article>'
            )
        else:
            answer = answer_section(run.result, heading=run.name if several else None) + approvals_section(run.result)
            body.append(
                f'<article class="run">{answer}{summary}{evaluation_section(run.path, run.result)}{_rows(run)}{_problems(run)}{_skipped(run)}'
                f"{_timeline(run)}{_graph(run)}{_costs(run)}{_agents(run)}</article>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · orchestrate report</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><p class="meta">orchestrate run report</p></header>'
        + "".join(body)
        + "</body></html>\n"
    )


def write_report(path: Path, run_dirs: Sequence[Path]) -> Path:
    """Read `run_dirs` (run folders, or folders of them) and write one report to `path`, atomically."""
    runs = [load_run_folder(p) for p in find_run_folders(list(run_dirs))]
    atomic_write_text(path, render_report(runs))
    return path


def write_run_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from what the run folder holds."""
    return write_report(run_dir / "report.html", [run_dir])
