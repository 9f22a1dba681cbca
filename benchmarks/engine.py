"""Benchmarks: the engine against a bare asyncio scheduler (issue 24, "the engine at 3x bare asyncio").

The path measured is the public API as a Python user meets it: `OrchestrationEngine`
with an `LLMClient` that answers at once (or after `latency` seconds), every
`RateLimitConfig` tier set high enough never to bind (so the limiter runs, but
never waits), cost tracking on (always), the default Monitor and no other sink.
The same workloads also run through `bare_asyncio`, a 60-line scheduler on plain
asyncio that calls the same client, so each figure is printed with its ratio to
what asyncio alone costs.

    python benchmarks/engine.py               # every workload, 5 fresh processes each
    python benchmarks/engine.py wide-1000     # one workload
    python benchmarks/engine.py --repeat 9    # more runs (the median is shown)
    python benchmarks/engine.py --profile wide-1000   # cProfile of one engine run, top 30
    python benchmarks/engine.py --pace layered-20x50  # where a layer's time goes (calls' starts and ends)
    python benchmarks/engine.py --instructions wide chain  # instructions an agent, under valgrind's callgrind
    python benchmarks/engine.py --without each wide-1000   # what each piece of the path costs (knock-outs)

Each run is a fresh Python process (so its peak RSS is its own and nothing is
warm). The machine these figures come from has 2 cores shared by a dozen busy
processes, so the per-agent figure is **CPU time** (`time.process_time()` over
`register_workflow` + `execute_workflow`, divided by the agents), the median of
the runs; wall time is printed too. The layered workload waits on 20 ms calls,
so its figure is wall time over the ideal (20 layers x 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrate import (  # noqa: E402
    Agent,
    EngineConfig,
    LLMClient,
    LLMResponse,
    OrchestrationEngine,
    RateLimitConfig,
    Workflow,
)

MODEL = "gpt-4o-mini"

# Every tier far above anything a benchmark can reach: the limiter books each call, never waits.
NEVER_BINDS = RateLimitConfig(
    requests_per_minute=10**9,
    requests_per_hour=10**10,
    requests_per_day=10**11,
    tokens_per_minute=10**12,
    concurrent_requests=10**6,
)


class InstantClient(LLMClient):
    """Answers every call at once (or after `latency` seconds), with plausible usage."""

    provider = "instant"  # not `simulated`, which the registry leaves unlimited: here the limiter runs

    def __init__(self, latency: float = 0.0, log: list[tuple[bool, float]] | None = None) -> None:
        self.latency = latency
        self.log = log  # (True at a call's start, False at its end; perf_counter) for --pace

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        if self.log is not None:
            self.log.append((True, time.perf_counter()))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.log is not None:
            self.log.append((False, time.perf_counter()))
        return LLMResponse("done", model, len(prompt) // 4 + 1, 8, "stop", provider=self.provider)

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        return await self.complete(str(messages[-1]["content"]), model, temperature, max_tokens, tools)


# -- the workloads --------------------------------------------------------------------------------


def _agent(name: str, deps: list[str]) -> Agent:
    return Agent(
        name=name,
        module="General",
        description="",
        llm_config={"model": MODEL, "max_tokens": 64},
        prompt_template=f"Task {name}",
        dependencies=deps,
    )


def wide(n: int) -> list[Agent]:
    return [_agent(f"a{i}", []) for i in range(n)]


def chain(n: int) -> list[Agent]:
    return [_agent(f"c{i}", [f"c{i - 1}"] if i else []) for i in range(n)]


def layered(layers: int, width: int) -> list[Agent]:
    agents: list[Agent] = []
    previous: list[str] = []
    for layer in range(layers):
        names = [f"l{layer}_{i}" for i in range(width)]
        agents.extend(_agent(name, list(previous)) for name in names)
        previous = names
    return agents


# name: (agents, max_parallel_agents, latency of a call, ideal seconds, target)
WORKLOADS: dict[str, Callable[[], tuple[list[Agent], int, float, float, str]]] = {
    "wide-1000": lambda: (wide(1000), 1000, 0.0, 0.0, "<= 20 us/agent"),
    "wide-10000": lambda: (wide(10_000), 10_000, 0.0, 0.0, "<= 20 us/agent, <= 60 MB RSS"),
    "chain-500": lambda: (chain(500), 1, 0.0, 0.0, "<= 20 us/agent"),
    "layered-20x50": lambda: (layered(20, 50), 1000, 0.02, 20 * 0.02, "<= 1.10x the ideal"),
}


def workload(name: str) -> tuple[list[Agent], int, float, float, str]:
    """A workload of the table, or another size of one (``wide-N``, ``chain-N``), e.g. for callgrind."""
    if name in WORKLOADS:
        return WORKLOADS[name]()
    kind, _, size = name.partition("-")
    if kind == "wide" and size.isdigit():
        return wide(int(size)), int(size), 0.0, 0.0, "-"
    if kind == "chain" and size.isdigit():
        return chain(int(size)), 1, 0.0, 0.0, "-"
    raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}, wide-N, chain-N")


# -- the baseline: a scheduler on plain asyncio ---------------------------------------------------


async def bare_asyncio(agents: list[Agent], client: LLMClient, parallel: int) -> dict[str, str]:
    """Run `agents` in dependency order, at most `parallel` at once, on plain asyncio.

    What any scheduler must do and nothing more: a task per agent, a counter of
    unfinished dependencies per agent, a ready queue, a parallel cap, the answer
    kept by name. No budgets, limits, events, retries or timeouts.
    """
    index = {agent.name: i for i, agent in enumerate(agents)}
    dependents: list[list[int]] = [[] for _ in agents]
    waiting = [len(agent.dependencies) for agent in agents]
    for i, agent in enumerate(agents):
        for dep in agent.dependencies:
            dependents[index[dep]].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    ready.reverse()  # popped from the end: first in the file first
    outputs: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    state = {"running": 0, "finished": 0}
    tasks: set[asyncio.Task[None]] = set()

    def fill() -> None:
        while ready and state["running"] < parallel:
            i = ready.pop()
            state["running"] += 1
            task = loop.create_task(run(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def run(i: int) -> None:
        agent = agents[i]
        llm = agent.llm_config
        try:
            response = await client.complete(agent.prompt_template, llm["model"], 0.7, llm.get("max_tokens", 1000))
            outputs[agent.name] = response.content
        except Exception as exc:  # an agent's failure is its own
            outputs[agent.name] = f"failed: {exc}"
        state["running"] -= 1
        state["finished"] += 1
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
        fill()
        if state["finished"] == len(agents) and not done.done():
            done.set_result(None)

    fill()
    if agents:
        await done
    return outputs


# -- knock-outs: what each piece of the path costs -----------------------------------------------

# Each piece the path includes, and how `--without` takes it out of a run: a measurement
# only (the run it leaves is not a valid run: no budget, no resume, no events...), made by
# replacing the piece with a constant in the benchmark's own process.
PIECES = {
    "limiter": "no rate limiter (EngineConfig(rate_limit_config=None))",
    "events": "events built but handed to no sink (the engine's emit does nothing; the Monitor sees none)",
    "fingerprint": "no resume fingerprint (a constant)",
    "records": "no cost record a call (record_cost books the workflow's spend only)",
    "bound": "no worst-case bound before a call (max_cost is a constant)",
    "cache-plan": "no prompt-cache plan (PromptCaching.plan answers None)",
    "stamps": "no wall-clock stamps (started_at and completed_at are one constant)",
}


def knock_out(pieces: frozenset[str]) -> None:
    """Take `pieces` (of `PIECES`) out of this process's engine, replacing each with a constant."""
    from datetime import UTC, datetime

    import orchestrate.money.costs as costs
    import orchestrate.run.engine as engine_module
    import orchestrate.run.prompt_cache as prompt_cache
    import orchestrate.run.scheduler as scheduler

    def replace(owner: Any, name: str, value: Any) -> None:
        # A name the engine no longer has would be set beside it and change nothing: refused.
        if not hasattr(owner, name):
            raise SystemExit(f"--without: {owner.__name__}.{name} is gone; update benchmarks/engine.py's knock_out")
        setattr(owner, name, value)

    def record_cost(
        self: Any, agent_id: str, agent: str, workflow_id: str, *args: Any, cost: float = 0.0, **kw: Any
    ) -> float:
        self._workflows[workflow_id].spent += cost
        return cost

    stamp = datetime.now(UTC)
    if "events" in pieces:
        replace(engine_module.OrchestrationEngine, "emit", lambda self, event: None)
    if "fingerprint" in pieces:
        replace(scheduler, "fingerprint", lambda agent, text: "-")
        replace(scheduler.WorkflowRun, "_fingerprint", lambda self, i, text: "-")
    if "records" in pieces:
        replace(costs.CostTracker, "record_cost", record_cost)
    if "bound" in pieces:
        replace(costs.CostTracker, "max_cost", lambda self, *args, **kw: 0.001)
    if "cache-plan" in pieces:
        replace(prompt_cache.PromptCaching, "plan", lambda self, *args, **kw: None)
    if "stamps" in pieces:
        replace(scheduler, "_now", lambda tz=None: stamp)


