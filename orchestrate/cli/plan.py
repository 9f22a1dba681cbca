"""`orchestrate plan` (and `run --dry-run`): what a run will do and cost, before it spends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import check_format, fail, format_option, is_interactive, json_alias, print_json

__all__ = ["plan", "print_plans", "workflow_files"]

FORMATS = ("table", "json")


def workflow_files(paths: list[Path]) -> list[Path]:
    """The workflow files named, folders searched for *.yaml and *.yml (as `validate` does)."""
    from orchestrate.workflow.loader import find_workflow_files

    files = find_workflow_files(paths)
    if not files:
        fail("no workflow files (*.yaml, *.yml) found in " + ", ".join(str(p) for p in paths))
    return files


def plan(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", show_default=False, help="Workflow files, or folders of them.")
    ],
    input_pairs: Annotated[
        list[str] | None, typer.Option("--input", "-i", metavar="KEY=VALUE", help="An input value (repeatable).")
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs", metavar="FILE.json", help="A JSON file of input values.")
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", metavar="N", min=1, help="Override max_parallel_agents.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", metavar="USD", min=0.0, help="Override cost_budget.")
    ] = None,
    fmt: format_option(FORMATS) = "table",  # type: ignore[valid-type]
    json_output: json_alias() = False,  # type: ignore[valid-type]
    provider_batch: Annotated[
        bool,
        typer.Option(
            "--provider-batch", help="Price calls at the providers' batch rates, as run --provider-batch sends them."
        ),
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Plan a dataset run over every row of this JSONL or CSV file ('-': stdin); --budget is the whole run's ceiling.",
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="COLUMN", help="The column that identifies a row.")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N|auto",
            help="Only the rows whose index modulo N is K-1; auto: the shard the platform gives, as run --shard auto.",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            metavar="N",
            min=1,
            help="With --shard auto: the number of shards where the platform does not say (a Kubernetes Job's completions).",
        ),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option("--repeat", metavar="K", min=1, max=1000, help="Count K tries of each case, as run --repeat K."),
    ] = 1,
) -> None:
    """Print the execution order, the critical path and the cost bounds of a run; call nothing.

    \b
    Examples:
      orchestrate plan workflows/finance_month_end_close.yaml
      orchestrate plan workflows/ --budget 0.50
      orchestrate plan close.yaml --input period=2026-11 --format json
      orchestrate plan screen.yaml --data vendors.jsonl --budget 20
      orchestrate plan screen.yaml --data vendors.jsonl --shard auto --shards 8
    """
    from orchestrate.cli.common import parse_inputs

    as_json = check_format(fmt, FORMATS, as_json=json_output) == "json"
    files = workflow_files(paths)
    if data is not None and len(files) != 1:
        fail("--data takes exactly one workflow file")
    if (shard is not None or shards is not None) and data is None:
        fail("--shard and --shards need --data")
    if shards is not None and (shard or "").strip().lower() != "auto":
        fail("--shards N goes with --shard auto (--shard K/N names the count itself)")
    print_plans(
        files,
        parse_inputs(input_pairs or [], inputs_file),
        max_parallel=max_parallel,
        budget=budget,
        as_json=as_json,
        provider_batch=provider_batch,
        data=data,
        key=key,
        shard=shard,
        shards=shards,
        repeat=repeat,
    )


def print_batch_plan(
    file: Path,
    inputs: dict[str, Any],
    *,
    data: str,
    key: str | None,
    shard: str | None,
    budget: float | None,
    as_json: bool,
    repeat: int = 1,
    shards: int | None = None,
) -> None:
    """The least and most a batch over `data` can cost (every row checked and planned).

    Sharded (``--shard K/N`` or ``--shard auto``), the figures are this shard's,
    followed by the whole dataset's over every shard.
    """
    import os

    from orchestrate.app.dataset import open_dataset
    from orchestrate.money.costs import CostConfig, CostTracker
    from orchestrate.money.planning import plan_batch
    from orchestrate.run.shards import resolve_shard, shard_from_environment
    from orchestrate.workflow.dataset import Dataset

    pair, source = resolve_shard(shard, shards, os.environ)
    if source is not None:  # --shard auto: the variable and platform it came from
        source = shard_from_environment(os.environ, shards).source
    template, dataset, spooled = open_dataset(file, data, inputs, key=key, shard=pair)
    whole = None
    try:
        tracker = CostTracker(CostConfig())
        if template.prices:
            tracker.add_prices(template.prices)
        plan = plan_batch(template, dataset, tracker, budget=budget, repeat=repeat)
        if pair is not None:  # every shard: each runs with its own --budget, so the whole is not capped by one
            every = Dataset(
                dataset.path,
                workflow_name=dataset.workflow_name,
                declared=dataset.declared,
                shared=dataset.shared,
                key=dataset.key,
                label=dataset.label,
                columns=dataset.columns,
            )
            whole = plan_batch(template, every, tracker, budget=None, repeat=repeat)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    if as_json:
        document = plan.to_dict()
        if pair is not None and whole is not None:
            document["shard"] = {"index": pair[0], "count": pair[1], "source": source}
            document["all_shards"] = {
                "rows": whole.rows,
                "invalid_rows": whole.invalid_rows,
                "min_cost": round(whole.min_cost, 6),
                "max_cost": round(whole.max_cost, 6),
            }
        print_json("dataset_plan", document)
        return
    from orchestrate.money.amounts import budget_usd, usd
    from orchestrate.observe.summary import plural

    if pair is not None and whole is not None:
        where = source or f"--shard {pair[0]}/{pair[1]}"
        sys.stdout.write(
            f"shard {pair[0]} of {pair[1]} ({where}): {plan.rows} of the {whole.rows} rows; "
            f"all {pair[1]} shards: at least {usd(whole.min_cost)}, at most {usd(whole.max_cost)}"
            + (f" (each shard's --budget {budget_usd(budget)} is its own)" if budget is not None else "")
            + "\nthis shard:\n"
        )

    ceiling = " (the dataset budget binds)" if plan.budget_binds else ""
    budget_text = f"; dataset budget {budget_usd(plan.budget)}" if plan.budget is not None else "; no dataset budget"
    sys.stdout.write(
        f"{plan.workflow}: {plural(plan.rows, 'row')} to run"
        + (f", {plan.invalid_rows} invalid" if plan.invalid_rows else "")
        + (f", each tried {plan.repeat} times" if plan.repeat > 1 else "")
        + f"\ncost: at least {usd(plan.min_cost)} if every row completes, at most {usd(plan.max_cost)}"
        f"{ceiling}{budget_text}\nper row: {usd(plan.row_min_cost)} to {usd(plan.row_max_cost)} "
        f"(each row capped at its cost_budget {budget_usd(template.cost_budget)})\n"
    )
    if plan.cacheable_agents:
        sys.stdout.write(
            f"prompt cache: at least {usd(plan.min_cost_all_hits)} with every call reading its shared prefix, "
            f"{usd(plan.min_cost_no_hits)} with none (system prompts counted)\n"
        )


def print_plans(
    files: list[Path],
    inputs: dict[str, Any],
    *,
    max_parallel: int | None,
    budget: float | None,
    as_json: bool,
    provider_batch: bool = False,
    data: str | None = None,
    key: str | None = None,
    shard: str | None = None,
    shards: int | None = None,
    repeat: int = 1,
) -> None:
    if data is not None:
        print_batch_plan(
            files[0],
            inputs,
            data=data,
            key=key,
            shard=shard,
            budget=budget,
            as_json=as_json,
            repeat=repeat,
            shards=shards,
        )
        return
    from orchestrate.money.costs import CostConfig, CostTracker
    from orchestrate.money.planning import plan_workflow
    from orchestrate.workflow.loader import load_workflow

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
        if repeat > 1:  # every try has the run's budget: the command spends at most K times it
            for entry, p in zip(payload, plans):
                entry.update(
                    repeat=repeat,
                    min_cost_all_tries=round(p.min_cost * repeat, 6),
                    max_cost_all_tries=round(p.max_cost * repeat, 6),
                )
        print_json("plan", {"plans": payload})
        return
    from rich.text import Text

    from orchestrate.money.amounts import budget_usd, usd
    from orchestrate.observe.tables import Column, build_table, plain_console

    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    columns = [
        Column("#", "right", "number"),
        Column("agent"),
        Column("module", drop=2),
        Column("model"),
        Column("starts at", "right", "number", drop=1),
        Column("runs", "right", "number"),
        Column("max calls", "right", "number", drop=3),
        Column("min $", "right", "number"),
        Column("max $", "right", "number"),
    ]
    for p in plans:
        rows = [
            [
                str(i),
                a.name
                + (" (conditional)" if a.conditional else "")
                + (" (foreach)" if a.max_items is not None else ""),
                a.module,
                a.model,
                f"{a.start:.1f}s",
                a.runs,
                str(a.max_calls),
                usd(a.min_cost),
                usd(a.max_cost),
            ]
            for i, a in enumerate(p.agents, 1)
        ]
        console.print(
            build_table(columns, rows, width=console.width if interactive else None, title=Text(f"{p.workflow}: plan"))
        )
        console.print(Text(f"critical path: {' -> '.join(p.critical_path)}"))
        paced = p.paced_by
        why = (
            f"paced by {paced['limit']} {paced['rate']} ({paced['source']}): {paced['calls']} calls"
            if paced
            else "at ~100 output tokens/s"
        )
        console.print(Text(f"estimated time: {p.estimated_seconds:.1f}s ({why})"))
        ceiling = " (the budget binds)" if p.budget_binds else ""
        cache = ""
        if p.cacheable_agents:
            none, every = p.cache_bounds
            cache = (
                f"\nprompt cache: at least {usd(every)} with every call reading its shared prefix, "
                f"{usd(none)} with none (system prompts counted; {p.cacheable_agents} agent(s) with a "
                "prefix long enough to cache)"
            )
        console.print(
            Text(
                f"cost: at least {usd(p.min_cost)} if it completes, at most {usd(p.max_cost)}"
                f"{ceiling}; budget {budget_usd(p.budget)}{cache}"
                + (
                    f"\nrepeat {repeat}: at least {usd(p.min_cost * repeat)}, at most {usd(p.max_cost * repeat)} "
                    "for every try (each try has the budget)"
                    if repeat > 1
                    else ""
                )
                + "\n"
            )
        )
