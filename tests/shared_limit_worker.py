"""One of several processes sharing a rate limit through Redis, on a scaled clock.

    python -m tests.shared_limit_worker URL NAMESPACE BASE SCALE CALLS START_AT OUT

Runs CALLS simulated agents through the engine with a limit of 600 requests a
minute kept in Redis, on a clock that runs SCALE times faster than the wall
clock from BASE (epoch seconds, the same in every process): a minute passes in
60/SCALE s. Starts at the wall time START_AT, and writes the scaled start time
of every call to OUT, one a line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from orchestrate import Agent, EngineConfig, OrchestrationEngine, SimulatedClient, Workflow
from orchestrate.run.events import EventType
from orchestrate.state.backends import state_from_url


def main(url: str, namespace: str, base: float, scale: float, calls: int, start_at: float, out: Path) -> None:
    def clock() -> float:
        return (time.time() - base) * scale

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / scale)

    async def run() -> list[float]:
        state = state_from_url(url, namespace=namespace, clock=clock)
        limits = {
            "simulated": {
                "requests_per_minute": 600,
                "requests_per_hour": 10**6,
                "requests_per_day": 10**7,
                "tokens_per_minute": 10**9,
                "concurrent_requests": 1000,
            }
        }
        engine = OrchestrationEngine(
            SimulatedClient(),
            EngineConfig(rate_limit_config=None, rate_limits=limits),
            state=state,
            limiter_clock=clock,
            limiter_sleep=sleep,
        )
        stamps: list[float] = []
        engine.add_sink(lambda e: stamps.append(clock()) if e.type is EventType.LLM_CALL else None)
        agents = [
            Agent(f"a{i}", "General", "d", {"model": "gpt-4o-mini", "max_tokens": 10}, f"row {i}") for i in range(calls)
        ]
        workflow = Workflow("shared_limit", "d", agents, max_parallel_agents=calls, cost_budget=1e6)
        await state.connect()
        workflow_id = await engine.register_workflow(workflow)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        done = await engine.execute_workflow(workflow_id)
        await engine.shutdown()
        await state.aclose()
        errors = {a.result.error for a in agents if a.result is not None and a.result.error}
        assert done.status.value == "completed", (done.status, errors)
        return stamps

    stamps = asyncio.run(run())
    out.write_text("".join(f"{t!r}\n" for t in stamps))


if __name__ == "__main__":
    url, namespace, base, scale, calls, start_at, out = sys.argv[1:8]
    main(url, namespace, float(base), float(scale), int(calls), float(start_at), Path(out))
