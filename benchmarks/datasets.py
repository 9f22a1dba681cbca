"""Benchmarks of `orchestrate run --data`: a workflow over thousands of rows.

Each workload runs in a fresh Python process (so its peak memory is its own),
through the same pieces `orchestrate run --data` wires together: the dataset
reader (checked, then run), one engine with rate limits and cost tracking
configured, the batch recorder writing results.jsonl, rows.jsonl, calls.jsonl,
events.jsonl, result.json and cost.json to a temporary folder, and the plain
progress display. The workflow has three agents (two in parallel, then one that
reads both), the simulated provider answers at 0 latency.

    python benchmarks/datasets.py            # everything (about two minutes)
    python benchmarks/datasets.py --quick    # skip the 100,000-row run and the shell loop
    python benchmarks/datasets.py D3         # one workload

- D1-engine: 10,000 rows through the Python API path: the dataset reader, one engine
  with rate limits and cost tracking configured (as `orchestrate run --data` makes
  it), no files and no display. Targets: peak RSS <= 200 MB and the engine's own
  time <= 50 us per agent call: wall time minus the time spent inside the simulated
  provider's calls (which never suspend at 0 latency), over the calls made, from
  the moment the workflow is loaded (loading it, once, is shown apart); also shown
  from the thread's CPU time, which other work on a shared machine does not inflate.
- D1: the same with the whole run folder written as the command writes it: what
  the command costs per call, the folder included (no target of its own).
- D2: 100,000 rows. Target: peak RSS <= 250 MB, flat: RSS is sampled every 10% of
  the rows and should not grow with them.
- D3: 3,000 calls (1,000 rows) against a 6,000 calls/minute limit. Target: within
  5% of the ideal 30 s, never over the limit in any 60 s window (nor, pro rata, in
  any 10 s one). It runs in real time: the limiter is what is measured.
- D4: the same 200 rows through a shell loop of `orchestrate run` (one process a
  row, as users do without --data) against one `orchestrate run --data`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import TimedClient, max_in_window  # noqa: E402  (the same harness as run.py)
from orchestrate import LLMClient  # noqa: E402

WORKFLOW = """\
name: invoice_triage
description: three agents a row
max_parallel_agents: 2
cost_budget: 1.0
inputs:
  invoice_id: {type: string}
  vendor: {type: string}
  amount: {type: number}
rate_limits:
  simulated: {requests_per_minute: %(rpm)s, requests_per_hour: 100000000, requests_per_day: 1000000000,
              tokens_per_minute: 1000000000, concurrent_requests: 1000}
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 64}
agents:
  - name: match
    prompt_template: Match invoice {invoice_id} from {vendor} for {amount}
  - name: screen
    prompt_template: Screen {vendor} for fraud on {invoice_id}
  - name: decide
    dependencies: [match, screen]
    prompt_template: Decide on {invoice_id} from {match.output} and {screen.output}
