"""What is said about prompt caching: validate's warnings, cost-report's figures and warnings, cost.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrate.money.cost_report import aggregate, cache_warnings
from orchestrate.money.costs import CostTracker
from orchestrate.workflow.loader import validate_file

POLICY = "Every invoice is matched to its purchase order before payment. " * 50  # 3,150 characters


def _workflow(tmp_path: Path, template: str, extra: str = "") -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: w\n"
        "inputs:\n  invoice: {type: string}\n  timestamp: {type: string, default: now}\n"
        "defaults:\n  module: Finance\n  llm_config: {model: claude-sonnet-4-5}\n"
        "agents:\n  - name: check\n" + extra + "    prompt_template: " + json.dumps(template) + "\n"
    )
    return path


def test_validate_warns_of_a_row_variable_before_a_long_static_tail(tmp_path: Path) -> None:
    found = validate_file(_workflow(tmp_path, "Invoice {invoice}. " + POLICY))
    warnings = [p for p in found if p.severity == "warning"]
    assert [p.severity for p in found] == ["warning"]
    assert warnings[0].line == 10 and "row variable {invoice} before 3,152 static characters" in warnings[0].message
    assert "move it to the end" in str(warnings[0])


def test_validate_warns_of_a_volatile_value_in_the_stable_part(tmp_path: Path) -> None:
    found = validate_file(_workflow(tmp_path, POLICY[:100] + "As of {timestamp}: " + POLICY + "Invoice {invoice}."))
    assert len(found) == 1 and "{timestamp} looks like a value that changes on every call" in found[0].message


def test_validate_says_nothing_of_a_stable_first_template_or_caching_off(tmp_path: Path) -> None:
    assert validate_file(_workflow(tmp_path, POLICY + "Invoice {invoice}.")) == []
    assert validate_file(_workflow(tmp_path, "Invoice {invoice}. " + POLICY[:1500])) == []
    off = _workflow(tmp_path, "Invoice {invoice}. " + POLICY, extra="    cache: {prefix: 'off'}\n")
    assert validate_file(off) == []


def _call(agent: str, tokens: int, read: int, written: int, savings: float, row: str | None = "r1") -> dict[str, Any]:
    call: dict[str, Any] = {
        "workflow": "invoice_review",
        "agent": agent,
        "model": "claude-sonnet-4-5",
        "cost": 0.01,
        "input_tokens": tokens,
        "cached_input_tokens": read,
        "cache_creation_input_tokens": written,
        "output_tokens": 10,
        "reasoning_tokens": 0,
        "cache_savings": savings,
    }
    if row is not None:
        call["row"] = row
    return call


def test_cost_report_rows_carry_the_cache_read_share_and_the_dollars_saved() -> None:
    calls = [
        _call("check", 3000, 2700, 0, 0.0073),
        _call("check", 3000, 0, 2700, -0.002),
        _call("screen", 100, 0, 0, 0),
    ]
    rows = aggregate(calls, ["agent"])
    check, screen = rows
    assert check["cache_read_share"] == 0.45 and check["cache_savings"] == 0.0053
    assert screen["cache_read_share"] == 0.0 and screen["cache_savings"] == 0.0


def test_a_dataset_runs_agent_reading_little_from_the_cache_is_warned_of_with_its_cause() -> None:
    written_each_time = [_call("check", 3000, 0, 2700, -0.002, row=str(i)) for i in range(10)]
    never_written = [_call("screen", 3000, 0, 0, 0.0, row=str(i)) for i in range(10)]
    reading = [_call("decide", 3000, 2700, 0, 0.007, row=str(i)) for i in range(10)]
    single_run = [_call("other", 3000, 0, 0, 0.0, row=None) for _ in range(10)]
    warnings = cache_warnings(written_each_time + never_written + reading + single_run)
    assert len(warnings) == 2
    check, screen = warnings
    assert check.startswith("agent check of invoice_review read 0% of its input") and "changes between calls" in check
    assert "under the model's minimum" in screen


def test_cost_json_prices_hour_writes_and_records_them_per_call() -> None:
    tracker = CostTracker()
    cost = tracker.calculate_cost(
        "claude-sonnet-4-5", 3000, 0, cache_creation_input_tokens=2000, cache_creation_1h_input_tokens=1500
    )
    # 1,000 plain at $3/M, 500 written for 5 minutes at $3.75/M, 1,500 for an hour at $6/M.
    assert cost == round((1000 * 0.003 + 500 * 0.00375 + 1500 * 0.006) / 1000, 10)
    saved = tracker.cache_savings("claude-sonnet-4-5", 3000, cached_input_tokens=2700)
    assert saved == round(2700 * (0.003 - 0.0003) / 1000, 10)
    tracker.record_cost(
        "w:a",
        "a",
        "w",
        "claude-sonnet-4-5",
        3000,
        5,
        cache_creation_input_tokens=2000,
        cache_creation_1h_input_tokens=1500,
        cache_savings=-0.01,
    )
    entry = tracker.records("w")[0].to_dict()
    assert entry["cache_creation_1h_input_tokens"] == 1500 and entry["cache_savings"] == -0.01


def test_a_call_that_may_write_the_hour_cache_is_reserved_at_its_price() -> None:
    tracker = CostTracker()
    messages = [{"role": "user", "content": "x" * 1000}]
    five = tracker.max_cost("claude-sonnet-4-5", messages, 10)
    hour = tracker.max_cost("claude-sonnet-4-5", messages, 10, cache_ttl="1h")
    assert hour > five and hour == round(((1000 + 8 + 16) * 0.006 + 10 * 0.015) / 1000, 10)


def test_the_cache_columns_appear_where_the_prompt_cache_was_used() -> None:
    from orchestrate.money.cost_report import render

    used = render(aggregate([_call("check", 3000, 2700, 0, 0.0073)], ["agent"]), ["agent"], "markdown")
    unused = render(aggregate([_call("check", 3000, 0, 0, 0.0)], ["agent"]), ["agent"], "markdown")
    assert used.splitlines()[0].endswith("| cache_read_share | cache_savings |")
    assert "| check | 1 | 0.01 | 3000 | 2700 | 0 | 10 | 0 | 0.9 | 0.0073 |" in used
    assert "cache_read_share" not in unused


def test_plan_shows_the_least_cost_with_and_without_cache_hits() -> None:
    from orchestrate.money.planning import plan_workflow
    from orchestrate.workflow.loader import load_workflow_text

    text = (
        "name: p\ninputs:\n  invoice: {type: string, default: x}\n"
        "defaults:\n  module: Finance\n  llm_config: {model: claude-sonnet-4-5, system: %s}\n%s"
        "agents:\n  - name: check\n    prompt_template: 'Check invoice {invoice}.'\n"
    )
    cached = plan_workflow(load_workflow_text(text % (json.dumps(POLICY * 2), "")), CostTracker())
    off = plan_workflow(
        load_workflow_text(text % (json.dumps(POLICY * 2), "  cache: {prefix: 'off'}\n")), CostTracker()
    )
    short = plan_workflow(load_workflow_text(text % (json.dumps("Be brief."), "")), CostTracker())
    none, every = cached.cache_bounds
    assert cached.cacheable_agents == 1 and every < none * 0.2
    assert cached.to_dict()["prompt_cache"] == {
        "cacheable_agents": 1,
        "min_cost_no_hits": round(none, 6),
        "min_cost_all_hits": round(every, 6),
    }
    assert off.cacheable_agents == 0 and "prompt_cache" not in off.to_dict()
    assert short.cacheable_agents == 0


def test_report_html_shows_the_prompt_cache_per_agent_and_warns_of_a_low_share(tmp_path: Path) -> None:
    from orchestrate.observe.html_report import write_run_report

    calls = [_call("check", 3000, 2700, 0, 0.0073, row=str(i)) for i in range(5)]
    calls += [_call("screen", 3000, 0, 2700, -0.002, row=str(i)) for i in range(5)]
    (tmp_path / "result.json").write_text(json.dumps({"name": "invoice_review", "status": "completed", "agents": []}))
    (tmp_path / "cost.json").write_text(json.dumps({"workflow": "invoice_review", "calls": calls, "totals": {}}))
    html = write_run_report(tmp_path).read_text()
    assert "<h4>Prompt cache</h4>" in html
    assert "<td>check</td><td>15,000</td><td>90%</td><td>0</td><td>$0.0365</td>" in html.replace(" class=num", "")
    assert "warning: agent screen of invoice_review read 0% of its input" in html
