"""Rate limits hold in every sliding window, on virtual time (no test really waits)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from orchestrate import RateLimitConfig, RateLimiter
from orchestrate.money.rate_limit import Permit, RateLimiterRegistry, SlidingWindow, skew_margin
from tests.virtual_time import run_virtual

UNLIMITED = dict(
    requests_per_minute=10**6,
    requests_per_hour=10**8,
    requests_per_day=10**9,
    tokens_per_minute=10**12,
    concurrent_requests=10**6,
)


def most_in_any_window(stamps: Sequence[float], width: float, weights: Sequence[float] | None = None) -> float:
    """The most weight that starts within any closed window [t, t + width]."""
    pairs = sorted(zip(stamps, weights or [1.0] * len(stamps)))
    best = total = 0.0
    lo = 0
    for t, w in pairs:
        total += w
        while pairs[lo][0] < t - width:
            total -= pairs[lo][1]
            lo += 1
        best = max(best, total)
    return best


def start_times(config: RateLimitConfig, calls: int, tokens: int = 1) -> list[float]:
    """Start `calls` concurrent requests through one limiter on virtual time; when each started."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(config, clock=loop.time)
        stamps: list[float] = []

        async def one() -> None:
            await limiter.acquire(tokens)
            stamps.append(loop.time())
            limiter.release()

        await asyncio.gather(*(one() for _ in range(calls)))
        return sorted(stamps)

    return run_virtual(main())


@pytest.mark.parametrize(("per_minute", "calls"), [(2, 3), (2, 10), (60, 200), (600, 1500), (6000, 12000)])
def test_n_calls_never_put_more_than_r_in_any_sliding_minute_and_finish_near_ideal(per_minute: int, calls: int) -> None:
    stamps = start_times(RateLimitConfig(**{**UNLIMITED, "requests_per_minute": per_minute}), calls)
    assert len(stamps) == calls
    # Not even with the skew margin: any window of 60 s plus the margin holds at most R.
    assert most_in_any_window(stamps, 60.0 + skew_margin(60.0) - 1e-6) <= per_minute
    ideal = (calls - 1) * 60.0 / per_minute  # evenly spaced at exactly the limit
    assert stamps[-1] - stamps[0] <= ideal * 1.05
    assert stamps[-1] - stamps[0] >= ideal * 0.95


def test_a_strict_two_per_minute_server_never_sees_three_within_sixty_seconds() -> None:
    stamps = start_times(RateLimitConfig(**{**UNLIMITED, "requests_per_minute": 2}), 3)
    assert stamps[2] - stamps[0] > 60.0
    assert stamps[1] - stamps[0] == pytest.approx(30.0)  # paced, not a burst of two at the start


def test_requests_per_hour_hold_in_every_sliding_hour() -> None:
    config = RateLimitConfig(**{**UNLIMITED, "requests_per_minute": 60, "requests_per_hour": 100})
    stamps = start_times(config, 250)
    assert most_in_any_window(stamps, 3600.0 + skew_margin(3600.0) - 1e-6) <= 100
    assert most_in_any_window(stamps, 60.0) <= 60
    # 250 calls at 100 an hour: the third hundred starts two hours (and margins) after the first.
    assert 7200.0 < stamps[-1] - stamps[0] < 7200.0 * 1.05


def test_requests_per_day_hold_in_every_sliding_day() -> None:
    config = RateLimitConfig(**{**UNLIMITED, "requests_per_minute": 1000, "requests_per_day": 30})
    stamps = start_times(config, 70)
    assert most_in_any_window(stamps, 86400.0 + skew_margin(86400.0) - 1e-6) <= 30
    assert 2 * 86400.0 < stamps[-1] - stamps[0] < 2 * 86400.0 * 1.05


