"""Run folders read back by --resume, cache entries and cost reports, tampered with or damaged:
checked before anything is taken from them, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.helpers import assert_clean_failure, orchestrate, workflow_file


def _chain(tmp_path: Path, c_prompt: str = "Summarise {b.output}") -> Path:
    agents = [
        {"name": "a", "module": "Finance", "prompt_template": "Start"},
        {
            "name": "b",
            "module": "Finance",
            "prompt_template": "Go on from {a.output}",
            "dependencies": ["a"],
            "output_schema": {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}},
        },
        {"name": "c", "module": "Finance", "prompt_template": c_prompt, "dependencies": ["b"]},
    ]
    for agent in agents:
        agent["llm_config"] = {"model": "gpt-4o-mini", "max_tokens": 50}
    return workflow_file(tmp_path, agents=agents)


@pytest.fixture
def first_run(tmp_path: Path) -> Path:
    path = _chain(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    return run


def _resume(tmp_path: Path, run: Path) -> Any:
    return orchestrate(
        "run", str(tmp_path / "wf.yaml"), "--simulate", "-o", "again", "--resume", str(run), cwd=tmp_path
    )


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (
            lambda doc: [],
            "result.json: not a result.json to resume from (tampered?): the document: [] is not of type 'object'",
        ),
        (lambda doc: None, "the document: None is not of type 'object'"),
        (lambda doc: {**doc, "agents": [1]}, "agents[0]: 1 is not of type 'object'"),
        (lambda doc: {**doc, "agents": [{**doc["agents"][0], "tokens_used": "abc"}]}, "agents[0].tokens_used: 'abc'"),
        (
            lambda doc: {**doc, "agents": [{**doc["agents"][0], "cost": -5}]},
            "agents[0].cost: -5 is less than the minimum",
        ),
        (
            lambda doc: {**doc, "agents": [{**doc["agents"][0], "started_at": "yesterday"}]},
            "agents[0].started_at: 'yesterday' is not an ISO 8601 time",
        ),
    ],
)
def test_a_tampered_result_json_is_refused_naming_the_file(
    tmp_path: Path, first_run: Path, tamper: Any, needle: str
) -> None:
    (first_run / "events.jsonl").unlink()
    doc = json.loads((first_run / "result.json").read_text())
    (first_run / "result.json").write_text(json.dumps(tamper(doc)))
    done = _resume(tmp_path, first_run)
    assert_clean_failure(done, 2, str(first_run / "result.json"), needle)
    assert len(done.stderr.strip().splitlines()) == 1


def test_nan_in_result_json_is_refused(tmp_path: Path, first_run: Path) -> None:
    import re

    text = re.sub(r'"cost": [-0-9.e]+', '"cost": NaN', (first_run / "result.json").read_text(), count=1)
    assert "NaN" in text
    (first_run / "result.json").write_text(text)
    done = _resume(tmp_path, first_run)
    assert_clean_failure(done, 2, "result.json: not valid JSON")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"type": "agent_finished", "agent": "a", "data": 5}', "data: 5 is not of type 'object'"),
        ("[1, 2]", "[1, 2] is not of type 'object'"),
        (
            '{"type": "agent_finished", "agent": "a", "data": {"status": "completed", "fingerprint": "x", '
            '"tokens_used": "abc"}}',
            "tokens_used",
        ),
    ],
)
def test_a_tampered_journal_line_is_refused_naming_file_and_line(
    tmp_path: Path, first_run: Path, line: str, needle: str
) -> None:
    events = first_run / "events.jsonl"
    lines = events.read_text().splitlines()
    events.write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    done = _resume(tmp_path, first_run)
    assert_clean_failure(done, 2, f"{events}:3: not an event this version can resume from", needle)


def test_a_torn_last_journal_line_is_still_skipped(tmp_path: Path, first_run: Path) -> None:
    events = first_run / "events.jsonl"
    events.write_text(events.read_text() + '{"type": "agent_fin')
    done = _resume(tmp_path, first_run)
    assert done.returncode == 0, done.stderr


def test_a_reused_output_that_breaks_its_schema_runs_again(tmp_path: Path, first_run: Path) -> None:
    (first_run / "events.jsonl").unlink()
    doc = json.loads((first_run / "result.json").read_text())
    for agent in doc["agents"]:
        if agent["name"] == "b":
            agent["output"]["json"] = {"total": "not a number"}
    (first_run / "result.json").write_text(json.dumps(doc))
    done = _resume(tmp_path, first_run)
    assert done.returncode == 0, done.stderr
    (again,) = (tmp_path / "again").iterdir()
    result = json.loads((again / "result.json").read_text())
    # b ran again; its fresh answer is the one c was given before, so c is still reused
    assert result["reused_agents"] == ["a", "c"]
    by_name = {a["name"]: a for a in result["agents"]}
    assert not by_name["b"]["metadata"].get("reused") and isinstance(
        by_name["b"]["output"]["json"]["total"], (int, float)
    )


def test_reused_agents_lists_only_agents_carried_over(tmp_path: Path, first_run: Path) -> None:
    _chain(tmp_path, c_prompt="Now summarise {b.output} differently")
    done = _resume(tmp_path, first_run)
    assert done.returncode == 0, done.stderr
    (again,) = (tmp_path / "again").iterdir()
    result = json.loads((again / "result.json").read_text())
    assert result["reused_agents"] == ["a", "b"]
    cost = json.loads((again / "cost.json").read_text())
    assert [c["agent"] for c in cost["calls"] if not c["reused"]] == ["c"]


# -- the cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "poison",
    [
        "[1, 2]",
        "folder",
        '{"content": "x", "model": "m", "finish_reason": "stop", "input_tokens": "abc", "output_tokens": 1}',
        '{"content": "x", "model": "m", "finish_reason": "stop", "input_tokens": 1, '
        '"output_tokens": 1, "tool_calls": [{"id": 1}]}',
        "NaN",
    ],
)
def test_a_poisoned_cache_entry_is_a_miss_reported_once(tmp_path: Path, poison: str) -> None:
    path = workflow_file(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "--cache", "cache", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (entry,) = (tmp_path / "cache").rglob("*.json")
    entry.unlink()
    if poison == "folder":
        entry.mkdir()
    else:
        entry.write_text(poison)
    done = orchestrate("run", str(path), "--simulate", "--cache", "cache", "-o", "runs2", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("warning: --cache:") == 1
    (run,) = (tmp_path / "runs2").iterdir()
    cost = json.loads((run / "cost.json").read_text())
    assert len(cost["calls"]) == 1 and not cost["calls"][0]["cached"]  # called again, booked


def test_a_cache_that_cannot_be_written_never_fails_a_paid_call(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    # every entry's folder is blocked by a file of the same name
    for i in range(256):
        (cache / f"{i:02x}").write_text("blocked")
    done = orchestrate("run", str(path), "--simulate", "--cache", "cache", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "not stored" in done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert len(json.loads((run / "cost.json").read_text())["calls"]) == 1


# -- cost-report -------------------------------------------------------------------------------


def _cost_file(folder: Path, calls: list[Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "cost.json").write_text(json.dumps({"workflow": "w", "run_id": folder.name, "calls": calls}))
    return folder


def _call(cost: Any = 0.5, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-01T00:00:00+00:00",
        "agent": "a",
        "model": "gpt-4o",
        "provider": "openai",
        "module": "Finance",
        "cost": cost,
        "input_tokens": 10,
        "output_tokens": 5,
        **fields,
    }


@pytest.mark.parametrize("bad", [_call("1.5"), _call([1]), _call(-1), _call(input_tokens="abc"), _call(1e308), "x"])
def test_cost_report_skips_and_names_malformed_files(tmp_path: Path, bad: Any) -> None:
    _cost_file(tmp_path / "runs" / "good", [_call(0.5)])
    bad_run = _cost_file(tmp_path / "runs" / "bad", [bad])
    done = orchestrate("cost-report", "runs", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"warning: skipped {Path('runs') / 'bad' / 'cost.json'}" in done.stderr or str(bad_run) in done.stderr
    total = json.loads(done.stdout)["total"]
    assert total["cost"] == 0.5 and total["calls"] == 1


def test_cost_report_counts_each_run_folder_once_and_stays_finite(tmp_path: Path) -> None:
    _cost_file(tmp_path / "runs" / "A", [_call(1e9)])
    _cost_file(tmp_path / "runs" / "B", [_call(1e9)])
    done = orchestrate("cost-report", "runs/A", "runs/B", "runs/A", "runs", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["total"]
    assert total["calls"] == 2 and total["cost"] == 2e9
    assert "Infinity" not in done.stdout and "NaN" not in done.stdout
