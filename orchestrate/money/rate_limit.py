"""Rate limits a strict server never refuses: five tiers at once, per provider and model.

Every tier holds in **every sliding window**, not on average: a limit of N per
minute never lets N + 1 requests start within any 60 s (nor within 60 s plus
a safety margin for clock skew between us and the server), and likewise per
hour, per day and for tokens per minute. Each tier is a log of what started in
its last window (`SlidingWindow`); a request waits until the oldest entries
have left the window far enough for it to fit.

- requests per minute are also **paced**: spaced at least 60/N s apart, with a
  little slack so that a late wake-up of the event loop does not pile up, so
  a run starts smoothly instead of in a burst. The log, not the pacing, is
  what guarantees the limit.
- requests per hour and per day: the log only; the minute tier paces, and
  the longer tiers bind when a run is sustained long enough to need them.
- tokens per minute: the log of estimated tokens (upper bounds); a request
  estimated above the whole limit waits for an empty window and then takes it.
- concurrent requests: a semaphore, taken *before* the rate tiers, so a
  request that waited for a slot does not start in a burst with others.

The margin is 0.5% of the window, at most 1 s (0.3 s a minute): a run at a
limit achieves 99.5% of it. Time comes from an injectable `clock` and `sleep`
(monotonic seconds), so tests drive it without waiting.

A provider that answers 429 with a retry-after, or whose headers say nothing
remains, pauses every caller of that provider (`pause`), not only the one that
was refused.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from orchestrate.errors import StateUnavailableError, UserInputError
from orchestrate.slots import Slots
from orchestrate.state.base import LeaseKeeper, SharedState, TierLimits
from orchestrate.state.window import SlidingWindow, pacing_interval

__all__ = [
    "Permit",
    "RateLimitConfig",
    "RateLimiter",
    "RateLimiterRegistry",
    "SharedRateLimiter",
    "SlidingWindow",
    "TIER_WINDOWS",
    "describe_limit",
    "pacing_interval",
    "skew_margin",
]

TIER_WINDOWS: dict[str, float] = {
    "requests_per_minute": 60.0,
    "requests_per_hour": 3600.0,
    "requests_per_day": 86400.0,
    "tokens_per_minute": 60.0,
}
_TIERS = tuple(TIER_WINDOWS)
_PACED = "requests_per_minute"
_EPSILON = 1e-9

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
OnWait = Callable[[str], None]  # told the tier a request waits for, once


@dataclass
class RateLimitConfig:
    """Limits of one provider or model; every tier applies at once.

    Attributes:
        requests_per_minute: Max requests in any 60 s window.
        requests_per_hour: Max requests in any hour.
        requests_per_day: Max requests in any 24 hours.
        tokens_per_minute: Max estimated tokens (prompt + max output) in any 60 s window.
        concurrent_requests: Max requests in flight.
    """

    requests_per_minute: int = 60
    requests_per_hour: int = 3000
    requests_per_day: int = 50000
    tokens_per_minute: int = 100000
    concurrent_requests: int = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RateLimitConfig.{f.name} must be a whole number >= 1, not {value!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: RateLimitConfig | None = None) -> RateLimitConfig:
        """A config from a workflow's `rate_limits` entry; absent tiers come from `base`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserInputError(f"unknown rate limit {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = asdict(base) if base is not None else {}
        values.update(data)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise UserInputError(str(exc)) from exc


def skew_margin(window: float, limit: float | None = None) -> float:
    """The safety margin added to a window of `window` seconds that lets in `limit` requests.

    It covers clock skew and the time from a permission to the request's arrival at the
    provider, which counts arrivals: on a loaded machine that lag was measured at 0.40 s, over
    the 0.3 s a fixed 0.5% of a minute gave, and 31 requests arrived within 59.91 s against
    30/min. The margin is 2% of the window, at most 1 s, or one request's share of the window
    (``window / limit``: 2 s at 30/min), at most 5% of it, whichever is larger.
    """
    floor = min(1.0, window * 0.02)
    if limit is None or limit <= 0 or not math.isfinite(limit):
        return floor
    return max(floor, min(window / limit, window * 0.05))


