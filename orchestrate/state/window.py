"""A sliding-window log: at most N units in any window, optionally paced.

The one algorithm every rate limit uses in-process; the Redis back-end runs
the same steps in Lua (`orchestrate/state/redis.py`).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingWindow", "pacing_interval"]

_EPSILON = 1e-9


def pacing_interval(limit: int, window: float) -> tuple[float, float]:
    """The least spacing of paced requests, and the slack a late wake-up may catch up."""
    interval = window / limit
    return interval, min(interval, 0.25)


class SlidingWindow:
    """At most `limit` units in any `window` + `margin` seconds; optionally paced.

    `wait(now, amount)` says how long until `amount` fits; `take(now, amount)`
    books it. Nothing awaits in between, so on one event loop the check and
    the booking are atomic. The log keeps only what is still inside the window.

    Memory stays bounded however many requests a window sees (a day's window
    of a batch of 100,000 rows): a request that starts within `span / 10,000`
    of the first start of the newest entry joins it, and the entry takes the
    later time. Units are so counted as starting at most that much later than
    they did, which only ever delays a wait (by at most 0.01% of the window),
    never shortens it: the limit still holds in every window.

    Args:
        limit: Units (requests or tokens) allowed in any window.
        window: Seconds.
        margin: Seconds added to the window (clock skew between us and the server).
        pace: Space starts at least window/limit apart (less a small slack).
    """

    __slots__ = ("limit", "span", "grain", "interval", "slack", "_log", "_used", "_next")

    GRAINS = 10_000  # the most entries a full window holds

    def __init__(self, limit: int, window: float, *, margin: float = 0.0, pace: bool = False) -> None:
        self.limit = float(limit)
        self.span = window + margin
        self.grain = self.span / self.GRAINS
        self.interval, self.slack = pacing_interval(limit, window) if pace else (0.0, 0.0)
        self._log: deque[list[float]] = deque()  # [latest start, units, first start], oldest first
        self._used = 0.0
        self._next = -math.inf  # earliest start allowed by pacing

    def _expire(self, now: float) -> None:
        log, horizon = self._log, now - self.span
        while log and log[0][0] <= horizon:
            self._used -= log.popleft()[1]
        if not log:
            self._used = 0.0

    def fits(self, now: float, amount: float = 1.0) -> bool:
        """Whether `amount` may start at `now` (`wait` would say 0), answered the quick way.

        Entries that have left the window are dropped only when they are in the way
        (or when `take` starts a new entry): until then they count, which only errs
        on the safe side, and the common case, far below the limit, costs a comparison.
        """
        if amount > self.limit:
            amount = self.limit
        if self._used + amount - self.limit > _EPSILON:
            self._expire(now)
            if self._used + amount - self.limit > _EPSILON:
                return False
        return self._next - now <= _EPSILON

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds from `now` until `amount` may start (0: at once)."""
        amount = min(amount, self.limit)
        self._expire(now)
        earliest = self._next
        excess = self._used + amount - self.limit
        if excess > _EPSILON:
            # The entries that must leave first: the oldest, until enough is freed.
            for stamp, units, _ in self._log:
                excess -= units
                if excess <= _EPSILON:
                    earliest = max(earliest, stamp + self.span)
                    break
        return max(0.0, earliest - now)

    def take(self, now: float, amount: float = 1.0) -> None:
        """Book `amount` as started at `now` (call only when `wait` said 0)."""
        if amount > self.limit:
            amount = self.limit
        log = self._log
        if log and now - log[-1][2] < self.grain:  # the newest entry began less than a grain ago
            last = log[-1]
            if now > last[0]:
                last[0] = now
            last[1] += amount
        else:
            if log and log[0][0] <= now - self.span:
                self._expire(now)  # at most once a grain: the log stays within GRAINS entries
            log.append([now, amount, now])
        self._used += amount
        if self.interval:
            # A start late by up to `slack` does not delay the ones after it; the first sets the beat.
            last_start = now if self._next == -math.inf else max(self._next, now - self.slack)
            self._next = last_start + self.interval

    @staticmethod
    def start_all(windows: tuple[SlidingWindow, ...], amounts: tuple[float, ...], now: float) -> bool:
        """Book `amounts` in `windows` at `now` if every one `fits`, else book nothing.

        The same as `fits` on each, then `take` on each, with the common case (far
        below every limit, the newest entry still open, paced or not) worked out
        here in one pass each: a limiter runs this for every call it lets through.
        """
        for window, amount in zip(windows, amounts):
            limit = window.limit
            if amount > limit or window._used + amount - limit > _EPSILON or window._next - now > _EPSILON:
                if not window.fits(now, amount):
                    return False
        for window, amount in zip(windows, amounts):
            log = window._log
            if log and now - log[-1][2] < window.grain and amount <= window.limit:
                last = log[-1]
                if now > last[0]:
                    last[0] = now
                last[1] += amount
                window._used += amount
                if window.interval:  # as `take` paces: _next is set, since the log is not empty
                    earliest = now - window.slack
                    window._next = (window._next if window._next > earliest else earliest) + window.interval
            else:
                window.take(now, amount)
        return True

    @property
    def used(self) -> float:
        """Units inside the window at the last `wait` (`fits` and `take` may count some that left)."""
        return self._used

    def __len__(self) -> int:
        """Entries in the log (at most about GRAINS)."""
        return len(self._log)
