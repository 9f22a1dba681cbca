"""Rate limits that are met, not discovered by 429s: five tiers at once, per provider and model.

The only module that imports aiolimiter. Each tier is a leaky bucket
(`aiolimiter.AsyncLimiter`) sized so that **no sliding window of the tier's
length ever holds more than its limit**: a bucket of capacity C draining at
r per second lets at most C - 1 + r*W through in any (half-open) window W, so each tier
uses r = (limit - C + 1) / W.

- requests per minute: C = 1 plus a sliver (the requests of 2 ms, at most
  half a request), i.e. requests are spaced evenly 60/rpm seconds apart (at
  6,000 rpm, one every 10 ms). The sliver absorbs the event loop's wake-up
  latency, so lateness does not pile up and the achieved rate stays at the
  limit; it is too small to ever let a whole extra request through.
- requests per hour and per day: C = limit / 60 (a minute's share), so the
  minute tier governs short bursts and the longer tiers bind only when a run
  is sustained long enough to need them.
- tokens per minute: C = limit / 10. A request estimated above C waits for an
  empty bucket and then takes it whole (estimates are upper bounds, so
  this errs on the safe side).
- concurrent requests: a semaphore, taken *before* the rate tiers, so a
  request that waited for a slot does not start in a burst with others.

A provider that answers 429 with a retry-after, or whose headers say nothing
remains, pauses every caller of that provider (`pause`), not only the one that
was refused.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiolimiter import AsyncLimiter

from orchestrate.errors import UserInputError

__all__ = ["Permit", "RateLimitConfig", "RateLimiter", "RateLimiterRegistry"]

_TIERS = ("requests_per_minute", "requests_per_hour", "requests_per_day", "tokens_per_minute")


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


def _bucket(limit: int, window: float, capacity: float) -> AsyncLimiter:
    # After a burst of C, each further request needs one unit drained (1/r s),
    # so a half-open window W holds at most C + (r*W - 1) = limit requests.
    capacity = max(1.0, min(capacity, float(limit)))
    rate = (limit - capacity + 1) / window
    return AsyncLimiter(capacity, capacity / rate)


class RateLimiter:
    """All five tiers of one `RateLimitConfig`.

    Args:
        config: The limits.
        name: What the limiter guards ("openai", "gpt-4o"), for statistics.
    """

    def __init__(self, config: RateLimitConfig | None = None, *, name: str = "") -> None:
        self.config = config or RateLimitConfig()
        self.name = name
        c = self.config
        self._tiers: dict[str, AsyncLimiter] = {
            "requests_per_minute": _bucket(c.requests_per_minute, 60.0, 1.0 + min(0.5, c.requests_per_minute / 30000)),
            "requests_per_hour": _bucket(c.requests_per_hour, 3600.0, c.requests_per_hour / 60),
            "requests_per_day": _bucket(c.requests_per_day, 86400.0, c.requests_per_day / 60),
            "tokens_per_minute": _bucket(c.tokens_per_minute, 60.0, c.tokens_per_minute / 10),
        }
        self._slots = asyncio.Semaphore(c.concurrent_requests)
        self._paused_until = 0.0
        self.total_requests = 0
        self.total_tokens = 0
        self.total_wait = 0.0
        self.timeouts = 0
        self.pauses = 0
        self.in_flight = 0
        self.wait_by_tier: dict[str, float] = {t: 0.0 for t in (*_TIERS, "concurrent_requests", "paused")}

    async def acquire(self, estimated_tokens: int = 1000, timeout: float | None = None) -> None:
        """Wait until a request of `estimated_tokens` may start under every tier.

        Raises:
            asyncio.TimeoutError: When `timeout` seconds pass first; nothing is held then.
        """
        if timeout is None:
            await self._acquire(estimated_tokens)
            return
        try:
            await asyncio.wait_for(self._acquire(estimated_tokens), timeout)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise

    async def _acquire(self, estimated_tokens: int) -> None:
        loop = asyncio.get_running_loop()
        await self._wait_pause(loop)
        start = loop.time()
        await self._slots.acquire()
        try:
            mark = loop.time()
            self.wait_by_tier["concurrent_requests"] += mark - start
            for tier, bucket in self._tiers.items():
                amount = 1.0 if tier != "tokens_per_minute" else float(max(0, estimated_tokens))
                amount = min(amount, bucket.max_rate)
                if not bucket.has_capacity(amount):
                    await bucket.acquire(amount)
                    now = loop.time()
                    self.wait_by_tier[tier] += now - mark
                    mark = now
                else:
                    await bucket.acquire(amount)
            await self._wait_pause(loop)
        except BaseException:
            self._slots.release()
            raise
        self.in_flight += 1
        self.total_requests += 1
        self.total_tokens += max(0, estimated_tokens)
        self.total_wait += loop.time() - start

    async def _wait_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            remaining = self._paused_until - time.monotonic()
            if remaining <= 0:
                return
            begin = loop.time()
            await asyncio.sleep(remaining)
            self.wait_by_tier["paused"] += loop.time() - begin

    def release(self) -> None:
        """Give back the concurrent-request slot taken by `acquire`."""
        if self.in_flight > 0:
            self.in_flight -= 1
            self._slots.release()

    def pause(self, seconds: float) -> None:
        """Hold back every caller for `seconds` (a 429's retry-after, or an exhausted quota)."""
        if seconds > 0 and math.isfinite(seconds):
            self.pauses += 1
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

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


def exhausted_for(rate_limit: Mapping[str, float]) -> float:
    """Seconds until the reset when a provider's headers say nothing remains, else 0."""
    wait = 0.0
    for remaining, reset in (("remaining_requests", "reset_requests_s"),
                             ("remaining_tokens", "reset_tokens_s")):
        left = rate_limit.get(remaining)
        if left is not None and left <= 0:
            wait = max(wait, float(rate_limit.get(reset) or 1.0))
    return wait


class Permit:
    """What `RateLimiterRegistry.acquire` grants: release it when the call ends."""

    __slots__ = ("_limiters", "waited")

    def __init__(self, limiters: list[RateLimiter], waited: float) -> None:
        self._limiters = limiters
        self.waited = waited

    def release(self) -> None:
        """Give back every slot; calling it twice is harmless."""
        limiters, self._limiters = self._limiters, []
        for limiter in limiters:
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

    Args:
        default: Limits of every provider; None limits only what overrides name.
        overrides: Provider or model name -> `RateLimitConfig` or a mapping of its fields.
    """

    UNLIMITED_BY_DEFAULT = frozenset({"simulated"})

    def __init__(self, default: RateLimitConfig | None = None,
                 overrides: Mapping[str, RateLimitConfig | Mapping[str, Any]] | None = None) -> None:
        self.default = default
        self._configs: dict[str, RateLimitConfig] = {}
        self._limiters: dict[str, RateLimiter | None] = {}
        self.total_requests = 0
        self.total_tokens = 0
        self.total_wait = 0.0
        self.active = default is not None
        self.configure(overrides or {})

    def configure(self, mapping: Mapping[str, RateLimitConfig | Mapping[str, Any]]) -> None:
        """Set the limits of providers or models (a workflow's `rate_limits`)."""
        if mapping:
            self.active = True
        for key, value in mapping.items():
            config = value if isinstance(value, RateLimitConfig) else RateLimitConfig.from_mapping(
                value, base=self.default)
            if self._configs.get(key) != config:
                self._configs[key] = config
                self._limiters.pop(key, None)

    def _limiter(self, key: str, *, is_provider: bool) -> RateLimiter | None:
        try:
            return self._limiters[key]
        except KeyError:
            pass
        config = self._configs.get(key)
        if config is None and is_provider and key not in self.UNLIMITED_BY_DEFAULT:
            config = self.default
        limiter = RateLimiter(config, name=key) if config is not None else None
        self._limiters[key] = limiter
        return limiter

    async def acquire(self, provider: str, model: str, estimated_tokens: int,
                      timeout: float | None = None) -> Permit:
        """Wait for the provider's limiter, then the model's; returns the permit to release.

        Raises:
            asyncio.TimeoutError: When `timeout` seconds pass first; nothing is held then.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        permit = Permit([], 0.0)
        try:
            if timeout is None:
                await self._acquire_all(permit, provider, model, estimated_tokens)
            else:
                await asyncio.wait_for(self._acquire_all(permit, provider, model, estimated_tokens),
                                       timeout)
        except BaseException:
            permit.release()
            raise
        permit.waited = loop.time() - start
        self.total_requests += 1
        self.total_tokens += max(0, estimated_tokens)
        self.total_wait += permit.waited
        return permit

    async def _acquire_all(self, permit: Permit, provider: str, model: str, estimated_tokens: int) -> None:
        for limiter in (self._limiter(provider, is_provider=True),
                        self._limiter(model, is_provider=False) if model != provider else None):
            if limiter is not None:
                await limiter.acquire(estimated_tokens)
                permit._limiters.append(limiter)

    def pause_provider(self, provider: str, seconds: float) -> None:
        """Hold back every caller of `provider` for `seconds`."""
        if seconds <= 0:
            return
        limiter = self._limiter(provider, is_provider=True)
        if limiter is None:  # unlimited providers still honour a pause
            limiter = self._limiters[provider] = RateLimiter(_UNBOUNDED, name=provider)
        self.active = True
        limiter.pause(seconds)

    def observe(self, provider: str, rate_limit: Mapping[str, float]) -> None:
        """Pause `provider` until the reset when its headers say nothing remains."""
        self.pause_provider(provider, exhausted_for(rate_limit))

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


_UNBOUNDED = RateLimitConfig(requests_per_minute=10**9, requests_per_hour=10**11,
                             requests_per_day=10**12, tokens_per_minute=10**12,
                             concurrent_requests=10**9)
