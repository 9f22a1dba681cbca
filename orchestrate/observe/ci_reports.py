"""Artefacts for CI: JUnit XML (a test case per agent) and a Markdown summary with a Mermaid graph.

Both are built from result.json documents, so they can also be made after
the fact from an archived run folder. Files are written atomically.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate.fsutil import atomic_write_text
from orchestrate.money.amounts import usd
from orchestrate.observe.answer import inline, run_answer
from orchestrate.observe.step_view import code_call, reason
from orchestrate.observe.summary import status_text
from orchestrate.printable import markdown_cell, mermaid_label, xml_text

__all__ = [
    "answer_markdown",
    "approval_markdown",
    "junit_xml",
    "mermaid",
    "summary_markdown",
    "write_junit",
    "write_summary",
]

_FAILED = ("failed", "budget_exceeded", "rejected")
# Unfinished (a killed run's report), skipped by a condition, or waiting for a person.
_SKIPPED = ("cancelled", "pending", "running", "rate_limited", "skipped", "waiting_approval")
_CLASS = {"completed": "done", "failed": "failed", "budget_exceeded": "failed", "rejected": "failed"}


def junit_xml(documents: list[dict[str, Any]]) -> str:
    """JUnit XML: a testsuite per workflow, a testcase per agent."""
    suites = ET.Element("testsuites", name="orchestrate")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for doc in documents:
        agents = doc["agents"]
        failures = sum(1 for a in agents if a["status"] in _FAILED)
        skipped = sum(1 for a in agents if a["status"] in _SKIPPED)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=xml_text(doc["name"]),
            tests=str(len(agents)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=f"{doc.get('duration_seconds') or 0:.3f}",
            timestamp=xml_text(doc.get("started_at") or ""),
        )
        totals["tests"] += len(agents)
        totals["failures"] += failures
        totals["skipped"] += skipped
        for agent in agents:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=xml_text(f"{doc['name']}.{agent['module']}"),
                name=xml_text(agent["name"]),
                time=f"{agent.get('execution_time') or 0:.3f}",
            )
            status, error = agent["status"], xml_text(reason(agent) or agent["status"])
            approval = (agent.get("metadata") or {}).get("approval") or {}
            if status in _FAILED:
                node = ET.SubElement(case, "failure", message=error, type=status)
                node.text = error
            elif status in _SKIPPED:
                ET.SubElement(case, "skipped", message=error)
            ET.SubElement(case, "system-out").text = xml_text(
                f"model={agent.get('model')} provider={agent.get('provider')} "
                f"tokens={agent.get('tokens_used', 0)} cost={agent.get('cost', 0):.6f} "
                f"retries={agent.get('retry_count', 0)}" + _decision_text(approval)
            )
    for doc in documents:  # a suite of each run's expectations (observe/expectation_reports.py)
        if doc.get("expectations"):
            from orchestrate.observe.expectation_reports import expectation_suite

            suite = expectation_suite(doc["name"], [{"key": "run", **doc["expectations"]}])
            suites.append(suite)
            for key in ("tests", "failures", "skipped"):
                totals[key] += int(suite.get(key) or 0)
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def mermaid(doc: dict[str, Any]) -> str:
    """The workflow as a Mermaid flowchart, nodes coloured by status (when agents have one)."""
    lines = [
        "flowchart LR",
        "  classDef done fill:#d4edda,stroke:#28a745,color:#155724",
        "  classDef failed fill:#f8d7da,stroke:#dc3545,color:#721c24",
        "  classDef skipped fill:#e2e3e5,stroke:#6c757d,color:#383d41",
    ]
    # Ids by position: names may differ only in '-' versus '_', which Mermaid ids cannot both hold.
    ids = {agent["name"]: f"a{i}" for i, agent in enumerate(doc["agents"])}
    for agent in doc["agents"]:
        status = agent.get("status")
        label = f"{mermaid_label(agent['name'])}<br/>{mermaid_label(agent['module'])}" + (
            f" · {mermaid_label(status_text(status))}" if status else ""
        )
        colour = f":::{_CLASS.get(status, 'skipped')}" if status else ""
        lines.append(f'  {ids[agent["name"]]}["{label}"]{colour}')
    for agent in doc["agents"]:
        for dep in agent.get("dependencies", []):
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[agent['name']]}")
    return "\n".join(lines)


def summary_markdown(documents: list[dict[str, Any]]) -> str:
    """A Markdown summary of each run: status, cost, a table of agents and the graph."""
    out: list[str] = []
    for doc in documents:
        agents = doc["agents"]
        done = sum(1 for a in agents if a["status"] == "completed")
        skipped = sum(1 for a in agents if a["status"] == "skipped")
        by_condition = f", {skipped} skipped by a condition" if skipped else ""
        sim = " (simulated)" if doc.get("simulated") else ""
        out += [
            f"## {markdown_cell(doc['name'])}: {status_text(doc['status'])}{sim}",
            "",
            f"{done}/{len(agents)} agents completed{by_condition} · cost ${doc['total_cost']:.4f} of "
            f"${doc['cost_budget']:.2f} · {doc['total_tokens']} tokens · {doc['retries']} retries · "
            f"{doc.get('duration_seconds') or 0:.2f}s",
            "",
            *answer_markdown(doc),
            *approval_markdown(doc),
            "| agent | module | status | model | tokens | cost | why |",
            "|---|---|---|---|---:|---:|---|",
        ]
        for a in agents:
            out.append(
                f"| {markdown_cell(a['name'])} | {markdown_cell(a['module'])} | {status_text(a['status'])} | "
                f"{markdown_cell(a.get('model') or code_call(a, limit=60) or '')} | {a.get('tokens_used', 0)} | "
                f"{usd(float(a.get('cost') or 0))} | {markdown_cell(reason(a) or '')} |"
            )
        out += ["", "```mermaid", mermaid(doc), "```", ""]
        if doc.get("expectations"):
            from orchestrate.observe.expectation_reports import expectations_markdown

            out += expectations_markdown(doc["expectations"])
    return "\n".join(out)


def _decision_text(approval: Mapping[str, Any]) -> str:
    """`` approval: approved by controller at ... with orchestrate approve: "note"`` ("" when undecided)."""
    if "decision" not in approval:
        return ""
    from orchestrate.observe.approval_view import how_decided, when_decided

    note = f': "{approval["note"]}"' if approval.get("note") else ""
    return (
        f"\napproval: {approval['decision']} by {approval.get('by')} at {when_decided(approval.get('at'))} "
        f"{how_decided(approval.get('source'))}{note}"
    )


def approval_markdown(doc: Mapping[str, Any]) -> list[str]:
    """The approvals of a run as Markdown: waiting ones with their question, decided ones with who,
    when, how and the note."""
    from orchestrate.observe.approval_view import decided, pending, when_decided

    lines: list[str] = []
    waiting, done = pending(doc), decided(doc)
    if waiting:
        lines += ["| waiting for approval | question |", "|---|---|"]
        lines += [f"| {markdown_cell(w['agent'])} | {markdown_cell(w['message'] or '')} |" for w in waiting]
        lines.append("")
    if done:
        lines += ["| approval | decision | by | at | how | note |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {markdown_cell(d['agent'])} | {markdown_cell(d['decision'])} | {markdown_cell(d['by'])} | "
            f"{markdown_cell(when_decided(d['at']))} | {markdown_cell(d['how'])} | {markdown_cell(d['note'] or '')} |"
            for d in done
        ]
        lines.append("")
    return lines


def answer_markdown(doc: Mapping[str, Any]) -> list[str]:
    """The run's description, inputs and outputs (or last agents' answers) as Markdown lines."""
    lines: list[str] = []
    if doc.get("description"):
        lines += [markdown_cell(" ".join(str(doc["description"]).split())), ""]
    inputs = doc.get("inputs")
    if isinstance(inputs, Mapping) and inputs:
        lines += ["| input | value |", "|---|---|"]
        lines += [f"| {markdown_cell(k)} | {markdown_cell(_short(v))} |" for k, v in inputs.items()]
        lines.append("")
    kind, answers = run_answer(doc)
    if answers:
        lines += [
            f"| {'output' if kind == 'outputs' else 'last agent'} | {'value' if kind == 'outputs' else 'answer'} |"
        ]
        lines.append("|---|---|")
        for item in answers:
            shown = _short(item.value) if item.status in (None, "completed") else f"({status_text(item.status)})"
            lines.append(f"| {markdown_cell(item.name)} | {markdown_cell(shown)} |")
        lines.append("")
    return lines


def _short(value: Any, limit: int = 300) -> str:
    text = inline(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_junit(path: Path, documents: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(path), junit_xml(documents))


def write_summary(path: Path, documents: list[dict[str, Any]]) -> None:
    """Write the summary; appends when `path` is $GITHUB_STEP_SUMMARY-like (already exists).

    An existing file is appended to, never rewritten: its bytes stay exactly as they were,
    whatever their encoding, and a crash mid-append leaves them whole.
    """
    path = Path(path)
    text = summary_markdown(documents)
    if path.exists() and path.stat().st_size > 0:
        with open(path, "a", encoding="utf-8", newline="\n") as handle:
            handle.write("\n" + text)
        return
    atomic_write_text(path, text)