def pieces_of(text: str) -> frozenset[str]:
    """`--without`'s list: piece names, ``all`` (every piece) or nothing."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if "all" in names:
        return frozenset(PIECES)
    unknown = names - set(PIECES)
    if unknown:
        raise SystemExit(f"--without: unknown piece {sorted(unknown)[0]!r}; known: {', '.join(PIECES)}, all, each")
    return frozenset(names)


# -- one measurement, in a fresh process ----------------------------------------------------------


def measure(mode: str, name: str, virtual_clock: bool = False, without: frozenset[str] = frozenset()) -> dict[str, Any]:
    agents, parallel, latency, ideal, _ = workload(name)
    client = InstantClient(latency)
    limiter_clock = _virtual_clock() if virtual_clock else time.monotonic
    knock_out(without)
    limits = None if "limiter" in without else NEVER_BINDS

    async def engine_run() -> tuple[float, float]:
        engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=limits), limiter_clock=limiter_clock)
        workflow = Workflow(
            name=name, description="", agents=agents, max_parallel_agents=parallel, cost_budget=1e9, timeout=3600.0
        )
        wall, cpu = time.perf_counter(), time.process_time()
        wf_id = await engine.register_workflow(workflow)
        result = await engine.execute_workflow(wf_id)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert result.status.value == "completed", result.status
        return wall, cpu

    async def bare_run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = await bare_asyncio(agents, client, parallel)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert len(outputs) == len(agents)
        return wall, cpu

    gc.collect()
    wall, cpu = asyncio.run(engine_run() if mode == "engine" else bare_run())
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "agents": len(agents),
        "ideal_s": ideal,
        "peak_mb": peak_mb(),
    }


def _virtual_clock(step: float = 30e-6) -> Callable[[], float]:
    """A limiter clock that moves `step` seconds each time it is read: under valgrind (about fifty
    times slower) the limiter then sees calls as far apart as in a native run, not one a grain
    apart, so that its path, and the count, are the same from run to run."""
    now = [1000.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


def instructions(kind: str, which: list[str]) -> None:
    """Instructions an agent of `kind` (wide or chain), engine and bare asyncio: callgrind's count
    of 3,000 agents minus 1,000, over 2,000 (start-up cancels out), the limiter on a virtual clock.
    Unlike CPU time, the neighbours cannot move it. The engine's count is taken for each set of
    pieces taken out in `which` ("" for the whole path), beside the whole path's."""

    def count(mode: str, size: int, without: str = "") -> int:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
            + ["--one", mode, f"{kind}-{size}", "--virtual-clock"]
            + (["--without", without] if without else []),
            capture_output=True,
            text=True,
            check=True,
        )
        return int(next(line for line in run.stderr.splitlines() if "Collected" in line).split()[-1])

    def per_agent(mode: str, without: str = "") -> int:
        return (count(mode, 3000, without) - count(mode, 1000, without)) // 2000

    bare, whole = per_agent("bare"), per_agent("engine")
    print(
        f"{kind}: {whole:,} instructions an agent; bare asyncio {bare:,} (orchestrate / bare asyncio {whole / bare:.2f})",
        flush=True,
    )
    for without in filter(None, which):
        part = per_agent("engine", without)
        label = "every piece" if pieces_of(without) == frozenset(PIECES) else without
        print(
            f"{kind} without {label}: {part:,} instructions an agent ({part - whole:+,}; "
            f"orchestrate / bare asyncio {part / bare:.2f})",
            flush=True,
        )


