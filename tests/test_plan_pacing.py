"""`plan`'s time estimate counts the workflow's rate limits: calls paced 60/N s apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.money.costs import CostConfig, CostTracker
from orchestrate.money.planning import pacing, plan_workflow
from orchestrate.workflow.loader import load_workflow_text
from tests.cli import orchestrate

FLOW = """\
name: paced
{limits}
inputs:
  lines: {{type: array, default: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}}
agents:
  - name: check_line
    module: Finance
    foreach: "{{lines}}"
    max_items: 12
    prompt_template: Check line {{item}}.
    llm_config: {{model: {model}, max_tokens: 50}}
  - name: summary
    module: Finance
    dependencies: [check_line]
    prompt_template: Summarise.
    llm_config: {{model: {model}, max_tokens: 50}}
"""


def _plan(limits: str = "", model: str = "gpt-4o-mini") -> object:
    workflow = load_workflow_text(FLOW.format(limits=limits, model=model), file="paced.yaml")
    return plan_workflow(workflow, CostTracker(CostConfig()))


def test_a_tight_limit_sets_the_estimate_and_is_named() -> None:
    plan = _plan("rate_limits:\n  openai: {requests_per_minute: 6}")
    assert plan.estimated_seconds == pytest.approx(120.0)  # 13 calls, 10 s apart
    assert plan.paced_by == {
        "limit": "openai",
        "rate": "6/min",
        "source": "rate_limits.openai",
        "calls": 13,
        "seconds": 120.0,
    }
    assert plan.to_dict()["paced_by"]["limit"] == "openai"


def test_a_model_named_in_rate_limits_is_limited_on_top_of_its_provider() -> None:
    plan = _plan("rate_limits:\n  gpt-4o-mini: {requests_per_minute: 4}")
    assert plan.paced_by is not None and plan.paced_by["limit"] == "gpt-4o-mini"
    assert plan.estimated_seconds == pytest.approx(180.0)


def test_the_default_limit_counts_when_the_workflow_names_none() -> None:
    workflow = load_workflow_text(FLOW.format(limits="", model="gpt-4o-mini"), file="paced.yaml")
    assert pacing(workflow) == {
        "limit": "openai",
        "rate": "60/min",
        "source": "the default",
        "calls": 13,
        "seconds": 12.0,
    }


def test_a_limit_that_does_not_bind_leaves_the_estimate_alone() -> None:
    plan = _plan("rate_limits:\n  openai: {requests_per_minute: 100000}")
    assert plan.paced_by is None and plan.estimated_seconds < 60


def test_plan_prints_what_paces_the_run(tmp_path: Path) -> None:
    (tmp_path / "paced.yaml").write_text(
        FLOW.format(limits="rate_limits:\n  openai: {requests_per_minute: 6}", model="gpt-4o-mini")
    )
    done = orchestrate("plan", "paced.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "estimated time: 120.0s (paced by openai 6/min (rate_limits.openai): 13 calls)" in done.stdout
