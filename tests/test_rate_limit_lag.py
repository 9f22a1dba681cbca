"""The sliding window's margin covers the lag between a permission and the request's arrival at the
provider: four limiters sharing one 30/min window, whose requests arrive up to 0.4 s after their
permission (as measured on a loaded machine), never put 31 arrivals in any 60 s at the provider."""

from __future__ import annotations

import asyncio

from orchestrate.money.rate_limit import RateLimitConfig, RateLimiterRegistry
from orchestrate.state.memory import MemoryState
from tests.test_rate_limit import UNLIMITED, most_in_any_window
from tests.virtual_time import run_virtual

LAG = 0.4  # seconds from permission to arrival, seen on a loaded 2-core machine


def test_arrivals_late_then_early_stay_within_the_limit_at_the_provider() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        state = MemoryState(clock=loop.time)
        limits = RateLimitConfig(**{**UNLIMITED, "requests_per_minute": 30})
        arrivals: list[float] = []
        granted = 0

        async def process() -> None:
            registry = RateLimiterRegistry(None, {"anthropic": limits}, clock=loop.time, state=state)

            async def one() -> None:
                nonlocal granted
                permit = await registry.acquire("anthropic", "claude-haiku-4-5", 100)
                n, granted = granted, granted + 1
                # The worst order: a minute's requests arrive late, the next minute's at once.
                lag = LAG if (n // 30) % 2 == 0 else 0.0
                await asyncio.sleep(lag)
                arrivals.append(loop.time())
                permit.release()

            await asyncio.gather(*(one() for _ in range(24)))
            await registry.aclose()

        await asyncio.gather(*(process() for _ in range(4)))
        return sorted(arrivals)

    arrivals = run_virtual(main())
    assert len(arrivals) == 96
    assert most_in_any_window(arrivals, 60.0) <= 30
