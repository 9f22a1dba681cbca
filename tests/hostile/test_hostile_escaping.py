"""Terminal and file injection: hostile model text and dataset keys through show, CSV, JUnit and Markdown.

A provider answers with an OSC 8 link, a CSI clear-screen, rich markup and a bidi
override; a dataset's keys are spreadsheet formulas, XML breakers (``]]>``,
control characters XML 1.0 cannot hold) and Markdown table breakers (pipes,
newlines, HTML). Everything runs as a user runs it: the CLI as a subprocess
against a loopback provider, and the files it writes read by real parsers
(``csv``, ``xml.etree``).
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrate.cells import FORMULA_STARTS
from tests.fake_provider import FakeProvider
from tests.hostile.helpers import orchestrate

KEY = "hostile-escaping-SECRET-0123456789"
ANSWER = (
    "\x1b]8;;http://evil.example/\x1b\\click here\x1b]8;;\x1b\\ \x1b[2J\x1b[31m "
    "[red]alarm[/red] [link=http://evil.example]x[/link] \u202etxt.exe \x07"
)
VENDORS = [
    '=HYPERLINK("http://evil.example","invoice")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "\tTAB=1",
    "a|b\n<script>alert(1)</script>",
    "]]>\x0b\x1b[2J end",
    "[red]x[/red]",
]
TOOLS = """\
def check(vendor, answer):
    raise ValueError(f"refused {vendor} | <b>bold</b> ]]> \\x0c after {answer[:12]}")
