"""A dataset run whose rows came from a pipe (`--data <(...)`) or standard input (`--data -`) can be
resumed: the run folder keeps a copy of the rows (`data.copy`), and the resume reads them there. When
no copy is kept (a data-protection policy, or a folder from an older version), the resume says in one
line to give the rows again, and takes them with `--data FILE`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
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
ROWS = "".join(f'{{"vendor": "V{i}"}}\n' for i in range(4))
TOO_SMALL = "0.00005"  # refuses every row: the first session runs none, the resume all

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution needs bash")


def folder(tmp_path: Path) -> Path:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "v.jsonl").write_text(ROWS)
    return tmp_path


def through_bash(tmp_path: Path, arguments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["CI"] = "true"
    return subprocess.run(
        ["bash", "-c", f"{sys.executable} -m orchestrate {arguments}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def statuses(run_dir: Path) -> list[str]:
    last: dict[str, str] = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            last[row["key"]] = row["status"]
    return sorted(last.values())


def the_run(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


@needs_bash
def test_a_run_over_a_process_substitution_resumes_from_the_copy_it_kept(tmp_path: Path) -> None:
    folder(tmp_path)
    first = through_bash(tmp_path, f"run wf.yaml --data <(cat v.jsonl) --simulate -o runs --budget {TOO_SMALL}")
    assert first.returncode == 1, first.stderr
    run_dir = the_run(tmp_path)
    assert statuses(run_dir) == ["budget_exceeded"] * 4
    assert (run_dir / "data.copy").read_text() == ROWS
    dataset = json.loads((run_dir / "invocation.json").read_text())["dataset"]
    assert dataset["data"].startswith("/dev/fd/") and dataset["data_copy"] == "data.copy"
    assert dataset["data_digest"] == "sha256:" + hashlib.sha256(ROWS.encode()).hexdigest()
    assert not list(run_dir.glob(".data.copy.*"))  # written through a temporary file, renamed

    resumed = orchestrate("run", "--resume", str(run_dir), "--budget", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # was: "/dev/fd/63: no such dataset file", exit 2
    assert statuses(run_dir) == ["completed"] * 4
    assert json.loads((run_dir / "result.json").read_text())["data"] == dataset["data"]  # named as given


def test_a_run_over_standard_input_resumes_from_the_copy_it_kept(tmp_path: Path) -> None:
    folder(tmp_path)
    first = orchestrate("run", "wf.yaml", "--data", "-", "--simulate", "-o", "runs", "--budget", TOO_SMALL,
                        cwd=tmp_path, stdin=ROWS)  # fmt: skip
    assert first.returncode == 1, first.stderr
    run_dir = the_run(tmp_path)
    assert (run_dir / "data.copy").read_text() == ROWS
    resumed = orchestrate("run", "--resume", str(run_dir), "--budget", "1", cwd=tmp_path)  # stdin: nothing now
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(run_dir) == ["completed"] * 4


@needs_bash
@pytest.mark.parametrize("why", ["no content kept", "an older folder", "the copy deleted"])
def test_without_a_copy_the_resume_asks_for_the_rows_in_one_line_and_takes_them(tmp_path: Path, why: str) -> None:
    folder(tmp_path)
    no_content = " --no-content" if why == "no content kept" else ""
    first = through_bash(
        tmp_path, f"run wf.yaml --data <(cat v.jsonl) --simulate -o runs --budget {TOO_SMALL}{no_content}"
    )
    assert first.returncode == 1, first.stderr
    run_dir = the_run(tmp_path)
    if why == "no content kept":  # the rows hold what the policy keeps out of run folders
        assert not (run_dir / "data.copy").exists()
    elif why == "an older folder":  # written before copies were kept: no data_copy, no copy
        record = json.loads((run_dir / "invocation.json").read_text())
        del record["dataset"]["data_copy"]
        record["dataset"]["data_digest"] = None
        (run_dir / "invocation.json").write_text(json.dumps(record))
        (run_dir / "data.copy").unlink()
    else:
        (run_dir / "data.copy").unlink()

    refused = orchestrate("run", "--resume", str(run_dir), "--budget", "1", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert f"give them again: orchestrate run --resume {run_dir} --data FILE" in line, line
    assert "Traceback" not in refused.stderr

    resumed = orchestrate("run", "--resume", str(run_dir), "--budget", "1", "--data", "v.jsonl", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(run_dir) == ["completed"] * 4
    assert json.loads((run_dir / "invocation.json").read_text())["dataset"]["data"] == "v.jsonl"


def test_a_run_over_a_file_keeps_no_copy_and_its_data_may_not_change_on_resume(tmp_path: Path) -> None:
    folder(tmp_path)
    (tmp_path / "w.jsonl").write_text(ROWS)
    first = orchestrate("run", "wf.yaml", "--data", "v.jsonl", "--simulate", "-o", "runs", "--budget", TOO_SMALL,
                        cwd=tmp_path)  # fmt: skip
    assert first.returncode == 1, first.stderr
    run_dir = the_run(tmp_path)
    assert not (run_dir / "data.copy").exists()
    refused = orchestrate("run", "--resume", str(run_dir), "--data", "w.jsonl", cwd=tmp_path)
    assert refused.returncode == 2 and "--data w.jsonl (the run has v.jsonl)" in refused.stderr, refused.stderr


@needs_bash
def test_rows_piped_again_on_resume_are_the_rows_and_replace_the_copy(tmp_path: Path) -> None:
    folder(tmp_path)
    first = through_bash(tmp_path, f"run wf.yaml --data <(cat v.jsonl) --simulate -o runs --budget {TOO_SMALL}")
    assert first.returncode == 1, first.stderr
    run_dir = the_run(tmp_path)
    more = ROWS + '{"vendor": "V9"}\n'
    (tmp_path / "w.jsonl").write_text(more)
    again = through_bash(tmp_path, f"run --resume {run_dir} --data <(cat w.jsonl) --budget 1")
    assert again.returncode == 0, again.stderr  # a pipe then, a pipe now: no "--data would change the run"
    assert statuses(run_dir) == ["completed"] * 5
    assert (run_dir / "data.copy").read_text() == more  # what a later resume reads
