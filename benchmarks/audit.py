"""What the audit trail and a data-protection policy cost per call of a dataset run.

The dataset benchmark's workload (benchmarks/datasets.py: three agents a row, the
simulated provider at 0 latency, the run folder written as `orchestrate run --data`
writes it) is run in fresh processes, alternately without and with:

- the audit trail (audit.jsonl: a sealed record per call, step and row, HMAC-keyed), and
- a ``data_protection:`` policy pseudonymizing the vendor column and scanning the others
  with every recogniser (email, phone, iban, credit_card, national_id).

Target: <= 20 us per call added (issue 30). The figure is the difference of the medians
of the engine's CPU time per call (thread CPU time less the time inside the provider),
which a loaded machine inflates less than wall time; wall time is shown too.

    python benchmarks/audit.py              # 3,000 rows, 5 rounds
    python benchmarks/audit.py --rows 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import WORKFLOW, _Source  # noqa: E402  (the same workload)
from benchmarks.run import TimedClient  # noqa: E402

TARGET_US = 20.0
MODES = ("plain", "audit", "policy", "both")
POLICY = {
    "columns": {"vendor": "pseudonymize"},
    "detect": ["email", "phone", "iban", "credit_card", "national_id"],
}


def measure(rows: int, audited: bool, protected: bool) -> dict[str, Any]:
    from orchestrate.app.dataset import DATASET_UNLOGGED
    from orchestrate.observe.compliance import open_trail, protect_workflow
    from orchestrate.observe.dataset_report import DatasetRecorder
    from orchestrate.observe.eventlog import EventLog
    from orchestrate.observe.journal import GroupCommit
    from orchestrate.run.dataset_run import CappedClients, DatasetRunner, dataset_engine_config, default_rows_parallel
    from orchestrate.run.engine import OrchestrationEngine
    from orchestrate.workflow.dataset import Dataset
    from orchestrate.workflow.loader import load_workflow

    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-audit-") as tmp:
        folder = Path(tmp)
        (folder / "wf.yaml").write_text(WORKFLOW % {"rpm": 10_000_000})
        data = folder / "rows.jsonl"
        with open(data, "w", encoding="utf-8") as handle:
            for i in range(rows):
                row = {"invoice_id": f"INV-{i:07d}", "vendor": f"Vendor {i % 997}", "amount": round(100 + i * 0.37, 2)}
                handle.write(json.dumps(row) + "\n")
        run_dir = folder / "run"
        run_dir.mkdir()
        template = load_workflow(folder / "wf.yaml", bind=False)
        start, cpu = time.perf_counter(), time.thread_time()
        dataset = Dataset(data, workflow_name=template.name, declared=template.inputs, key="invoice_id")
        assert dataset.check().bad_count == 0
        client = TimedClient()
        capped = CappedClients(_Source(client), 32)
        rows_parallel = default_rows_parallel(template, 32)
        engine = OrchestrationEngine(None, dataset_engine_config(rows_parallel), clients=capped)
        commit = GroupCommit(engine.journal_failed)
        source: Any = dataset
        trail = None
        if protected:
            template.data_protection = dict(POLICY)
            protector = protect_workflow(template)
            assert protector is not None
            source = protector.rows(dataset, "invoice_id")
        if audited:
            trail = open_trail(
                run_dir,
                template,
                kind="dataset_run",
                argv=["benchmark"],
                approver=("benchmark", "--approver"),
                sink=None,
                on_failure=engine.journal_failed,
                commit=commit,
            )
            trail.key = b"benchmark-key"  # sealed with an HMAC, as with ORCHESTRATE_AUDIT_KEY
            engine.add_sink(trail)
        recorder = DatasetRecorder(
            run_dir, template, engine.cost_tracker, run_id="batch", simulated=True, budget=1e6, commit=commit
        )
        log = EventLog(run_dir / "events.jsonl", sync_interval=1.0, exclude=DATASET_UNLOGGED, commit=commit)
        engine.add_sink(log)
        engine.add_sink(recorder)
        runner = DatasetRunner(
            engine, template, source, sinks=[recorder], run_id="batch", budget=1e6, max_rows_parallel=rows_parallel
        )

        async def go() -> None:
            await runner.run()
            await engine.shutdown()

        asyncio.run(go())
        commit.flush()
        log.close()
        document = recorder.finish("completed")
        if trail is not None:
            trail.finish({"status": "completed"})
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        assert document["counts"] == {"completed": rows}, document["counts"]
        records = sum(1 for _ in open(run_dir / "audit.jsonl", "rb")) if audited else 0
        return {
            "audited": audited,
            "calls": client.calls,
            "records": records,
            "cpu_us_per_call": (cpu - client.spent) / client.calls * 1e6,
            "wall_us_per_call": (wall - client.spent) / client.calls * 1e6,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.rows, args.child in ("audit", "both"), args.child in ("policy", "both"))))
        return
    found: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:  # alternated, so that a busy spell weighs on all
            out = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--child", mode],
                capture_output=True,
                text=True,
                check=True,
            )
            found[mode].append(json.loads(out.stdout))
    median = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("cpu_us_per_call", "wall_us_per_call")}
        for mode, runs in found.items()
    }
    calls, records = found["both"][0]["calls"], found["both"][0]["records"]
    plain = median["plain"]["cpu_us_per_call"]
    print(f"{args.rows:,} rows, {calls:,} calls, {records:,} audit records; medians of {args.rounds} rounds each")
    for mode, label in (("plain", "neither"), ("audit", "audit trail"), ("policy", "policy"), ("both", "both")):
        cpu, wall = median[mode]["cpu_us_per_call"], median[mode]["wall_us_per_call"]
        added = f"  added {cpu - plain:6.1f} us" if mode != "plain" else ""
        print(f"  {label:<12} {cpu:7.1f} us CPU/call {wall:8.1f} us wall/call{added}")
    added = median["both"]["cpu_us_per_call"] - plain
    print(
        f"audit trail and policy add {added:.1f} us CPU per call; target <= {TARGET_US:.0f} us: "
        f"ratio {added / TARGET_US:.2f} (baseline {plain:.0f} us: on an idle machine every figure is smaller)"
    )


if __name__ == "__main__":
    main()