def test_tokens_per_minute_hold_in_every_sliding_minute() -> None:
    config = RateLimitConfig(**{**UNLIMITED, "tokens_per_minute": 10_000})
    stamps = start_times(config, 40, tokens=3000)
    assert most_in_any_window(stamps, 60.0 + skew_margin(60.0) - 1e-6, [3000.0] * 40) <= 10_000
    # Three fit in a window, so 40 calls need 13 more windows after the first.
    assert 13 * 60.0 < stamps[-1] - stamps[0] < 13 * 60.0 * 1.05


def test_a_request_above_the_whole_token_limit_waits_for_an_empty_window() -> None:
    config = RateLimitConfig(**{**UNLIMITED, "tokens_per_minute": 1000})
    stamps = start_times(config, 3, tokens=5000)
    assert stamps[1] - stamps[0] > 60.0 and stamps[2] - stamps[1] > 60.0


def test_statistics_name_the_tier_that_made_calls_wait() -> None:

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(RateLimitConfig(**{**UNLIMITED, "tokens_per_minute": 1000}), clock=loop.time)
        for _ in range(3):
            await limiter.acquire(600)
            limiter.release()
        return limiter.get_statistics()["wait_seconds_by_tier"]

    waits = run_virtual(main())
    assert waits["tokens_per_minute"] > 100 and waits["requests_per_minute"] == 0


def test_acquire_times_out_and_holds_nothing() -> None:

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(RateLimitConfig(requests_per_minute=60, concurrent_requests=1), clock=loop.time)
        await limiter.acquire(10)
        with pytest.raises(asyncio.TimeoutError):
            await limiter.acquire(10, timeout=5.0)
        assert limiter.get_statistics()["timeouts"] == 1 and limiter.in_flight == 1
        limiter.release()
        assert limiter.in_flight == 0
        # A timed-out waiter left nothing behind: the next one gets in after the pacing interval.
        started = loop.time()
        await limiter.acquire(10, timeout=5.0)
        assert loop.time() - started <= 1.0

    run_virtual(main())


def test_a_pause_holds_back_every_caller_of_the_provider() -> None:

    async def main() -> None:
        loop = asyncio.get_running_loop()
        registry = RateLimiterRegistry(None, clock=loop.time)
        registry.pause_provider("openai", 30.0)
        permits = await asyncio.gather(*(registry.acquire("openai", "gpt-4o", 10) for _ in range(5)))
        assert all(p.waited >= 30.0 for p in permits)
        other = await registry.acquire("anthropic", "claude-haiku-4-5", 10)
        assert other.waited == 0.0

    run_virtual(main())


def test_headers_saying_nothing_remains_pause_the_provider() -> None:

    async def main() -> None:
        loop = asyncio.get_running_loop()
        registry = RateLimiterRegistry(RateLimitConfig(**UNLIMITED), clock=loop.time)
        registry.observe("openai", {"remaining_requests": 0, "reset_requests_s": 12.0})
        permit = await registry.acquire("openai", "gpt-4o", 10)
        assert permit.waited >= 12.0

    run_virtual(main())


def test_sliding_window_folds_close_starts_yet_keeps_the_limit_and_the_flow() -> None:
    """Starts closer together than a grain share one entry; the entry still leaves the window
    a span after its last start, so a steady stream runs at the limit, never over it."""
    window = SlidingWindow(100, 1.0)  # span 1 s, grain 0.1 ms
    started: list[float] = []
    now = 0.0
    while now < 10.0:  # a caller ready every 20 us: far faster than the limit or the grain
        if window.fits(now):
            window.take(now)
            started.append(now)
        now += 0.00002
    lo = 0
    for hi, t in enumerate(started):  # never more than 100 in any 1 s window
        while started[lo] <= t - 1.0:
            lo += 1
        assert hi - lo + 1 <= 100
    assert 950 <= len(started) <= 1000  # ... and the stream keeps flowing at (nearly) 100/s
    assert len(window) <= SlidingWindow.GRAINS + 1
    # Below the limit, a stream of starts closer than a grain is never held back: an entry
    # takes in only what began within a grain of its first start, so none outlives the window.
    busy = SlidingWindow(100_000, 1.0)
    for n in range(250_000):  # 50,000 a second for 5 s, 20 us apart
        now = n * 0.00002
        assert busy.fits(now)
        busy.take(now)
    assert len(busy) <= SlidingWindow.GRAINS + 1


