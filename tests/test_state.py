"""The shared-state protocol: the in-process back-end and Redis (a real redis-server) agree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrate.errors import StateUnavailableError, UserInputError
from orchestrate.money.rate_limit import RateLimitConfig, RateLimiterRegistry, skew_margin
from orchestrate.state.backends import state_from_url
from orchestrate.state.base import SharedState, TierLimits, scrub_url
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from tests.test_rate_limit import UNLIMITED, most_in_any_window
from tests.virtual_time import run_virtual


class Clock:
    """Injected "now" of a back-end: tests move it, nothing waits."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[SharedState]:  # noqa: F811
    url = "memory://" if request.param == "memory" else redis_server.url
    backend = state_from_url(f"{url}?lease_seconds=10", namespace=f"t{uuid.uuid4().hex[:8]}", clock=Clock())
    await backend.connect()
    yield backend
    await backend.aclose()


def advance(state: SharedState, seconds: float) -> None:
    assert isinstance(state.clock, Clock)
    state.clock.now += seconds


PER_MINUTE_3 = TierLimits(windows=(("requests_per_minute", 3.0, 60.3),), interval=0.0, slack=0.0, concurrent=100)


async def test_budget_scope_reserves_refuses_and_settles(state: SharedState) -> None:
    assert (await state.budget_reserve("fin", "a", 1.0))[0] == "unset"
    await state.budget_set("fin", 2.5)
    assert await state.budget_reserve("fin", "a", 1.0) == ("ok", 2.5, 0.0)
    assert await state.budget_reserve("fin", "b", 1.0) == ("ok", 2.5, 1.0)
    assert await state.budget_reserve("fin", "c", 1.0) == ("refused", 2.5, 2.0)
    await state.budget_settle("fin", "a", 0.25)
    shown = await state.budget_get("fin")
    assert (shown.limit, shown.spent, shown.reserved, shown.leases) == (2.5, 0.25, 1.0, 1)
    assert (await state.budget_reserve("fin", "c", 1.0))[0] == "ok"  # 0.25 + 1 + 1 <= 2.5
    reset = await state.budget_reset("fin")
    assert reset.spent == 0.0 and reset.limit == 2.5 and reset.reserved == 2.0


async def test_a_lapsed_reservation_frees_the_scope_and_a_renewed_one_does_not(state: SharedState) -> None:
    await state.budget_set("ops", 1.0)
    assert (await state.budget_reserve("ops", "dead", 0.6))[0] == "ok"
    assert (await state.budget_reserve("ops", "alive", 0.4))[0] == "ok"
    advance(state, 8)
    await state.renew_leases({}, {"ops": {"alive"}})
    advance(state, 5)  # "dead" was last renewed 13 s ago, "alive" 5 s ago
    shown = await state.budget_get("ops")
    assert shown.reserved == pytest.approx(0.4) and shown.leases == 1
    # A lapsed lease is still booked when its call settles late: the money was spent.
    await state.budget_settle("ops", "dead", 0.5)
    assert (await state.budget_get("ops")).spent == pytest.approx(0.5)


async def test_requests_wait_until_the_oldest_leaves_the_window(state: SharedState) -> None:
    for i in range(3):
        assert (await state.acquire_rate("k", PER_MINUTE_3, 1, f"l{i}")).granted
        advance(state, 1)
    answer = await state.acquire_rate("k", PER_MINUTE_3, 1, "l3")
    assert not answer.granted and answer.tier == "requests_per_minute"
    assert answer.wait == pytest.approx(60.3 - 3)
    advance(state, answer.wait)
    assert (await state.acquire_rate("k", PER_MINUTE_3, 1, "l3")).granted


async def test_tokens_are_weighed_in_their_window(state: SharedState) -> None:
    limits = TierLimits(windows=(("tokens_per_minute", 1000.0, 60.0),), interval=0.0, slack=0.0, concurrent=100)
    assert (await state.acquire_rate("k", limits, 600, "a")).granted
    advance(state, 10)
    assert (await state.acquire_rate("k", limits, 400, "b")).granted
    answer = await state.acquire_rate("k", limits, 500, "c")
    assert not answer.granted and answer.tier == "tokens_per_minute" and answer.wait == pytest.approx(50)
    advance(state, 50)
    assert (await state.acquire_rate("k", limits, 500, "c")).granted


async def test_starts_are_paced_across_callers(state: SharedState) -> None:
    limits = TierLimits(windows=(("requests_per_minute", 60.0, 60.3),), interval=1.0, slack=0.05, concurrent=100)
    assert (await state.acquire_rate("k", limits, 1, "a")).granted
    answer = await state.acquire_rate("k", limits, 1, "b")
    assert not answer.granted and answer.wait == pytest.approx(1.0)  # the first sets the beat


async def test_concurrency_slots_are_leases(state: SharedState) -> None:
    limits = TierLimits(windows=(), interval=0.0, slack=0.0, concurrent=2)
    assert (await state.acquire_rate("k", limits, 1, "a")).granted
    assert (await state.acquire_rate("k", limits, 1, "b")).granted
    assert (await state.acquire_rate("k", limits, 1, "c")).tier == "concurrent_requests"
    await state.release_slot("k", "a")
    assert (await state.acquire_rate("k", limits, 1, "c")).granted
    advance(state, 11)  # b and c were never renewed: their holders are gone
    assert (await state.acquire_rate("k", limits, 1, "d")).granted


