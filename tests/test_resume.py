"""Stop, crash, resume: a real `orchestrate run` interrupted, killed, and resumed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKFLOW = """\
name: close_books
description: A slow month-end close to interrupt
max_parallel_agents: 2
cost_budget: 5.0
inputs:
  period: {type: string, default: "2026-10"}
defaults:
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 200, latency: %(latency)s}
agents:
%(agents)s
"""


def write_workflow(folder: Path, latency: float = 0.25, width: int = 8) -> Path:
    lines = []
    for i in range(width):
        lines.append(
            f"  - name: check_{i}\n    module: Finance\n    description: ledger check {i}\n"
            f"    prompt_template: Check ledger {i} for {{period}}\n"
        )
    deps = ", ".join(f"check_{i}" for i in range(width))
    refs = " ".join(f"{{check_{i}.output}}" for i in range(width))
    lines.append(
        f"  - name: summary\n    module: Finance\n    description: summary\n"
        f"    dependencies: [{deps}]\n    prompt_template: Summarise {refs}\n"
    )
    path = folder / "close.yaml"
    path.write_text(WORKFLOW % {"latency": latency, "agents": "".join(lines)})
    return path


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CI": "true"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_agents(events: Path) -> list[str]:
    if not events.exists():
        return []
    names = []
    for line in events.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event["type"] == "agent_finished" and event["data"]["status"] == "completed":
            names.append(event["agent"])
    return names


def wait_for_completed(output: Path, count: int, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_dir in output.glob("*"):
            if len(finished_agents(run_dir / "events.jsonl")) >= count:
                return run_dir
        time.sleep(0.02)
    raise AssertionError("the run never got going")


def only_run(output: Path) -> Path:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return run_dir


def started_agents(run_dir: Path) -> set[str]:
    return {
        json.loads(line)["agent"]
        for line in (run_dir / "events.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "agent_started"
    }


def outputs(run_dir: Path) -> dict[str, object]:
    result = json.loads((run_dir / "result.json").read_text())
    return {a["name"]: a["output"] for a in result["agents"]}


@pytest.fixture
def reference(tmp_path: Path) -> dict[str, object]:
    """Outputs of the same workflow run without interruption."""
    path = write_workflow(tmp_path, latency=0.0)
    proc = start(["run", str(path), "-o", str(tmp_path / "clean")], tmp_path)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    proc.stdout.close()
    proc.stderr.close()
    return outputs(only_run(tmp_path / "clean"))


@pytest.mark.parametrize(("how", "expected_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_run_and_keeps_what_completed(
    tmp_path: Path, how: int, expected_code: int, reference: dict[str, object]
) -> None:
    path = write_workflow(tmp_path)
    proc = start(["run", str(path), "-o", str(tmp_path / "runs")], tmp_path)
    run_dir = wait_for_completed(tmp_path / "runs", 2)
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == expected_code, stderr
    assert "Traceback" not in stderr
    result = json.loads((run_dir / "result.json").read_text())
    cost = json.loads((run_dir / "cost.json").read_text())
    completed = {a["name"] for a in result["agents"] if a["status"] == "completed"}
    assert set(finished_agents(run_dir / "events.jsonl")) == completed and len(completed) >= 2
    assert result["status"] == "cancelled"
    assert {a["status"] for a in result["agents"]} <= {"completed", "cancelled"}
    assert cost["totals"]["cost"] == pytest.approx(result["total_cost"], abs=1e-9)

    resumed = start(["run", str(path), "-o", str(tmp_path / "resumed"), "--resume", str(run_dir)], tmp_path)
    assert resumed.wait(60) == 0, resumed.stderr.read()
    resumed.stdout.close()
    resumed.stderr.close()
    second = only_run(tmp_path / "resumed")
    assert started_agents(second).isdisjoint(completed)  # nothing paid for is called again
    final = json.loads((second / "result.json").read_text())
    assert final["status"] == "completed"
    assert {a["name"] for a in final["agents"] if a["metadata"].get("reused")} == completed
    assert outputs(second) == reference


def test_sigkill_loses_at_most_the_calls_in_flight_and_resume_finishes(
    tmp_path: Path, reference: dict[str, object]
) -> None:
    path = write_workflow(tmp_path)
    proc = start(["run", str(path), "-o", str(tmp_path / "runs")], tmp_path)
    run_dir = wait_for_completed(tmp_path / "runs", 3)
    proc.kill()
    proc.communicate(timeout=30)
    completed = set(finished_agents(run_dir / "events.jsonl"))
    assert len(completed) >= 3
    for name in ("result.json", "cost.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())  # whole, never torn

    resumed = start(["run", str(path), "-o", str(tmp_path / "resumed"), "--resume", str(run_dir)], tmp_path)
    assert resumed.wait(60) == 0, resumed.stderr.read()
    resumed.stdout.close()
    resumed.stderr.close()
    second = only_run(tmp_path / "resumed")
    assert started_agents(second).isdisjoint(completed)
    assert outputs(second) == reference


def test_a_changed_agent_runs_again_and_the_rest_is_reused(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, latency=0.0)
    first = start(["run", str(path), "-o", str(tmp_path / "a")], tmp_path)
    assert first.wait(60) == 0
    first.stdout.close()
    first.stderr.close()
    path.write_text(path.read_text().replace("Check ledger 3 for", "Re-check ledger 3 for"))
    second = start(["run", str(path), "-o", str(tmp_path / "b"), "--resume", str(only_run(tmp_path / "a"))], tmp_path)
    assert second.wait(60) == 0
    second.stdout.close()
    second.stderr.close()
    # check_3 changed; summary reads check_3's answer, which changed with it.
    assert started_agents(only_run(tmp_path / "b")) == {"check_3", "summary"}


def test_reports_killed_mid_write_always_parse(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, latency=0.0, width=300)
    rng = random.Random(5)
    checked = 0
    for attempt in range(6):
        out = tmp_path / f"runs{attempt}"
        proc = start(["run", str(path), "-o", str(out)], tmp_path)
        # Killed while it writes: once its first report exists (however loaded the machine), then a
        # random moment later, so the kill lands at different points of the rewrites.
        deadline = time.monotonic() + 60
        while not list(out.glob("*/result.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.communicate(timeout=30)
        for run_dir in out.glob("*"):
            for name in ("result.json", "cost.json"):
                if (run_dir / name).exists():
                    json.loads((run_dir / name).read_text())
                    checked += 1
    assert checked >= 6  # every attempt left at least its result.json to check


def test_second_run_with_cache_costs_nothing(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, latency=0.0)
    cache = tmp_path / "cache"
    for out in ("first", "second"):
        proc = start(["run", str(path), "-o", str(tmp_path / out), "--cache", str(cache)], tmp_path)
        assert proc.wait(60) == 0, proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    first = json.loads((only_run(tmp_path / "first") / "result.json").read_text())
    second = json.loads((only_run(tmp_path / "second") / "result.json").read_text())
    assert first["total_cost"] > 0
    assert second["total_cost"] == 0
    assert all(a["metadata"]["cached_calls"] == a["metadata"]["calls"] > 0 for a in second["agents"])
    assert outputs(only_run(tmp_path / "second")) == outputs(only_run(tmp_path / "first"))
