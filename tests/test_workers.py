"""User code cannot hang a run: sync tools and code steps run in the run's own daemon threads,
timeouts end the agent while the function runs on, and the process exits once its reports are written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrate import AgentStatus, EngineConfig, OrchestrationEngine, RetryPolicy, WorkflowStatus
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.run.workers import AbruptExit, WorkerPool, abandoned_threads
from orchestrate.workflow.loader import load_workflow_text
from orchestrate.workflow.models import Workflow
from orchestrate.workflow.modules import import_module

# A module the workflows below name; each test writes it under a name of its own.
TOOLS = """
import asyncio
import sys
import threading
import time

RELEASE = threading.Event()
STARTED = threading.Event()
SEEN = []

def hold(query: str = "") -> dict:
    STARTED.set()
    RELEASE.wait(60)
    return {"held": True}

def quick(query: str = "") -> dict:
    return {"quick": True}

def leave(query: str = "") -> dict:
    sys.exit(3)

def interrupt(**kwargs):
    raise KeyboardInterrupt

async def leave_async(**kwargs):
    sys.exit(4)

def produce():
    return {"items": [1, 2], "meta": {"n": 2}}

def mutate(data):
    data["items"].append(99)
    data["meta"]["n"] = 0
    SEEN.append(data)
    return {"n": len(data["items"])}
"""


@pytest.fixture
def mod(tmp_path: Path) -> str:
    name = f"user_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TOOLS, encoding="utf-8")
    return name


def load(tmp_path: Path, text: str) -> Workflow:
    head = """
name: hang
allow_partial_completion: true
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 50}
  retry: {strategy: immediate}
"""
    return load_workflow_text(head + textwrap.dedent(text), file=str(tmp_path / "wf.yaml"))


async def run(wf: Workflow, **config: Any) -> tuple[Workflow, OrchestrationEngine]:
    engine = OrchestrationEngine(
        SimulatedClient(),
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False), **config),
    )
    done = await engine.execute_workflow(await engine.register_workflow(wf))
    return done, engine


async def test_a_sync_tool_runs_off_the_loop_and_its_agent_times_out_while_it_runs(tmp_path: Path, mod: str) -> None:
    wf = load(
        tmp_path,
        f"""
agents:
  - name: slow
    prompt_template: look it up
    timeout: 0.5
    tools: [{{function: "{mod}:hold"}}]
  - name: other
    prompt_template: independent
    tools: [{{function: "{mod}:quick"}}]
""",
    )
    module = import_module(mod, tmp_path)
    ticks = 0

    async def tick() -> None:  # the event loop keeps turning while the tool blocks its thread
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    t0 = time.monotonic()
    try:
        done, engine = await run(wf)
        took = time.monotonic() - t0
        assert module.STARTED.is_set()
        slow = done.get_agent_by_name("slow")
        assert slow.status is AgentStatus.CANCELLED
        assert slow.result.error == "agent timed out after 0.5s"
        assert done.get_agent_by_name("other").status is AgentStatus.COMPLETED
        assert took < 20, took  # the tool holds its thread for up to 60 s
        assert ticks >= 5
        assert engine.workers.stuck == 1  # still in the tool, counted, waited on by nobody
        assert abandoned_threads() >= 1
    finally:
        ticker.cancel()
        module.RELEASE.set()
    for _ in range(500):
        if engine.workers.stuck == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.workers.stuck == 0
    await engine.shutdown()


async def test_the_pool_is_bounded_and_work_given_up_while_queued_never_runs() -> None:
    pool = WorkerPool(2)
    release = threading.Event()
    running: list[int] = []
    ran: list[int] = []

    def job(n: int) -> int:
        running.append(n)
        release.wait(30)
        ran.append(n)
        return n

    first = [asyncio.ensure_future(pool.call(job, n)) for n in range(2)]
    for _ in range(500):
        if len(running) == 2:
            break
        await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(pool.call(job, 9))
    await asyncio.sleep(0.2)
    assert running == [0, 1] or sorted(running) == [0, 1]  # the third waits for a thread
    assert pool.busy == 2
    queued.cancel()
    await asyncio.sleep(0.05)  # the cancel reaches the waiting call
    assert queued.cancelled()
    release.set()
    assert sorted(await asyncio.gather(*first)) == [0, 1]
    assert sorted(await asyncio.gather(pool.call(job, 5), pool.call(job, 6))) == [5, 6]
    assert 9 not in ran  # given up while it waited: never run
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("orchestrate-worker"))
    pool.close()


async def test_sys_exit_and_keyboard_interrupt_in_user_code_fail_that_call_alone(tmp_path: Path, mod: str) -> None:
    wf = load(
        tmp_path,
        f"""
