"""`orchestrate merge`: the shard folders of one dataset run as one result, with what is missing named."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.test_shards import orchestrate, spawn


def _dataset(folder: Path, rows: int) -> None:
    (folder / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:04d}"}}\n' for i in range(rows)))
    (folder / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\n"
        "defaults:\n  llm_config: {model: gpt-4o-mini, max_tokens: 100}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_shards(tmp_path: Path) -> list[Path]:
    """Four shards of 42 rows; the third killed after a few rows (its folder incomplete)."""
    _dataset(tmp_path, 42)
    args = ("run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "--shard", "auto", "--shards", "4", "-o", "out")
    for index in (0, 1, 3):
        done = orchestrate(*args, "--sim-latency", "0.001", cwd=tmp_path, env={"JOB_COMPLETION_INDEX": str(index)})
        assert done.returncode == 0, done.stderr
    slow = spawn(
        *args, "--sim-latency", "0.3", "--max-rows-parallel", "1", cwd=tmp_path, env={"JOB_COMPLETION_INDEX": "2"}
    )
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "out").glob("*-shard-3-of-4/results.jsonl")) or (
            len(_lines(next((tmp_path / "out").glob("*-shard-3-of-4/results.jsonl")))) < 3
        ):
            assert time.monotonic() < deadline and slow.poll() is None, "shard 3 never got going"
            time.sleep(0.02)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.communicate(timeout=30)
    return sorted((tmp_path / "out").iterdir())


def test_four_shards_one_incomplete_merge_into_one_result(tmp_path: Path) -> None:
    shards = _run_shards(tmp_path)
    assert [p.name.rsplit("-shard-", 1)[1] for p in shards] == ["1-of-4", "2-of-4", "3-of-4", "4-of-4"]
    merged = orchestrate("merge", *map(str, shards), "-o", "merged", "--json", cwd=tmp_path)
    assert merged.returncode == 3, merged.stderr  # not every row completed
    summary = json.loads(merged.stdout)
    out = tmp_path / "merged"
    results = _lines(out / "results.jsonl")
    keys = [r["key"] for r in results]
    assert len(keys) == len(set(keys))  # one line per key
    third = {r["row"] for r in _lines(shards[2] / "results.jsonl")}
    done_rows = sorted(r["row"] for r in results)
    expected = sorted({*range(1, 43)} - {r for r in range(3, 43, 4)} | third)
    assert done_rows == expected  # shards 1, 2, 4 whole and what shard 3 finished, in row order
    assert [r["row"] for r in results] == done_rows
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "partially_completed" and summary["status"] == "partially_completed"
    assert result["rows"] == len(results) and result["counts"] == {"completed": len(results)}
    (incomplete,) = result["shards"]["incomplete"]
    assert incomplete["shard"] == "3/4" and incomplete["rows_in_data"] == 10  # rows 3, 7, ..., 39
    assert incomplete["never_run"] == 10 - len(third)
    assert sorted(incomplete["never_run_rows"]) == sorted(set(range(3, 43, 4)) - third)
    assert result["shards"]["missing"] == [] and "shard 3/4" in result["error"]
    # One cost.json: every call of every shard, the sum of the shards' own.
    cost = json.loads((out / "cost.json").read_text())
    calls = sum(len(_lines(p / "calls.jsonl")) for p in shards)
    assert cost["totals"]["calls"] == calls == len(cost["calls"])
    shard_cost = sum(float(c["cost"]) for p in shards for c in _lines(p / "calls.jsonl"))
    assert abs(cost["totals"]["cost"] - shard_cost) < 1e-9 and abs(result["total_cost"] - shard_cost) < 1e-9
    assert (out / "report.html").read_text().count("invoices") >= 1
    # A shard left out is named, with its rows.
    partial = orchestrate("merge", *map(str, shards[:3]), "-o", "three", cwd=tmp_path)
    assert partial.returncode == 3 and "no folder for shard 4/4" in partial.stdout, partial.stdout
    missing = json.loads((tmp_path / "three" / "result.json").read_text())["shards"]["missing"]
    assert missing == [{"shard": "4/4", "rows": "rows 4, 8, 12, ... of the data file"}]


def test_merge_refuses_what_does_not_belong_together(tmp_path: Path) -> None:
    _dataset(tmp_path, 8)
    for k, n in ((1, 2), (1, 4)):
        done = orchestrate(
            "run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "--shard", f"{k}/{n}", "-o", f"o{n}", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
    two, four = (next((tmp_path / f"o{n}").iterdir()) for n in (2, 4))
    mixed = orchestrate("merge", str(two), str(four), "-o", "m", cwd=tmp_path)
    assert mixed.returncode == 2 and "shard 1/4, but" in mixed.stderr and "Traceback" not in mixed.stderr
    twice = orchestrate("merge", str(two), str(two), "-o", "m", cwd=tmp_path)
    assert twice.returncode == 2 and "shard 1/2 again" in twice.stderr
    nothing = orchestrate("merge", str(tmp_path), "-o", "m", cwd=tmp_path)
    assert nothing.returncode == 2 and "not a dataset run folder" in nothing.stderr
    whole = orchestrate("merge", str(two), "-o", "m", cwd=tmp_path)
    assert whole.returncode == 3 and "no folder for shard 2/2" in whole.stdout
    again = orchestrate("merge", str(two), "-o", "m", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr
