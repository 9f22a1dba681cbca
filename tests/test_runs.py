"""`orchestrate runs [DIR]` and `latest` as a RUN_DIR: finding a run without copying its folder name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.test_answer import orchestrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dataset run, then a single run (the newest), in ./runs."""
    folder = tmp_path_factory.mktemp("runs")
    shutil.copytree(ROOT / "workflows", folder / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    data = orchestrate(
        "run", "workflows/invoice_review.yaml", "--data", "workflows/data/invoices.csv", "--key", "invoice_id",
        "--simulate", "--quiet", cwd=folder,
    )  # fmt: skip
    assert data.returncode == 0, data.stderr
    single = orchestrate("run", "workflows/finance_month_end_close.yaml", "--simulate", "--quiet", cwd=folder)
    assert single.returncode == 0, single.stderr
    newest = next((folder / "runs").glob("finance_month_end_close-*"))
    dataset = next((folder / "runs").glob("invoice_review-*"))
    return {"folder": folder, "newest": newest, "dataset": dataset}


def test_runs_lists_every_run_newest_first(two: dict[str, Any]) -> None:
    done = orchestrate("runs", cwd=two["folder"])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("│ runs/")]
    assert lines[0].startswith(f"│ runs/{two['newest'].name}") and "(simulated)" in lines[0]
    assert lines[1].startswith(f"│ runs/{two['dataset'].name}") and " 25 " in lines[1]
    listed = json.loads(orchestrate("runs", "runs", "--format", "json", cwd=two["folder"]).stdout)["runs"]
    assert [e["run_dir"] for e in listed] == [f"runs/{two['newest'].name}", f"runs/{two['dataset'].name}"]
    assert listed[0]["kind"] == "run" and listed[1]["kind"] == "dataset run" and listed[1]["rows"] == 25
    assert listed[0]["simulated"] is True and listed[0]["status"] == "completed"


def test_latest_names_the_newest_run_folder_wherever_a_run_dir_is_taken(two: dict[str, Any]) -> None:
    folder, newest = two["folder"], two["newest"]
    shown = orchestrate("show", "latest", "--json", cwd=folder)
    assert json.loads(shown.stdout)["run_id"] == newest.name
    assert orchestrate("show", "@latest", "adjustments", cwd=folder).returncode == 0
    report = orchestrate("report", "latest", cwd=folder)
    assert report.returncode == 0 and newest.name in report.stdout + report.stderr
    spend = json.loads(orchestrate("cost-report", "latest", "--include-simulated", "--json", cwd=folder).stdout)
    assert json.dumps(spend).count("finance_month_end_close") >= 1 and "invoice_review" not in json.dumps(spend)
    resumed = orchestrate(
        "run", "workflows/finance_month_end_close.yaml", "--simulate", "--resume", "latest", "--json", cwd=folder
    )
    assert resumed.returncode == 0, resumed.stderr
    run_dir = folder / json.loads(resumed.stdout)["runs"][0]["run_dir"]
    assert json.loads((run_dir / "result.json").read_text())["resumed_from"].endswith(newest.name)


def test_latest_without_any_run_is_one_clear_line(tmp_path: Path) -> None:
    done = orchestrate("show", "latest", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: latest: no run folder in ./runs yet"
    empty = orchestrate("runs", cwd=tmp_path)
    assert empty.returncode == 0 and "no run folders in runs" in empty.stderr
