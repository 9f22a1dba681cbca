"""What sharing state through Redis adds to each call, and what one process sustains.

    python benchmarks/shared_state.py [--calls N]

Starts a redis-server on a free 127.0.0.1 port (it must be installed), then
measures, each as the median of three runs:

- the rate limiter: acquire + release of one call, in-process vs Redis
  (round trips and microseconds per call, calls made one after another);
- the budget scope: reserve + settle of one call against a scope in Redis;
- the engine: simulated agents at 0 latency, 100 in parallel, calls a second
  with no shared state, with shared limits, and with shared limits and a scope.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrate import Agent, EngineConfig, OrchestrationEngine, RateLimitConfig, SimulatedClient, Workflow
from orchestrate.money.budget_scope import ScopeLedger
from orchestrate.money.costs import Reservation
from orchestrate.money.rate_limit import RateLimiterRegistry
from orchestrate.state.backends import state_from_url
from orchestrate.state.base import LeaseKeeper
from orchestrate.state.redis import RedisState

HIGH = RateLimitConfig(
    requests_per_minute=10**8 - 1,
    requests_per_hour=10**8 - 1,
    requests_per_day=10**8 - 1,
    tokens_per_minute=10**8 - 1,
    concurrent_requests=10_000,
)


def start_redis(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def median_of_three(measure: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
    runs = [asyncio.run(measure()) for _ in range(3)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def limiter_cost(url: str | None, calls: int) -> Callable[[], Awaitable[dict[str, float]]]:
    async def measure() -> dict[str, float]:
        state = state_from_url(url, namespace=f"bench{time.monotonic_ns()}") if url else None
        registry = RateLimiterRegistry(None, {"openai": HIGH}, state=state)
        start = time.perf_counter()
        for _ in range(calls):
            permit = await registry.acquire("openai", "gpt-4o", 500)
            permit.release()
        await registry.aclose()
        elapsed = time.perf_counter() - start
        trips = state.round_trips if isinstance(state, RedisState) else 0
        if state is not None:
            await state.aclose()
        return {"us_per_call": elapsed / calls * 1e6, "round_trips_per_call": trips / calls}

    return measure


def budget_cost(url: str, calls: int) -> Callable[[], Awaitable[dict[str, float]]]:
    async def measure() -> dict[str, float]:
        state = state_from_url(url, namespace=f"bench{time.monotonic_ns()}")
        assert isinstance(state, RedisState)
        keeper = LeaseKeeper(state)
        ledger = ScopeLedger(state, keeper)
        ledger.scopes["wf"] = "bench"
        await state.budget_set("bench", 1e9)
        state.round_trips = 0
        start = time.perf_counter()
        for _ in range(calls):
            reservation = Reservation("wf", "wf:a", 0.01)
            await ledger.reserve(reservation)
            ledger.settle_later(reservation, 0.001)
            await ledger.drain()
        elapsed = time.perf_counter() - start
        trips = state.round_trips
        await keeper.aclose()
        await state.aclose()
        return {"us_per_call": elapsed / calls * 1e6, "round_trips_per_call": trips / calls}

    return measure


def engine_rate(url: str | None, scope: bool, agents: int) -> Callable[[], Awaitable[dict[str, float]]]:
    async def measure() -> dict[str, float]:
        state = state_from_url(url, namespace=f"bench{time.monotonic_ns()}") if url else None
        if state is not None and scope:
            await state.budget_set("bench", 1e9)
        config = EngineConfig(rate_limit_config=None, rate_limits={"simulated": HIGH})
        engine = OrchestrationEngine(SimulatedClient(), config, state=state)
        workflow = Workflow(
            "bench",
            "d",
            [
                Agent(f"a{i}", "General", "d", {"model": "gpt-4o-mini", "max_tokens": 50}, f"row {i}")
                for i in range(agents)
            ],
            max_parallel_agents=100,
            cost_budget=1e9,
            budget_scope="bench" if scope else None,
        )
        workflow_id = await engine.register_workflow(workflow)
        start = time.perf_counter()
        done = await engine.execute_workflow(workflow_id)
        elapsed = time.perf_counter() - start
        await engine.shutdown()
        if state is not None:
            await state.aclose()
        assert done.status.value == "completed", done.status
        return {"calls_per_s": agents / elapsed, "us_per_call": elapsed / agents * 1e6}

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_redis(folder)
        try:
            rows: list[tuple[str, dict[str, Any]]] = [
                ("limiter, in-process", median_of_three(limiter_cost(None, args.calls))),
                ("limiter, Redis", median_of_three(limiter_cost(url, args.calls))),
                ("budget scope, Redis (reserve + settle)", median_of_three(budget_cost(url, args.calls))),
                ("engine, no shared state", median_of_three(engine_rate(None, False, args.calls))),
                ("engine, Redis limits", median_of_three(engine_rate(url, False, args.calls))),
                ("engine, Redis limits + budget scope", median_of_three(engine_rate(url, True, args.calls))),
            ]
        finally:
            process.kill()
            process.wait()
    print(f"{'measure':<42} {'us/call':>9} {'round trips/call':>17} {'calls/s':>9}")
    for name, row in rows:
        trips = row.get("round_trips_per_call")
        rate = row.get("calls_per_s")
        print(
            f"{name:<42} {row['us_per_call']:>9.1f} {'' if trips is None else f'{trips:.2f}':>17} "
            f"{'' if rate is None else f'{rate:.0f}':>9}"
        )
    base, limited = rows[0][1]["us_per_call"], rows[1][1]["us_per_call"]
    print(
        f"\nRedis adds {limited - base:.0f} us per call to the limiter and "
        f"{rows[2][1]['us_per_call']:.0f} us per call for the budget scope "
        f"(one round trip to local Redis each way is most of it)."
    )


if __name__ == "__main__":
    main()
