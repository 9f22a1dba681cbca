"""The lines printed when a run ends: outcome counts, why things failed, and what to do next.

Built from result documents (result.json as a dict), so it reads the same for
a run that just ended and for one loaded from disk. Plain text, no rich: it is
printed to a terminal and to CI logs alike, and a path is never broken in two.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrate.money.amounts import usd
from orchestrate.observe.answer import answer_lines, show_command
from orchestrate.observe.approval_view import approval_lines

__all__ = [
    "closing_lines",
    "failure_lines",
    "next_steps",
    "outcome_counts",
    "plural",
    "reuse_lines",
    "skipped_lines",
    "status_text",
    "wait_lines",
]

# The usual order of outcomes; any other status (added later) follows, alphabetically.
_ORDER = (
    "completed",
    "failed",
    "budget_exceeded",
    "rejected",
    "cancelled",
    "skipped",
    "waiting_approval",
    "running",
    "retrying",
    "rate_limited",
    "pending",
)
# Statuses that are not something gone wrong; every other one is listed with its reason.
_NOT_A_FAILURE = frozenset(
    {"completed", "skipped", "waiting_approval", "pending", "running", "retrying", "rate_limited"}
)


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`1 retry`, `2 retries`, `1 agent`, `3 agents`."""
    if count == 1:
        return f"1 {singular}"
    if many is None:
        many = singular[:-1] + "ies" if singular.endswith("y") and singular[-2:-1] not in "aeiou" else singular + "s"
    return f"{count:,} {many}"


def status_text(status: object) -> str:
    """A status as a person reads it: ``budget exceeded`` for ``budget_exceeded`` (JSON keeps the latter)."""
    return str(status).replace("_", " ")