"""


def _workflow(folder: Path, server: FakeProvider) -> Path:
    (folder / "screen_tools.py").write_text(TOOLS)
    path = folder / "screen.yaml"
    path.write_text(
        "name: vendor_screen\n"
        "cost_budget: 1.0\n"
        "allow_partial_completion: true\n"
        "inputs:\n  vendor: {type: string}\n"
        "defaults:\n"
        "  module: Compliance\n"
        f"  llm_config: {{model: gpt-4o-mini, base_url: '{server.url}/v1', max_tokens: 60}}\n"
        "agents:\n"
        "  - name: screen\n"
        "    max_retries: 0\n"
        "    prompt_template: 'Screen {vendor}'\n"
        "  - name: check\n"
        "    dependencies: [screen]\n"
        "    max_retries: 0\n"
        "    function: 'screen_tools:check'\n"
        "    arguments: {vendor: '{vendor}', answer: '{screen.output}'}\n"
    )
    return path


def _hostile(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    answer["choices"][0]["message"]["content"] = ANSWER
    return answer


def _clean_terminal_text(text: str) -> None:
    for raw in ("\x1b", "\x07", "\u202e", "\x0b", "\x0c"):
        assert raw not in text, (raw, text)


def test_show_prints_hostile_answers_and_keys_escaped_never_as_markup(tmp_path: Path) -> None:
    with FakeProvider(rewrite=_hostile) as server:
        path = _workflow(tmp_path, server)
        done = orchestrate(
            "run",
            str(path),
            "--input",
            f"vendor={VENDORS[-1]}",
            "-o",
            "runs",
            cwd=tmp_path,
            env={"OPENAI_API_KEY": KEY},
        )
        assert done.returncode == 3, done.stderr  # partially completed
        (run_dir,) = (tmp_path / "runs").iterdir()
        data = tmp_path / "vendors.jsonl"
        data.write_text("".join(json.dumps({"vendor": v}) + "\n" for v in VENDORS))
        dataset = orchestrate(
            "run", str(path), "--data", str(data), "--key", "vendor", "-o", "data_runs", cwd=tmp_path,
            env={"OPENAI_API_KEY": KEY},
        )  # fmt: skip
        assert dataset.returncode == 1 and "Traceback" not in dataset.stderr, dataset.stderr
    (data_dir,) = (tmp_path / "data_runs").iterdir()
    shows = [
        orchestrate("show", str(run_dir), cwd=tmp_path),
        orchestrate("show", str(run_dir), "screen", cwd=tmp_path),
        orchestrate("show", str(data_dir), cwd=tmp_path),
        orchestrate("show", str(data_dir), "--format", "table", cwd=tmp_path),
    ]
    for shown in shows:
        assert shown.returncode == 0, shown.stderr
        _clean_terminal_text(shown.stdout)
    answer = shows[1].stdout
    assert "[red]alarm[/red]" in answer and "[link=http://evil.example]x[/link]" in answer  # text, not markup
    assert "\\x1b]8;;http://evil.example/" in answer and "\\u202e" in answer  # shown escaped, not dropped
    assert "[red]x[/red]" in shows[2].stdout + shows[3].stdout  # a key named like markup is a key


def _formula_cells(text: str) -> list[str]:
    """The cells a spreadsheet would run as formulas (numbers like -0.5 are numbers)."""
    found = []
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell.startswith(FORMULA_STARTS):
                try:
                    float(cell)
                except ValueError:
                    found.append(cell)
    return found


def test_csv_junit_and_markdown_hold_hostile_keys(tmp_path: Path) -> None:
    with FakeProvider(rewrite=_hostile) as server:
        path = _workflow(tmp_path, server)
        data = tmp_path / "vendors.jsonl"
        data.write_text("".join(json.dumps({"vendor": v}) + "\n" for v in VENDORS))
        done = orchestrate(
            "run", str(path), "--data", str(data), "--key", "vendor", "-o", "runs",
            "--junit", "junit.xml", "--summary", "summary.md", cwd=tmp_path, env={"OPENAI_API_KEY": KEY},
        )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()

    # CSV: every text cell that starts like a formula is written with a leading quote (OWASP).
    rows = orchestrate("show", str(run_dir), "--format", "csv", cwd=tmp_path)
    by_row = orchestrate("cost-report", str(run_dir), "--by", "row", "--format", "csv", cwd=tmp_path)
    for report in (rows, by_row):
        assert report.returncode == 0, report.stderr
        assert _formula_cells(report.stdout) == [], report.stdout
    keys = {row[0] for row in list(csv.reader(io.StringIO(rows.stdout)))[1:]}
    assert '\'=HYPERLINK("http://evil.example","invoice")' in keys and "'-2+3" in keys and "[red]x[/red]" in keys
    groups = {row[0] for row in list(csv.reader(io.StringIO(by_row.stdout)))[1:]}
    assert "'@SUM(1+1)" in groups and "'\tTAB=1" in groups

    # JUnit: well-formed, one case per row, the keys and errors readable.
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    names = sorted(str(case.get("name")) for case in suite.iter("testcase"))
    assert len(names) == len(VENDORS) and "row ]]>\\x0b\\x1b[2J end" in names
    failures = [f.get("message") or "" for f in suite.iter("failure")]
    assert len(failures) == len(VENDORS) and all("refused" in m for m in failures)

    # Markdown: the failed-rows table keeps one row per line and five columns; no raw HTML.
    summary = (tmp_path / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| ") and "refused" in line]
    assert len(table) == len(VENDORS), summary
    for line in table:
        cells = [c for c in line.replace("\\|", "").split("|")]
        assert len(cells) == 6, line  # | key | line | status | error | -> 4 cells between 5 pipes
    assert "<script>" not in summary and "<b>" not in summary and "&lt;script&gt;" in summary
    _clean_terminal_text(summary)

    # cost-report's Markdown: one table line per row whatever its key holds, no raw HTML.
    by_row_md = orchestrate("cost-report", str(run_dir), "--by", "row", "--format", "markdown", cwd=tmp_path)
    assert by_row_md.returncode == 0, by_row_md.stderr
    lines = [line for line in by_row_md.stdout.splitlines() if line.startswith("|")]
    widths = {len(line.replace("\\|", "").split("|")) for line in lines}
    assert len(widths) == 1, by_row_md.stdout  # no key broke its line or added a column
    assert "<script>" not in by_row_md.stdout and "&lt;script&gt;" in by_row_md.stdout
    _clean_terminal_text(by_row_md.stdout)


def test_rows_counted_by_a_hostile_output_are_not_formulas(tmp_path: Path) -> None:
    (tmp_path / "echo_steps.py").write_text("def echo(vendor):\n    return {'name': vendor}\n")
    (tmp_path / "echo.yaml").write_text(
        "name: echo\ncost_budget: 1.0\ninputs:\n  vendor: {type: string}\n"
        "outputs:\n  name: '{echo.output.name}'\n"
        "agents:\n  - name: echo\n    module: Finance\n    function: 'echo_steps:echo'\n"
        "    arguments: {vendor: '{vendor}'}\n"
    )
    data = tmp_path / "vendors.jsonl"
    data.write_text("".join(json.dumps({"vendor": v}) + "\n" for v in VENDORS[:5]))
    done = orchestrate("run", "echo.yaml", "--data", str(data), "--key", "vendor", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    counted = orchestrate("show", str(run_dir), "--by", "name", "--format", "csv", cwd=tmp_path)
    assert counted.returncode == 0, counted.stderr
    assert _formula_cells(counted.stdout) == [], counted.stdout
    assert "'@SUM(1+1)" in {row[0] for row in csv.reader(io.StringIO(counted.stdout))}
