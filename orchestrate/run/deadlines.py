"""The deadlines of every agent and workflow an engine runs, on one timer.

An agent's `timeout` and a workflow's `timeout` are deadlines kept in one heap
of plain tuples, with one event-loop timer for the earliest. A timer per
agent (asyncio.timeout) was a tenth of the engine's time per agent, and even
a timer per run was a few microseconds a row in a batch: asyncio keeps its
timers in a heap ordered by a method written in Python, and a cancelled
timer stays there until the heap is rebuilt.

A run whose agents finish long before their deadlines (the usual case) leaves
its entries behind; they are skipped when they come due, and swept out in one
pass once they are more than half the heap, so memory follows the runs in
flight, not the runs ever made.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any, Protocol

__all__ = ["Deadlines", "Timed"]


class Timed(Protocol):
    """What holds deadlines: told when one passes, and whether it has ended."""

    ended: bool

    def deadline_passed(self, key: int, task: asyncio.Task[Any] | None) -> None: ...


class Deadlines:
    """A heap of ``(when, order, owner, key, task)`` and one timer for its earliest entry."""

    SWEEP_AT = 1024  # ended entries before a sweep is worth it

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timed, int, asyncio.Task[Any] | None]] = []
        self._order = 0
        self._ended = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._firing = False

    def add(
        self, loop: asyncio.AbstractEventLoop, at: float, owner: Timed, key: int, task: asyncio.Task[Any] | None
    ) -> None:
        """Tell `owner` at loop time `at` (unless it has ended by then) that `key`'s deadline passed."""
        if loop is not self._loop:  # a new event loop: what the old one held cannot fire any more
            self._heap.clear()
            self._ended = 0
            self._loop, self._timer, self._timer_at = loop, None, math.inf
        self._order += 1
        heapq.heappush(self._heap, (at, self._order, owner, key, task))
        if at < self._timer_at and not self._firing:  # _fire sets the timer when it is done
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = loop.call_at(at, self._fire), at

    def ended(self, count: int) -> None:
        """An owner has ended, leaving `count` entries behind: sweep them once they are many."""
        self._ended += count
        heap = self._heap
        if self._ended >= len(heap):  # nothing left that can come due (a lone run has ended)
            heap.clear()
            self._ended = 0
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        elif self._ended >= self.SWEEP_AT and self._ended * 2 >= len(heap):
            heap[:] = [entry for entry in heap if not entry[2].ended]
            heapq.heapify(heap)
            self._ended = 0

    def _fire(self) -> None:
        loop = self._loop
        self._timer, self._timer_at = None, math.inf
        if loop is None:
            return
        heap, now = self._heap, loop.time() + 1e-3
        self._firing = True
        try:
            while heap and heap[0][0] <= now:
                _, _, owner, key, task = heapq.heappop(heap)
                if owner.ended:
                    self._ended = max(0, self._ended - 1)
                else:
                    owner.deadline_passed(key, task)
        finally:
            self._firing = False
        if heap:
            at = heap[0][0]
            self._timer, self._timer_at = loop.call_at(at, self._fire), at