def test_sliding_window_frees_exactly_what_left_the_window() -> None:
    window = SlidingWindow(10, 60.0)
    window.take(0.0, 4)
    window.take(10.0, 4)
    assert window.wait(20.0, 2) == 0.0
    assert window.wait(20.0, 3) == pytest.approx(40.0)  # once the first 4 leave, at 60 s
    assert window.wait(20.0, 7) == pytest.approx(50.0)  # both must leave
    assert window.wait(61.0, 6) == 0.0 and window.used == 4


async def test_slots_serve_in_order_and_a_cancelled_waiter_never_keeps_a_slot() -> None:
    from orchestrate.slots import Slots

    slots = Slots(1)
    assert slots.try_take() and not slots.try_take()  # one holder; the next would wait
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.take()
        order.append(name)

    first = asyncio.ensure_future(take("first"))
    gone = asyncio.ensure_future(take("gone"))
    last = asyncio.ensure_future(take("last"))
    await asyncio.sleep(0)
    assert slots.waiting == 3 and not slots.free
    gone.cancel()  # cancelled while queued: leaves the queue
    await asyncio.sleep(0)
    assert slots.waiting == 2
    slots.give()  # to 'first', who came first
    await asyncio.sleep(0)
    assert order == ["first"] and slots.held == 1
    slots.give()  # handed to 'last', who is cancelled before it runs: the slot is passed on
    last.cancel()
    await asyncio.sleep(0)
    assert order == ["first"] and slots.held == 0 and slots.free
    assert slots.try_take()
    assert first.done() and gone.cancelled() and last.cancelled()


@pytest.mark.parametrize(("seed", "per_minute"), [(1, 400), (2, 10**6), (3, 10**6)])
def test_a_limiter_counting_calls_in_open_entries_books_what_the_tiers_would_one_by_one(
    seed: int, per_minute: int
) -> None:
    """`try_start` counts calls that join every tier's newest entry and adds them when the tiers
    are next read: each call gets the answer, and the tiers end with the entries, counts and
    pacing, that booking each call in every tier (`SlidingWindow.start_all`) gives."""
    import random

    rng = random.Random(seed)
    config = RateLimitConfig(
        requests_per_minute=per_minute, requests_per_hour=1500, requests_per_day=2000, tokens_per_minute=4_000
    )
    now = [100.0]
    limiter = RateLimiter(config, clock=lambda: now[0])
    reference = tuple(
        SlidingWindow(getattr(config, tier), window, margin=skew_margin(window, getattr(config, tier)), pace=paced)
        for tier, window, paced in (
            ("requests_per_minute", 60.0, True),
            ("requests_per_hour", 3600.0, False),
            ("requests_per_day", 86400.0, False),
            ("tokens_per_minute", 60.0, False),
        )
    )
    answers: list[bool] = []
    joined = 0  # calls counted in open entries
    for _ in range(3000):  # steps within a grain, across grains, and past a window
        now[0] += rng.choice([0.00001, 0.0001, 0.0004, 0.003, 0.02, 0.2, 1.5, 40.0])
        tokens = rng.choice([0, 1, 50, 300, 900])
        counted = limiter._pending_requests
        started = limiter.try_start(tokens)
        joined += limiter._pending_requests > counted
        expected = SlidingWindow.start_all(reference, (1.0, 1.0, 1.0, float(tokens)), now[0])
        assert started == expected
        answers.append(started)
        if started:
            limiter.release()
        if rng.random() < 0.01:  # something reads the tiers in between
            limiter.ready(tokens)
            assert [w.used for w in limiter._windows] == [w.used for w in reference]
    assert True in answers and False in answers  # it bound, and it let calls through
    if per_minute > 400:  # (paced at 400 a minute, no two calls start within a grain)
        assert joined > 100
    limiter.ready(0)
    for mine, theirs in zip(limiter._windows, reference):
        assert [list(entry) for entry in mine._log] == [list(entry) for entry in theirs._log]
        assert (mine.used, mine._next) == (theirs.used, theirs._next)


