"""``events.jsonl``: every event of a run, one JSON object a line, for post-mortems and resume.

The log is a sink writing a `JsonLines` journal. In a single run each event
is written at once, and the events that record an agent's or a workflow's end
are also fsynced, so a ``kill -9`` (or a power cut) loses at most the calls in
flight, never a finished, paid-for result. In a batch the log joins the
batch's group commit (see `orchestrate.observe.journal`). A line cut short by
a crash is skipped when the log is read back.

With ``--repeat K`` every try of a case is journaled: each line of a try's run
carries ``"try": n`` (1 for the first; a dataset row's ``row_started`` and
``row_finished`` are the case's, and carry none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from orchestrate.fsutil import open_regular, read_lines_capped
from orchestrate.jsonline import MAX_JOURNAL_LINE_BYTES, json_line
from orchestrate.observe.journal import GroupCommit, JsonLines
from orchestrate.run.events import Event, EventType, try_of

__all__ = ["EventLog", "read_events"]

_DURABLE = frozenset({EventType.AGENT_FINISHED, EventType.WORKFLOW_FINISHED})
_CASE_EVENTS = frozenset({EventType.ROW_STARTED.value, EventType.ROW_FINISHED.value})  # a row's, over its tries


class EventLog:
    """Append every event it receives to a JSON-lines file."""

    def __init__(
        self,
        path: Path | str,
        *,
        sync_interval: float = 0.0,
        exclude: Collection[EventType] = (),
        clock: Callable[[], float] = time.monotonic,
        commit: GroupCommit | None = None,
        on_error: Callable[[str], None] | None = None,
        redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        tries: bool = False,
    ) -> None:
        """Open (append to) `path`.

        Without a `sync_interval`, every event is written at once and the end
        of an agent or a workflow is fsynced. With one (a batch of thousands
        of rows), the file is fsynced at most that often, and with a `commit`
        the lines wait for the end of the event loop's turn. Events of a type
        in `exclude` are not written (a batch journals its calls in
        calls.jsonl rather than as ``llm_call`` events too). `on_error` is told
        when the file cannot be written (see `JsonLines`). `redact` rewrites
        each record before it is written (content withheld by a data-protection policy).
        With `tries` (``--repeat K``), each line says which try of its case it is (``"try"``).
        """
        self.redact = _numbered(redact) if tries else redact  # each event's path is as it was without
        self.exclude = frozenset(exclude)
        self.event_types = frozenset(EventType) - self.exclude  # the engine then skips the others
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._journal: JsonLines | None = JsonLines(
            self.path, sync_interval=sync_interval, clock=clock, commit=commit, on_error=on_error
        )
        self._sync_each_end = not sync_interval

    def __call__(self, event: Event) -> None:
        journal = self._journal
        if journal is None or event.type in self.exclude:
            return
        record = event.to_dict()
        if self.redact is not None:
            record = self.redact(record)
        journal.write_line(json_line(record))  # never NaN or Infinity: strict readers refuse them
        if self._sync_each_end and event.type in _DURABLE:
            journal.sync()

    def close(self) -> None:
        """Write what is pending, fsync and close the file; later events are dropped."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()


def _numbered(
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`redact` (if any) after giving a record of a try's run its try number (``--repeat K``)."""

    def number(record: dict[str, Any]) -> dict[str, Any]:
        run = record.get("workflow_id")
        if run is not None and record.get("type") not in _CASE_EVENTS:
            record["try"] = try_of(run)  # the record is the log's own (`Event.to_dict`), made for this line
        return redact(record) if redact is not None else record

    return number


def read_events(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield the events of a log in order, skipping a torn last line or any line that does not parse."""
    with open_regular(path) as handle:  # a named pipe or a device in a run folder is refused, not waited on
        for raw in read_lines_capped(handle, path, MAX_JOURNAL_LINE_BYTES, skip_long=True):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
