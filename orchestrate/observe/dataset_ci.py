"""CI artefacts of a dataset run: JUnit XML with a test case per row, and a Markdown summary.

Both are made from the dataset run folder (result.json's counts and results.jsonl,
the last line of each key winning), so they also work after a resumed dataset run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrate.fsutil import atomic_write_text
from orchestrate.money.amounts import budget_usd
from orchestrate.observe.dataset_report import read_json_lines
from orchestrate.observe.summary import status_text
from orchestrate.printable import markdown_cell, xml_text

__all__ = ["dataset_junit_xml", "dataset_summary_markdown", "write_dataset_junit", "write_dataset_summary"]

_FAILED = ("failed", "budget_exceeded", "partially_completed", "invalid")


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in read_json_lines(run_dir / "results.jsonl"):
        if "key" in line:
            latest.pop(str(line["key"]), None)  # re-inserted: keeps the order rows finished in
            latest[str(line["key"])] = {
                k: line.get(k) for k in ("key", "row", "status", "cost", "seconds", "error", "expectations")
            }
    return list(latest.values())


def dataset_junit_xml(document: dict[str, Any], run_dir: Path) -> str:
    """One testsuite for the dataset run, one testcase per row."""
    rows = _rows(run_dir)
    failures = sum(1 for r in rows if r["status"] in _FAILED)
    skipped = sum(1 for r in rows if r["status"] == "cancelled")
    suites = ET.Element(
        "testsuites", name="orchestrate", tests=str(len(rows)), failures=str(failures), skipped=str(skipped)
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=xml_text(document["name"]),
        tests=str(len(rows)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{document.get('duration_seconds') or 0:.3f}",
        timestamp=xml_text(document.get("started_at") or ""),
    )
    for row in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=xml_text(document["name"]),
            name=xml_text(f"row {row['key']}"),
            time=f"{row.get('seconds') or 0:.3f}",
        )
        error = xml_text(row.get("error") or row["status"])  # no character XML 1.0 refuses
        if row["status"] in _FAILED:
            node = ET.SubElement(case, "failure", message=error, type=xml_text(row["status"]))
            node.text = error
        elif row["status"] == "cancelled":
            ET.SubElement(case, "skipped", message=error)
        ET.SubElement(case, "system-out").text = f"line={row.get('row')} cost={float(row.get('cost') or 0):.6f}"
    totals = document.get("expectations")
    if totals:  # a suite of each row's expectations (observe/expectation_reports.py)
        from orchestrate.observe.expectation_reports import expectation_suite

        bar = {"min_pass_rate": totals["min_pass_rate"]} if totals.get("min_pass_rate") is not None else {}
        cases = [{"key": r["key"], **r["expectations"], **bar} for r in rows if r.get("expectations")]
        suites.append(expectation_suite(document["name"], cases))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def dataset_summary_markdown(document: dict[str, Any], run_dir: Path, *, limit: int = 50) -> str:
    """Counts by status, totals, and a table of the rows that did not complete."""
    counts = document.get("counts") or {}
    label = " (simulated)" if document.get("simulated") else ""
    lines = [
        f"## {markdown_cell(document['name'])}: {markdown_cell(status_text(document['status']))}{label}",
        "",
        f"{document['rows']} rows, ${document['total_cost']:.4f}, {document['total_tokens']} tokens, "
        f"{document.get('duration_seconds') or 0:.1f}s"
        + (f", dataset budget {budget_usd(float(document['budget']))}" if document.get("budget") is not None else ""),
        "",
        "| status | rows |",
        "|---|---:|",
    ]
    lines += [f"| {markdown_cell(status_text(status))} | {n} |" for status, n in sorted(counts.items())]
    failed = [r for r in _rows(run_dir) if r["status"] != "completed"]
    if failed:
        lines += ["", "| row | line | status | error |", "|---|---:|---|---|"]
        for row in failed[:limit]:
            error = markdown_cell(str(row.get("error") or "")[:200])  # one cell: pipes, newlines, HTML escaped
            cells = (
                markdown_cell(row["key"]),
                markdown_cell(row.get("row")),
                markdown_cell(status_text(row["status"])),
                error,
            )
            lines.append("| " + " | ".join(cells) + " |")
        if len(failed) > limit:
            lines.append(f"\n{len(failed) - limit} more rows did not complete; see results.jsonl.")
    if document.get("expectations"):  # pass rates (and pass^K with --repeat), as the closing lines say
        from orchestrate.run.evaluation import dataset_lines

        lines += ["", "### Expectations", "", "```", *dataset_lines(document["expectations"]), "```"]
    return "\n".join(lines) + "\n"


def write_dataset_junit(path: Path, document: dict[str, Any], run_dir: Path) -> None:
    atomic_write_text(path, dataset_junit_xml(document, run_dir))


def write_dataset_summary(path: Path, document: dict[str, Any], run_dir: Path) -> None:
    """Write the summary; appends to a file that exists (``$GITHUB_STEP_SUMMARY``), as single runs do."""
    path = Path(path)
    text = dataset_summary_markdown(document, run_dir)
    if path.exists() and path.stat().st_size > 0:
        text = path.read_text(encoding="utf-8") + "\n" + text
    atomic_write_text(path, text)
