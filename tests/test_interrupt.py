"""Ctrl-C in a real terminal (a pseudo-terminal): the message stays, the cursor comes back.

The run is started under a pty sized 80x30 with no CI variable, so the live
table is on; SIGINT is sent once the first frame is drawn. What the terminal
received is then checked: the cancelling message and the resume hint are
there, no frame is drawn after the message (it would overwrite it), and the
last cursor command shows the cursor (what `tput cnorm` sends).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"
CURSOR_UP = "\x1b[1A"  # rich's live display moves up over its last frame before redrawing

SLOW = """\
name: slow_close
cost_budget: 1.0
agents:
  - name: {name}
    module: Finance
    description: waits
    llm_config: {{model: gpt-4o-mini, max_tokens: 20, provider: simulated, latency: 30}}
    prompt_template: reconcile
"""


def _workflow(tmp_path: Path, agents: int = 3) -> Path:
    text = SLOW.format(name="a0")
    for i in range(1, agents):
        text += SLOW.split("agents:\n", 1)[1].format(name=f"a{i}")
    path = tmp_path / "slow.yaml"
    path.write_text(text)
    return path


def _read_until(fd: int, needle: str, buffer: list[str], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if needle in "".join(buffer):
            return True
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                return needle in "".join(buffer)
            if not chunk:
                return needle in "".join(buffer)
            buffer.append(chunk.decode("utf-8", "replace"))
    return needle in "".join(buffer)


def _run_in_pty(tmp_path: Path, signals: int) -> tuple[str, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="80", LINES="30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", str(_workflow(tmp_path)), "-o", str(tmp_path / "runs")],
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
        assert _read_until(master, "agents done", out, time.monotonic() + 60), "".join(out)
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
        _read_until(master, "\x00never\x00", out, time.monotonic() + 1.0)  # drain while it exits
        code = proc.wait(timeout=30)
        _read_until(master, "\x00never\x00", out, time.monotonic() + 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return "".join(out), code


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_ctrl_c_leaves_the_message_the_resume_hint_and_a_visible_cursor(tmp_path: Path) -> None:
    screen, code = _run_in_pty(tmp_path, signals=1)
    assert code == 130, screen
    message = screen.index("received SIGINT: cancelling")
    assert HIDE in screen[:message]  # the live table was on
    assert CURSOR_UP not in screen[message:], "a frame was drawn over the message"
    assert screen.rfind(SHOW) > screen.rfind(HIDE), "cursor left hidden"
    run_dir = next((tmp_path / "runs").iterdir())
    tail = screen[message:].replace("\r", "")
    assert "3 cancelled" in tail and "interrupted by SIGINT" in tail
    assert f"--resume {run_dir}" in tail.replace("\n", "")
