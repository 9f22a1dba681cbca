"""A dataset run's results as a table: one line per key at its latest state, counts by an output,
and the Outcomes section of report.html. Through the real command, piped, at 80 columns."""

from __future__ import annotations

import collections
import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import cli
from tests.chromium import chromium_path
from tests.test_answer import page_in_chromium

ROOT = Path(__file__).resolve().parents[1]


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, columns=80, ci=False)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 25-invoice example, stopped by its budget part-way and resumed in place."""
    folder = tmp_path_factory.mktemp("rows")
    shutil.copytree(ROOT / "workflows", folder / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    data = ("--data", "workflows/data/invoices.csv", "--key", "invoice_id")
    first = orchestrate("run", "workflows/invoice_review.yaml", *data, "--simulate", "--budget", "0.0005", cwd=folder)
    assert first.returncode in (1, 3), first.stderr
    (run_dir,) = (folder / "runs").iterdir()
    again = orchestrate(
        # the budget raised: a resume keeps the recorded ceiling unless --budget raises it
        "run",
        "workflows/invoice_review.yaml",
        *data,
        "--simulate",
        "--budget",
        "1",
        "--resume",
        str(run_dir),
        cwd=folder,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    latest = {line["key"]: line for line in lines}
    assert len(lines) > len(latest) == 25  # some keys were written twice: refused, then completed
    return {"folder": folder, "dir": run_dir, "latest": latest, "closing": again.stdout}


def test_csv_has_one_line_per_key_at_its_latest_state(resumed: dict[str, Any]) -> None:
    done = orchestrate("show", str(resumed["dir"]), "--format", "csv", cwd=resumed["folder"])
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["key"] for r in rows] == sorted(resumed["latest"], key=lambda k: resumed["latest"][k]["row"])
    assert {r["status"] for r in rows} == {"completed"}
    first = rows[0]
    latest = resumed["latest"][first["key"]]
    assert first["payment_decision.decision"] == latest["outputs"]["payment_decision"]["decision"]
    assert first["inputs.vendor"] and first["inputs.amount"]
    assert "e-" not in first["cost"] and float(first["cost"]) == pytest.approx(latest["cost"])


def test_jsonl_has_one_line_per_key_with_inputs_and_nested_outputs(resumed: dict[str, Any]) -> None:
    done = orchestrate("show", str(resumed["dir"]), "--format", "jsonl", cwd=resumed["folder"])
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == len({r["key"] for r in rows}) == 25
    assert all(r["status"] == "completed" and r["inputs"]["invoice_id"] == r["key"] for r in rows)
    assert all("decision" in r["outputs"]["payment_decision"] for r in rows)


def test_table_lists_rows_with_their_outputs_at_80_columns(resumed: dict[str, Any]) -> None:
    done = orchestrate("show", str(resumed["dir"]), "--format", "table", cwd=resumed["folder"])
    assert done.returncode == 0, done.stderr
    assert "payment_decision.decision" in done.stdout
    assert sum(1 for line in done.stdout.splitlines() if line.startswith("│ INV-")) == 25


def test_by_an_output_counts_the_rows(resumed: dict[str, Any]) -> None:
    expected = collections.Counter(
        line["outputs"]["payment_decision"]["decision"] for line in resumed["latest"].values()
    )
    done = orchestrate(
        "show", str(resumed["dir"]), "--by", "payment_decision.decision", "--format", "json", cwd=resumed["folder"]
    )
    payload = json.loads(done.stdout)
    assert payload["rows"] == 25
    assert {o["value"]: o["rows"] for o in payload["outcomes"]} == dict(expected)
    text = orchestrate("show", str(resumed["dir"]), "--by", "payment_decision.decision", cwd=resumed["folder"]).stdout
    top, count = expected.most_common(1)[0]
    assert any(line.startswith(f"│ {top} ") and f" {count} " in line for line in text.splitlines())


def test_closing_lines_and_show_count_the_outcomes(resumed: dict[str, Any]) -> None:
    counts = collections.Counter(line["outputs"]["payment_decision"]["decision"] for line in resumed["latest"].values())
    expected = "  payment_decision.decision: " + ", ".join(
        f"{n} {value}" for value, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    assert f"outcomes:\n{expected}\n" in resumed["closing"]
    shown = orchestrate("show", str(resumed["dir"]), cwd=resumed["folder"]).stdout
    assert f"outcomes:\n{expected}\n" in shown
    as_json = json.loads(orchestrate("show", str(resumed["dir"]), "--json", cwd=resumed["folder"]).stdout)
    assert as_json["outcomes"]["payment_decision.decision"] == dict(counts)


def test_a_misspelt_output_path_or_a_single_run_is_one_clear_line(resumed: dict[str, Any], tmp_path: Path) -> None:
    done = orchestrate("show", str(resumed["dir"]), "--by", "payment_decision.decison", cwd=resumed["folder"])
    assert done.returncode == 2
    assert done.stderr.strip().endswith("did you mean 'payment_decision.decision'?")
    assert len(done.stderr.strip().splitlines()) == 1
    flow = tmp_path / "one.yaml"
    flow.write_text(
        "name: one\ncost_budget: 1\nagents:\n  - name: a\n    module: Finance\n"
        "    llm_config: {model: gpt-4o-mini, max_tokens: 20}\n    prompt_template: hi\n"
    )
    assert orchestrate("run", str(flow), "--simulate", "--quiet", cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    done = orchestrate("show", str(run_dir), "--format", "csv", cwd=tmp_path)
    assert done.returncode == 2 and "is a single run" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_has_an_outcomes_section_with_the_rows_behind_each_value(resumed: dict[str, Any]) -> None:
    assert orchestrate("report", str(resumed["dir"]), cwd=resumed["folder"]).returncode == 0
    text, errors = page_in_chromium((resumed["dir"] / "report.html").resolve().as_uri())
    assert errors == []
    assert "Outcomes" in text and "payment_decision.decision" in text
    held = [k for k, line in resumed["latest"].items() if line["outputs"]["payment_decision"]["decision"] == "hold"]
    assert f"{len(held)} rows" in text
    assert held[0] in text  # the rows behind a value are on the page (folded)
