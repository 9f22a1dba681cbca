"""Benchmark: what OpenTelemetry tracing adds to a run, per agent.

The same wide workflow runs without tracing, with tracing, and with tracing
plus content, each exporting through the real BatchSpanProcessor and OTLP/HTTP
exporter to a collector stand-in on 127.0.0.1 that answers 200. Each mode runs
five times, interleaved; the median is shown. Two workloads:

- 0 latency: the simulated provider answers at once, so the figure is the CPU
  that tracing costs per agent (spans built inline on the event loop, then
  encoded and sent on the SDK's thread, which shares the GIL);
- 0.5 s per call, 500 agents, 50 in parallel: a run shaped like a real one
  (real calls take 0.5-30 s), where the question is whether tracing makes it
  any slower. Target: within 2% of the untraced wall time.

    python benchmarks/otel_overhead.py            # about two minutes
    python benchmarks/otel_overhead.py --repeat 3

Needs orchestrate[otel].
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrate import Agent, EngineConfig, OrchestrationEngine, SimulatedClient, Workflow  # noqa: E402


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def _workflow(n: int, latency: float) -> Workflow:
    llm: dict[str, Any] = {"model": "gpt-4o-mini", "max_tokens": 64}
    if latency:
        llm["latency"] = latency
    agents = [
        Agent(
            name=f"a{i}",
            module="Finance",
            description="",
            prompt_template=f"Reconcile account {i}",
            llm_config=dict(llm),
        )
        for i in range(n)
    ]
    return Workflow(name="otel_bench", description="", agents=agents, max_parallel_agents=50, cost_budget=1000.0)


async def _run(n: int, sink: Any, latency: float) -> float:
    engine = OrchestrationEngine(
        SimulatedClient(), EngineConfig(rate_limit_config=None), sinks=[sink] if sink is not None else []
    )
    workflow = _workflow(n, latency)
    await engine.register_workflow(workflow)
    started = time.perf_counter()
    await engine.execute_workflow(workflow.id)
    elapsed = time.perf_counter() - started
    await engine.shutdown()
    return elapsed


def _once(n: int, mode: str, latency: float = 0.0) -> tuple[float, float]:
    """(run seconds, flush-at-exit seconds) for one run in `mode`."""
    if mode == "off":
        return asyncio.run(_run(n, None, latency)), 0.0
    from orchestrate.observe.otel import Tracing

    tracing = Tracing(content=(mode == "content"), warn=lambda message: print(message, file=sys.stderr))
    run = asyncio.run(_run(n, tracing.sink, latency))
    started = time.perf_counter()
    tracing.shutdown()
    return run, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
    modes = ("off", "traces", "content")
    _once(200, "traces")  # warm-up: imports, first connection
    for latency, agents in ((0.0, 2000), (0.5, 500)):
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode in modes:
                results[mode].append(_once(agents, mode, latency))
        base = statistics.median(r for r, _ in results["off"])
        print(
            f"\n{agents} agents at {latency * 1000:g} ms a call, 50 in parallel, median of {args.repeat}; "
            "spans: the workflow's, and per agent invoke_agent and chat"
        )
        print(
            f"{'mode':<10} {'run s':>8} {'ratio':>7} {'us/agent':>9} {'added us/agent':>15} {'flush at exit s':>16}"
            "  target"
        )
        for mode in modes:
            run = statistics.median(r for r, _ in results[mode])
            flush = statistics.median(f for _, f in results[mode])
            over = (run - base) / agents * 1e6
            if mode == "off" or not latency:
                verdict = "-"
            else:
                verdict = f"ratio <= 1.02: {'met' if run / base <= 1.02 else 'MISSED'}"
            print(
                f"{mode:<10} {run:8.3f} {run / base:7.3f} {run / agents * 1e6:9.1f} {over:15.1f} "
                f"{flush:16.3f}  {verdict}"
            )
    server.shutdown()


if __name__ == "__main__":
    main()
