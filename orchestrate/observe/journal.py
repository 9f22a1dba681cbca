"""Append-only JSON-lines journals, and the group commit that writes a batch's journals together.

A `JsonLines` file is written whole lines at a time, with ``os.write`` on a
file opened for appending, so a ``kill -9`` leaves every line but at most a
torn last one, which readers skip and the next session ends with a newline.
It is fsynced every `sync_interval` seconds and when closed: a kill loses
nothing that was written, a power cut at most the last interval.

At volume (`orchestrate run --data`), a write system call per line was a
third of the engine's time per call. A `GroupCommit` instead collects the
lines made during one turn of the event loop and writes each journal's lines
with one call at the end of that turn, the journals always in the order they
joined it (a batch joins calls.jsonl first, then events.jsonl, rows.jsonl and
results.jsonl, so a row's calls are on disk before the line that says it
finished). What a kill can lose is therefore what finished during the turn it
struck: results not yet written, as a call in flight is not. Closing a
journal, or `GroupCommit.flush()`, writes whatever is pending at once.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrate.jsonline import json_line

__all__ = ["GroupCommit", "JsonLines"]


class GroupCommit:
    """Writes the lines its journals collected during one turn of the event loop, at its end.

    `on_error` is what each of its journals tells when it cannot be written (see `JsonLines`).
    """

    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        self.journals: list[JsonLines] = []  # written in this order
        self.on_error = on_error
        self._scheduled = False

    def join(self, journal: JsonLines) -> None:
        self.journals.append(journal)

    def touch(self) -> None:
        """A journal has lines pending: write them at the end of this turn (at once, outside a loop)."""
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every journal's pending lines now, in order."""
        self._scheduled = False
        for journal in self.journals:
            journal.drain()


class JsonLines:
    """An append-only JSON-lines file: whole lines, fsynced now and then (see the module docstring).

    Args:
        path: The file, created if missing, appended to if not.
        sync_interval: Seconds between fsyncs (0: only when closed or asked to `sync`).
        clock: Monotonic seconds.
        commit: Hold lines until the end of the event loop's turn and write them
            with the commit's other journals; None writes each line at once.
        on_error: Told ``"PATH: error"`` once when the file cannot be written (a full
            disk, a folder made read-only or removed): the journal then stops, and
            the run it records must stop too (a journal that silently misses lines
            would let a resume pay again). Default: the commit's; without either the
            OSError is raised.
    """

    def __init__(
        self,
        path: Path,
        *,
        sync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        commit: GroupCommit | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.sync_interval = sync_interval
        self.clock = clock
        self.commit = commit
        self.on_error = on_error
        self.failure: str | None = None  # why the journal stopped, once it could not be written
        self._pending: list[bytes] = []
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)  # less the umask
        self._size = os.fstat(self._fd).st_size  # where the next write begins: a failed one is cut back to it
        if self._size > 0 and not _ends_with_newline(self.path):
            self._size += os.write(self._fd, b"\n")  # end a line torn by a kill, so the next one stands alone
        self._synced = clock()
        if commit is not None:
            commit.join(self)

    def write(self, document: Mapping[str, Any]) -> None:
        """Append `document` as one line."""
        self.write_line(json_line(document))

    def write_line(self, line: bytes) -> None:
        """Append one encoded line (newline included)."""
        if self._fd is None:
            return
        commit = self.commit
        if commit is not None:
            self._pending.append(line)
            if not commit._scheduled:  # the first line of this turn of the loop
                commit.touch()
            return
        self._write(line)

    def drain(self) -> None:
        """Write the lines held for the group commit."""
        if self._pending and self._fd is not None:
            data, self._pending = b"".join(self._pending), []
            self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._cut_back(len(data))
            self._fail(exc)
            return
        self._size += len(data)
        if self.sync_interval and self.clock() - self._synced >= self.sync_interval:
            self.sync()

    def _cut_back(self, tried: int) -> None:
        """Take back what a failed write of `tried` bytes left (a full disk takes part of a
        line): the file then ends with its last whole line, as it was before the write."""
        assert self._fd is not None
        try:
            if self._size < os.fstat(self._fd).st_size <= self._size + tried:  # only our own bytes
                os.ftruncate(self._fd, self._size)
        except OSError:
            pass  # not a file that can be cut (a device), or already gone: readers skip a torn line

    def sync(self) -> None:
        """Write what is pending and fsync."""
        if self._fd is not None:
            self.drain()
        if self._fd is not None:
            try:
                os.fsync(self._fd)
                self._check_still_there()
            except OSError as exc:
                self._fail(exc)
                return
            self._synced = self.clock()

    def _check_still_there(self) -> None:
        """Writes to a file whose folder was removed (or that was replaced) succeed and are lost:
        at each fsync, the path must still name the file written."""
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "removed while the run was writing it") from None
        if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            raise FileNotFoundError(errno.ENOENT, "replaced by another file while the run was writing it")

    def close(self) -> None:
        """Write what is pending, fsync and close; later lines are dropped."""
        if self._fd is None:
            return
        self.drain()
        if self._fd is None:  # the last lines failed: closed already
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fd = fd
            self._fail(exc)
            return
        os.close(fd)

    def _fail(self, exc: OSError) -> None:
        """The file cannot be written: stop (closed, later lines dropped) and say so once."""
        fd, self._fd = self._fd, None
        self._pending = []
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        self.failure = f"{self.path}: {exc.strerror or exc}"
        tell = self.on_error or (self.commit.on_error if self.commit is not None else None)
        if tell is None:
            raise exc
        tell(self.failure)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"