def peak_mb() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across exec, so a child forked from a
    parent that had imported orchestrate would report the parent's size: VmHWM is the exec'd
    image's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profile(name: str) -> None:
    import cProfile
    import pstats

    agents, parallel, _, _, _ = workload(name)

    async def go() -> None:
        engine = OrchestrationEngine(InstantClient(), EngineConfig(rate_limit_config=NEVER_BINDS))
        wf = Workflow(name=name, description="", agents=agents, max_parallel_agents=parallel, cost_budget=1e9)
        await engine.execute_workflow(await engine.register_workflow(wf))

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, go())
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def pace(name: str, without: frozenset[str] = frozenset()) -> None:
    """Where a layered run's time goes, from when each call starts and ends (one engine run).

    A layer of W agents that each wait `latency` lasts about: the first call's wait (the
    latency, plus the event loop's wake-up rounded to whole milliseconds), then W - 1
    spacings between the calls' ends (each end's bookkeeping, or the spacing of the starts,
    whichever is longer), then the gap from the layer's last end to the next layer's first
    start (the last agent's bookkeeping, the next agents' tasks, the first one's way to its call).
    """
    agents, parallel, latency, ideal, _ = workload(name)
    width = sum(1 for agent in agents if not agent.dependencies)
    if not latency or width == len(agents):
        raise SystemExit(f"--pace needs a layered workload with latency (e.g. layered-20x50), not {name}")
    knock_out(without)
    engine_label = "orchestrate" if not without else f"orchestrate without {', '.join(sorted(without))}"
    for mode in ("engine", "bare"):
        log: list[tuple[bool, float]] = []
        wall = asyncio.run(_paced(mode, agents, parallel, InstantClient(latency, log), name, without))
        starts = [t for is_start, t in log if is_start]
        ends = [t for is_start, t in log if not is_start]
        layers = len(agents) // width

        def median_us(values: list[float]) -> float:
            return statistics.median(values) * 1e6

        start_gap = median_us([starts[i + 1] - starts[i] for i in range(len(starts) - 1) if (i + 1) % width])
        end_gap = median_us([ends[i + 1] - ends[i] for i in range(len(ends) - 1) if (i + 1) % width])
        first_wait = median_us([ends[k * width] - starts[k * width] for k in range(layers)])
        between = median_us([starts[(k + 1) * width] - ends[k * width + width - 1] for k in range(layers - 1)])
        layer = (first_wait + (width - 1) * end_gap + between) / 1000
        print(
            f"{name} ({engine_label if mode == 'engine' else 'bare asyncio'}): {wall / ideal:.3f}x the ideal "
            f"({wall:.3f}s of {ideal:.3f}s), {wall / layers * 1000:.2f} ms a layer of {width} ({latency * 1000:g} ms "
            f"calls). Medians: the first call's wait {first_wait / 1000:.2f} ms; calls start {start_gap:.0f} us apart "
            f"and end {end_gap:.0f} us apart; a layer's last end to the next one's first start {between:.0f} us. "
            f"A layer: {first_wait / 1000:.2f} + {width - 1} x {end_gap / 1000:.3f} + {between / 1000:.2f} "
            f"= {layer:.2f} ms"
        )


