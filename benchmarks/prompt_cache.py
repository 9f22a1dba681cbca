"""Benchmark of provider prompt caching: the invoice example over 1,000 rows.

`workflows/invoice_review.yaml` (three agents a row) runs over 1,000 invoices
(`workflows/data/invoices.jsonl`, repeated with fresh ids), each agent's calls
carrying the accounts-payable policy as their system prompt (about 2,600 tokens,
the shared prefix a real deployment would send), against the loopback server
(`tests/fake_provider.py`), which caches as the providers do: Anthropic per
``cache_control`` mark, OpenAI automatically from 1,024 tokens per
``prompt_cache_key``, an entry readable only once the request that wrote it has
been answered. Each call answers after 20 ms; 50 rows run at once.

Priced with the built-in table's real prices of one Anthropic model
(claude-sonnet-4-5: reads 0.1x input, 1-hour writes 2x) and one OpenAI model
(gpt-5-mini: reads 0.1x, writes at the input price). For each, four runs:

- ``uncached``: the server caches nothing (what the calls cost with no hit at all);
- ``--no-prompt-cache``: orchestrate sends nothing cache-related (OpenAI still caches
  by itself; Anthropic caches nothing unmarked);
- ``on, no warm-up``: prefixes marked and keyed, every call sent as soon as it can go;
- ``on + send-one-then-fan``: the same, the first call of each prefix sent alone.

Printed per run: input tokens, the share read from cache, input cost, and the
saving against ``uncached``. Targets (send-one-then-fan): >= 80% of input tokens
read from cache and >= 60% lower input cost than uncached.

    python benchmarks/prompt_cache.py              # 1,000 rows (about a minute a run)
    python benchmarks/prompt_cache.py --rows 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrate import AnthropicClient, OpenAIClient  # noqa: E402
from orchestrate.money.costs import CallRecord, CostTracker  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402

MODELS = ("claude-sonnet-4-5", "gpt-5-mini")
MODES = ("uncached", "--no-prompt-cache", "on, no warm-up", "on + send-one-then-fan")
TARGET_READ_SHARE = 0.80
TARGET_SAVING = 0.60

CLAUSES = (
    "Every supplier invoice is matched against its purchase order and the goods receipt before it is paid.",
    "The price and quantity on the invoice may differ from the purchase order by the tolerance of the region.",
    "A variance above the tolerance holds the invoice until the buyer confirms the price or raises the order.",
    "Invoices without a purchase order need the approval of the cost-centre owner named in the vendor master.",
    "Freight, packaging and surcharges are accepted only when the order or the contract names them.",
    "Tax is checked against the supplier's country and the delivery address; reverse charge is noted.",
    "A changed bank account is verified by a call-back to a number already on file, never one on the invoice.",
    "Duplicate invoice numbers from one supplier, or one amount twice within thirty days, are held.",
    "Round amounts, amounts just under an approval limit and new suppliers paid at once are fraud signals.",
    "Payment terms follow the contract; an early-payment discount is taken when it beats the cost of cash.",
    "Credit notes are matched to the invoice they correct before either is released for payment.",
    "Invoices in a currency other than the order's are converted at the rate of the invoice date.",
    "Partial deliveries are paid for what was received; the rest stays open on the purchase order.",
    "Services are matched to a signed timesheet or acceptance note instead of a goods receipt.",
    "An invoice older than ninety days at receipt is checked with the supplier before it is booked.",
    "Sanctioned or blocked suppliers are never paid; the invoice is rejected and compliance informed.",
)


def policy_text() -> str:
    """The AP policy every call carries: numbered sections of the clauses above (~10,500 characters)."""
    sections = []
    for section in range(1, 6):
        lines = [f"Section {section}. Accounts-payable policy, part {section} of 5."]
        lines += [f"{section}.{n}. {clause}" for n, clause in enumerate(CLAUSES, 1)]
        sections.append("\n".join(lines))
    return "You review supplier invoices for the accounts-payable team.\n\n" + "\n\n".join(sections)


def rows_file(folder: Path, rows: int) -> Path:
    sample = [json.loads(line) for line in (ROOT / "workflows/data/invoices.jsonl").read_text().splitlines() if line]
    path = folder / "invoices.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            row = dict(sample[i % len(sample)], invoice_id=f"INV-2026-{20000 + i}")
            handle.write(json.dumps(row) + "\n")
    return path


def template(model: str) -> Any:
    from orchestrate.workflow.loader import load_workflow

    workflow = load_workflow(ROOT / "workflows/invoice_review.yaml", bind=False)
    workflow.cost_budget = None
    for agent in workflow.agents:
        agent.llm_config = {**agent.llm_config, "model": model, "system": policy_text()}
        agent.cost_limit = 10.0
    return workflow


class _Sink:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.failed = 0

    def row_finished(self, row: Any, workflow: Any, records: list[CallRecord], status: str) -> None:
        self.calls += records
        self.failed += status != "completed"

    def row_invalid(self, bad: Any) -> None:
        return None

    def row_refused(self, row: Any) -> None:
        return None


async def one_run(model: str, mode: str, rows: int, folder: Path) -> dict[str, Any]:
    from orchestrate.run.dataset_run import DatasetRunner
    from orchestrate.run.engine import EngineConfig, OrchestrationEngine
    from orchestrate.workflow.dataset import Dataset

    with FakeProvider(latency=0.02, caching=mode != "uncached") as server:
        if model.startswith("claude"):
            client: Any = AnthropicClient(api_key="sk-bench", base_url=server.url)
        else:
            client = OpenAIClient(api_key="sk-bench", base_url=f"{server.url}/v1")
        config = EngineConfig(
            max_concurrent_workflows=50,
            rate_limit_config=None,
            prompt_cache=mode not in ("uncached", "--no-prompt-cache"),
            prompt_cache_warm_up=mode == "on + send-one-then-fan",
        )
        engine = OrchestrationEngine(client, config)
        workflow = template(model)
        data = Dataset(rows_file(folder, rows), workflow_name=workflow.name, declared=workflow.inputs)
        sink = _Sink()
        started = time.perf_counter()
        await DatasetRunner(engine, workflow, data, sinks=[sink], run_id="b", budget=None, max_rows_parallel=50).run()
        seconds = time.perf_counter() - started
        await engine.shutdown()
    tracker = CostTracker()
    input_cost = sum(
        tracker.calculate_cost(
            c.model,
            c.input_tokens,
            0,
            cached_input_tokens=c.cached_input_tokens,
            cache_creation_input_tokens=c.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=c.cache_creation_1h_input_tokens,
        )
        for c in sink.calls
    )
    tokens = sum(c.input_tokens for c in sink.calls)
    return {
        "model": model,
        "mode": mode,
        "calls": len(sink.calls),
        "failed_rows": sink.failed,
        "input_tokens": tokens,
        "read_share": sum(c.cached_input_tokens for c in sink.calls) / tokens if tokens else 0.0,
        "writes": sum(1 for c in sink.calls if c.cache_creation_input_tokens),
        "input_cost": input_cost,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="orchestrate-cache-bench-") as tmp:
        for model in MODELS:
            for mode in MODES:
                results.append(asyncio.run(one_run(model, mode, args.rows, Path(tmp))))
    print(f"prompt caching, invoice_review.yaml over {args.rows} rows (3 calls a row), loopback server, 20 ms a call")
    header = f"{'model':<18} {'mode':<24} {'calls':>6} {'input tok':>10} {'read':>6} {'writes':>6} {'input $':>9} {'saved':>6} {'s':>5}"
    print(header)
    print("-" * len(header))
    verdicts = []
    for model in MODELS:
        base = next(r for r in results if r["model"] == model and r["mode"] == "uncached")
        for r in (r for r in results if r["model"] == model):
            saving = 1 - r["input_cost"] / base["input_cost"] if base["input_cost"] else 0.0
            r["saving"] = saving
            print(
                f"{model:<18} {r['mode']:<24} {r['calls']:>6} {r['input_tokens']:>10,} {r['read_share']:>6.1%} "
                f"{r['writes']:>6} {r['input_cost']:>9.4f} {saving:>6.1%} {r['seconds']:>5.1f}"
            )
            if r["failed_rows"]:
                print(f"  {r['failed_rows']} rows did not complete")
        best = next(r for r in results if r["model"] == model and r["mode"] == "on + send-one-then-fan")
        verdicts.append(
            f"{model}: read share {best['read_share']:.1%} (target >= {TARGET_READ_SHARE:.0%}, "
            f"ratio {best['read_share'] / TARGET_READ_SHARE:.2f}); input cost {best['saving']:.1%} lower "
            f"(target >= {TARGET_SAVING:.0%}, ratio {best['saving'] / TARGET_SAVING:.2f})"
        )
    print()
    for line in verdicts:
        print(line)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
