"""Amounts and messages as a user reads them, piped at 80 columns: a budget as it was set, and the
small things that tripped users (issue 27's list)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.money.amounts import budget_usd
from tests import cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "finance_month_end_close.yaml")


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(2.0, "$2.00"), (0.5, "$0.50"), (0.0005, "$0.0005"), (1.505, "$1.505"), (0.0, "$0.00"), (1500.0, "$1,500.00")],
)
def test_a_budget_reads_as_it_was_set_never_rounded_to_zero(amount: float, shown: str) -> None:
    assert budget_usd(amount) == shown


def test_show_and_plan_give_a_budget_below_a_cent_in_full(tmp_path: Path) -> None:
    done = cli.orchestrate(
        "run", WORKFLOW, "--simulate", "--budget", "0.0005", "-q", cwd=tmp_path, columns=80, ci=False
    )
    assert done.returncode == 1, done.stderr  # the budget refuses the first calls
    (run_dir,) = (tmp_path / "runs").iterdir()
    shown = cli.orchestrate("show", str(run_dir), cwd=tmp_path, columns=80, ci=False)
    assert "| budget $0.0005" in shown.stdout and "budget $0.00\n" not in shown.stdout
    plan = cli.orchestrate("plan", WORKFLOW, "--budget", "0.0005", cwd=tmp_path, columns=80, ci=False)
    assert plan.returncode == 0, plan.stderr
    assert "; budget $0.0005" in plan.stdout


def test_a_dataset_plan_of_one_row_says_row_and_its_budget_as_set(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("period\n2026-10\n")
    plan = cli.orchestrate(
        "plan", WORKFLOW, "--data", "rows.csv", "--budget", "0.0005", cwd=tmp_path, columns=80, ci=False
    )
    assert plan.returncode == 0, plan.stderr
    first, cost = plan.stdout.splitlines()[:2]
    assert first == "finance_month_end_close: 1 row to run"
    assert cost.endswith("; dataset budget $0.0005")
