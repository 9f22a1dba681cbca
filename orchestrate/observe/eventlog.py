"""``events.jsonl``: every event of a run, one JSON object a line, for post-mortems and resume.

The log is a sink. Each event is written and flushed at once; the events that
record an agent's or a workflow's end are also fsynced, so a ``kill -9`` (or a
power cut) loses at most the calls in flight, never a finished, paid-for
result. A line cut short by a crash is skipped when the log is read back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TextIO

from orchestrate.observe.events import Event, EventType

__all__ = ["EventLog", "read_events"]

_DURABLE = frozenset({EventType.AGENT_FINISHED, EventType.WORKFLOW_FINISHED})


class EventLog:
    """Append every event it receives to a JSON-lines file."""

    def __init__(self, path: Path | str, *, sync_interval: float = 0.0,
                 exclude: Collection[EventType] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Open (append to) `path`.

        With a `sync_interval` (a batch of thousands of rows), lines are
        written through to the OS when an agent or workflow ends, and fsynced
        at most that often; a kill loses only the events of calls in flight.
        Events of a type in `exclude` are not written (a batch journals its
        calls in calls.jsonl rather than as ``llm_call`` events too).
        """
        self.exclude = frozenset(exclude)
        self.event_types = frozenset(EventType) - self.exclude  # the engine then skips the others
        self.path = Path(path)
        self.sync_interval = sync_interval
        self.clock = clock
        self._synced = clock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write("\n")  # end a torn last line so the next event is a line of its own

    def __call__(self, event: Event) -> None:
        handle = self._file
        if handle is None or event.type in self.exclude:
            return
        try:
            line = json.dumps(event.to_dict(), default=str, separators=(",", ":"), allow_nan=False)
        except ValueError:  # never NaN or Infinity in the journal (invalid JSON for strict readers)
            from orchestrate.finite import scrub_non_finite

            line = json.dumps(scrub_non_finite(event.to_dict()), default=str, separators=(",", ":"))
        handle.write(line + "\n")
        if not self.sync_interval:
            handle.flush()
            if event.type in _DURABLE:
                os.fsync(handle.fileno())
        elif event.type in _DURABLE:
            # At volume: what leads up to an agent's end reaches the OS with it (a kill then
            # loses only the events of calls in flight), and the disk once per interval.
            handle.flush()
            if self.clock() - self._synced >= self.sync_interval:
                os.fsync(handle.fileno())
                self._synced = self.clock()

    def close(self) -> None:
        """Flush, fsync and close the file; later events are dropped."""
        handle, self._file = self._file, None
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()


def read_events(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield the events of a log in order, skipping a torn last line or any line that does not parse."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"
