"""`orchestrate init`: a starter that validates, plans and runs offline as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrate.errors import UserInputError
from orchestrate.workflow.loader import validate_file
from orchestrate.workflow.models import MODULES
from orchestrate.workflow.starter import module_named, starter_files
from tests.cli import orchestrate


@pytest.mark.parametrize("module", MODULES)
def test_every_modules_starter_is_valid_and_commented(module: str, tmp_path: Path) -> None:
    starter = starter_files("starter_check", module, tools=True)
    path = tmp_path / starter.workflow_file
    path.write_text(starter.workflow_text)
    # validate finds the tools module next to the workflow (without importing it), as init writes it.
    assert starter.tools_file is not None and starter.tools_text is not None
    (tmp_path / starter.tools_file).write_text(starter.tools_text)
    assert validate_file(path) == []
    assert starter.workflow_text.count("\n#") + starter.workflow_text.count("  # ") >= 10
    assert f"module: {module}" in starter.workflow_text
    assert starter.tools_text is not None and "def " in starter.tools_text


def test_init_then_validate_plan_and_run_simulated(tmp_path: Path) -> None:
    proc = orchestrate("init", "invoice_check", "--module", "finance", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote invoice_check.yaml" in proc.stdout and "orchestrate run invoice_check.yaml --simulate" in proc.stdout
    assert orchestrate("validate", "invoice_check.yaml", cwd=tmp_path).returncode == 0
    assert orchestrate("plan", "invoice_check.yaml", cwd=tmp_path).returncode == 0
    run = orchestrate("run", "invoice_check.yaml", "--simulate", "-o", "runs", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)["runs"][0]
    assert summary["status"] == "completed" and set(summary["agents"]) == {"extract_invoice", "approval_note"}
    result = json.loads(
        (Path(summary["run_dir"]) if Path(summary["run_dir"]).is_absolute() else tmp_path / summary["run_dir"])
        .joinpath("result.json")
        .read_text()
    )
    note = next(a for a in result["agents"] if a["name"] == "approval_note")
    assert "{" not in note["metadata"]["prompt"]  # every placeholder was filled from the upstream answer


def test_init_with_tools_writes_a_module_the_run_calls(tmp_path: Path) -> None:
    proc = orchestrate("init", "vendor_screening", "-m", "Compliance", "--tools", "--dir", "flows", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "flows" / "vendor_screening_tools.py").is_file()
    # Run from the workflow's folder, where `python -m` finds the tool module.
    run = orchestrate("run", "vendor_screening.yaml", "--simulate", "-o", "runs", "--json", cwd=tmp_path / "flows")
    assert run.returncode == 0, run.stderr
    result_dir = tmp_path / "flows" / json.loads(run.stdout)["runs"][0]["run_dir"]
    profile = next(
        a for a in json.loads((result_dir / "result.json").read_text())["agents"] if a["name"] == "vendor_profile"
    )
    assert profile["metadata"]["tool_log"][0]["tool"] == "lookup_vendor"
    assert profile["metadata"]["tool_log"][0]["error"] is None


def test_init_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    assert orchestrate("init", "same", cwd=tmp_path).returncode == 0
    again = orchestrate("init", "same", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert orchestrate("init", "same", "--force", cwd=tmp_path).returncode == 0
    bad = orchestrate("init", "9 lives", cwd=tmp_path)
    assert bad.returncode == 2 and "not a usable workflow name" in bad.stderr
    module = orchestrate("init", "x", "--module", "Sales", cwd=tmp_path)
    assert module.returncode == 2 and "choose one of HR, Finance" in module.stderr
    assert len(module.stderr.strip().splitlines()) == 1


def test_module_names_match_whatever_the_case() -> None:
    assert module_named("hr") == "HR" and module_named(" finance ") == "Finance"
    with pytest.raises(UserInputError):
        module_named("Marketing")
