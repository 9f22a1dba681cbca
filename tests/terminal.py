"""`orchestrate ARGS` in a real terminal: a pseudo-terminal of a given size, read as it draws.

Tests of what a person sees (the live table, Ctrl-C, lines broken at the width) start the
command here rather than piped: with no CI variable and a TERM, rich draws as in a terminal.
"""

from __future__ import annotations

import fcntl
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
from types import TracebackType

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(screen: str) -> str:
    """`screen` without its escape sequences (colours, cursor moves)."""
    return ESCAPES.sub("", screen)


class Terminal:
    """`orchestrate ARGS` started in `cwd` under a pty `columns` x `lines`; stopped on leaving.

    Args:
        args: The command's arguments (after ``orchestrate``).
        cwd: Its working folder.
        columns: The terminal's width (also COLUMNS).
        lines: Its height (also LINES).
        keys: Keep the ``*_API_KEY`` variables of the test's environment (off: the tests run
            simulated, and a key would change what a missing-key message says).
    """

    def __init__(self, args: list[str], cwd: Path, *, columns: int = 80, lines: int = 30, keys: bool = False) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {
            k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR") and (keys or not k.endswith("_API_KEY"))
        }
        env.update(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(lines))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrate", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.chunks: list[bytes] = []
        self.closed = False  # the command closed its end of the terminal

    @property
    def screen(self) -> str:
        """Everything the terminal received so far, escape sequences included."""
        return b"".join(self.chunks).decode("utf-8", "replace")

    def read_until(self, needle: str | None, seconds: float) -> bool:
        """Read for up to `seconds`, until `needle` shows (None: until the command closes the terminal)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            if needle is not None and needle in self.screen:
                return True
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.chunks.append(chunk)
        return needle is not None and needle in self.screen

    def type(self, text: str) -> None:
        """Type `text` at the terminal (a line ends with ``\\n``)."""
        os.write(self.master, text.encode())

    def interrupt(self, times: int = 1) -> None:
        """Press Ctrl-C `times` times (SIGINT to the command)."""
        for _ in range(times):
            self.proc.send_signal(signal.SIGINT)

    def finish(self, seconds: float = 60) -> int:
        """Read until the command ends; its exit code."""
        self.read_until(None, seconds)
        code = self.proc.wait(timeout=30)
        self.read_until(None, 0.5)  # what it wrote as it left
        return code

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