async def test_a_pause_holds_back_every_caller_of_the_key(state: SharedState) -> None:
    await state.pause("openai", 5.0)
    answer = await state.acquire_rate("openai", PER_MINUTE_3, 1, "a")
    assert not answer.granted and answer.tier == "paused" and answer.wait == pytest.approx(5.0)
    assert (await state.acquire_rate("anthropic", PER_MINUTE_3, 1, "a")).granted


async def test_cache_entries_round_trip(state: SharedState) -> None:
    assert await state.cache_get("k") is None
    await state.cache_set("k", b"answer", 60)
    assert await state.cache_get("k") == b"answer"


def test_shared_limiters_of_four_callers_hold_the_window_together() -> None:
    """Four registries (as four processes) on one state: 600 calls at 600/min, never 601 in any window."""
    from orchestrate.state.memory import MemoryState

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        state = MemoryState(clock=loop.time)
        limits = RateLimitConfig(**{**UNLIMITED, "requests_per_minute": 600})
        stamps: list[float] = []

        async def process() -> None:
            registry = RateLimiterRegistry(None, {"openai": limits}, clock=loop.time, state=state)

            async def one() -> None:
                permit = await registry.acquire("openai", "gpt-4o", 100)
                stamps.append(loop.time())
                permit.release()

            await asyncio.gather(*(one() for _ in range(150)))
            await registry.aclose()

        await asyncio.gather(*(process() for _ in range(4)))
        return sorted(stamps)

    stamps = run_virtual(main())
    assert len(stamps) == 600
    assert most_in_any_window(stamps, 60.0 + skew_margin(60.0) - 1e-6) <= 600
    ideal = 599 * 0.1
    assert ideal * 0.95 <= stamps[-1] - stamps[0] <= ideal * 1.05


async def test_a_429_seen_by_one_process_pauses_the_others(redis_server: RedisServer) -> None:  # noqa: F811
    namespace = f"t{uuid.uuid4().hex[:8]}"
    first, second = (state_from_url(redis_server.url, namespace=namespace) for _ in range(2))
    try:
        seen = RateLimiterRegistry(None, state=first)
        other = RateLimiterRegistry(None, state=second)
        seen.pause_provider("openai", 0.3)
        await seen.aclose()
        permit = await other.acquire("openai", "gpt-4o", 10)
        assert permit.waited >= 0.25
        permit.release()
        await other.aclose()
    finally:
        await first.aclose()
        await second.aclose()


async def test_losing_redis_fails_closed_and_stays_closed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="hunter2-secret").start()
    state = state_from_url(server.url, namespace="lost")
    try:
        await state.connect()
        await state.budget_set("s", 1.0)
        server.stop()
        with pytest.raises(StateUnavailableError) as caught:
            await state.budget_reserve("s", "a", 0.1)
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{server.port}/0" in message and "hunter2" not in message
        server.start()  # back, but this run never trusts it again
        with pytest.raises(StateUnavailableError):
            await state.acquire_rate("k", PER_MINUTE_3, 1, "a")
    finally:
        await state.aclose()
        server.stop()


async def test_an_unreachable_state_is_reported_with_its_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # never started: nothing listens on its port
    state = state_from_url(server.url)
    with pytest.raises(StateUnavailableError, match=f"127.0.0.1:{server.port}"):
        await state.connect()
    await state.aclose()


def test_urls_pick_a_backend_and_bad_ones_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert state_from_url(None).shared is False
    assert state_from_url("memory://").url == "memory://"
    with pytest.raises(UserInputError, match="unknown scheme 'http'"):
        state_from_url("http://127.0.0.1:6379")
    with pytest.raises(UserInputError, match="lease_seconds"):
        state_from_url("redis://127.0.0.1:6379/0?lease_seconds=never")
    with pytest.raises(UserInputError, match="namespace"):
        state_from_url("memory://", namespace="two words")
    assert scrub_url("rediss://user:pa55@host:6380/2") == "rediss://user:***@host:6380/2"
    assert scrub_url("redis://host:6379/0") == "redis://host:6379/0"
    monkeypatch.setenv("REDIS_PASSWORD", "from-env")
    backend = state_from_url("redis://127.0.0.1:1/0")
    assert "from-env" not in backend.url


def test_without_the_redis_extra_the_error_names_it() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from orchestrate.state.backends import state_from_url\n"
        "from orchestrate.errors import UserInputError\n"
        "try:\n    state_from_url('redis://127.0.0.1:6379/0')\n"
        "except UserInputError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert "pip install 'orchestrate[redis]'" in out.stdout, out.stderr


async def test_a_pause_is_read_back_by_every_process_until_it_ends(state: SharedState) -> None:
    assert await state.paused_for("anthropic") == 0.0
    await state.pause("anthropic", 30.0)
    assert await state.paused_for("anthropic") == pytest.approx(30.0)
    advance(state, 20.0)
    assert await state.paused_for("anthropic") == pytest.approx(10.0)
    assert await state.paused_for("openai") == 0.0
    advance(state, 11.0)
    assert await state.paused_for("anthropic") == 0.0
