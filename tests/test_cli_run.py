"""`orchestrate run` as users and CI run it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "workflows").glob("*.yaml"))
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text())


def orchestrate(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CI": "true", **(env or {})}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        environment.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dirs(output: Path) -> list[Path]:
    return sorted(p for p in output.iterdir() if p.is_dir())


def test_there_is_an_example_per_module() -> None:
    modules = set()
    for path in EXAMPLES:
        text = path.read_text()
        modules.update(m for m in ("HR", "Finance", "Inventory", "Compliance", "General") if f"module: {m}" in text)
    assert modules == {"HR", "Finance", "Inventory", "Compliance", "General"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs_offline_and_writes_a_valid_result(example: Path, tmp_path: Path) -> None:
    # Expectations (finance_invoice_coding) need the labelled rows: a lone run reports them, exit 0.
    proc = orchestrate(
        "run", str(example), "--simulate", "--output-dir", str(tmp_path), "--no-fail-on-expect", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "\x1b[" not in proc.stderr + proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    result = json.loads((run_dir / "result.json").read_text())
    jsonschema.validate(result, RESULT_SCHEMA)
    assert result["status"] == "completed" and result["simulated"] is True
    # Every model call was simulated; code steps and skipped agents call no model.
    assert all(a["provider"] == "simulated" for a in result["agents"] if a["metadata"].get("calls"))
    assert result["total_cost"] > 0
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["totals"]["cost"] == pytest.approx(result["total_cost"], abs=1e-9)
    events = (run_dir / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["type"] == "workflow_started"
    assert json.loads(events[-1])["type"] == "workflow_finished"


def test_json_summary_goes_to_stdout_and_plain_lines_to_stderr(tmp_path: Path) -> None:
    proc = orchestrate("run", str(EXAMPLES[0]), "--simulate", "-o", str(tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["runs"][0]
    assert summary["status"] == "completed" and summary["simulated"] is True
    lines = proc.stderr.strip().splitlines()
    assert any(" started" in line for line in lines) and any("completed" in line for line in lines)


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    proc = orchestrate("run", str(EXAMPLES[0]), "--simulate", "-o", str(tmp_path), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_inputs_on_the_command_line_reach_the_prompts(tmp_path: Path) -> None:
    proc = orchestrate(
        "run",
        str(ROOT / "workflows" / "finance_month_end_close.yaml"),
        "--simulate",
        "-o",
        str(tmp_path),
        "--input",
        "period=1999-12",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dirs(tmp_path)[0] / "result.json").read_text())
    assert result["inputs"]["period"] == "1999-12"


def test_bad_flags_and_inputs_are_one_line_errors_with_exit_2(tmp_path: Path) -> None:
    for args in (
        ["--input", "novalue"],
        ["--input", "no_such_input=1"],
        ["--max-parallel", "0"],
        ["--inputs", str(tmp_path / "missing.json")],
    ):
        proc = orchestrate("run", str(EXAMPLES[0]), "--simulate", "-o", str(tmp_path), *args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.strip()


def test_missing_key_is_reported_before_any_call(tmp_path: Path) -> None:
    proc = orchestrate(
        "run", str(ROOT / "workflows" / "finance_month_end_close.yaml"), "-o", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "OPENAI_API_KEY" in proc.stderr or "ANTHROPIC_API_KEY" in proc.stderr
    assert not tmp_path.joinpath("runs").exists() and run_dirs(tmp_path) == []


def test_budget_override_refuses_agents_and_exits_non_zero(tmp_path: Path) -> None:
    proc = orchestrate(
        "run",
        str(ROOT / "workflows" / "finance_month_end_close.yaml"),
        "--simulate",
        "-o",
        str(tmp_path),
        "--budget",
        "0.0001",
        cwd=tmp_path,
    )
    assert proc.returncode in (1, 3)
    result = json.loads((run_dirs(tmp_path)[0] / "result.json").read_text())
    assert any(a["status"] == "budget_exceeded" for a in result["agents"])
    assert result["total_cost"] <= 0.0001


def test_dry_run_and_plan_call_nothing(tmp_path: Path) -> None:
    proc = orchestrate("run", str(EXAMPLES[0]), "--dry-run", "--json", "-o", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plans"][0]
    assert plan["critical_path"] and 0 < plan["min_cost"] <= plan["max_cost"] <= plan["cost_budget"]
    assert run_dirs(tmp_path) == []
    proc = orchestrate("plan", str(EXAMPLES[0]), cwd=tmp_path)
    assert proc.returncode == 0 and "critical path" in proc.stdout


def test_junit_and_summary_artefacts(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    proc = orchestrate(
        "run",
        str(EXAMPLES[0]),
        "--simulate",
        "-o",
        str(tmp_path / "runs"),
        "--junit",
        str(junit),
        "--summary",
        str(summary),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    suites = ET.parse(junit).getroot()
    cases = suites.findall(".//testcase")
    result = json.loads((run_dirs(tmp_path / "runs")[0] / "result.json").read_text())
    assert len(cases) == len(result["agents"])
    assert "```mermaid" in summary.read_text()


def test_an_output_dir_that_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = orchestrate("run", str(EXAMPLES[0]), "--simulate", "-o", str(blocker / "runs"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "cannot create a run folder" in proc.stderr


def test_usage_errors_are_plain_text_without_a_terminal(tmp_path: Path) -> None:
    proc = orchestrate("run", str(EXAMPLES[0]), "--max-parallel", "many", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "╭" not in proc.stderr and "\x1b[" not in proc.stderr
    assert any(line.startswith("error: ") and "--max-parallel" in line for line in proc.stderr.splitlines())
