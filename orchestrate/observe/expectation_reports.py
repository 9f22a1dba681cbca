"""Expectations where CI and people read them: JUnit test cases and a Markdown section.

In JUnit each expectation of each case (a run, or a dataset row) is a test
case; one that failed is a ``failure`` whose message says what was expected and
what came, one that could not be evaluated an ``error`` with its reason, a
rubric not judged is ``skipped``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrate.fsutil import atomic_write_text
from orchestrate.printable import markdown_cell, xml_text
from orchestrate.run.protection import not_kept, shown, shown_reason

__all__ = ["expectation_suite", "expectations_markdown", "write_expectation_junit"]


def _message(outcome: Mapping[str, Any]) -> str:
    text = _said(outcome)
    if "tries" in outcome:  # a repeated case (--repeat K)
        text += f" ({outcome.get('passed', 0)}/{outcome['tries']} tries passed)"
    return text


def _said(outcome: Mapping[str, Any]) -> str:
    reason = shown_reason(outcome.get("reason"))
    if outcome.get("status") == "fail":
        text = f"expected {_whole(outcome.get('expected'))}, got {_whole(outcome.get('got'))}"
        if outcome.get("score") is not None:
            text = f"score {outcome['score']:g} below threshold {_whole(outcome.get('expected'))}"
        return f"{text}: {reason}" if reason else text
    return reason or str(outcome.get("status"))


def _whole(value: Any) -> str:
    """A value as a message says it: its repr (trimmed when it was recorded), or that it was not kept."""
    return shown(value, width=1 << 30)


def _cell(value: Any) -> Any:
    return shown(value) if not_kept(value) else value


def expectation_suite(name: str, cases: Sequence[Mapping[str, Any]]) -> ET.Element:
    """A ``testsuite`` named ``NAME expectations``, a testcase per expectation of each case."""
    suite = ET.Element("testsuite", name=xml_text(f"{name} expectations"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in cases:
        key = str(case.get("key") or "run")
        bar = case.get("min_pass_rate")
        tries = int(case.get("tries") or 1)
        # A case tried K times under a --min-pass-rate bar it meets: its misses are not failures.
        lenient = "tries_passed" in case and bar is not None and int(case["tries_passed"]) / tries >= float(bar) - 1e-12
        for outcome in case.get("outcomes", ()):
            counts["tests"] += 1
            label = outcome["name"] if key == "run" else f"{key}: {outcome['name']}"
            node = ET.SubElement(
                suite, "testcase", classname=xml_text(f"{name}.{outcome['agent']}"), name=xml_text(label)
            )
            status = outcome.get("status")
            if lenient and status in ("fail", "error"):
                ET.SubElement(node, "system-out").text = xml_text(_message(outcome))
                continue
            if status == "fail":
                counts["failures"] += 1
                ET.SubElement(node, "failure", message=xml_text(_message(outcome)), type="expectation").text = xml_text(
                    _message(outcome)
                )
            elif status == "error":
                counts["errors"] += 1
                ET.SubElement(node, "error", message=xml_text(_message(outcome)), type="expectation")
            elif status == "skipped":
                counts["skipped"] += 1
                ET.SubElement(node, "skipped", message=xml_text(_message(outcome)))
    for key, value in counts.items():
        suite.set(key, str(value))
    return suite


def write_expectation_junit(path: Path, name: str, cases: Sequence[Mapping[str, Any]]) -> None:
    """A JUnit file holding one expectations suite."""
    suites = ET.Element("testsuites", name="orchestrate")
    suites.append(expectation_suite(name, cases))
    ET.indent(suites)
    atomic_write_text(
        Path(path), '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def expectations_markdown(totals: Mapping[str, Any], limit: int = 20) -> list[str]:
    """A Markdown section: the counts, then a row per expectation that did not pass."""
    total = int(totals.get("total", 0))
    out = [
        "### Expectations",
        "",
        f"{totals.get('passed', 0)}/{total} passed · {totals.get('failed', 0)} failed · "
        f"{totals.get('errors', 0)} errors",
        "",
    ]
    from orchestrate.run.evaluation import repeat_lines

    out += [*repeat_lines(totals), ""] if repeat_lines(totals) else []
    bad = [o for o in totals.get("outcomes", ()) if o.get("status") in ("fail", "error")]
    if bad:
        out += ["| agent | expectation | status | expected | got | reason |", "|---|---|---|---|---|---|"]
        for o in bad[:limit]:
            out.append(
                f"| {markdown_cell(o['agent'])} | {markdown_cell(o['name'])} | {o['status']} | "
                f"{markdown_cell(_cell(o.get('expected')))} | {markdown_cell(_cell(o.get('got')))} | "
                f"{markdown_cell(shown_reason(o.get('reason')))} |"
            )
        out.append("")
    return out
