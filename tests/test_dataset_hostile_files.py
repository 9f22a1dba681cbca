"""Hostile data files and run folders: a CSV error spoils one row, not the rest; a 1 GB line, a
device or a named pipe is refused (or, for `--data <(...)`, read) without hanging or filling memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate.errors import UserInputError
from orchestrate.workflow.dataset import BadRow, Dataset, Row
from orchestrate.workflow.loader import load_workflow_text
from tests.cli import orchestrate

MAX_LINE_BYTES = 8 << 20  # the dataset line cap (orchestrate.workflow.dataset.MAX_LINE_BYTES)

WORKFLOW = """\
name: vendor_check
description: check vendors
inputs:
  vendor: {type: string}
  spend: {type: number, default: 0}
defaults:
  module: Compliance
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 50}
agents:
  - name: screen
    prompt_template: Screen {vendor} spending {spend}
"""


def dataset(path: Path) -> Dataset:
    wf = load_workflow_text(WORKFLOW, bind=False)
    return Dataset(path, workflow_name=wf.name, declared=wf.inputs)


def summary(items: list[Row | BadRow]) -> list[tuple[int, str]]:
    return [(i.line, i.values["vendor"] if isinstance(i, Row) else "BAD") for i in items]


def test_a_csv_syntax_error_spoils_only_its_own_row(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text('vendor,spend\nAcme,1\n"Bolt"x,2\nCog,3\nDyn,4\n')
    items = list(dataset(path))
    assert summary(items) == [(2, "Acme"), (3, "BAD"), (4, "Cog"), (5, "Dyn")]
    bad = items[1]
    assert isinstance(bad, BadRow) and bad.reason.startswith("not valid CSV:") and "went on at line 4" in bad.reason


def test_an_unclosed_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text('vendor,spend\nAcme,1\n"Bolt,2\nCog,3\nDyn,4\n')
    assert summary(list(dataset(path))) == [(2, "Acme"), (3, "BAD"), (4, "Cog"), (5, "Dyn")]


def test_a_cell_over_the_csv_field_limit_spoils_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(f"vendor,spend\nAcme,1\n{'x' * 200_000},2\nCog,3\n")
    items = list(dataset(path))
    assert summary(items) == [(2, "Acme"), (3, "BAD"), (4, "Cog")]
    assert "field larger than field limit" in items[1].reason  # type: ignore[union-attr]


def write_workflow(tmp_path: Path) -> Path:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    return wf


def results(run_dir: Path) -> dict[str, str]:
    lines = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines() if x.strip()]
    return {line["key"].split("-")[0]: line["status"] for line in lines}


def test_a_dataset_run_with_a_bad_csv_row_runs_every_later_row(tmp_path: Path) -> None:
    write_workflow(tmp_path)
    (tmp_path / "v.csv").write_text('vendor,spend\nAcme,1\n"Bolt"x,2\nCog,3\nDyn,4\n')
    refused = orchestrate("run", "wf.yaml", "--data", "v.csv", "--simulate", "--output-dir", "runs", cwd=tmp_path)
    assert refused.returncode == 2 and "v.csv:3:1: not valid CSV" in refused.stderr, refused.stderr
    done = orchestrate(
        "run", "wf.yaml", "--data", "v.csv", "--skip-invalid-rows", "--simulate", "--output-dir", "runs", cwd=tmp_path
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert results(run_dir) == {"2": "completed", "3": "invalid", "4": "completed", "5": "completed"}, done.stderr


def test_a_one_gigabyte_line_is_refused_at_its_line_in_bounded_memory(tmp_path: Path) -> None:
    write_workflow(tmp_path)
    path = tmp_path / "v.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"vendor": "Acme"}\n{"vendor": "')
        handle.truncate(1 << 30)  # a sparse 1 GB file: the second line never ends
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = orchestrate("run", "wf.yaml", "--data", "v.jsonl", "--simulate", "--output-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2
    assert f"v.jsonl:2:1: line longer than {MAX_LINE_BYTES:,} bytes" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib == before or peak_kib < 400 * 1024  # the 1 GB line was never held
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_long_line_in_a_csv_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    with open(path, "wb") as handle:
        handle.write(b"vendor,spend\nAcme,1\nBolt,")
        handle.truncate(MAX_LINE_BYTES * 3)
    with pytest.raises(UserInputError, match=r"v.csv:3:1: line longer than"):
        list(dataset(path))


@pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution needs bash")
def test_data_from_a_process_substitution_is_read(tmp_path: Path) -> None:
    write_workflow(tmp_path)
    (tmp_path / "v.jsonl").write_text('{"vendor": "Acme"}\n{"vendor": "Bolt"}\n')
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["CI"] = "true"
    command = f"{sys.executable} -m orchestrate run wf.yaml --data <(cat v.jsonl) --simulate --output-dir runs"
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(results(run_dir).values()) == ["completed", "completed"]


def test_a_device_as_data_is_refused(tmp_path: Path) -> None:
    write_workflow(tmp_path)
    done = orchestrate("run", "wf.yaml", "--data", "/dev/zero", "--simulate", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "/dev/zero: not a dataset file (a device or special file)" in done.stderr


@pytest.mark.parametrize("dataset_run", [False, True], ids=["workflow run", "dataset run"])
@pytest.mark.parametrize("swap", ["fifo", "dev-zero"])
def test_a_pipe_or_device_in_a_run_folder_is_refused_on_resume(tmp_path: Path, swap: str, dataset_run: bool) -> None:
    write_workflow(tmp_path)
    (tmp_path / "v.jsonl").write_text('{"vendor": "Acme"}\n')
    data = ["--data", "v.jsonl"] if dataset_run else ["--input", "vendor=Acme"]
    first = orchestrate("run", "wf.yaml", *data, "--simulate", "--output-dir", "runs", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = run_dir / "events.jsonl"
    events.unlink()
    if swap == "fifo":
        os.mkfifo(events)
    else:
        events.symlink_to("/dev/zero")
    done = orchestrate("run", "--resume", str(run_dir), cwd=tmp_path, timeout=60)
    what = "a named pipe" if swap == "fifo" else "a device"
    assert done.returncode == 2, done.stderr
    assert f"{events} is {what}" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["show", "report"])
def test_a_named_pipe_as_result_json_is_refused_by_the_readers_of_a_run_folder(tmp_path: Path, command: str) -> None:
    write_workflow(tmp_path)
    first = orchestrate("run", "wf.yaml", "--input", "vendor=Acme", "--simulate", "--output-dir", "runs", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (run_dir / "result.json").unlink()
    os.mkfifo(run_dir / "result.json")
    done = orchestrate(command, str(run_dir), cwd=tmp_path, timeout=60)  # waited forever before
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("row", ['{"vendor": "\\ud800"}', '{"\\udfff": "x", "vendor": "V"}'])
def test_a_lone_surrogate_escape_is_a_bad_row_not_a_crash(tmp_path: Path, row: str) -> None:
    (tmp_path / "v.jsonl").write_text('{"vendor": "Acme"}\n' + row + '\n{"vendor": "\\ud83d\\ude00 Bolt"}\n')
    rows = list(dataset(tmp_path / "v.jsonl"))
    assert isinstance(rows[0], Row) and isinstance(rows[2], Row) and rows[2].values["vendor"] == "\U0001f600 Bolt"
    assert isinstance(rows[1], BadRow) and rows[1].line == 2 and "lone UTF-16 surrogate" in rows[1].reason
    write_workflow(tmp_path)
    done = orchestrate(
        "run", "wf.yaml", "--data", "v.jsonl", "--skip-invalid-rows", "--simulate", "--output-dir", "runs", cwd=tmp_path
    )
    # 3: partially completed (a skipped invalid row is not a completed one)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(results(run_dir).values()) == ["completed", "completed", "invalid"]
