"""A resumed run's closing lines say what it reused and what it ran, piped at 80 columns."""

from __future__ import annotations

from pathlib import Path

from orchestrate.observe.summary import closing_lines, reuse_lines
from tests import cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "finance_month_end_close.yaml")


def test_a_resumed_run_ends_saying_what_it_reused_and_what_it_ran(tmp_path: Path) -> None:
    first = cli.orchestrate(
        "run", WORKFLOW, "--simulate", "--no-progress", "--input", "post_to_ledger=true", cwd=tmp_path, columns=80
    )
    assert first.returncode == 4, first.stderr  # waits for the controller's approval
    assert "resumed:" not in first.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    again = cli.orchestrate(
        "run", "--resume", str(run_dir), "--approve-all", "--no-progress", cwd=tmp_path, columns=80, ci=False
    )
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[1] == "resumed: reused 6 agents ($0.001443 spent before); ran the other 1"


def test_reuse_lines_count_only_the_reused_agents_costs() -> None:
    document = {
        "name": "close",
        "status": "completed",
        "resumed_from": "runs/close-1",
        "reused_agents": ["a"],
        "agents": [
            {"name": "a", "status": "completed", "cost": 0.25, "metadata": {"reused": True}},
            {"name": "b", "status": "completed", "cost": 1.0},
        ],
    }
    assert reuse_lines(document) == ["resumed: reused 1 agent ($0.2500 spent before); ran the other 1"]
    assert reuse_lines({**document, "resumed_from": None}) == []
    assert "resumed: reused 1 agent" in "\n".join(closing_lines(document, "runs/close-2"))
