"""Files under hostile input: endless streams, report paths that cannot be written, symlinks,
special files, the umask, non-UTF-8 summaries, and names that hide a newline."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate.fsutil import atomic_write_text
from tests.hostile.helpers import assert_clean_failure, orchestrate, workflow_file


def test_an_endless_stream_as_workflow_file_is_refused_within_the_limit(tmp_path: Path) -> None:
    done = orchestrate("validate", "/dev/zero", cwd=tmp_path, timeout=60)
    assert_clean_failure(done, 2, "/dev/zero:1:1: file is over 5,242,880 bytes; the limit is 5,242,880")
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrate", "validate", "/dev/stdin"],
            stdin=yes.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "CI": "true"},
        )
    finally:
        yes.kill()
        yes.wait()
        assert yes.stdout is not None
        yes.stdout.close()
    assert_clean_failure(done, 2, "/dev/stdin:1:1: file is over")


def test_an_endless_inputs_file_is_refused(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "--inputs", "/dev/zero", "-o", "r", cwd=tmp_path, timeout=60)
    assert_clean_failure(done, 2, "/dev/zero: inputs file is over")


@pytest.mark.parametrize("flag", ["--junit", "--summary"])
def test_a_report_path_that_cannot_be_written_is_refused_before_the_first_call(tmp_path: Path, flag: str) -> None:
    path = workflow_file(tmp_path)
    (tmp_path / "adir").mkdir()
    done = orchestrate("run", str(path), "--simulate", flag, "adir", "-o", "runs", "--json", cwd=tmp_path)
    assert_clean_failure(done, 2, f"error: {flag} adir: is a folder, not a file")
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was paid
    (tmp_path / "afile").write_text("x")
    done = orchestrate("run", str(path), "--simulate", flag, "afile/report", "-o", "runs", cwd=tmp_path)
    assert_clean_failure(done, 2, f"{flag} afile/report: afile is not a folder")


def test_a_cache_that_is_not_a_folder_is_refused_before_the_first_call(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    (tmp_path / "cache").write_text("not a folder")
    done = orchestrate("run", str(path), "--simulate", "--cache", "cache", "-o", "runs", cwd=tmp_path)
    assert_clean_failure(done, 2, "--cache cache: is a file, not a folder")
    assert not (tmp_path / "runs").exists()


def test_reports_are_written_through_symlinks(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    real = tmp_path / "real.xml"
    real.write_text("old")
    (tmp_path / "link.xml").symlink_to(real)
    done = orchestrate("run", str(path), "--simulate", "--junit", "link.xml", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.xml").is_symlink()
    assert real.read_text().startswith("<?xml")


def test_special_files_are_written_in_place_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    atomic_write_text(fifo, "through the pipe\n")
    out, _ = reader.communicate(timeout=10)
    assert out == b"through the pipe\n"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_new_reports_honour_the_umask_and_old_ones_keep_their_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600
        os.chmod(tmp_path / "new.json", 0o640)
        atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640
    finally:
        os.umask(old)


def test_every_report_of_a_run_honours_the_umask(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    done = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 022 && exec {sys.executable} -m orchestrate run {path} --simulate "
            "-o runs --junit j.xml --summary s.md",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
    )
    assert done.returncode == 0, done.stderr
    files = [*(tmp_path / "runs").rglob("*.json"), tmp_path / "j.xml", tmp_path / "s.md"]
    assert files and all(stat.S_IMODE(os.stat(f).st_mode) == 0o644 for f in files), {
        str(f): oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files
    }


def test_a_summary_appended_to_a_non_utf8_file_keeps_its_bytes(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"caf\xe9 \xff\n")
    done = orchestrate("run", str(path), "--simulate", "--summary", "summary.md", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    data = summary.read_bytes()
    assert data.startswith(b"caf\xe9 \xff\n") and b"## hostile: completed" in data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "name",
            "x\n",
            ":1:7: name: 'x\\n' is not a valid workflow name (start with a letter or digit; then "
            "letters, digits, '_', '.', '-' or spaces; one line)",
        ),
        (
            "agent",
            "a\n",
            ":3:11: name: 'a\\n' is not a valid name (start with a letter; then letters, digits, '_' or '-')",
        ),
    ],
)
def test_names_with_a_trailing_newline_are_refused(tmp_path: Path, field: str, value: str, message: str) -> None:
    path = tmp_path / "wf.yaml"
    workflow_name = '"x\\n"' if field == "name" else "x"
    agent_name = '"a\\n"' if field == "agent" else "a"
    path.write_text(
        f"name: {workflow_name}\nagents:\n  - name: {agent_name}\n    module: Finance\n"
        "    llm_config: {model: gpt-4o-mini}\n    prompt_template: hi\n"
    )
    done = orchestrate("validate", str(path), cwd=tmp_path)
    assert_clean_failure(done, 2, message)


def test_a_dataset_run_checks_its_report_paths_before_the_first_row(tmp_path: Path) -> None:
    path = workflow_file(
        tmp_path,
        inputs={"x": {"type": "string"}},
        agents=[
            {
                "name": "a",
                "module": "Finance",
                "prompt_template": "Row {x}",
                "llm_config": {"model": "gpt-4o-mini", "max_tokens": 20},
            }
        ],
    )
    (tmp_path / "rows.jsonl").write_text('{"x": "1"}\n{"x": "2"}\n')
    (tmp_path / "adir").mkdir()
    done = orchestrate(
        "run", str(path), "--data", "rows.jsonl", "--simulate", "--summary", "adir", "-o", "runs", cwd=tmp_path
    )
    assert_clean_failure(done, 2, "--summary adir: is a folder, not a file")
    assert not (tmp_path / "runs").exists()