class _Limiter:
    """What both limiters share: their statistics and `acquire` with an optional timeout."""

    _acquire: Callable[[int, OnWait | None], Awaitable[None]]  # each limiter's own wait

    def _start_statistics(self) -> None:
        self.total_requests = 0
        self.total_tokens = 0
        self.total_wait = 0.0
        self.timeouts = 0
        self.pauses = 0
        self.wait_by_tier: dict[str, float] = {t: 0.0 for t in (*_TIERS, "concurrent_requests", "paused")}
        self.queued = 0  # requests waiting in `acquire` now
        self.binding: str | None = None  # the tier (or "paused") the first of them last waited for

    def ready(self, estimated_tokens: int, now: float | None = None) -> bool:
        """Whether a request could start now without waiting; the shared limiter always asks its state."""
        return False

    def try_start(self, estimated_tokens: int) -> bool:
        """Start a request without waiting, if `ready`; the shared limiter never can."""
        return False

    def start(self, estimated_tokens: int) -> None:
        """Book a request that `ready` allowed."""
        raise RuntimeError(f"{type(self).__name__} starts requests only through acquire()")

    async def acquire(
        self, estimated_tokens: int = 1000, timeout: float | None = None, *, on_wait: OnWait | None = None
    ) -> None:
        """Wait until a request of `estimated_tokens` may start under every tier.

        `on_wait` is told the tier (or ``paused``) the first time this request has to wait, if it does.

        Raises:
            asyncio.TimeoutError: When `timeout` seconds pass first; nothing is held then.
            StateUnavailableError: (shared limiter) When the shared state cannot be reached.
        """
        self.queued += 1
        try:
            if timeout is None:
                await self._acquire(estimated_tokens, on_wait)
                return
            try:
                await asyncio.wait_for(self._acquire(estimated_tokens, on_wait), timeout)
            except TimeoutError:
                self.timeouts += 1
                raise
        finally:
            self.queued -= 1


