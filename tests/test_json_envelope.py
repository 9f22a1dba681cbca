"""Every command's JSON has one outer shape: ``kind``, ``schema_version``, then its body, and a command
over several files lists one document a file whatever their number (docs/commands.md#json-output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli import orchestrate

ROOT = Path(__file__).resolve().parents[1]
HR = str(ROOT / "workflows" / "hr_onboarding.yaml")
CLOSE = str(ROOT / "workflows" / "finance_month_end_close.yaml")


def _json(*args: str, cwd: Path) -> dict[str, Any]:
    done = orchestrate(*args, cwd=cwd)
    document = json.loads(done.stdout)
    assert isinstance(document, dict), done.stdout
    assert list(document)[:2] == ["kind", "schema_version"] and document["schema_version"] == 1
    return document


@pytest.mark.parametrize(("command", "key"), [("plan", "plans"), ("graph", "graphs")])
def test_one_file_or_two_print_the_same_shape(command: str, key: str, tmp_path: Path) -> None:
    one = _json(command, HR, "--json", cwd=tmp_path)
    two = _json(command, HR, CLOSE, "--format", "json", cwd=tmp_path)
    assert one["kind"] == two["kind"] == command
    assert len(one[key]) == 1 and len(two[key]) == 2
    assert set(one[key][0]) == set(two[key][0])


def test_a_run_prints_a_list_of_runs_for_one_workflow_too(tmp_path: Path) -> None:
    document = _json("run", HR, "--simulate", "--json", cwd=tmp_path)
    assert document["kind"] == "run" and [r["name"] for r in document["runs"]] == ["hr_onboarding"]
    assert document["runs"][0]["status"] == "completed" and document["runs"][0]["run_dir"].startswith("runs/")
    shown = _json("show", "latest", "--json", cwd=tmp_path)
    assert shown["kind"] == "run"
    agent = _json("show", "latest", "welcome_pack", "--json", cwd=tmp_path)
    assert agent["kind"] == "agent"
    listed = _json("runs", "--json", cwd=tmp_path)
    assert listed["kind"] == "run_list" and len(listed["runs"]) == 1
    report = _json("cost-report", "--json", "--include-simulated", cwd=tmp_path)
    assert report["kind"] == "cost_report" and report["total"]["calls"] == 5


def test_the_other_commands_wear_the_envelope(tmp_path: Path) -> None:
    assert _json("validate", HR, "--json", cwd=tmp_path)["kind"] == "validation"
    models = _json("models", "--json", cwd=tmp_path)
    assert models["kind"] == "models" and any(m["model"] == "gpt-4o-mini" for m in models["models"])
    assert _json("doctor", "--json", cwd=tmp_path)["kind"] == "doctor"


def test_the_envelope_comes_first_and_wins() -> None:
    from orchestrate.cli.common import envelope

    document = envelope("dataset_run", {"kind": "batch", "schema_version": 7, "rows": 3})
    assert document == {"kind": "dataset_run", "schema_version": 1, "rows": 3}
    assert list(document) == ["kind", "schema_version", "rows"]
