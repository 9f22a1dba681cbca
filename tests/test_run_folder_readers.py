"""Every command that reads a run folder reads its files as regular files: a named pipe planted in
place of one (or a symlink to a pipe) is refused in one line, exit 2, never waited on forever; before,
`show`, `report`, `merge` and `audit verify` hung on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli import orchestrate

WORKFLOW = """\
name: vendor_check
description: check vendors
inputs:
  vendor: {type: string}
defaults:
  module: Compliance
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 50}
agents:
  - name: screen
    prompt_template: Screen {vendor}
"""
WAIT = 90  # seconds: each command ends in a few; a reader waiting on the pipe never would


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset run split in two shards, run once for the module (copied by each test)."""
    base = tmp_path_factory.mktemp("runs")
    (base / "wf.yaml").write_text(WORKFLOW)
    (base / "v.jsonl").write_text("".join(f'{{"vendor": "V{i}"}}\n' for i in range(4)))
    for shard in ("1/2", "2/2"):
        done = orchestrate(
            "run", "wf.yaml", "--data", "v.jsonl", "--shard", shard, "--simulate", "-o", "runs", cwd=base
        )
        assert done.returncode == 0, done.stderr
    return base


def planted(tmp_path: Path, folders: Path, name: str, how: str) -> tuple[Path, Path]:
    """The two shard folders, copied, the first with a pipe (or a link to one) in place of `name`."""
    shutil.copytree(folders / "runs", tmp_path / "runs")
    first, second = sorted((tmp_path / "runs").iterdir())
    (first / name).unlink(missing_ok=True)
    if how == "fifo":
        os.mkfifo(first / name)
    else:
        os.mkfifo(tmp_path / "elsewhere")
        (first / name).symlink_to(tmp_path / "elsewhere")
    return first, second


def refused(done: object, name: str) -> None:
    import subprocess

    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"/{name}: " in done.stderr and "not a regular file (a named pipe)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("how", ["fifo", "symlink"])
@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("show", "results.jsonl"),
        ("show-csv", "rows.jsonl"),
        ("show", "batches.json"),
        ("report", "results.jsonl"),
        ("merge", "results.jsonl"),
        ("audit-verify", "result.json"),
    ],
)
def test_a_pipe_in_a_run_folder_is_refused_by_its_readers(
    tmp_path: Path, folders: Path, command: str, name: str, how: str
) -> None:
    first, second = planted(tmp_path, folders, name, how)
    args = {
        "show": ["show", str(first)],
        "show-csv": ["show", str(first), "--format", "csv"],
        "report": ["report", str(first), "-o", str(tmp_path / "r.html")],
        "merge": ["merge", str(first), str(second), "-o", str(tmp_path / "merged")],
        "audit-verify": ["audit", "verify", str(first)],
    }[command]
    refused(orchestrate(*args, cwd=tmp_path, timeout=WAIT), name)


@pytest.mark.parametrize("how", ["fifo", "symlink"])
def test_cost_report_over_a_folder_names_a_pipe_as_cost_json_and_counts_the_rest(
    tmp_path: Path, folders: Path, how: str
) -> None:
    first, second = planted(tmp_path, folders, "cost.json", how)
    done = orchestrate("cost-report", str(tmp_path / "runs"), "--include-simulated", "--format", "json",
                       cwd=tmp_path, timeout=WAIT)  # fmt: skip
    assert done.returncode == 0, done.stderr  # waited on the pipe forever before
    assert f"{first}/cost.json: cannot read: not a regular file (a named pipe)" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_approve_refuses_a_pipe_planted_as_the_events_journal(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "workflows", tmp_path / "workflows")
    waiting = orchestrate("run", "workflows/finance_month_end_close.yaml", "--input", "post_to_ledger=true",
                          "--simulate", "-o", "runs", cwd=tmp_path)  # fmt: skip
    assert waiting.returncode == 4, waiting.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (run_dir / "events.jsonl").unlink()
    os.mkfifo(run_dir / "events.jsonl")
    done = orchestrate("approve", str(run_dir), "post_adjustments", "--by", "controller", cwd=tmp_path, timeout=WAIT)
    assert done.returncode == 2, done.stderr  # the decision's event was appended to the pipe: waited forever
    assert f"{run_dir}/events.jsonl is a named pipe" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "approvals.json").exists()  # refused before anything was recorded


def test_eval_reads_rows_holding_a_unicode_line_separator(tmp_path: Path) -> None:
    # Journals are read a line at a time from the file: str.splitlines() also split at U+2028,
    # which the journals write raw inside strings, and eval called the row "not valid JSON".
    (tmp_path / "wf.yaml").write_text(WORKFLOW + "    expect:\n      - contains: Screen\n")
    (tmp_path / "u.jsonl").write_text('{"vendor": "Acme\\u2028Ltd"}\n{"vendor": "Bolt"}\n')
    done = orchestrate("run", "wf.yaml", "--data", "u.jsonl", "--simulate", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "\u2028" in (run_dir / "rows.jsonl").read_text()
    scored = orchestrate("eval", str(run_dir), cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert "expectations: 2/2 passed" in scored.stdout + scored.stderr
