"""Datasets through the library: reading rows, the dataset budget, the dataset run folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrate.errors import UserInputError
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.observe.dataset_report import DatasetRecorder, JsonLines, load_prior, read_json_lines
from orchestrate.run.dataset_run import DatasetRunner, default_rows_parallel
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.workflow.dataset import BadRow, Dataset, Row, parse_shard
from orchestrate.workflow.loader import load_workflow_text

WORKFLOW = """\
name: vendor_screen
description: screen vendors
max_parallel_agents: 2
cost_budget: 1.0
inputs:
  vendor: {type: string}
  spend: {type: number}
  employees: {type: integer, default: 10}
  sanctioned: {type: boolean, default: false}
  region: {type: string, default: EU}
defaults:
  module: Compliance
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 100, latency: %(latency)s}
agents:
  - name: screen
    prompt_template: Screen {vendor} in {region} spending {spend} with {employees} staff ({sanctioned})
  - name: risk
    prompt_template: Rate the risk of {vendor}
  - name: decide
    dependencies: [screen, risk]
    prompt_template: Decide on {vendor} from {screen.output} and {risk.output}
"""


def template(latency: float = 0.0) -> Any:
    return load_workflow_text(WORKFLOW % {"latency": latency}, bind=False)


def dataset(path: Path, **kwargs: Any) -> Dataset:
    wf = template()
    return Dataset(path, workflow_name=wf.name, declared=wf.inputs, **kwargs)


def test_csv_values_are_converted_to_the_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "vendors.csv"
    path.write_text('vendor,spend,employees,sanctioned\nAcme GmbH,1200.50,42,yes\n"Bolt, Nut & Co",99,,false\n')
    rows = list(dataset(path))
    assert all(isinstance(r, Row) for r in rows)
    first, second = rows
    assert first.values == {"vendor": "Acme GmbH", "spend": 1200.5, "employees": 42, "sanctioned": True, "region": "EU"}
    assert (first.line, second.line) == (2, 3)
    assert second.values["vendor"] == "Bolt, Nut & Co"
    assert second.values["employees"] == 10  # an empty cell is not given: the default applies
    assert second.values["sanctioned"] is False and second.values["spend"] == 99.0


def test_jsonl_rows_keep_their_json_types_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "vendors.jsonl"
    path.write_text('{"vendor": "Acme", "spend": 10, "employees": 3}\n\n{"vendor": "Bolt", "spend": "2.5"}\n')
    first, second = list(dataset(path))
    assert isinstance(first, Row) and isinstance(second, Row)
    assert first.values["employees"] == 3 and second.values["spend"] == 2.5
    assert (first.line, second.line) == (1, 3)
    assert (first.index, second.index) == (0, 1)


def test_bad_rows_say_their_line_and_why(tmp_path: Path) -> None:
    path = tmp_path / "vendors.jsonl"
    path.write_text(
        '{"vendor": "Acme", "spend": 10}\n{"vendor": "Bolt", "spend": "lots"}\n'
        '{"vendor": "Cog"}\n{"vendor": "Dyn", "spend": 1, "colour": "red"}\n[1, 2]\n{"vendor": \n'
    )
    data = dataset(path)
    check = data.check()
    assert (check.rows, check.valid, check.bad_count) == (6, 1, 5)
    messages = [data.describe(bad) for bad in check.bad]
    assert messages[0].startswith(f"{path}:2:1: ") and "'lots' is not a valid number" in messages[0]
    assert messages[1].startswith(f"{path}:3:1: ") and "needs input 'spend'" in messages[1]
    assert "unknown input 'colour'" in messages[2]
    assert messages[3].startswith(f"{path}:5:1: ") and "expected a JSON object" in messages[3]
    assert messages[4].startswith(f"{path}:6:") and "not valid JSON" in messages[4]


def test_csv_rows_with_the_wrong_number_of_values_and_bad_headers(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("vendor,spend\nAcme,1,extra\n")
    (bad,) = list(dataset(path))
    assert isinstance(bad, BadRow) and bad.line == 2 and "3 values, but the header has 2" in bad.reason
    path.write_text("vendor,vendor\nAcme,Bolt\n")
    with pytest.raises(UserInputError, match=r"v.csv:1:2: column 'vendor' appears twice"):
        list(dataset(path))
    path.write_bytes(b"vendor,spend\nAcme,1\n\xff\xfe,2\n")
    with pytest.raises(UserInputError, match=r"v.csv:3:1: not UTF-8"):
        list(dataset(path))


def test_key_column_names_rows_and_duplicates_are_bad(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_text(
        '{"id": "V-1", "vendor": "Acme", "spend": 1}\n{"id": "V-2", "vendor": "Bolt", "spend": 2}\n'
        '{"id": "V-1", "vendor": "Cog", "spend": 3}\n{"vendor": "Dyn", "spend": 4}\n'
    )
    rows = list(dataset(path, key="id"))
    assert [r.key for r in rows[:2]] == ["V-1", "V-2"]
    assert "id" not in rows[0].values  # the key column need not be an input
    assert isinstance(rows[2], BadRow) and "duplicate key 'V-1' (first at line 1)" in rows[2].reason
    assert isinstance(rows[3], BadRow) and "no value in key column 'id'" in rows[3].reason


def test_default_key_is_line_and_digest_and_changes_with_the_content(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_text('{"vendor": "Acme", "spend": 1}\n')
    (before,) = list(dataset(path))
    path.write_text('{"vendor": "Acme", "spend": 2}\n')
    (after,) = list(dataset(path))
    assert before.key.startswith("1-") and after.key.startswith("1-") and before.key != after.key


def test_a_rows_values_win_over_shared_inputs(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("vendor,spend,region\nAcme,1,US\nBolt,2,\n")
    first, second = list(dataset(path, shared={"region": "APAC", "employees": "7"}))
    assert first.values["region"] == "US" and second.values["region"] == "APAC"
    assert first.values["employees"] == 7


def test_shards_split_rows_by_index(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_text("".join(f'{{"vendor": "V{i}", "spend": {i}}}\n' for i in range(10)))
    parts = [[r.index for r in dataset(path, shard=(k, 3))] for k in (1, 2, 3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1/0", "2"):
        with pytest.raises(UserInputError, match="--shard"):
            parse_shard(bad)


def test_default_rows_parallel_fills_the_calls_cap() -> None:
    # Two agents can run at once in a row (screen, risk), so 32 calls need 16 rows.
    assert default_rows_parallel(template(), 32) == 16


def rows_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"vendor": f"Vendor {i:04d} " + "x" * (i % 7), "spend": i}) + "\n" for i in range(n))
    )
    return path


async def run_batch(
    tmp_path: Path,
    n: int,
    *,
    budget: float | None,
    rows_parallel: int,
    latency: float = 0.0,
    prior: Any = None,
    skip: set[str] | None = None,
) -> tuple[Any, Path]:
    wf = template(latency)
    run_dir = tmp_path / "batch"
    run_dir.mkdir(exist_ok=True)
    engine = OrchestrationEngine(SimulatedClient(), EngineConfig(max_concurrent_workflows=rows_parallel))
    recorder = DatasetRecorder(run_dir, wf, engine.cost_tracker, run_id="b", simulated=True, budget=budget, prior=prior)
    data = Dataset(rows_file(tmp_path, n), workflow_name=wf.name, declared=wf.inputs)
    runner = DatasetRunner(
        engine,
        wf,
        data,
        sinks=[recorder],
        run_id="b",
        budget=budget,
        max_rows_parallel=rows_parallel,
        completed=skip or set(),
        reuse=prior.reuse if prior is not None else None,
    )
    engine.add_sink(recorder)
    await runner.run()
    await engine.shutdown()
    recorder.finish("done")
    return engine, run_dir


async def test_the_batch_budget_holds_under_concurrency_and_refuses_rows_not_started(tmp_path: Path) -> None:
    budget = 0.004
    engine, run_dir = await run_batch(tmp_path, 200, budget=budget, rows_parallel=25, latency=0.001)
    lines = list(read_json_lines(run_dir / "results.jsonl"))
    assert len(lines) == 200
    spent = sum(line["cost"] for line in lines)
    assert 0 < spent <= budget
    assert engine.cost_tracker.spent("b") == pytest.approx(spent)
    refused = [line for line in lines if line["status"] == "budget_exceeded"]
    not_started = [line for line in refused if line["error"].startswith("not started")]
    assert not_started and all(line["cost"] == 0 for line in not_started)
    completed = [line for line in lines if line["status"] == "completed"]
    assert completed and len(completed) < 200
    calls = list(read_json_lines(run_dir / "calls.jsonl"))
    assert sum(c["cost"] for c in calls) == pytest.approx(spent)
    assert {c["row"] for c in calls} <= {line["key"] for line in lines if line not in not_started}
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["totals"]["cost"] == pytest.approx(spent) and len(cost["calls"]) == len(calls)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["counts"]["budget_exceeded"] == len(refused)
    assert result["counts"]["completed"] == len(completed)


async def test_without_a_batch_budget_every_row_runs_and_memory_is_released(tmp_path: Path) -> None:
    engine, run_dir = await run_batch(tmp_path, 60, budget=None, rows_parallel=8)
    lines = list(read_json_lines(run_dir / "results.jsonl"))
    assert [line["status"] for line in lines] == ["completed"] * 60
    assert all(set(line["outputs"]) == {"decide"} for line in lines)
    assert engine.workflows == {}
    assert engine.cost_tracker.records() == []  # handed to the recorder row by row
    rows = list(read_json_lines(run_dir / "rows.jsonl"))
    assert len(rows) == 60 and {a["name"] for a in rows[0]["agents"]} == {"screen", "risk", "decide"}
    result = json.loads((run_dir / "result.json").read_text())
    assert result["rows"] == 60 and len(result["slowest_rows"]) == 5 and len(result["dearest_rows"]) == 5
    assert result["dearest_rows"][0]["cost"] >= result["dearest_rows"][-1]["cost"]


async def test_resume_runs_only_rows_not_completed_and_reuses_their_finished_agents(tmp_path: Path) -> None:
    await run_batch(tmp_path, 30, budget=0.0015, rows_parallel=4)
    run_dir = tmp_path / "batch"
    prior = load_prior(run_dir)
    done = prior.completed
    assert 0 < len(done) < 30
    first_calls = len(list(read_json_lines(run_dir / "calls.jsonl")))
    await run_batch(tmp_path, 30, budget=None, rows_parallel=4, prior=prior, skip=done)
    latest: dict[str, str] = {}
    for line in read_json_lines(run_dir / "results.jsonl"):
        latest[line["key"]] = line["status"]
    assert len(latest) == 30 and set(latest.values()) == {"completed"}
    calls = list(read_json_lines(run_dir / "calls.jsonl"))
    rerun = {c["row"] for c in calls[first_calls:]}
    assert rerun.isdisjoint(done)  # completed rows never called again
    assert len(rerun) == 30 - len(done)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["counts"] == {"completed": 30}
    assert result["total_cost"] == pytest.approx(sum(c["cost"] for c in calls))


async def test_cost_json_of_a_resumed_batch_sums_both_sessions_and_skips_a_torn_call(tmp_path: Path) -> None:
    await run_batch(tmp_path, 12, budget=0.0006, rows_parallel=3)
    run_dir = tmp_path / "batch"
    with open(run_dir / "calls.jsonl", "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"row": "torn", "cost": 5')
    prior = load_prior(run_dir)
    assert len(prior.torn_calls) == 1
    await run_batch(tmp_path, 12, budget=None, rows_parallel=3, prior=prior, skip=prior.completed)
    calls = list(read_json_lines(run_dir / "calls.jsonl"))
    assert all(c["row"] != "torn" for c in calls)
    cost = json.loads((run_dir / "cost.json").read_text())
    assert len(cost["calls"]) == cost["totals"]["calls"] == len(calls)
    assert cost["totals"]["cost"] == pytest.approx(sum(c["cost"] for c in calls))
    assert sum(b["cost"] for b in cost["by_model"].values()) == pytest.approx(cost["totals"]["cost"])


def test_results_lines_stay_valid_after_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    journal = JsonLines(path)
    journal.write({"key": "a", "status": "completed"})
    journal.close()
    with open(path, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"key": "b", "sta')
    assert [line["key"] for line in read_json_lines(path)] == ["a"]
    journal = JsonLines(path)  # the next session ends the torn line first
    journal.write({"key": "c", "status": "completed"})
    journal.close()
    assert [line["key"] for line in read_json_lines(path)] == ["a", "c"]
    assert path.read_text().splitlines()[-1] == '{"key":"c","status":"completed"}'


def test_batch_runner_records_invalid_rows_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_text('{"vendor": "Acme", "spend": 1}\n{"vendor": "Bolt"}\n')
    wf = template()
    run_dir = tmp_path / "b"
    run_dir.mkdir()

    async def go() -> None:
        engine = OrchestrationEngine(SimulatedClient(), EngineConfig())
        recorder = DatasetRecorder(run_dir, wf, engine.cost_tracker, run_id="b", simulated=True, budget=None)
        data = Dataset(path, workflow_name=wf.name, declared=wf.inputs)
        await DatasetRunner(engine, wf, data, sinks=[recorder], run_id="b", budget=None, max_rows_parallel=2).run()
        await engine.shutdown()
        recorder.finish("partially_completed")

    asyncio.run(go())
    statuses = [(line["row"], line["status"]) for line in read_json_lines(run_dir / "results.jsonl")]
    assert sorted(statuses) == [(1, "completed"), (2, "invalid")]


def test_resume_carries_over_the_finished_agents_of_a_row_that_did_not_finish(tmp_path: Path) -> None:
    run_dir = tmp_path / "batch"
    run_dir.mkdir()
    events = [
        {"type": "row_started", "workflow_id": "w1", "workflow": "vendor_screen", "data": {"key": "acme"}},
        {
            "type": "agent_finished",
            "workflow_id": "w1",
            "agent": "screen",
            "data": {
                "status": "completed",
                "fingerprint": "f1",
                "output": {"text": "ok"},
                "tokens_used": 12,
                "cost": 0.001,
                "model": "gpt-4o-mini",
                "provider": "simulated",
                "started_at": "2026-11-25T10:00:00+00:00",
                "completed_at": "2026-11-25T10:00:01+00:00",
            },
        },
        {
            "type": "agent_finished",
            "workflow_id": "w1",
            "agent": "risk",
            "data": {"status": "failed", "fingerprint": "f2"},
        },
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    prior = load_prior(run_dir)
    assert prior.name == "vendor_screen" and set(prior.reuse) == {"acme"}
    (carried,) = prior.reuse["acme"].values()
    assert carried.agent_id == "screen" and carried.output == {"text": "ok"} and carried.tokens_used == 12
    assert carried.metadata["fingerprint"] == "f1"
