"""Journals fail closed: a journal that cannot be written stops new calls and the run exits 1 naming
it; a failing display or exporter is reported once and the run goes on. Against a real full
filesystem (a small tmpfs, mounted when the tests run as root) and a folder removed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate import EngineConfig, OrchestrationEngine, RetryPolicy
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.observe.journal import JsonLines
from orchestrate.workflow.loader import load_workflow_text
from tests import cli
from tests.small_tmpfs import small_tmpfs


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, columns=200)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KB tmpfs, mounted for the test (root only, as in CI)."""
    with small_tmpfs(tmp_path, "256k") as mount:
        yield mount


DATASET_WORKFLOW = """
name: fill
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 200}
inputs:
  n: {type: integer}
agents:
  - name: a
    prompt_template: "Write a long note about invoice {n}"
"""


def test_a_dataset_run_on_a_full_disk_stops_calling_and_exits_1_naming_the_journal(tmp_path: Path, tmpfs: Path) -> None:
    (tmp_path / "fill.yaml").write_text(DATASET_WORKFLOW)
    rows = 4000
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(rows)))
    proc = orchestrate(
        "run", "fill.yaml", "--simulate", "--data", "rows.jsonl", "-o", str(tmpfs), "--no-progress", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "No space left on device" in proc.stderr
    assert str(tmpfs) in proc.stderr and ".jsonl" in proc.stderr
    assert "no call was started after it" in proc.stderr
    assert "Traceback" not in proc.stderr
    (run_dir,) = tmpfs.iterdir()
    written = (run_dir / "results.jsonl").read_text(errors="replace").count("\n")
    assert written < rows  # it stopped: the rest were never started (and never paid for)


SINGLE_WORKFLOW = """
name: single
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
agents:
  - name: first
    prompt_template: one
  - name: remove
    function: "%(module)s:remove"
    dependencies: [first]
  - name: last
    prompt_template: three
    dependencies: [remove]
"""

REMOVER = """
import shutil
from pathlib import Path

def remove():
    for folder in Path("out").iterdir():
        shutil.rmtree(folder)
    return {"removed": True}
"""


def test_a_run_folder_removed_mid_run_stops_the_calls_after_it_and_exits_1(tmp_path: Path) -> None:
    module = f"remover_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(REMOVER)
    (tmp_path / "single.yaml").write_text(SINGLE_WORKFLOW % {"module": module})
    proc = orchestrate("run", "single.yaml", "--simulate", "-o", "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "events.jsonl: removed while the run was writing it" in proc.stderr
    assert "no call was started after it" in proc.stderr
    assert "last cancelled" in proc.stderr or "last" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_single_run_on_a_full_disk_exits_1_naming_events_jsonl(tmp_path: Path, tmpfs: Path) -> None:
    (tmp_path / "single.yaml").write_text(
        DATASET_WORKFLOW.replace("inputs:\n  n: {type: integer}\n", "").replace("{n}", "7")
    )
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # leave the disk full
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = orchestrate("run", "single.yaml", "--simulate", "-o", str(tmpfs), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_journal_that_cannot_be_written_says_so_once_and_stops(tmp_path: Path) -> None:
    told: list[str] = []
    journal = JsonLines(tmp_path / "calls.jsonl", on_error=told.append)
    journal.write({"n": 1})
    (tmp_path / "calls.jsonl").unlink()
    journal.sync()
    journal.write({"n": 2})
    journal.close()
    assert told == [f"{tmp_path / 'calls.jsonl'}: removed while the run was writing it"]
    assert journal.failure == told[0]


async def test_a_failing_display_is_reported_once_and_the_run_goes_on(tmp_path: Path) -> None:
    calls = 0

    class LiveTable:
        def __call__(self, event: object) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("terminal gone")

    wf = load_workflow_text(
        "name: w\ndefaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 20}}\n"
        "agents:\n  - {name: a, prompt_template: hi}\n  - {name: b, prompt_template: there}\n",
        file=str(tmp_path / "w.yaml"),
    )
    engine = OrchestrationEngine(
        SimulatedClient(),
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False)),
        sinks=[LiveTable()],
    )
    done = await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert done.status.value == "completed"
    assert calls > 3
    assert engine.sink_failures == {"LiveTable": "RuntimeError: terminal gone"}  # its first error, once
