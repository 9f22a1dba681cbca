"""Ctrl-C while `orchestrate run` asks for an approval in a terminal: the run stops as on any
Ctrl-C (the two-line notice on a line of its own, the cursor shown, exit 130, nothing left waiting
on the keyboard) and can be resumed."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.cli import orchestrate

HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"

FLOW = """\
name: month_close
defaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 20, provider: simulated}}
agents:
  - name: adjustments
    prompt_template: Work out the adjustments.
  - name: post_adjustments
    dependencies: [adjustments]
    prompt_template: Post them.
    approval: {message: "Post the adjustments to the ledger?"}
"""


def _read(fd: int, out: list[str], until: float, needle: str | None = None) -> None:
    while time.monotonic() < until and (needle is None or needle not in "".join(out)):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            out.append(chunk.decode("utf-8", "replace"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_ctrl_c_at_the_approval_prompt_stops_the_run_cleanly_and_it_resumes(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(FLOW)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR") and not k.endswith("_API_KEY")}
    env.update(TERM="xterm-256color", COLUMNS="80", LINES="30", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", "close.yaml", "-o", "runs"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    out: list[str] = []
    try:
        _read(master, out, time.monotonic() + 60, "[y/N]: ")
        assert "[y/N]: " in "".join(out), "".join(out)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:  # never waits for a key to be pressed
            _read(master, out, time.monotonic() + 0.2)
        _read(master, out, time.monotonic() + 0.5)
        code = proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    screen = "".join(out)
    assert code == 130, screen
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.replace("\r", "")).split("\n")
    at = next(i for i, line in enumerate(lines) if "received SIGINT" in line)
    assert lines[at] == "received SIGINT: cancelling in-flight calls and writing reports", lines[at - 1 : at + 2]
    assert lines[at + 1] == "  press Ctrl-C again to exit at once", lines[at : at + 2]
    assert screen.rfind(SHOW) > screen.rfind(HIDE), "cursor left hidden"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"--resume {run_dir.relative_to(tmp_path)}" in "".join(lines[at:]).replace("\n", ""), screen
    result = json.loads((run_dir / "result.json").read_text())
    assert {a["name"]: a["status"] for a in result["agents"]}["adjustments"] == "completed", result
    resumed = orchestrate("run", "--resume", str(run_dir), "--approve-all", cwd=tmp_path, ci=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reused 1 agent" in resumed.stdout, resumed.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_an_answer_typed_at_the_prompt_is_read_and_decides(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(FLOW)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR") and not k.endswith("_API_KEY")}
    env.update(TERM="xterm-256color", COLUMNS="80", LINES="30", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", "close.yaml", "-o", "runs", "--approver", "controller"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    out: list[str] = []
    try:
        _read(master, out, time.monotonic() + 60, "[y/N]: ")
        os.write(master, b"yes\n")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            _read(master, out, time.monotonic() + 0.2)
        code = proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 0, "".join(out)
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert {a["name"]: a["status"] for a in result["agents"]} == {
        "adjustments": "completed",
        "post_adjustments": "completed",
    }, result