async def _paced(
    mode: str, agents: list[Agent], parallel: int, client: InstantClient, name: str, without: frozenset[str]
) -> float:
    """One run of `agents` (the engine, or bare asyncio), timed from its first agent's start."""
    if mode == "bare":
        wall = time.perf_counter()
        await bare_asyncio(agents, client, parallel)
        return time.perf_counter() - wall
    limits = None if "limiter" in without else NEVER_BINDS
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=limits))
    workflow = Workflow(
        name=name, description="", agents=agents, max_parallel_agents=parallel, cost_budget=1e9, timeout=3600.0
    )
    wf_id = await engine.register_workflow(workflow)
    wall = time.perf_counter()
    await engine.execute_workflow(wf_id)
    return time.perf_counter() - wall


# -- the table ------------------------------------------------------------------------------------


def _median_run(mode: str, name: str, repeat: int, without: str = "") -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, name] + (["--without", without] if without else []),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out))
    key = "wall_s" if runs[0]["ideal_s"] else "cpu_s"
    runs.sort(key=lambda r: r[key])
    row = dict(runs[len(runs) // 2])
    row["spread"] = (runs[0][key], runs[-1][key])
    row["peak_mb"] = statistics.median(r["peak_mb"] for r in runs)
    return row


def _line(name: str, engine: dict[str, Any], bare: dict[str, Any], target: str) -> str:
    n = engine["agents"]
    if engine["ideal_s"]:
        ratio, bare_ratio = engine["wall_s"] / engine["ideal_s"], bare["wall_s"] / bare["ideal_s"]
        met = ratio <= 1.10
        figure = (
            f"{ratio:5.3f}x the ideal ({engine['wall_s']:.3f}s of {engine['ideal_s']:.3f}s; "
            f"runs {engine['spread'][0]:.3f}-{engine['spread'][1]:.3f}s); bare asyncio {bare_ratio:5.3f}x"
        )
        versus = f"orchestrate / bare asyncio {engine['wall_s'] / bare['wall_s']:.2f}"
    else:
        us, bare_us = engine["cpu_s"] / n * 1e6, bare["cpu_s"] / n * 1e6
        met = us <= 20 and (n < 10_000 or engine["peak_mb"] <= 60)
        figure = (
            f"{us:5.1f} us/agent CPU (runs {engine['spread'][0] / n * 1e6:.1f}-{engine['spread'][1] / n * 1e6:.1f}; "
            f"wall {engine['wall_s'] / n * 1e6:.1f}); bare asyncio {bare_us:4.1f} us/agent"
        )
        versus = f"orchestrate / bare asyncio {us / bare_us:.2f}"
    return (
        f"{name:<14} agents={n:>6}  {figure}  {versus}  peak={engine['peak_mb']:.1f}MB "
        f"(bare {bare['peak_mb']:.1f}MB)  [{'met' if met else 'MISSED'}: {target}]"
    )


def knock_outs(name: str, which: list[str], repeat: int) -> None:
    """The engine's figure for `name` with each set of pieces in `which` taken out, beside the
    whole path's; the runs of each set alternate with the whole path's, so both see the same load."""
    layered = bool(workload(name)[3])
    unit, digits = ("x ideal", 3) if layered else (" us/agent", 1)  # (CPU time, as the table's)

    def figure(row: dict[str, Any]) -> float:
        return row["wall_s"] / row["ideal_s"] if layered else row["cpu_s"] / row["agents"] * 1e6

    for without in which:
        whole, part = [], []
        for _ in range(max(1, repeat)):  # alternated, one fresh process each
            whole.append(figure(_median_run("engine", name, 1)))
            part.append(figure(_median_run("engine", name, 1, without)))
        a, b = statistics.median(whole), statistics.median(part)
        label = "every piece" if pieces_of(without) == frozenset(PIECES) else without
        print(
            f"{name} without {label}: {b:.{digits}f}{unit} (whole path {a:.{digits}f}, {b - a:+.{digits}f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help=f"workloads to run (default: all of {', '.join(WORKLOADS)})")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per figure; the median is shown")
    parser.add_argument("--profile", action="store_true", help="cProfile one engine run of each workload named")
    parser.add_argument("--pace", action="store_true", help="where a layered run's time goes, layer by layer")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions an agent of wide or chain (needs valgrind)"
    )
    parser.add_argument(
        "--without",
        metavar="PIECES",
        help=f"the engine with pieces of its path taken out (comma-separated: {', '.join(PIECES)}; all; or "
        "each, one at a time and then all), beside the whole path: what each piece costs. A measurement only",
    )
    parser.add_argument("--one", nargs=2, metavar=("MODE", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--virtual-clock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        without = pieces_of(args.without or "")
        mode, name = args.one
        print(json.dumps(measure(mode, name, virtual_clock=args.virtual_clock, without=without)))
        return
    which = [*PIECES, "all"] if args.without == "each" else [args.without or ""]
    for text in which:
        pieces_of(text)  # refuses an unknown piece before anything runs
    if args.without is not None and not args.instructions and not args.pace:
        for name in args.only or list(WORKLOADS):
            workload(name)
            knock_outs(name, which, args.repeat)
        return
    if args.instructions:
        for kind in args.only or ["wide", "chain"]:
            if kind not in ("wide", "chain"):
                raise SystemExit(f"--instructions counts wide or chain, not {kind!r}")
            instructions(kind, which)
        return
    names = args.only or list(WORKLOADS)
    for name in names:
        workload(name)  # refuses an unknown name before anything runs
    if args.pace:
        for name in names:
            pace(name, pieces_of(args.without or ""))
        return
    if args.profile:
        for name in names:
            profile(name)
        return
    for name in names:
        engine = _median_run("engine", name, max(1, args.repeat))
        bare = _median_run("bare", name, max(1, args.repeat))
        print(_line(name, engine, bare, workload(name)[4]), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the figures printed so far stand; no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
