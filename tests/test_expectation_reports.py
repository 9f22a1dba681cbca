"""Expectations where CI and people read them (`orchestrate.observe.expectation_reports`): JUnit
with a test case per expectation and a failed one a failure saying what was expected and what
came, for a run, a dataset run and `orchestrate eval`; the Markdown summary's Expectations
section; and the example the issue asks for (workflows/finance_invoice_coding.yaml)."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrate.workflow.expectations import KINDS
from orchestrate.workflow.loader import load_workflow
from tests.test_evaluation import orchestrate

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = """\
name: coin
inputs:
  vendor: {type: string, default: Acme}
agents:
  - name: decide
    module: Finance
    llm_config: {model: gpt-4o-mini}
    prompt_template: "Approve or hold {vendor}?"
    expect:
      - {equals: approve, name: approves}
      - {contains: o, name: has an o}
"""


def cases_of(junit: Path) -> dict[str, ET.Element]:
    root = ET.parse(junit).getroot()
    (suite,) = [s for s in root.iter("testsuite") if s.get("name") == "coin expectations"]
    return {str(c.get("name")): c for c in suite.iter("testcase")}


def test_a_runs_junit_has_a_case_per_expectation_and_the_summary_a_table(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "answers.yaml").write_text("decide: hold\n")
    proc = orchestrate(
        "run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "-o", "runs",
        "--junit", "junit.xml", "--summary", "summary.md", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    cases = cases_of(tmp_path / "junit.xml")
    assert set(cases) == {"approves", "has an o"}
    failure = cases["approves"].find("failure")
    assert failure is not None and failure.get("message") == "expected 'approve', got 'hold': not equal"
    assert cases["has an o"].find("failure") is None and cases["has an o"].find("error") is None
    summary = (tmp_path / "summary.md").read_text()
    assert "### Expectations" in summary and "1/2 passed · 1 failed" in summary
    assert "| decide | approves | fail | approve | hold | not equal |" in summary


def test_a_dataset_runs_and_evals_junit_name_each_row(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("equals: approve", "equals: '{row.expected}'"))
    (tmp_path / "rows.csv").write_text("vendor,expected\nA,approve\nB,hold\n")
    (tmp_path / "answers.yaml").write_text("decide: approve\n")
    proc = orchestrate(
        "run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "--data", "rows.csv", "--key", "vendor",
        "-o", "runs", "--junit", "junit.xml", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    cases = cases_of(tmp_path / "junit.xml")
    assert set(cases) == {"A: approves", "A: has an o", "B: approves", "B: has an o"}
    failure = cases["B: approves"].find("failure")
    assert failure is not None and "expected 'hold', got 'approve'" in str(failure.get("message"))
    (run_dir,) = (tmp_path / "runs").iterdir()
    scored = orchestrate("eval", str(run_dir), "--junit", "eval.xml", cwd=tmp_path)
    assert scored.returncode == 5, scored.stdout + scored.stderr
    again = cases_of(tmp_path / "eval.xml")
    assert set(again) == set(cases)
    assert again["B: approves"].find("failure") is not None and again["A: approves"].find("failure") is None


def test_the_example_codes_invoices_with_five_kinds_a_rubric_and_answers_that_fail_on_purpose(tmp_path: Path) -> None:
    workflow = load_workflow(ROOT / "workflows" / "finance_invoice_coding.yaml", bind=False)
    found = set()
    stack = [item for agent in workflow.agents for item in agent.expect or []] + list(workflow.expect or [])
    while stack:
        item = stack.pop()
        found.update(kind for kind in KINDS if kind in item)
        stack += item.get("any", []) + item.get("all", [])
    assert "rubric" in found and len(found - {"rubric", "any", "all"}) >= 5, found
    with open(ROOT / "workflows" / "data" / "invoice_coding.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and {"expected_account", "expected_decision"} <= set(rows[0])
    answers = json.loads((ROOT / "workflows" / "data" / "invoice_coding_answers.json").read_text())
    assert "code_invoice" in answers
    proc = orchestrate(
        "run", str(ROOT / "workflows" / "finance_invoice_coding.yaml"),
        "--data", str(ROOT / "workflows" / "data" / "invoice_coding.csv"), "--key", "invoice_id",
        "--simulate", "--answers", str(ROOT / "workflows" / "data" / "invoice_coding_answers.json"),
        "-o", "runs", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr  # some rows fail on purpose, not all
    results = next((tmp_path / "runs").iterdir()) / "results.jsonl"
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    failing = [line for line in lines if line["expectations"]["failed"]]
    assert 0 < len(failing) < len(lines)


def test_without_content_expected_and_got_are_withheld_in_every_file(tmp_path: Path) -> None:
    text = WORKFLOW.replace("equals: approve", "equals: '{row.expected}'") + "data_protection: {store_content: false}\n"
    (tmp_path / "wf.yaml").write_text(text)
    (tmp_path / "rows.csv").write_text("vendor,expected\nA,approve SECRETWANT\n")
    (tmp_path / "answers.yaml").write_text("decide: hold SECRETGOT\n")
    (tmp_path / "single.yaml").write_text(WORKFLOW + "data_protection: {store_content: false}\n")
    single = orchestrate(
        "run", "single.yaml", "--simulate", "--answers", "answers.yaml", "-o", "one", cwd=tmp_path
    )  # fmt: skip
    dataset = orchestrate(
        "run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "--data", "rows.csv", "--key", "vendor",
        "-o", "many", "--junit", "junit.xml", cwd=tmp_path,
    )  # fmt: skip
    assert single.returncode == 5 and dataset.returncode == 5, single.stderr + dataset.stderr
    for folder in (tmp_path / "one", tmp_path / "many"):
        (run_dir,) = folder.iterdir()
        for path in run_dir.iterdir():
            if path.is_file():
                assert "SECRET" not in path.read_text(errors="replace"), path
    result = json.loads(next((tmp_path / "one").iterdir()).joinpath("result.json").read_text())
    (missed,) = [o for o in result["expectations"]["outcomes"] if o["status"] == "fail"]
    assert missed["name"] == "approves" and missed["got"] != "hold SECRETGOT"
    assert "SECRET" not in (tmp_path / "junit.xml").read_text()


LEAKY = """\
name: coin
inputs:
  vendor: {type: string, default: SECRETIN}
