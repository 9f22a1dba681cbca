"""`orchestrate cost-report`: months as periods, filters by module, workflow and tag, a total row in
every format, UTC said in the help; and a run of several workflows ending with one total."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrate.errors import UserInputError
from orchestrate.money.cost_report import parse_moment, select
from tests.cli import orchestrate

ROOT = Path(__file__).resolve().parents[1]


def _run(folder: Path, workflow: str, calls: list[dict[str, object]], tags: list[str] | None = None) -> None:
    folder.mkdir(parents=True)
    document = {"schema_version": 1, "workflow": workflow, "run_id": folder.name, "simulated": False, "calls": calls}
    if tags:
        document["tags"] = tags
    (folder / "cost.json").write_text(json.dumps(document), encoding="utf-8")


def _call(cost: float, when: str, module: str, agent: str = "step") -> dict[str, object]:
    return {
        "agent": agent,
        "model": "gpt-4o-mini",
        "module": module,
        "provider": "openai",
        "cost": cost,
        "timestamp": when,
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
    }


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    # The last moment of November and the first of December, UTC: the month boundary.
    _run(root / "close-nov", "month_end_close", [_call(1.0, "2026-11-30T23:59:59+00:00", "Finance")], ["close"])
    _run(root / "close-dec", "month_end_close", [_call(2.0, "2026-12-01T00:00:00+00:00", "Finance")], ["close"])
    _run(root / "onboard-dec", "hr_onboarding", [_call(0.5, "2026-12-15T09:00:00+00:00", "HR")])
    # 00:30 in Berlin on 1 January is still December in UTC.
    _run(root / "late-dec", "hr_onboarding", [_call(0.25, "2027-01-01T00:30:00+01:00", "HR")])
    return root


def test_a_month_is_its_first_to_its_last_moment_in_utc() -> None:
    assert parse_moment("2026-12") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_moment("2026-12", end=True) == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_moment("2026-02", end=True).day == 28
    with pytest.raises(UserInputError, match="month"):
        parse_moment("2026-13")


def test_since_and_until_take_a_month(runs: Path, tmp_path: Path) -> None:
    done = orchestrate("cost-report", str(runs), "--since", "2026-12", "--until", "2026-12", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total"]["cost"] == pytest.approx(2.75) and report["total"]["calls"] == 3
    done = orchestrate("cost-report", str(runs), "--until", "2026-11", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["total"]["cost"] == pytest.approx(1.0)


def test_filters_by_module_workflow_and_tag(runs: Path, tmp_path: Path) -> None:
    def total(*args: str) -> float:
        done = orchestrate("cost-report", str(runs), *args, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return float(json.loads(done.stdout)["total"]["cost"])

    assert total("--module", "finance") == pytest.approx(3.0)  # case-insensitive
    assert total("--module", "HR", "--module", "Finance") == pytest.approx(3.75)
    assert total("--workflow", "hr_onboarding") == pytest.approx(0.75)
    assert total("--tag", "close") == pytest.approx(3.0)
    assert total("--module", "Finance", "--since", "2026-12") == pytest.approx(2.0)
    done = orchestrate("cost-report", str(runs), "--module", "Inventory", cwd=tmp_path)
    assert done.stdout.strip() == "no calls to report matching --module/--workflow/--tag"


def test_select_keeps_everything_without_filters() -> None:
    calls = [{"module": "HR", "workflow": "a", "tags": ["x"]}, {"module": "Finance", "workflow": "b"}]
    assert select(calls) == calls
    assert select(calls, tags=["X"]) == [calls[0]]


def test_csv_and_markdown_end_with_a_total_row(runs: Path, tmp_path: Path) -> None:
    done = orchestrate("cost-report", str(runs), "--by", "workflow,month", "--format", "csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows[-1]["workflow"] == "total" and rows[-1]["month"] == ""
    assert float(rows[-1]["cost"]) == pytest.approx(3.75) and rows[-1]["calls"] == "4"
    assert sum(float(r["cost"]) for r in rows[:-1]) == pytest.approx(3.75)
    done = orchestrate("cost-report", str(runs), "--by", "module", "--format", "markdown", cwd=tmp_path)
    assert done.stdout.splitlines()[-1].startswith("| **total** | **4** | **3.75** |")


def test_a_tag_report_counts_each_call_once_in_its_total_row(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs / "both", "w", [_call(1.0, "2026-12-02T00:00:00+00:00", "HR")], ["a", "b"])
    done = orchestrate("cost-report", str(runs), "--by", "tag", "--format", "csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["tag"] for r in rows] == ["a", "b", "total"]
    assert float(rows[-1]["cost"]) == pytest.approx(1.0)


def test_the_help_says_days_and_months_are_utc(tmp_path: Path) -> None:
    done = orchestrate("cost-report", "--help", cwd=tmp_path, columns=200)
    assert "UTC" in done.stdout and "2026-12" in done.stdout
    assert "--module" in done.stdout and "--workflow" in done.stdout and "--tag" in done.stdout


def test_several_workflows_end_with_one_total_and_one_cost_report_hint(tmp_path: Path) -> None:
    files = [str(ROOT / "workflows" / f"{name}.yaml") for name in ("hr_onboarding", "finance_month_end_close")]
    done = orchestrate("run", *files, "--simulate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("cost-report") == 1 and out.count("next:") == 1
    total = next(line for line in out.splitlines() if line.startswith("total:"))
    assert total.startswith("total: 2 workflows, 2 completed (simulated); $")
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/result.json")]
    shown = float(re.search(r"\$([0-9.]+)", total)[1])  # type: ignore[index]
    assert shown == pytest.approx(sum(r["total_cost"] for r in results), rel=0.02)
    hint = next(line for line in out.splitlines() if "cost-report" in line)
    assert all(f"runs/{r['name']}-" in hint for r in results) and hint.endswith("--include-simulated")