def outcome_counts(statuses: Sequence[str]) -> str:
    """`3 completed, 1 failed, 1 cancelled`: each status present, in the usual order."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    ordered = [s for s in _ORDER if s in counts] + sorted(s for s in counts if s not in _ORDER)
    return ", ".join(f"{counts[s]} {status_text(s)}" for s in ordered) or "no agents"


def _reason(agent: Mapping[str, Any]) -> str:
    error = agent.get("error") or "no reason recorded"
    attempts = (agent.get("metadata") or {}).get("attempts") or 0
    if agent.get("status") == "failed" and attempts > 1:
        return f"{error} (after {attempts} attempts)"
    return str(error)


def failure_lines(document: Mapping[str, Any], *, indent: str = "  ") -> list[str]:
    """One line per failed or refused agent with its reason; cancelled ones grouped by cause.

    Agents cancelled for the same reason (`dependency 'x' failed`, `interrupted
    by SIGINT`) share one line, so the cause is named once, not once per agent.
    """
    singles: list[tuple[str, str]] = []
    grouped: dict[tuple[str, str], list[str]] = {}
    for agent in document.get("agents", []):
        status = str(agent.get("status"))
        if status in _NOT_A_FAILURE:
            continue
        if status == "cancelled":
            grouped.setdefault((status, _reason(agent)), []).append(str(agent["name"]))
        else:
            singles.append((str(agent["name"]), f"{status_text(status)}: {_reason(agent)}"))
    lines = [f"{indent}{name}  {text}" for name, text in singles]
    for (status, reason), names in grouped.items():
        who = names[0] if len(names) == 1 else f"{plural(len(names), 'agent')} ({', '.join(names)})"
        lines.append(f"{indent}{who}  {status}: {reason}")
    return lines


def next_steps(
    document: Mapping[str, Any],
    run_dir: Path | str,
    workflow_file: Path | str | None,
) -> list[str]:
    """The commands that apply to this run: show it, resume it (unless it completed), cost it.

    A resume needs only the folder, which records how the run was started (``invocation.json``);
    `workflow_file` None says there is nothing to resume. A run waiting on a person starts with the
    command that decides each approval.
    """
    run = _quote(str(run_dir))
    steps = [
        f"orchestrate approve {run} {_quote(str(a.get('name')))}"
        for a in document.get("agents", [])
        if a.get("status") == "waiting_approval"
    ]
    steps.append(f"orchestrate show {run}")
    if document.get("status") != "completed" and workflow_file is not None:
        steps.append(f"orchestrate run --resume {run}")
    steps.append(f"orchestrate cost-report {run}" + (" --include-simulated" if document.get("simulated") else ""))
    return [f"  {command}" for command in steps]


def closing_lines(
    document: Mapping[str, Any],
    run_dir: Path | str,
    workflow_file: Path | str | None = None,
    *,
    width: int | None = None,
    hints: bool = True,
) -> list[str]:
    """The whole closing block of one workflow's run.

    With `width` (a terminal's), a first line longer than that is broken after the
    outcome counts (and between words within them), so the terminal never wraps it in
    the middle of an amount or a word.
    Without `hints` the ``next:`` commands are left out (`combined_lines` gives them
    once for several workflows).
    """
    agents = document.get("agents", [])
    label = " (simulated)" if document.get("simulated") else ""
    head = (
        f"{document.get('name')}: {status_text(document.get('status'))}{label} - "
        f"{outcome_counts([str(a.get('status')) for a in agents])}; "
        f"{usd(float(document.get('total_cost') or 0))}, "
        f"{plural(int(document.get('total_tokens') or 0), 'token')}, "
        f"{plural(int(document.get('retries') or 0), 'retry')}, "
        f"{float(document.get('duration_seconds') or 0):.2f}s"
    )
    outcome, _, figures = head.partition("; ")
    if width is None or len(head) <= width:
        lines = [head]
    else:  # the counts too are broken between words, never in one
        lines = [*textwrap.wrap(outcome + ";", width, subsequent_indent="  ", break_long_words=False), f"  {figures}"]
    lines.extend(reuse_lines(document))
    lines.extend(wait_lines(document))
    failures = failure_lines(document)
    if failures:
        lines.append("why:")
        lines.extend(_fit(failures, width))
    lines.extend(_fit(skipped_lines(document), width))
    lines.extend(answer_lines(document, show_command(run_dir), width=width))
    lines.extend(approval_lines(document, width=width))
    lines.append(f"run folder: {run_dir}")
    if hints:
        lines.append("next:")
        lines.extend(next_steps(document, run_dir, workflow_file))
    return lines


def combined_lines(
    documents: Sequence[Mapping[str, Any]],
    run_dirs: Sequence[Path | str],
    workflow_files: Sequence[Path | str | None],
) -> list[str]:
    """The end of a run of several workflows: one total over them all, and the commands once.

    The cost and tokens are summed; the time is the longest workflow's (they ran side by
    side); simulated runs are said to be simulated. ``next:`` holds the approvals and
    resumes each workflow needs, then one ``cost-report`` over every run folder.
    """
    statuses = [str(d.get("status")) for d in documents]
    simulated = any(d.get("simulated") for d in documents)
    cost = sum(float(d.get("total_cost") or 0) for d in documents)
    tokens = sum(int(d.get("total_tokens") or 0) for d in documents)
    retries = sum(int(d.get("retries") or 0) for d in documents)
    seconds = max((float(d.get("duration_seconds") or 0) for d in documents), default=0.0)
    label = " (simulated)" if simulated else ""
    lines = [
        f"total: {plural(len(documents), 'workflow')}, {outcome_counts(statuses)}{label}; {usd(cost)}, "
        f"{plural(tokens, 'token')}, {plural(retries, 'retry')}, {seconds:.2f}s"
    ]
    steps: list[str] = []
    for document, run_dir, workflow_file in zip(documents, run_dirs, workflow_files):
        steps += [
            step for step in next_steps(document, run_dir, workflow_file) if " approve " in step or " --resume " in step
        ]
    folders = " ".join(_quote(str(run_dir)) for run_dir in run_dirs)
    steps.append("  orchestrate runs")
    steps.append(f"  orchestrate cost-report {folders}" + (" --include-simulated" if simulated else ""))
    return [*lines, "next:", *steps]


def _quote(text: str) -> str:
    """Quote a path for a POSIX shell when it needs it, so a hint can be pasted as is."""
    import shlex

    return shlex.quote(text)


def _fit(lines: list[str], width: int | None) -> list[str]:
    """Each line longer than a terminal's `width` broken between words, the rest indented under it
    (a reason the terminal would otherwise wrap in the middle of a word or an amount)."""
    if width is None:
        return lines
    fitted: list[str] = []
    for line in lines:
        indent = line[: len(line) - len(line.lstrip(" "))]
        if len(line) <= width:
            fitted.append(line)
            continue
        fitted.extend(
            textwrap.wrap(
                line.strip(),
                width,
                initial_indent=indent,
                subsequent_indent=indent + "    ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return fitted


def reuse_lines(document: Mapping[str, Any]) -> list[str]:
    """A resumed run's ``resumed: reused 6 agents ($0.0014 spent before); ran the other 1`` ([] otherwise)."""
    if not document.get("resumed_from"):
        return []
    names = set(document.get("reused_agents") or [])
    agents = document.get("agents", [])
    spent = sum(float(a.get("cost") or 0) for a in agents if a.get("name") in names)
    ran = len(agents) - len(names)
    return [f"resumed: reused {plural(len(names), 'agent')} ({usd(spent)} spent before); ran the other {ran}"]


def skipped_lines(document: Mapping[str, Any], *, indent: str = "  ") -> list[str]:
    """``skipped:`` and a line per reason: the condition that was false, or the skipped dependency."""
    grouped: dict[str, list[str]] = {}
    for agent in document.get("agents", []):
        if agent.get("status") == "skipped":
            why = str((agent.get("metadata") or {}).get("skipped") or "no reason recorded")
            grouped.setdefault(why, []).append(str(agent.get("name")))
    if not grouped:
        return []
    lines = ["skipped:"]
    for why, names in grouped.items():
        who = names[0] if len(names) == 1 else f"{plural(len(names), 'agent')} ({', '.join(names)})"
        lines.append(f"{indent}{who}  {why}")
    return lines


def wait_lines(document: Mapping[str, Any]) -> list[str]:
    """``rate limits: waited 2.04s of the run's time (6.12 call-seconds over 3 calls)`` ([] without a wait).

    The first figure is wall-clock, what the run lost: calls waiting side by side count once."""
    waits = document.get("rate_limit_waits")
    if not isinstance(waits, Mapping) or not waits.get("calls"):
        return []
    return [
        f"rate limits: waited {float(waits.get('wall_seconds') or 0):.2f}s of the run's time "
        f"({float(waits.get('call_seconds') or 0):.2f} call-seconds over {plural(int(waits['calls']), 'call')})"
    ]
