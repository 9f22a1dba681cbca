"""A resume continues the same run: the folder records how it started, and a flag that would
change the run is refused (issue 25, "Resume can only continue the same run")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cli import orchestrate

ROOT = Path(__file__).resolve().parents[1]


def _setup(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")


def _only_run(folder: Path) -> Path:
    (found,) = [p for p in folder.iterdir() if p.is_dir()]
    return found


def test_resume_alone_keeps_the_inputs_and_stays_simulated(tmp_path: Path) -> None:
    _setup(tmp_path)
    first = orchestrate(
        "run",
        "workflows/finance_month_end_close.yaml",
        "--simulate",
        "--input",
        "period=2026-11",
        "-o",
        "first",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    run_dir = _only_run(tmp_path / "first")
    record = json.loads((run_dir / "invocation.json").read_text())
    assert record["kind"] == "invocation" and record["simulate"] is True
    assert record["inputs"] == {"period": "2026-11"} and record["output_dir"] == "first"

    # No key is set: had the resume dropped --simulate, it would fail for want of one.
    again = orchestrate("run", "--resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    folders = sorted(p for p in (tmp_path / "first").iterdir() if p.is_dir())
    assert len(folders) == 2
    resumed = json.loads((folders[-1] / "result.json").read_text())
    assert resumed["simulated"] is True
    assert resumed["inputs"]["period"] == "2026-11"  # not the workflow's default period
    # Six agents completed and are reused; the seventh was skipped (its condition), so it runs again.
    assert "reusing 6 agent(s)" in again.stderr and "running the other 1" in again.stderr
    cost = json.loads((folders[-1] / "cost.json").read_text())
    assert cost["totals"]["calls"] == 0  # nothing paid again


def test_a_flag_that_changes_the_run_is_refused_naming_each_difference(tmp_path: Path) -> None:
    _setup(tmp_path)
    first = orchestrate(
        "run",
        "workflows/finance_month_end_close.yaml",
        "--simulate",
        "--input",
        "period=2026-11",
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    run_dir = _only_run(tmp_path / "runs")
    refused = orchestrate(
        "run", "--resume", str(run_dir), "--input", "period=2026-10", "--budget-scope", "finance", cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert '--input {"period": "2026-10"} (the run has {"period": "2026-11"})' in line
    assert "--budget-scope finance (the run has none)" in line
    assert len([p for p in (tmp_path / "runs").iterdir() if p.is_dir()]) == 1  # nothing was started
    other = orchestrate("run", "workflows/hr_onboarding.yaml", "--resume", str(run_dir), cwd=tmp_path)
    assert other.returncode == 2 and "workflow workflows/hr_onboarding.yaml" in other.stderr


def test_a_dataset_run_resumes_with_its_inputs_and_a_budget_only_raised(tmp_path: Path) -> None:
    _setup(tmp_path)
    data = tmp_path / "rows.jsonl"
    lines = (ROOT / "workflows" / "data" / "invoices.jsonl").read_text().splitlines()[:6]
    data.write_text("\n".join(lines) + "\n")
    first = orchestrate(
        "run",
        "workflows/invoice_review.yaml",
        "--data",
        str(data),
        "--key",
        "invoice_id",
        "--simulate",
        "--input",
        "currency=CHF",
        "--budget",
        "0.5",
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    run_dir = _only_run(tmp_path / "runs")
    lower = orchestrate("run", "--resume", str(run_dir), "--budget", "0.1", cwd=tmp_path)
    assert lower.returncode == 2 and "a budget may only be raised" in lower.stderr
    other_input = orchestrate("run", "--resume", str(run_dir), "--input", "currency=EUR", cwd=tmp_path)
    assert other_input.returncode == 2 and "--input" in other_input.stderr
    other_key = orchestrate("run", "--resume", str(run_dir), "--key", "vendor", cwd=tmp_path)
    assert other_key.returncode == 2 and "--key vendor (the run has invoice_id)" in other_key.stderr

    raised = orchestrate("run", "--resume", str(run_dir), "--budget", "1", cwd=tmp_path)
    assert raised.returncode == 0, raised.stderr
    assert "keeping 6 completed row(s)" in raised.stderr and "running 0 row(s)" in raised.stderr
    record = json.loads((run_dir / "invocation.json").read_text())
    assert record["budget"] == 1.0 and record["inputs"] == {"currency": "CHF"}
    assert [change["budget"] for change in record["changes"]] == [[0.5, 1.0]]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["budget"] == 1.0 and result["simulated"] is True


def test_the_printed_hint_is_the_resume_command_alone(tmp_path: Path) -> None:
    _setup(tmp_path)
    proc = orchestrate(
        "run",
        "workflows/finance_month_end_close.yaml",
        "--simulate",
        "--sim-failure-rate",
        "1",
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    run_dir = _only_run(tmp_path / "runs")
    assert f"orchestrate run --resume {run_dir.relative_to(tmp_path)}" in proc.stdout
