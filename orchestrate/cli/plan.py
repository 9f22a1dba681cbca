"""`orchestrate plan` (and `run --dry-run`): what a run will do and cost, before it spends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["plan", "print_plans"]


def plan(
    files: Annotated[list[Path], typer.Argument(help="Workflow files to plan.", show_default=False)],
    input_pairs: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="An input value, KEY=VALUE (repeatable).")] = None,
    inputs_file: Annotated[Optional[Path], typer.Option("--inputs", help="A JSON file of input values.")] = None,
    max_parallel: Annotated[Optional[int], typer.Option("--max-parallel", min=1, help="Override max_parallel_agents.")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", min=0.0, help="Override cost_budget (USD).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
    provider_batch: Annotated[bool, typer.Option("--provider-batch", help="Price calls at the providers' batch rates, as run --provider-batch sends them.")] = False,
    data: Annotated[Optional[str], typer.Option("--data", help="Plan a batch over every row of this JSONL or CSV file ('-': stdin); --budget is the batch's ceiling.")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="The column that identifies a row.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: only the rows whose index modulo N is K-1.")] = None,
) -> None:
    """Print the execution order, the critical path and the cost bounds of a run; call nothing."""
    from orchestrate.cli.common import fail
    from orchestrate.cli.run import parse_inputs

    if data is not None and len(files) != 1:
        fail("--data takes exactly one workflow file")
    print_plans(files, parse_inputs(input_pairs or [], inputs_file), max_parallel=max_parallel,
                budget=budget, as_json=json_output, provider_batch=provider_batch, data=data, key=key,
                shard=shard)


def print_batch_plan(file: Path, inputs: dict[str, Any], *, data: str, key: str | None,
                     shard: str | None, budget: float | None, as_json: bool) -> None:
    """The least and most a batch over `data` can cost (every row checked and planned)."""
    from orchestrate.cli.run_data import open_dataset
    from orchestrate.money.costs import CostConfig, CostTracker
    from orchestrate.money.planning import plan_batch
    from orchestrate.run.dataset import parse_shard

    template, dataset, spooled = open_dataset(file, data, inputs, key=key,
                                              shard=parse_shard(shard) if shard else None)
    try:
        tracker = CostTracker(CostConfig())
        if template.prices:
            tracker.add_prices(template.prices)
        plan = plan_batch(template, dataset, tracker, budget=budget)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    if as_json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=2) + "\n")
        return
    ceiling = " (the batch budget binds)" if plan.budget_binds else ""
    budget_text = f"; batch budget ${plan.budget:.2f}" if plan.budget is not None else "; no batch budget"
    sys.stdout.write(
        f"{plan.workflow}: {plan.rows} rows to run" + (f", {plan.invalid_rows} invalid" if plan.invalid_rows else "")
        + f"\ncost: at least ${plan.min_cost:.4f} if every row completes, at most ${plan.max_cost:.4f}"
        f"{ceiling}{budget_text}\nper row: ${plan.row_min_cost:.4f} to ${plan.row_max_cost:.4f} "
        f"(each row capped at its cost_budget ${template.cost_budget:.2f})\n")


def print_plans(files: list[Path], inputs: dict[str, Any], *, max_parallel: int | None,
                budget: float | None, as_json: bool, provider_batch: bool = False, data: str | None = None,
                key: str | None = None, shard: str | None = None) -> None:
    if data is not None:
        print_batch_plan(files[0], inputs, data=data, key=key, shard=shard, budget=budget, as_json=as_json)
        return
    from orchestrate.money.costs import CostConfig, CostTracker
    from orchestrate.workflow.loader import load_workflow
    from orchestrate.money.planning import plan_workflow

    plans = []
    for path in files:
        workflow = load_workflow(path, inputs=inputs)
        if max_parallel is not None:
            workflow.max_parallel_agents = max_parallel
        if budget is not None:
            workflow.cost_budget = budget
        plans.append(plan_workflow(workflow, CostTracker(CostConfig()), provider_batch=provider_batch))
    if as_json:
        payload = [p.to_dict() for p in plans]
        sys.stdout.write(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for p in plans:
        table = Table(title=f"{p.workflow}: plan", title_justify="left")
        for column in ("#", "agent", "module", "model", "starts at", "max calls", "min $", "max $"):
            table.add_column(column, justify="right" if column in ("#", "starts at", "max calls", "min $", "max $") else "left")
        for i, a in enumerate(p.agents, 1):
            table.add_row(str(i), a.name, a.module, a.model, f"{a.start:.1f}s", str(a.max_calls),
                          f"{a.min_cost:.4f}", f"{a.max_cost:.4f}")
        console.print(table)
        console.print(f"critical path: {' -> '.join(p.critical_path)}")
        console.print(f"estimated time: {p.estimated_seconds:.1f}s (at ~100 output tokens/s)")
        ceiling = " (the budget binds)" if p.budget_binds else ""
        console.print(f"cost: at least ${p.min_cost:.4f} if it completes, at most ${p.max_cost:.4f}"
                      f"{ceiling}; budget ${p.budget:.2f}\n")