class RateLimiter(_Limiter):
    """All five tiers of one `RateLimitConfig`, in one process.

    Args:
        config: The limits.
        name: What the limiter guards ("openai", "gpt-4o"), for statistics.
        clock: Monotonic seconds (default `time.monotonic`).
        sleep: Waits that many seconds (default `asyncio.sleep`).
    """

    def __init__(
        self,
        config: RateLimitConfig | None = None,
        *,
        name: str = "",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config or RateLimitConfig()
        self.name = name
        self.clock = clock
        self.sleep = sleep
        c = asdict(self.config)
        self._tiers: dict[str, SlidingWindow] = {
            tier: SlidingWindow(c[tier], window, margin=skew_margin(window, c[tier]), pace=tier == _PACED)
            for tier, window in TIER_WINDOWS.items()
        }
        self._requests = tuple(self._tiers[t] for t in _TIERS if t != "tokens_per_minute")
        self._tokens = self._tiers["tokens_per_minute"]
        self._windows = (*self._requests, self._tokens)  # amounts: 1 request each, then the tokens
        self._paced = self._tiers[_PACED]
        # Calls let through while every tier's newest log entry is still open (begun less than a
        # grain ago: `SlidingWindow.take` would add them to it) are counted here and added to those
        # entries at once when anything next reads the tiers (`_flush`): the same entries, the same
        # counts, the same answers, for a few additions a call instead of four tiers' bookkeeping.
        self._open_until = -math.inf  # calls before this moment join the open entries
        self._room_requests = 0.0  # requests the request tiers had room for when the entries opened
        self._room_tokens = 0.0
        self._pending_requests = 0.0  # counted here, not yet in the tiers
        self._pending_tokens = 0.0
        self._pending_last = -math.inf  # the latest start among them
        self._last_booked = -math.inf  # the last call booked through the tiers
        self._burst = min(window.grain for window in self._windows)
        self._slots = Slots(self.config.concurrent_requests)
        self._turn = asyncio.Lock()  # waiters are served first come, first served
        self._paused_until = -math.inf
        self.in_flight = 0
        self._start_statistics()

    def ready(self, estimated_tokens: int, now: float | None = None) -> bool:
        """Whether a request could start now with no wait: a free slot, room in every tier, nobody queued."""
        if self._turn.locked() or not self._slots.free:
            return False
        self._flush()
        if now is None:
            now = self.clock()
        if now < self._paused_until:
            return False
        for window in self._requests:
            if not window.fits(now):
                return False
        return self._tokens.fits(now, float(estimated_tokens if estimated_tokens > 0 else 0))

    def try_start(self, estimated_tokens: int) -> bool:
        """`ready`, then `start`, in one step at one reading of the clock: the limiter's whole
        cost when nothing waits."""
        slots = self._slots
        # A free slot, and nobody queued for it (`Slots.try_take`, without its call).
        if self._turn.locked() or slots.held >= slots.limit or slots._waiters:
            return False
        slots.held += 1
        now = self.clock()
        tokens = float(estimated_tokens if estimated_tokens > 0 else 0)
        paced = self._paced
        if now < self._paused_until:
            slots.held -= 1  # given back: nobody was queued, so nobody is owed it
            return False
        if (
            now < self._open_until
            and self._pending_requests + 1.0 - self._room_requests <= _EPSILON
            and self._pending_tokens + tokens - self._room_tokens <= _EPSILON
            and paced._next - now <= _EPSILON
        ):
            # What `SlidingWindow.start_all` would find and do, its entries still open: room in
            # every tier (its checks, against the units counted since), the paced tier's beat.
            self._pending_requests += 1.0
            self._pending_tokens += tokens
            if now > self._pending_last:
                self._pending_last = now
            earliest = now - paced.slack
            paced._next = (paced._next if paced._next > earliest else earliest) + paced.interval
        else:
            if self._pending_requests:
                self._flush()
            self._open_until = -math.inf  # the tiers change: what was counted against is not known
            if not SlidingWindow.start_all(self._windows, (1.0, 1.0, 1.0, tokens), now):
                slots.held -= 1
                return False
            # Counting pays only when calls come closer than a grain (a burst): calls further apart
            # each begin a new entry anyway, and opening one for them would only cost.
            if now - self._last_booked < self._burst:
                self._open()
            self._last_booked = now
        self.in_flight += 1
        self.total_requests += 1
        self.total_tokens += int(tokens)
        return True

    def _open(self) -> None:
        """After a booking through the tiers: until the first of their newest entries is a grain
        old, later calls may be counted here (`try_start`) against the room every tier had left."""
        minute, hour, day, tokens = self._windows
        # A microsecond early: `now - first < grain` and `now < first + grain` may round apart.
        self._open_until = (
            min(
                minute._log[-1][2] + minute.grain,
                hour._log[-1][2] + hour.grain,
                day._log[-1][2] + day.grain,
                tokens._log[-1][2] + tokens.grain,
            )
            - 1e-6
        )
        self._room_requests = min(minute.limit - minute._used, hour.limit - hour._used, day.limit - day._used)
        self._room_tokens = tokens.limit - tokens._used

    def _flush(self) -> None:
        """Add the calls counted since the entries opened to the tiers, as `take` would have one by
        one (into each tier's newest entry), and stop counting: the tiers are read or changed next."""
        self._open_until = -math.inf
        requests = self._pending_requests
        if not requests:
            return
        tokens, last = self._pending_tokens, self._pending_last
        self._pending_requests = self._pending_tokens = 0.0
        self._pending_last = -math.inf
        for window, amount in zip(self._windows, (requests, requests, requests, tokens)):
            entry = window._log[-1]
            if last > entry[0]:
                entry[0] = last
            entry[1] += amount
            window._used += amount

    def start(self, estimated_tokens: int) -> None:
        """Book a request that `ready` just allowed (nothing may await in between)."""
        if not self._slots.try_take():
            raise RuntimeError("start() without ready(): no concurrency slot is free")
        self._book(self.clock(), float(estimated_tokens if estimated_tokens > 0 else 0), 0.0)

    async def _acquire(self, estimated_tokens: int, on_wait: OnWait | None = None) -> None:
        start = self.clock()
        if not self._slots.free:
            self.binding = "concurrent_requests"
            if on_wait is not None:
                on_wait("concurrent_requests")
                on_wait = None
        await self._slots.take()
        try:
            mark = self.clock()
            self.wait_by_tier["concurrent_requests"] += mark - start
            tokens = float(max(0, estimated_tokens))
            async with self._turn:
                while True:
                    now = self.clock()
                    tier, wait = self._binding(now, tokens)
                    if wait <= _EPSILON:
                        break
                    self.binding = tier
                    if on_wait is not None:
                        on_wait(tier)
                        on_wait = None
                    await self.sleep(wait)
                    self.wait_by_tier[tier] += self.clock() - now
                self._book(now, tokens, now - start)
        except BaseException:
            self._slots.give()
            raise

    def _book(self, now: float, tokens: float, waited: float) -> None:
        self._flush()
        for window in self._requests:
            window.take(now)
        self._tokens.take(now, tokens)
        self.in_flight += 1
        self.total_requests += 1
        self.total_tokens += int(tokens)
        self.total_wait += waited

    def _binding(self, now: float, tokens: float) -> tuple[str, float]:
        """The tier (or pause) that holds a request back longest, and for how long."""
        self._flush()
        tier, longest = "paused", self._paused_until - now
        for name, window in self._tiers.items():
            wait = window.wait(now, tokens if name == "tokens_per_minute" else 1.0)
            if wait > longest:
                tier, longest = name, wait
        return tier, longest

    def release(self) -> None:
        """Give back the concurrent-request slot taken by `acquire`."""
        if self.in_flight > 0:
            self.in_flight -= 1
            slots = self._slots
            if slots._waiters:
                slots.give()  # to the first caller still queued
            elif slots.held > 0:  # what give() does with nobody queued, without its call
                slots.held -= 1

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause(self, seconds: float) -> None:
        """Hold back every caller for `seconds` (a 429's retry-after, or an exhausted quota)."""
        if seconds > 0 and math.isfinite(seconds):
            self.pauses += 1
            self._paused_until = max(self._paused_until, self.clock() + seconds)

    def observe(self, rate_limit: Mapping[str, float]) -> None:
        """Pause until the reset when a provider's headers say no request or token remains."""
        self.pause(exhausted_for(rate_limit))

    def get_statistics(self) -> dict[str, Any]:
        """Requests, tokens, seconds spent waiting (in all and by tier), and the limits."""
        return {
            "name": self.name,
            "total_requests": self.total_requests,
            "total_tokens": self.total_tokens,
            "total_wait_seconds": self.total_wait,
            "wait_seconds_by_tier": dict(self.wait_by_tier),
            "timeouts": self.timeouts,
            "pauses": self.pauses,
            "in_flight": self.in_flight,
            "limits": asdict(self.config),
        }


class SharedRateLimiter(_Limiter):
    """All five tiers of one `RateLimitConfig`, held in a `SharedState` every process sees.

    Same interface as `RateLimiter`. Each attempt is one atomic step of the
    back-end (one Lua script in Redis): check every tier, the pacing, a pause
    and a concurrency slot, and book them all, or say how long to wait. A slot
    is a lease the `LeaseKeeper` renews while this process lives. A pause
    (429, exhausted headers) holds back every process of the provider.

    Args:
        config: The limits.
        name: The limiter's key ("openai", "gpt-4o"); processes share it by name.
        state: Where the windows live.
        keeper: Renews the slots held.
        clock: Monotonic seconds, for statistics.
        sleep: Waits between attempts.
    """

    _POLL = (0.005, 0.1)  # waiting for a concurrency slot: first and longest poll

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        name: str,
        state: SharedState,
        keeper: LeaseKeeper,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.name = name
        self.state = state
        self.keeper = keeper
        self.clock = clock
        self.sleep = sleep
        c = asdict(config)
        interval, slack = pacing_interval(config.requests_per_minute, TIER_WINDOWS[_PACED])
        self.limits = TierLimits(
            windows=tuple(
                (tier, float(c[tier]), window + skew_margin(window, c[tier]))
                for tier, window in TIER_WINDOWS.items()
                if c[tier] < _NO_LIMIT
            ),
            interval=interval,
            slack=slack,
            concurrent=config.concurrent_requests,
        )
        self._held: deque[str] = deque()
        self._sleeping: str | None = None  # the tier the waiter asking the state sleeps for
        self.paused_until = -math.inf  # as far as this process has set or seen
        self._turn = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._start_statistics()

    @property
    def in_flight(self) -> int:
        return len(self._held)

    async def _acquire(self, estimated_tokens: int, on_wait: OnWait | None = None) -> None:
        start = self.clock()
        tokens = float(max(0, estimated_tokens))
        lease = uuid.uuid4().hex
        poll = self._POLL[0]
        if on_wait is not None and self._sleeping is not None:  # queued behind a waiter the state held back
            on_wait(self._sleeping)
            on_wait = None
        async with self._turn:  # one waiter of this process asks the state at a time
            while True:
                answer = await self.state.acquire_rate(self.name, self.limits, tokens, lease)
                if answer.granted:
                    break
                tier = self.binding = answer.tier or "paused"
                if answer.tier == "concurrent_requests":
                    wait, poll = poll, min(poll * 2, self._POLL[1])
                else:
                    wait, poll = answer.wait, self._POLL[0]
                    if answer.tier == "paused":
                        self.paused_until = max(self.paused_until, self.clock() + wait)
                if on_wait is not None:  # known only now: the state said what binds
                    on_wait(tier)
                    on_wait = None
                before = self.clock()
                self._sleeping = tier
                try:
                    await self.sleep(wait)
                finally:
                    self._sleeping = None
                self.wait_by_tier[tier] += self.clock() - before
        self._held.append(lease)
        self.keeper.hold(self.keeper.slots, self.name, lease)
        self.total_requests += 1
        self.total_tokens += int(tokens)
        self.total_wait += self.clock() - start

    def _later(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except StateUnavailableError:
                pass  # the state is marked lost; the next acquire refuses

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self) -> None:
        """Give back a concurrency slot taken by `acquire` (its lease would lapse anyway)."""
        if self._held:
            lease = self._held.popleft()
            self.keeper.drop(self.keeper.slots, self.name, lease)
            self._later(self.state.release_slot(self.name, lease))

    def pause(self, seconds: float) -> None:
        """Hold back every caller of this key, in every process, for `seconds`."""
        if seconds > 0 and math.isfinite(seconds):
            self.pauses += 1
            self.paused_until = max(self.paused_until, self.clock() + seconds)
            self._later(self.state.pause(self.name, seconds))

    def observe(self, rate_limit: Mapping[str, float]) -> None:
        """Pause until the reset when a provider's headers say no request or token remains."""
        self.pause(exhausted_for(rate_limit))

    async def drain(self) -> None:
        """Wait for slot releases and pauses still on their way to the state."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def get_statistics(self) -> dict[str, Any]:
        """As `RateLimiter.get_statistics`, plus where the state lives."""
        return {
            "name": self.name,
            "state": self.state.url,
            "total_requests": self.total_requests,
            "total_tokens": self.total_tokens,
            "total_wait_seconds": self.total_wait,
            "wait_seconds_by_tier": dict(self.wait_by_tier),
            "timeouts": self.timeouts,
            "pauses": self.pauses,
            "in_flight": self.in_flight,
            "limits": asdict(self.config),
        }


_RATE = {
    "requests_per_minute": "{:,}/min",
    "requests_per_hour": "{:,}/hour",
    "requests_per_day": "{:,}/day",
    "tokens_per_minute": "{:,} tokens/min",
    "concurrent_requests": "{:,} at a time",
}


def describe_limit(key: str, tier: str | None, config: RateLimitConfig, *, named: bool, queued: int) -> dict[str, Any]:
    """What a display says of a limit that holds calls back (see `RateLimiterRegistry.holding`)."""
    source = f"rate_limits.{key}" if named else "the default"
    if tier in _RATE:
        rate = _RATE[tier].format(getattr(config, tier))
        text = f"{key} {rate} ({source})"
    elif tier == "paused":
        rate = "paused"
        text = f"{key}, paused by the provider (a 429 or an exhausted quota)"
    else:  # no tier named: the limit alone
        rate = ""
        text = f"{key} ({source})"
    return {"limit": key, "tier": tier, "rate": rate, "source": source, "queued": queued, "text": text}


def exhausted_for(rate_limit: Mapping[str, float]) -> float:
    """Seconds until the reset when a provider's headers say nothing remains, else 0."""
    wait = 0.0
    for remaining, reset in (("remaining_requests", "reset_requests_s"), ("remaining_tokens", "reset_tokens_s")):
        left = rate_limit.get(remaining)
        if left is not None and left <= 0:
            wait = max(wait, float(rate_limit.get(reset) or 1.0))
    return wait


class Permit:
    """What `RateLimiterRegistry.acquire` grants: release it when the call ends."""

    __slots__ = ("_limiters", "waited")

    def __init__(self, limiters: list[Limiter], waited: float) -> None:
        self._limiters = limiters
        self.waited = waited

    def release(self) -> None:
        """Give back every slot; calling it twice is harmless."""
        limiters = self._limiters
        if limiters:
            self._limiters = []
            for limiter in limiters:
                limiter.release()


class _OnePermit(Permit):
    """A `Permit` of one limiter (the common case: a provider's limits only), held without a list:
    `try_acquire` makes one before every call, and the list and its loop cost ~1,000 instructions."""

    __slots__ = ("_limiter",)
    _limiter: Limiter | None

    def release(self) -> None:
        """Give back the slot; calling it twice is harmless."""
        limiter = self._limiter
        if limiter is not None:
            self._limiter = None
            limiter.release()


class RateLimiterRegistry:
    """The limiters of an engine: one per provider, and one per model that has limits of its own.

    Every provider gets `default` unless `overrides` (or a workflow's
    `rate_limits`) names it; a key that is not a provider name limits that
    model, on top of its provider. The simulated provider is not limited
    unless named, since it has no quota to protect.

    A provider's refusal (429 with retry-after, or headers saying nothing
    remains) pauses every caller of it even when nothing limits it otherwise.
    `active` is False while nothing is limited or paused, so callers can skip
    the limiter entirely.

    With a shared `state` (Redis), every limiter lives there, so every
    process using it shares the limits, and every provider's calls look at
    the shared pause, so a 429 seen by one process holds back all of them.

    Args:
        default: Limits of every provider; None limits only what overrides name.
        overrides: Provider or model name -> `RateLimitConfig` or a mapping of its fields.
        clock: Monotonic seconds of the limiters.
        sleep: Their sleep.
        state: Shared state to keep the limits in; None keeps them in this process.
        keeper: Renews concurrency leases (one is made for `state` if not given).
    """

    UNLIMITED_BY_DEFAULT = frozenset({"simulated"})

    def __init__(
        self,
        default: RateLimitConfig | None = None,
        overrides: Mapping[str, RateLimitConfig | Mapping[str, Any]] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        state: SharedState | None = None,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.default = default
        self.clock = clock
        self.sleep = sleep
        self.state = state
        self.keeper = keeper if keeper is not None or state is None else LeaseKeeper(state, sleep)
        self._configs: dict[str, RateLimitConfig] = {}  # limits named by key (`rate_limits`)
        self._limiters: dict[str, Limiter | None] = {}
        self.total_requests = 0
        self.total_tokens = 0
        self.total_wait = 0.0
        self.active = default is not None or state is not None
        self._last: tuple[Any, Any] = (None, None)  # the mapping last configured, and a copy of it
        self.configure(overrides or {})

    def configure(self, mapping: Mapping[str, RateLimitConfig | Mapping[str, Any]]) -> None:
        """Set the limits of providers or models (a workflow's `rate_limits`)."""
        if not mapping:
            return
        if mapping is self._last[0] and mapping == self._last[1]:
            return  # the rows of a batch share their workflow's table: parsed once
        self._last = (mapping, {k: dict(v) if isinstance(v, Mapping) else v for k, v in mapping.items()})
        self.active = True
        for key, value in mapping.items():
            config = (
                value if isinstance(value, RateLimitConfig) else RateLimitConfig.from_mapping(value, base=self.default)
            )
            if self._configs.get(key) != config:
                self._configs[key] = config
                self._limiters.pop(key, None)

    def _new(self, config: RateLimitConfig, key: str) -> Limiter:
        if self.state is None or self.keeper is None:
            return RateLimiter(config, name=key, clock=self.clock, sleep=self.sleep)
        return SharedRateLimiter(
            config, name=key, state=self.state, keeper=self.keeper, clock=self.clock, sleep=self.sleep
        )

    def _limiter(self, key: str, *, is_provider: bool) -> Limiter | None:
        try:
            return self._limiters[key]
        except KeyError:
            pass
        config = self._configs.get(key)
        if config is None and is_provider and key not in self.UNLIMITED_BY_DEFAULT:
            config = self.default
        if config is None and is_provider and self.state is not None:
            config = _UNBOUNDED  # still sees a pause another process set
        limiter = self._new(config, key) if config is not None else None
        self._limiters[key] = limiter
        return limiter

    def try_acquire(self, provider: str, model: str, estimated_tokens: int) -> Permit | None:
        """A permit at once when no limiter needs a wait (the common case), else None: then `acquire`.

        Nothing awaits here, so on one event loop the check and the booking are one step.
        """
        limiters = self._limiters  # known keys looked up here: this runs before every call
        first = limiters.get(provider, _UNKNOWN)
        if first is _UNKNOWN:
            first = self._limiter(provider, is_provider=True)
        second = None
        if model != provider:
            second = limiters.get(model, _UNKNOWN)
            if second is _UNKNOWN:
                second = self._limiter(model, is_provider=False)
        if second is None and first is not None:  # the common case: the provider's limits only
            if not first.try_start(estimated_tokens):
                return None
            self.total_requests += 1
            self.total_tokens += estimated_tokens if estimated_tokens > 0 else 0  # max(0, ...) without its call
            permit = _new(_OnePermit)  # made without a Python __init__'s call (dear in 3.11)
            permit._limiter = first
            permit.waited = 0.0
            return permit
        if (first is not None and not first.ready(estimated_tokens)) or (
            second is not None and not second.ready(estimated_tokens)
        ):
            return None
        held: list[Limiter] = []
        for limiter in (first, second):
            if limiter is not None:
                limiter.start(estimated_tokens)
                held.append(limiter)
        self.total_requests += 1
        self.total_tokens += max(0, estimated_tokens)
        return Permit(held, 0.0)

    async def acquire(
        self,
        provider: str,
        model: str,
        estimated_tokens: int,
        timeout: float | None = None,
        *,
        on_wait: Callable[[dict[str, Any]], None] | None = None,
    ) -> Permit:
        """Wait for the provider's limiter, then the model's; returns the permit to release.

        `on_wait` is told what holds the call back (as `holding` says it) the first time it has
        to wait, if it does: with shared limits only their state knows, so `holding` cannot.

        Raises:
            asyncio.TimeoutError: When `timeout` seconds pass first; nothing is held then.
        """
        start = self.clock()
        permit = Permit([], 0.0)
        try:
            if timeout is None:
                await self._acquire_all(permit, provider, model, estimated_tokens, on_wait)
            else:
                await asyncio.wait_for(self._acquire_all(permit, provider, model, estimated_tokens, on_wait), timeout)
        except BaseException:
            permit.release()
            raise
        permit.waited = self.clock() - start
        self.total_requests += 1
        self.total_tokens += max(0, estimated_tokens)
        self.total_wait += permit.waited
        return permit

    async def _acquire_all(
        self,
        permit: Permit,
        provider: str,
        model: str,
        estimated_tokens: int,
        on_wait: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        told = False

        def tell(limiter: Limiter) -> OnWait | None:
            if on_wait is None:
                return None

            def waits(tier: str) -> None:
                nonlocal told
                if not told:  # once per call, for the first limit that holds it back
                    told = True
                    named = limiter.name in self._configs
                    on_wait(describe_limit(limiter.name, tier, limiter.config, named=named, queued=limiter.queued))

            return waits

        for limiter in (
            self._limiter(provider, is_provider=True),
            self._limiter(model, is_provider=False) if model != provider else None,
        ):
            if limiter is not None:
                await limiter.acquire(estimated_tokens, on_wait=tell(limiter))
                permit._limiters.append(limiter)

    def holding(self, provider: str, model: str, estimated_tokens: int) -> dict[str, Any] | None:
        """Which limit holds back a call that cannot start at once, and how many calls wait on it.

        Asked only on the slow path (`try_acquire` said no), for a display: ``limit`` (the key),
        ``tier``, ``rate`` (``60/min``), ``source`` (``rate_limits.openai`` or ``the default``),
        ``queued`` (the calls waiting on it, this one included) and ``text``, the phrase `plan`
        uses: ``openai 60/min (rate_limits.openai)``. None when neither limiter is known, or
        both are shared (their state tells: `acquire`'s `on_wait`).
        """
        best: tuple[int, RateLimiter] | None = None
        for key in (provider, model) if model != provider else (provider,):
            limiter = self._limiters.get(key)
            if not isinstance(limiter, RateLimiter) or limiter.ready(estimated_tokens):
                continue
            if best is None or limiter.queued > best[0]:
                best = (limiter.queued, limiter)
        if best is None:
            return None
        limiter = best[1]
        tier = limiter.binding if limiter.queued else None
        if tier is None:
            now = self.clock()
            if not limiter._slots.free:
                tier = "concurrent_requests"
            else:
                tier = limiter._binding(now, float(max(0, estimated_tokens)))[0]
        return describe_limit(
            limiter.name, tier, limiter.config, named=limiter.name in self._configs, queued=limiter.queued + 1
        )

    def queued(self, key: str) -> int:
        """Calls waiting on the limiter of `key` now."""
        limiter = self._limiters.get(key)
        return limiter.queued if limiter is not None else 0

    def paused_for(self, provider: str) -> float:
        """Seconds `provider` stays paused (a 429's retry-after, exhausted headers) as this
        process knows it: its own pauses, and shared ones its waits have seen; 0 when not paused."""
        limiter = self._limiters.get(provider)
        if limiter is None:
            return 0.0
        left = limiter.paused_until - self.clock()
        return left if left > 0 else 0.0

    async def shared_pause(self, provider: str) -> float:
        """`paused_for`, asking the shared state first when limits are shared (a pause another
        process set after a 429); one round trip, made only for agents that have a fallback."""
        if self.state is None:
            return self.paused_for(provider)
        limiter = self._limiter(provider, is_provider=True)
        if isinstance(limiter, SharedRateLimiter):
            left = await self.state.paused_for(provider)
            if left > 0:
                limiter.paused_until = max(limiter.paused_until, self.clock() + left)
        return self.paused_for(provider)

    def pause_provider(self, provider: str, seconds: float) -> None:
        """Hold back every caller of `provider` for `seconds`."""
        if seconds <= 0:
            return
        limiter = self._limiter(provider, is_provider=True)
        if limiter is None:  # unlimited providers still honour a pause
            limiter = self._limiters[provider] = self._new(_UNBOUNDED, provider)
        self.active = True
        limiter.pause(seconds)

    def observe(self, provider: str, rate_limit: Mapping[str, float]) -> None:
        """Pause `provider` until the reset when its headers say nothing remains."""
        self.pause_provider(provider, exhausted_for(rate_limit))

    async def aclose(self) -> None:
        """Let releases and pauses reach the shared state, and stop renewing leases."""
        for limiter in list(self._limiters.values()):
            if isinstance(limiter, SharedRateLimiter):
                await limiter.drain()
        if self.keeper is not None:
            await self.keeper.aclose()

    def get_statistics(self) -> dict[str, Any]:
        """Totals over every limiter, and each limiter's own statistics."""
        stats = {key: lim.get_statistics() for key, lim in self._limiters.items() if lim is not None}
        return {
            "enabled": self.active,
            "total_requests": self.total_requests,
            "total_tokens": self.total_tokens,
            "total_wait_seconds": self.total_wait,
            "limiters": stats,
        }


Limiter = RateLimiter | SharedRateLimiter

_new = object.__new__
_UNKNOWN: Any = object()  # a key the registry has no entry for yet (None is "not limited")
_NO_LIMIT = 10**9  # a tier this high is not kept in shared state at all
_UNBOUNDED = RateLimitConfig(
    requests_per_minute=10**9,
    requests_per_hour=10**11,
    requests_per_day=10**12,
    tokens_per_minute=10**12,
    concurrent_requests=10**9,
)