async def test_a_limiters_slots_go_to_queued_callers_first_and_back_to_the_pool_when_none_wait() -> None:
    # try_start takes a slot and release gives one back without Slots' calls: the slots must still
    # go as Slots would give them, to the first caller queued in acquire (a cancelled one skipped),
    # never to a try_start while anyone is queued, and back to the pool when nobody waits.
    clock = itertools.count(100.0, 1.0).__next__  # a second a reading: pacing never waits
    registry = RateLimiterRegistry(RateLimitConfig(**{**UNLIMITED, "concurrent_requests": 2}), clock=clock)
    permits = [registry.try_acquire("openai", "openai", 10), registry.try_acquire("openai", "openai", -5)]
    assert all(permits) and registry.try_acquire("openai", "openai", 10) is None  # both slots held
    assert all(permit is not None and permit.waited == 0.0 for permit in permits)
    limiter = registry._limiters["openai"]
    assert limiter is not None and registry.total_tokens == 10 and limiter.total_tokens == 10  # -5 counts 0
    order: list[str] = []

    async def queued(name: str) -> None:
        await limiter.acquire(10)
        order.append(name)

    first, gone, last = (asyncio.ensure_future(queued(name)) for name in ("first", "gone", "last"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    permits[0].release()
    permits[0].release()  # twice: harmless
    assert not limiter.try_start(10)  # the slot went to 'first', still queued to run
    await asyncio.sleep(0)
    assert order == ["first"] and limiter._slots.held == 2 and limiter.in_flight == 2
    permits[1].release()  # to 'last', the one still queued ('gone' was cancelled)
    await asyncio.sleep(0)
    assert order == ["first", "last"] and limiter._slots.held == 2 and limiter.in_flight == 2
    limiter.release()
    limiter.release()
    assert limiter._slots.held == 0 and limiter.in_flight == 0 and limiter._slots.free
    limiter.release()  # one release too many gives back nothing
    assert limiter._slots.held == 0 and limiter.try_start(1) and limiter.try_start(1) and not limiter.try_start(1)
    assert first.done() and gone.cancelled() and last.done()


def test_a_permit_of_one_limiter_holds_and_gives_back_as_a_permit_of_two_does() -> None:
    # try_acquire's permit of the provider's limiter alone is made without a list (`_OnePermit`):
    # it must be a Permit, waited 0, and give the slot back once however often it is released,
    # as the permit of a provider's and a model's limiters does.
    clock = itertools.count(100.0, 1.0).__next__
    one = RateLimitConfig(**{**UNLIMITED, "concurrent_requests": 1})
    registry = RateLimiterRegistry(one, {"gpt-x": one}, clock=clock)
    for model in ("gpt-y", "gpt-x"):  # the provider's limits only; then the model's too
        permit = registry.try_acquire("openai", model, 10)
        assert isinstance(permit, Permit) and permit.waited == 0.0
        assert registry.try_acquire("openai", model, 10) is None  # the provider's one slot is held
        permit.release()
        permit.release()  # twice: harmless
        limiters = [registry._limiters.get("openai"), registry._limiters.get("gpt-x")]
        assert all(limiter.in_flight == 0 for limiter in limiters if limiter is not None)
        again = registry.try_acquire("openai", model, 10)
        assert again is not None
        again.release()
        assert registry.total_requests == (2 if model == "gpt-y" else 4)
