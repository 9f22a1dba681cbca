"""`--simulate --answers`: fixed answers per agent drive branches and expectations offline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_evaluation import orchestrate

WORKFLOW = """\
name: routed
inputs:
  vendor: {type: string, default: Acme}
agents:
  - name: route
    module: Finance
    llm_config: {model: gpt-4o-mini}
    prompt_template: "Route {vendor}"
  - name: escalate
    module: Finance
    llm_config: {model: gpt-4o-mini}
    dependencies: [route]
    when: "route.output == 'escalate now'"
    prompt_template: "Escalate {vendor}"
    expect:
      - contains: escalated
"""


def test_answers_reach_a_branch_the_simulated_provider_never_would(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    plain = orchestrate("run", "wf.yaml", "--simulate", "-o", "plain", cwd=tmp_path)
    (run_dir,) = (tmp_path / "plain").iterdir()
    agents = {a["name"]: a for a in json.loads((run_dir / "result.json").read_text())["agents"]}
    assert agents["escalate"]["status"] == "skipped"
    assert plain.returncode == 5 and "agent 'escalate' was skipped" in plain.stdout  # an error, not a pass
    (tmp_path / "answers.yaml").write_text("route: escalate now\nescalate: escalated to the AP lead\n")
    fixed = orchestrate("run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "-o", "fixed", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "expectations: 1/1 passed" in fixed.stdout
    (run_dir,) = (tmp_path / "fixed").iterdir()
    agents = {a["name"]: a for a in json.loads((run_dir / "result.json").read_text())["agents"]}
    assert agents["escalate"]["status"] == "completed"
    assert agents["escalate"]["output"]["text"] == "escalated to the AP lead"


def test_answers_from_a_column_in_order_and_for_the_judge(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: t\ninputs:\n  vendor: {type: string}\nagents:\n  - name: code\n    module: Finance\n"
        "    llm_config: {model: gpt-4o-mini}\n    prompt_template: '{vendor}'\n"
        "    output_schema: {type: object, properties: {decision: {type: string}}, required: [decision]}\n"
        "    expect:\n      - equals: '{row.expected}'\n        path: output.decision\n"
        "      - rubric: Decides\n        threshold: 0.5\n"
    )
    (tmp_path / "rows.csv").write_text("vendor,expected,answer\nA,approve,approve\nB,hold,approve\n")
    (tmp_path / "answers.yaml").write_text(
        "code: {decision: '{row.answer}'}\ncode.judge: [{score: 0.2, reason: vague}]\n"
    )
    proc = orchestrate(
        "run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "--data", "rows.csv", "-o", "runs", cwd=tmp_path
    )
    assert proc.returncode == 5, proc.stderr
    assert "expectations: 1/4 passed, 3 failed" in proc.stdout


def test_an_answers_file_is_checked_at_file_line_col(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "answers.yaml").write_text("rout: x\nescalate: '{nothing}'\n")
    proc = orchestrate("run", "wf.yaml", "--simulate", "--answers", "answers.yaml", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 2
    assert "answers.yaml:1:1: 'rout' is not an agent" in proc.stderr and "did you mean 'route'?" in proc.stderr
    assert "answers.yaml:2:12: escalate: {nothing} names no row column or input" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_report_html_has_an_evaluation_section_with_the_failing_cases(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "workflows"
    proc = orchestrate(
        "run",
        str(root / "finance_invoice_coding.yaml"),
        "--data",
        str(root / "data" / "invoice_coding.csv"),
        "--key",
        "invoice_id",
        "--simulate",
        "--answers",
        str(root / "data" / "invoice_coding_answers.json"),
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    page = (run_dir / "report.html").read_text()
    section = page[page.index("<h3>Evaluation</h3>") :]
    assert "395/400 passed · 5 failed" in section
    assert "INV-2026-20103" in section and "GL account" in section  # a case coded 6100 instead of 6200
    assert '<td class="case">INV-2026-20103</td>' in section  # kept whole (td.case: nowrap)
    assert "td.case{white-space:nowrap}" in page
    assert "never approves a changed bank account" in section
    shown = orchestrate("show", str(run_dir), cwd=tmp_path)
    assert "expectations: 395/400 passed, 5 failed" in shown.stdout
    assert "code_invoice: GL account: 37/40 passed (92%)" in shown.stdout
    row = orchestrate("show", str(run_dir), "--row", "INV-2026-20117", cwd=tmp_path)
    assert "fail: code_invoice: decision: expected 'hold', got 'approve'" in row.stdout