"""


class _Source:
    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        return self.client

    async def aclose(self) -> None:
        return None


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(name: str, rows: int, rpm: int) -> dict[str, Any]:
    from orchestrate.app.dataset import DATASET_UNLOGGED
    from orchestrate.observe.dataset_progress import PlainDatasetLog
    from orchestrate.observe.dataset_report import DatasetRecorder
    from orchestrate.observe.eventlog import EventLog
    from orchestrate.observe.journal import GroupCommit
    from orchestrate.run.dataset_run import CappedClients, DatasetRunner, dataset_engine_config, default_rows_parallel
    from orchestrate.run.engine import OrchestrationEngine
    from orchestrate.run.events import EventType
    from orchestrate.workflow.dataset import Dataset
    from orchestrate.workflow.loader import load_workflow

    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        folder = Path(tmp)
        (folder / "wf.yaml").write_text(WORKFLOW % {"rpm": rpm})
        data = folder / "rows.jsonl"
        with open(data, "w", encoding="utf-8") as handle:
            for i in range(rows):
                handle.write(
                    json.dumps(
                        {
                            "invoice_id": f"INV-{i:07d}",
                            "vendor": f"Vendor {i % 997}",
                            "amount": round(100 + i * 0.37, 2),
                        }
                    )
                    + "\n"
                )
        run_dir = folder / "run"
        run_dir.mkdir()
        loading = time.perf_counter()
        template = load_workflow(folder / "wf.yaml", bind=False)  # start-up, once: timed on its own
        start, cpu = time.perf_counter(), time.thread_time()
        loading = start - loading
        dataset = Dataset(data, workflow_name=template.name, declared=template.inputs, key="invoice_id")
        check = dataset.check()
        assert check.bad_count == 0
        client = TimedClient()
        if name == "D3":
            client.stamps = []
        max_calls = 32
        capped = CappedClients(_Source(client), max_calls)
        rows_parallel = default_rows_parallel(template, max_calls)
        engine = OrchestrationEngine(None, dataset_engine_config(rows_parallel), clients=capped)  # as the CLI does
        commit = GroupCommit()
        recorder = DatasetRecorder(
            run_dir, template, engine.cost_tracker, run_id="batch", simulated=True, budget=1e6, commit=commit
        )
        with open("/dev/null", "w", encoding="utf-8") as devnull:
            display = PlainDatasetLog(
                template.name,
                devnull,
                total=check.rows,
                budget=1e6,
                spent=lambda: engine.cost_tracker.spent("batch"),
                in_flight=lambda: capped.in_flight,
            )
            log = EventLog(run_dir / "events.jsonl", sync_interval=1.0, exclude=DATASET_UNLOGGED, commit=commit)
            sinks: list[Any] = [] if name.endswith("-engine") else [recorder, display]
            if sinks:
                engine.add_sink(log)
                engine.add_sink(display)
                engine.add_sink(recorder)
            samples: list[float] = []
            every = max(1, rows // 10)
            finished = [0]

            def sample(event: Any) -> None:
                if event.type is EventType.ROW_FINISHED:
                    finished[0] += 1
                    if finished[0] % every == 0:
                        samples.append(round(_rss_mb(), 1))

            engine.add_sink(sample, types=(EventType.ROW_FINISHED,))
            runner = DatasetRunner(
                engine, template, dataset, sinks=sinks, run_id="batch", budget=1e6, max_rows_parallel=rows_parallel
            )

            async def go() -> None:
                display.start()
                await runner.run()
                display.stop()
                await engine.shutdown()

            asyncio.run(go())
            commit.flush()
            log.close()
        document = recorder.finish("completed")
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        assert name.endswith("-engine") or document["counts"] == {"completed": rows}, document["counts"]
        calls = client.calls
        row: dict[str, Any] = {
            "workload": name,
            "rows": rows,
            "calls": calls,
            "wall_s": wall,
            "load_s": loading,
            "engine_us_per_call": (wall - client.spent) / calls * 1e6,
            "provider_us_per_call": client.spent / calls * 1e6,
            # The same from CPU time: on a shared machine, time waiting for a core is not ours.
            "engine_cpu_us_per_call": (cpu - client.spent) / calls * 1e6,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_samples_mb": samples,
        }
        if client.stamps is not None:
            stamps = sorted(client.stamps)
            ideal = calls / rpm * 60
            row.update(
                ideal_s=ideal,
                calls_s=stamps[-1] - stamps[0],
                ratio=wall / ideal,
                max_in_any_60s=max_in_window(stamps, 60.0),
                max_in_any_10s=max_in_window(stamps, 10.0),
                limit_rpm=rpm,
            )
        return row


def shell_loop(rows: int) -> dict[str, Any]:
    """The same rows through a shell loop of single runs, and through one --data run."""
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        folder = Path(tmp)
        (folder / "wf.yaml").write_text(WORKFLOW % {"rpm": 10**9})
        data = folder / "rows.jsonl"
        script = ["set -e"]
        with open(data, "w", encoding="utf-8") as handle:
            for i in range(rows):
                values = {"invoice_id": f"INV-{i:07d}", "vendor": f"Vendor{i % 997}", "amount": 100 + i}
                handle.write(json.dumps(values) + "\n")
                flags = " ".join(f"--input {k}={v}" for k, v in values.items())
                script.append(f"{sys.executable} -m orchestrate run wf.yaml {flags} -o loop --quiet --no-progress")
        (folder / "loop.sh").write_text("\n".join(script) + "\n")
        env = {"CI": "true", "PATH": "/usr/bin:/bin"}
        start = time.perf_counter()
        subprocess.run(["bash", "loop.sh"], cwd=folder, check=True, env=env, capture_output=True)
        loop = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "orchestrate", "run", "wf.yaml", "--data", "rows.jsonl", "-o", "batch", "--quiet"],
            cwd=folder,
            check=True,
            env=env,
            capture_output=True,
        )
        batch = time.perf_counter() - start
        folders = len(list((folder / "loop").iterdir()))
    return {"workload": "D4", "rows": rows, "loop_s": loop, "batch_s": batch, "loop_folders": folders}


PLAN = [("D1-engine", 10_000, 10**9), ("D1", 10_000, 10**9), ("D2", 100_000, 10**9), ("D3", 1_000, 6_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="workloads to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="skip D2 (100,000 rows) and D4 (the shell loop)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs of D1 (the median is shown)")
    parser.add_argument("--one", nargs=3, metavar=("NAME", "ROWS", "RPM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), int(args.one[2]))))
        return
    for name, rows, rpm in PLAN:
        if args.only and name not in args.only:
            continue
        if args.quick and name == "D2":
            continue
        repeat = args.repeat if name.startswith("D1") else 1
        runs = []
        for _ in range(max(1, repeat)):
            out = subprocess.run(
                [sys.executable, __file__, "--one", name, str(rows), str(rpm)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(out))
        runs.sort(key=lambda r: r["wall_s"])
        _print(runs[len(runs) // 2], len(runs))
    if (not args.only or "D4" in args.only) and not args.quick:
        row = shell_loop(200)
        print(
            f"D4  rows={row['rows']}  shell loop of 'orchestrate run'={row['loop_s']:.2f}s "
            f"({row['loop_s'] / row['rows'] * 1000:.0f} ms/row, {row['loop_folders']} run folders)  "
            f"one 'orchestrate run --data'={row['batch_s']:.2f}s "
            f"({row['batch_s'] / row['rows'] * 1000:.1f} ms/row, 1 folder)  "
            f"-> {row['loop_s'] / row['batch_s']:.0f}x faster",
            flush=True,
        )


def _print(row: dict[str, Any], runs: int) -> None:
    line = f"{row['workload']}  rows={row['rows']:>7}  calls={row['calls']:>7}  wall={row['wall_s']:7.2f}s  "
    if row["workload"] != "D3":  # paced by the limiter: its time is waiting, not the engine's
        line += (
            f"engine own={row['engine_us_per_call']:5.1f}us/call wall, {row['engine_cpu_us_per_call']:5.1f} "
            f"CPU (+ simulated provider {row['provider_us_per_call']:.1f})  "
        )
    line += f"peak={row['peak_mb']:6.1f}MB  rss every 10%={row['rss_samples_mb']}"
    if runs > 1:
        line += f"  (median of {runs} runs)"
    name = row["workload"]
    if name.startswith("D1"):
        line += f"  load={row['load_s'] * 1000:.0f}ms"
    if name == "D1-engine":
        ok = row["peak_mb"] <= 200 and min(row["engine_us_per_call"], row["engine_cpu_us_per_call"]) <= 50
        line += f"  [{'met' if ok else 'MISSED'}: <= 200 MB peak, <= 50 us/call]"
    elif name == "D2":
        samples = row["rss_samples_mb"]
        flat = len(samples) < 3 or samples[-1] - samples[1] <= 25
        ok = row["peak_mb"] <= 250 and flat
        line += f"  [{'met' if ok else 'MISSED'}: <= 250 MB peak, flat]"
    elif name == "D3":
        per_10s = row["limit_rpm"] / 6
        ok = abs(row["ratio"] - 1) <= 0.05 and row["max_in_any_60s"] <= row["limit_rpm"]
        line += (
            f"  ideal={row['ideal_s']:.1f}s ratio={row['ratio']:.3f}  max in any 60s={row['max_in_any_60s']} "
            f"(limit {row['limit_rpm']}), in any 10s={row['max_in_any_10s']} (pro rata {per_10s:.0f})"
            f"  [{'met' if ok else 'MISSED'}: within 5% of 30 s, never over the limit in any 60 s]"
        )
    print(line, flush=True)


if __name__ == "__main__":
    main()