agents:
  - name: step_exit
    function: "{mod}:leave"
    max_retries: 0
  - name: step_interrupt
    function: "{mod}:interrupt"
    max_retries: 0
  - name: step_async_exit
    function: "{mod}:leave_async"
    max_retries: 0
  - name: tool_exit
    prompt_template: use the tool
    tools: [{{function: "{mod}:leave"}}]
  - name: after
    prompt_template: still here
""",
    )
    done, engine = await run(wf)
    await engine.shutdown()
    by = {a.name: a for a in done.agents}
    assert by["step_exit"].status is AgentStatus.FAILED and "called sys.exit(3)" in by["step_exit"].result.error
    assert "raised KeyboardInterrupt" in by["step_interrupt"].result.error
    assert by["step_async_exit"].status is AgentStatus.FAILED
    assert "called sys.exit(4)" in by["step_async_exit"].result.error
    # The tool's exit goes back to the model as the tool's error; the agent answers.
    assert by["tool_exit"].status is AgentStatus.COMPLETED
    assert by["tool_exit"].result.metadata["tool_log"][0]["error"] == "AbruptExit: called sys.exit(3)"
    assert by["after"].status is AgentStatus.COMPLETED
    assert done.status is WorkflowStatus.PARTIALLY_COMPLETED


async def test_a_pool_call_that_exits_raises_abrupt_exit_not_system_exit() -> None:
    pool = WorkerPool(1)
    with pytest.raises(AbruptExit, match=r"sys.exit\(7\)"):
        await pool.call(sys.exit, 7)
    pool.close()


async def test_a_code_step_gets_a_copy_and_cannot_rewrite_the_answer_it_was_given(tmp_path: Path, mod: str) -> None:
    wf = load(
        tmp_path,
        f"""
agents:
  - name: make
    function: "{mod}:produce"
  - name: change
    function: "{mod}:mutate"
    dependencies: [make]
    arguments: {{data: "{{make.output}}"}}
""",
    )
    done, engine = await run(wf)
    await engine.shutdown()
    assert done.status is WorkflowStatus.COMPLETED
    assert done.get_agent_by_name("change").result.output["json"] == {"n": 3}
    assert done.get_agent_by_name("make").result.output["json"] == {"items": [1, 2], "meta": {"n": 2}}


# -- the process, for real ------------------------------------------------------------------------

SLEEPER = """
import time

def nap(seconds=20, row=None):
    if row in (None, "r1"):
        time.sleep(seconds)
    return {"row": row}
"""

SLEEPY = """
name: sleepy
allow_partial_completion: true
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
inputs:
  row: {type: string, default: ""}
agents:
  - name: nap
    function: "sleeper:nap"
    arguments: {seconds: 20, row: "{row}"}
    timeout: 0.5
    max_retries: 0
  - name: note
    prompt_template: "noted {row}"
"""


def orchestrate(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(CI="true", COLUMNS="200")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return proc, time.monotonic() - t0


def test_a_code_step_past_its_timeout_does_not_hold_the_process(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(SLEEPER.replace('(None, "r1")', '(None, "r1", "")'))
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    proc, took = orchestrate("run", "sleepy.yaml", "--simulate", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    # 20 s of sleep left in the thread when the reports are written: the process does not wait.
    # (Python's start and the run take about 1-2 s; generous for a loaded machine.)
    assert took < 12, took
    summary = json.loads(proc.stdout)["runs"][0]
    assert summary["agents"] == {"nap": "cancelled", "note": "completed"}
    assert "1 worker thread still ran a function past its timeout" in proc.stderr
    result = json.loads((tmp_path / summary["run_dir"] / "result.json").read_text())
    nap = next(a for a in result["agents"] if a["name"] == "nap")
    assert nap["error"] == "agent timed out after 0.5s"


def test_a_dataset_run_with_a_stuck_thread_finishes_its_other_rows_and_exits(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    rows = "".join(json.dumps({"row": f"r{i}"}) + "\n" for i in range(1, 9))
    (tmp_path / "rows.jsonl").write_text(rows)
    proc, took = orchestrate(
        "run", "sleepy.yaml", "--simulate", "--data", "rows.jsonl", "--max-threads", "2", "-o", "out", cwd=tmp_path
    )
    assert took < 15, took
    assert "1 worker thread still ran a function past its timeout" in proc.stderr, proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    states = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    by_row = {s["key"] if "key" in s else s.get("index"): s for s in states}
    assert len(by_row) == 8, states
    finished = [s for s in states if s.get("status") == "completed"]
    assert len(finished) == 7, states  # only r1's nap outlived its timeout