agents:
  - name: decide
    module: Finance
    llm_config: {model: gpt-4o-mini}
    prompt_template: "Approve or hold {vendor}?"
    expect:
      - {equals: "{vendor}", name: names the vendor}
      - {contains: "{vendor}", name: quotes the vendor}
      - {json_schema: {type: object, required: [decision]}, name: is an object}
      - {approx: "{vendor}", name: a number}
      - {cel: "output.startsWith('approve')", name: approves}
      - {any: [{regex: "^approve"}, {icontains: "{vendor}"}], name: either}
      - {max_cost: 1, name: cheap}
data_protection: {store_content: false}
"""


def test_without_content_no_command_prints_or_writes_what_was_expected_or_got(tmp_path: Path) -> None:
    """store_content: false: the closing lines, the progress log, show, report.html, the Markdown
    summary, JUnit, results.jsonl and orchestrate eval (its lines, eval-*.json, --json, JUnit, a
    baseline) say what did not pass and that its content was not kept, never the content."""
    (tmp_path / "wf.yaml").write_text(LEAKY)
    (tmp_path / "rows.csv").write_text("vendor\nSECRETROW\n")
    (tmp_path / "answers.yaml").write_text("decide: hold SECRETGOT\n")
    said: list[str] = []

    def command(*args: str, code: int = 5) -> str:
        proc = orchestrate(*args, cwd=tmp_path)
        assert proc.returncode == code, proc.stdout + proc.stderr
        said.append(proc.stdout + proc.stderr)
        return proc.stdout + proc.stderr

    common = ("--simulate", "--answers", "answers.yaml", "--no-progress")
    run = command("run", "wf.yaml", *common, "-o", "one", "--junit", "one.xml", "--summary", "one.md")
    assert "[content not kept: " in run and "expectations: 1/7 passed" in run, run
    assert "fail: decide: names the vendor: expected [content not kept: " in run
    (run_dir,) = (tmp_path / "one").iterdir()
    command("show", str(run_dir), code=0)
    command("report", str(run_dir), code=0)
    scored = command("eval", str(run_dir), "--junit", "eval.xml")
    assert "[content not kept: " in scored
    command("eval", str(run_dir), "--json")
    command("eval", str(run_dir), "--baseline", str(run_dir))
    command(
        "run", "wf.yaml", *common, "--data", "rows.csv", "-o", "many", "--junit", "many.xml", "--summary", "many.md"
    )
    (dataset_dir,) = (tmp_path / "many").iterdir()
    command("show", str(dataset_dir), code=0)
    command("report", str(dataset_dir), code=0)
    command("eval", str(dataset_dir), "--data", "rows.csv")
    for text in said:
        assert "SECRET" not in text, text
    inputs = {tmp_path / name for name in ("wf.yaml", "rows.csv", "answers.yaml")}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs]
    assert any(p.name.startswith("eval-") for p in written) and any(p.name == "report.html" for p in written)
    for path in written:
        assert "SECRET" not in path.read_text(errors="replace"), path
