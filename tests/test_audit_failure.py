"""The audit trail fails closed mid-run: a trail that cannot be written stops the run (exit 1, one
line naming it), what it already holds stays whole, and `audit verify` passes on it up to its last
complete record. Against real failing writes: /dev/full put under the trail's file by a code step,
and a small tmpfs filled to its last byte (root only, as in CI)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate.observe.audit import AuditTrail
from orchestrate.observe.audit_chain import verify_trail
from tests import cli
from tests.small_tmpfs import small_tmpfs

BREAKER = """
import os

def break_trail():
    # what a full disk does to the trail, and only to it: its writes fail with ENOSPC from here on
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.endswith("audit.jsonl"):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, int(name))
            os.close(full)
            return {"broken": True}
    raise RuntimeError("no audit trail open")
"""

SINGLE = """
name: payslips
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
agents:
  - name: first
    prompt_template: one
  - name: break
    function: "%(module)s:break_trail"
    dependencies: [first]
  - name: last
    prompt_template: three
    dependencies: [break]
"""

DATASET = """
name: payslips
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
inputs:
  n: {type: integer}
agents:
  - name: first
    prompt_template: "payslip {n}"
  - name: break
    function: "%(module)s:maybe_break"
    arguments: {n: "{n}"}
    dependencies: [first]
"""

MAYBE = """

def maybe_break(n):
    if int(n) == 40:
        return break_trail()
    return {"n": n}
"""


def orchestrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, columns=200, env=env)


def test_a_trail_that_fails_mid_run_stops_it_with_one_line_and_verifies_up_to_its_last_record(tmp_path: Path) -> None:
    module = f"breaker_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(BREAKER)
    (tmp_path / "single.yaml").write_text(SINGLE % {"module": module})
    env = {"ORCHESTRATE_AUDIT_KEY": "k-1"}
    proc = orchestrate("run", "single.yaml", "--simulate", "-o", "out", "--no-progress", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "audit.jsonl: No space left on device" in errors[0]
    assert "no call was started after it" in errors[0]
    assert "Traceback" not in proc.stderr
    trail = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert [r["type"] for r in trail] == ["run_started", "call"]  # nothing after the failure, nothing torn
    assert not any(r.get("agent") == "last" for r in trail)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["audit"]["seq"] == 1 and result["audit"]["hash"] == trail[-1]["hash"]
    verify = orchestrate("audit", "verify", str(run_dir), cwd=tmp_path, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_dataset_runs_trail_failing_mid_run_stops_the_rows_and_verifies(tmp_path: Path) -> None:
    module = f"breaker_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(BREAKER + MAYBE)
    (tmp_path / "rows.yaml").write_text(DATASET % {"module": module})
    rows = 400
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(rows)))
    env = {"ORCHESTRATE_AUDIT_KEY": "k-2"}
    proc = orchestrate(
        "run", "rows.yaml", "--simulate", "--data", "rows.jsonl", "--max-rows-parallel", "4", "-o", "out",
        "--no-progress", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    finished = (run_dir / "results.jsonl").read_text().count("\n")
    assert finished < rows  # it stopped
    verify = orchestrate("audit", "verify", str(run_dir), cwd=tmp_path, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    result = json.loads((run_dir / "result.json").read_text())
    records = (run_dir / "audit.jsonl").read_text().splitlines()
    assert result["audit"]["seq"] == len(records) - 1
    assert result["audit"]["hash"] == json.loads(records[-1])["hash"]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB tmpfs, mounted for the test (root only, as in CI)."""
    with small_tmpfs(tmp_path, "64k") as mount:
        yield mount


def test_a_trail_filling_its_disk_leaves_no_torn_record_and_its_head_is_its_last_record(tmpfs: Path) -> None:
    told: list[str] = []
    run_dir = tmpfs / "run"
    run_dir.mkdir()
    trail = AuditTrail(run_dir, start={"kind": "run"}, key=b"k", on_failure=told.append)
    n = 0
    while trail.failed is None and n < 100_000:  # a record a few hundred bytes long, until the disk is full
        trail.record("call", {"n": n, "note": "x" * (200 + n % 97)})
        n += 1
    assert told == [f"{run_dir / 'audit.jsonl'}: No space left on device"]
    raw = (run_dir / "audit.jsonl").read_bytes()
    assert raw.endswith(b"\n")  # the record cut short by the full disk was taken back
    records = [json.loads(line) for line in raw.splitlines()]
    assert len(records) > 10
    report = verify_trail(run_dir, key=b"k", heads=[("result.json", trail.head)])
    assert report.holds, report.problems
    assert trail.head["seq"] == records[-1]["seq"] and trail.head["hash"] == records[-1]["hash"]
