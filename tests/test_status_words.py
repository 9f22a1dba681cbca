"""Statuses are shown as a person reads them (``budget exceeded``, ``partially completed``) in the
closing lines, the Markdown summary and report.html; JSON keeps the machine value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrate.observe.ci_reports import summary_markdown
from orchestrate.observe.html_report import render_report, write_run_report
from orchestrate.observe.run_folder import load_run_folder
from orchestrate.observe.summary import closing_lines
from tests.sample_runs import run_sample

INTERNAL = ("budget_exceeded", "partially_completed", "waiting_approval")


def _document() -> dict[str, Any]:
    def agent(name: str, status: str, deps: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "module": "Finance",
            "status": status,
            "dependencies": deps,
            "model": "gpt-4o-mini",
            "provider": "openai",
            "error": None if status == "completed" else "this call may cost up to $0.0135, $0.0093 left",
            "tokens_used": 10,
            "cost": 0.01,
            "execution_time": 0.5,
            "retry_count": 0,
            "metadata": {},
        }

    return {
        "name": "month_close",
        "status": "partially_completed",
        "simulated": False,
        "total_cost": 0.02,
        "cost_budget": 1.0,
        "total_tokens": 20,
        "retries": 0,
        "duration_seconds": 1.0,
        "started_at": "2026-12-01T00:00:00+00:00",
        "agents": [agent("extract", "completed", []), agent("fx_revaluation", "budget_exceeded", ["extract"])],
    }


def test_closing_lines_and_the_markdown_summary_say_statuses_in_words() -> None:
    document = _document()
    closing = "\n".join(closing_lines(document, "runs/month_close-1"))
    assert closing.startswith("month_close: partially completed - 1 completed, 1 budget exceeded;"), closing
    assert "fx_revaluation  budget exceeded: this call may cost" in closing, closing
    markdown = summary_markdown([document])
    assert "## month_close: partially completed" in markdown, markdown
    assert "| fx_revaluation | Finance | budget exceeded |" in markdown, markdown
    for word in INTERNAL:
        assert word not in closing and word not in markdown.split("```mermaid")[0], word


@pytest.fixture
async def sample_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "month_end_sample-20261125T100000Z"
    await run_sample(run_dir)
    return run_dir


def test_report_badges_say_statuses_in_words_and_keep_the_value_for_scripts(sample_dir: Path) -> None:
    result = json.loads((sample_dir / "result.json").read_text())
    result["status"] = "partially_completed"
    result["agents"][0]["status"] = "budget_exceeded"
    result["agents"][1]["status"] = "waiting_approval"
    (sample_dir / "result.json").write_text(json.dumps(result))
    write_run_report(sample_dir)
    html = render_report([load_run_folder(sample_dir)])
    for word in INTERNAL:
        assert f'data-status="{word}"' in html, word
        assert f">{word.replace('_', ' ')}</span>" in html, word
        assert f">{word}<" not in html and f": {word}<" not in html, word  # nor in the graph or the lanes
    assert json.loads((sample_dir / "result.json").read_text())["status"] == "partially_completed"
