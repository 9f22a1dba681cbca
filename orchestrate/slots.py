"""Slots: at most N holders at once, first come first served, a free slot taken without awaiting.

`asyncio.Semaphore` can only be taken by awaiting a coroutine, which costs a
few microseconds even when a slot is free. The engine takes several per call
(calls in flight across a batch, a provider's concurrent requests), so
`Slots.try_take()` takes a free slot synchronously; `take()` queues only when
none is free. A slot given back goes straight to the first waiter, so a
newcomer never overtakes one that is queued.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """At most `limit` holders at once."""

    __slots__ = ("_waiters", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> bool:
        """Whether `try_take` would succeed."""
        return self.held < self.limit and not self._waiters

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is queued for it; never waits."""
        if self.held < self.limit and not self._waiters:
            self.held += 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, queueing behind earlier callers when none is free."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as we were cancelled: pass it on
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def give(self) -> None:
        """Give a slot back: to the first caller still queued, else to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; `held` is unchanged
                return
        if self.held > 0:
            self.held -= 1

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())
