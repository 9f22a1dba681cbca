"""The in-process back-end (``memory://``): the default, and the test double of Redis.

Same semantics as `orchestrate.state.redis.RedisState`, held in dictionaries of
one process: nothing is shared with other processes, and nothing awaits
inside an operation, so each one is atomic on its event loop.
"""

from __future__ import annotations

import math
import time
from typing import Any

from orchestrate.state.base import BudgetState, RateAnswer, SharedState, TierLimits
from orchestrate.state.window import SlidingWindow

__all__ = ["MemoryState"]


ANSWER_SECONDS = 86_400.0  # how long a reservation or booking id is remembered, as in Redis


class _Scope:
    __slots__ = ("booked", "leases", "limit", "reserved", "spent")

    def __init__(self) -> None:
        self.limit: float | None = None
        self.spent = 0.0
        self.leases: dict[str, tuple[float, float]] = {}  # lease -> (amount, expires)
        # Ids already applied, with when they are forgotten (in that order: the clock only moves on).
        self.reserved: dict[str, tuple[tuple[str, float | None, float], float]] = {}
        self.booked: dict[str, float] = {}


class MemoryState(SharedState):
    """Shared state that lives and dies with this process."""

    def __init__(self, url: str = "memory://", **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._pace: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._scopes: dict[str, _Scope] = {}
        self._cache: dict[str, tuple[bytes, float]] = {}

    @property
    def shared(self) -> bool:
        return False

    def _now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    # -- rate limits ----------------------------------------------------------------------------

    async def acquire_rate(self, key: str, limits: TierLimits, tokens: float, lease: str) -> RateAnswer:
        self.check()
        now = self._now()
        tier, longest = "paused", self._paused.get(key, -math.inf) - now
        if limits.interval and self._pace.get(key, -math.inf) - now > longest:
            tier, longest = "requests_per_minute", self._pace[key] - now
        windows = []
        for name, limit, span in limits.windows:
            window = self._windows.get((key, name))
            if window is None or window.limit != limit or window.span != span:
                window = self._windows[(key, name)] = SlidingWindow(int(limit), span)
            amount = tokens if name == "tokens_per_minute" else 1.0
            windows.append((window, amount))
            wait = window.wait(now, amount)
            if wait > longest:
                tier, longest = name, wait
        if longest > 0:
            return RateAnswer(False, longest, tier)
        slots = self._slots.setdefault(key, {})
        for held, expires in list(slots.items()):
            if expires <= now:
                del slots[held]
        if len(slots) >= limits.concurrent:
            return RateAnswer(False, 0.0, "concurrent_requests")
        slots[lease] = now + self.lease_seconds
        for window, amount in windows:
            window.take(now, amount)
        if limits.interval:
            last = self._pace.get(key)
            self._pace[key] = (now if last is None else max(last, now - limits.slack)) + limits.interval
        return RateAnswer(True)

    async def release_slot(self, key: str, lease: str) -> None:
        self._slots.get(key, {}).pop(lease, None)

    async def pause(self, key: str, seconds: float) -> None:
        self.check()
        self._paused[key] = max(self._paused.get(key, -math.inf), self._now() + seconds)

    async def paused_for(self, key: str) -> float:
        self.check()
        return max(0.0, self._paused.get(key, -math.inf) - self._now())

    # -- budgets --------------------------------------------------------------------------------

    def _scope(self, scope: str) -> _Scope:
        entry = self._scopes.setdefault(scope, _Scope())
        now = self._now()
        for lease, (_, expires) in list(entry.leases.items()):
            if expires <= now:
                del entry.leases[lease]
        for ids in (entry.reserved, entry.booked):
            while ids:
                oldest = next(iter(ids))
                value = ids[oldest]
                if (value[1] if isinstance(value, tuple) else value) > now:
                    break
                del ids[oldest]
        return entry

    def _state(self, scope: str, entry: _Scope) -> BudgetState:
        return BudgetState(scope, entry.limit, entry.spent, sum(a for a, _ in entry.leases.values()), len(entry.leases))

    async def budget_reserve(self, scope: str, lease: str, amount: float) -> tuple[str, float | None, float]:
        self.check()
        entry = self._scope(scope)
        first = entry.reserved.get(lease)
        if first is not None:
            return first[0]
        committed = entry.spent + sum(a for a, _ in entry.leases.values())
        if entry.limit is None:
            return "unset", None, committed
        if committed + amount > entry.limit + 1e-12:
            return "refused", entry.limit, committed
        now = self._now()
        entry.leases[lease] = (amount, now + self.lease_seconds)
        entry.reserved[lease] = (("ok", entry.limit, committed), now + ANSWER_SECONDS)
        return "ok", entry.limit, committed

    async def budget_settle(self, scope: str, lease: str, cost: float) -> None:
        self.check()
        entry = self._scope(scope)
        if lease in entry.booked:
            return
        entry.leases.pop(lease, None)
        entry.spent += cost
        entry.booked[lease] = self._now() + ANSWER_SECONDS

    async def budget_get(self, scope: str) -> BudgetState:
        self.check()
        return self._state(scope, self._scope(scope))

    async def budget_set(self, scope: str, limit: float) -> BudgetState:
        self.check()
        entry = self._scope(scope)
        entry.limit = limit
        return self._state(scope, entry)

    async def budget_reset(self, scope: str) -> BudgetState:
        self.check()
        entry = self._scope(scope)
        entry.spent = 0.0
        return self._state(scope, entry)

    async def budget_correct(self, scope: str, spent: float) -> BudgetState:
        self.check()
        entry = self._scope(scope)
        entry.spent = spent
        return self._state(scope, entry)

    # -- leases and cache -----------------------------------------------------------------------

    async def renew_leases(self, slots: dict[str, set[str]], reservations: dict[str, set[str]]) -> None:
        self.check()
        until = self._now() + self.lease_seconds
        for key, leases in slots.items():
            held = self._slots.get(key, {})
            for lease in leases & held.keys():
                held[lease] = until
        for scope, leases in reservations.items():
            entry = self._scopes.get(scope)
            if entry is not None:
                for lease in leases & entry.leases.keys():
                    entry.leases[lease] = (entry.leases[lease][0], until)

    async def cache_get(self, key: str) -> bytes | None:
        self.check()
        found = self._cache.get(key)
        if found is None or found[1] <= self._now():
            return None
        return found[0]

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self.check()
        self._cache[key] = (value, self._now() + ttl)
