"""`orchestrate run`: execute workflows and write their run folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import (
    NamespaceOption,
    StateOption,
    check_format,
    fail,
    format_option,
    is_interactive,
    json_alias,
    latest_run_dir,
)

__all__ = ["run"]

FORMATS = ("text", "json")


# Invocation (and DatasetSpec) fields, by the parameters of `run` that set them.
_FIELDS = {
    "paths": "workflows",
    "input_pairs": "inputs",
    "inputs_file": "inputs",
    "approver": "approved_by",
    "no_fail_on_expect": "fail_on_expect",
    "shards": "shard",
}


def run(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH",
            show_default=False,
            help="Workflow files, or folders of them (run side by side); none with --resume RUN_DIR.",
        ),
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Answer every call offline with the simulated provider.")
    ] = False,
    input_pairs: Annotated[
        list[str] | None, typer.Option("--input", "-i", metavar="KEY=VALUE", help="An input value (repeatable).")
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs", metavar="FILE.json", help="A JSON file of input values.")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Where run folders are created.")
    ] = Path("runs"),
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", metavar="N", min=1, help="Override max_parallel_agents.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", metavar="USD", min=0.0, help="Override cost_budget.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN_DIR",
            help="A run folder to resume (latest: the newest in ./runs): completed agents are not called again.",
            callback=latest_run_dir,
        ),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            metavar="DIR|URL",
            help="Answer identical requests from this response cache: a folder, or redis://HOST:PORT/DB.",
        ),
    ] = None,
    cache_ttl: Annotated[
        float,
        typer.Option(
            "--cache-ttl", metavar="SECONDS", min=1.0, help="Seconds a cached answer lives in a redis:// cache."
        ),
    ] = 7 * 86400.0,
    state: StateOption = None,
    state_namespace: NamespaceOption = "orchestrate",
    budget_scope: Annotated[
        str | None,
        typer.Option(
            "--budget-scope",
            metavar="SCOPE",
            help="Also reserve every call against this shared budget scope (set with 'orchestrate budget set').",
        ),
    ] = None,
    residency: Annotated[
        str | None,
        typer.Option(
            "--residency",
            metavar="REGION",
            help="Keep every provider call in this region (eu, us): overrides the workflow's residency.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and cost bounds; call nothing.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Plain log lines instead of the live table.")
    ] = False,
    fmt: format_option(FORMATS) = "text",  # type: ignore[valid-type]
    json_output: json_alias() = False,  # type: ignore[valid-type]
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report here.")
    ] = None,
    summary: Annotated[
        Path | None,
        typer.Option("--summary", metavar="FILE", help="Write a Markdown summary (with a Mermaid graph) here."),
    ] = None,
    sim_latency: Annotated[
        float, typer.Option("--sim-latency", metavar="SECONDS", min=0.0, help="Simulated seconds per call.")
    ] = 0.0,
    sim_failure_rate: Annotated[
        float,
        typer.Option(
            "--sim-failure-rate",
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of simulated calls that fail (retriable), 0 to 1.",
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the simulated provider.")] = 0,
    provider_batch: Annotated[
        bool,
        typer.Option(
            "--provider-batch", help="Send calls through the providers' batch APIs: half price, answers within 24h."
        ),
    ] = False,
    batch_fallback: Annotated[
        str,
        typer.Option(
            "--batch-fallback",
            metavar="[batch|online]",
            help="Where a batched request that errored or expired is retried: 'batch' (a later batch) or 'online'.",
        ),
    ] = "batch",
    batch_poll_max: Annotated[
        float,
        typer.Option(
            "--batch-poll-max", metavar="SECONDS", min=0.1, help="Longest wait in seconds between two polls of a batch."
        ),
    ] = 300.0,
    batch_window: Annotated[
        float,
        typer.Option(
            "--batch-window",
            metavar="SECONDS",
            min=0.0,
            help="Seconds to gather ready calls into one batch submission.",
        ),
    ] = 2.0,
    cancel_batches: Annotated[
        bool,
        typer.Option(
            "--cancel-batches",
            help="On Ctrl-C, cancel submitted batches (else they finish at the provider, for --resume).",
        ),
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Run over every row of this JSONL or CSV file ('-': stdin); --budget is then the whole dataset run's ceiling and --max-parallel caps its calls in flight.",
            rich_help_panel="Datasets",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="COLUMN",
            help="The column that identifies a row (default: its line and a digest).",
            rich_help_panel="Datasets",
        ),
    ] = None,
    skip_invalid_rows: Annotated[
        bool,
        typer.Option(
            "--skip-invalid-rows", help="Record invalid rows as invalid and run the rest.", rich_help_panel="Datasets"
        ),
    ] = False,
    max_rows_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-rows-parallel",
            metavar="N",
            min=1,
            help="Rows in flight at most (default: enough to keep --max-parallel calls going).",
            rich_help_panel="Datasets",
        ),
    ] = None,
    max_threads: Annotated[
        int | None,
        typer.Option(
            "--max-threads",
            metavar="N",
            min=1,
            help="Worker threads for sync tools and code steps at most (default: CPUs + 4, 8 to 32).",
        ),
    ] = None,
    no_prompt_cache: Annotated[
        bool,
        typer.Option(
            "--no-prompt-cache",
            help="Send nothing cache-related to the providers (no cache marks, keys or send-one-then-fan).",
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N|auto",
            help="Run only the rows whose index modulo N is K-1; auto: K and N from the platform "
            "(Kubernetes Indexed Job, Cloud Run, AWS Batch, ORCHESTRATE_SHARD_INDEX/COUNT), "
            "in a folder a restarted copy resumes.",
            rich_help_panel="Datasets",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            metavar="N",
            min=1,
            help="With --shard auto: the number of shards where the platform does not say (a Kubernetes Job's completions).",
            rich_help_panel="Datasets",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="local|ray",
            help="Where a dataset's rows run: this process, or a pool of Ray workers (needs orchestrate[ray] and --state redis://).",
            rich_help_panel="Datasets",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="With --engine ray: the Ray cluster (ray://HOST:10001, or auto); default: start one on this machine.",
            rich_help_panel="Datasets",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="With --engine ray: workers at once, each an engine driving many rows (default 2).",
            rich_help_panel="Datasets",
        ),
    ] = None,
    otel: Annotated[
        bool,
        typer.Option(
            "--otel",
            help="Export OpenTelemetry traces over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318); needs orchestrate[otel].",
        ),
    ] = False,
    otel_content: Annotated[
        bool,
        typer.Option(
            "--otel-content",
            help="Put prompts, answers and tool arguments in the traces (they may hold personal data).",
        ),
    ] = False,
    approve: Annotated[
        list[str] | None,
        typer.Option(
            "--approve",
            metavar="AGENT",
            help="Approve this agent up front (repeatable), for unattended runs.",
            rich_help_panel="Approvals",
        ),
    ] = None,
    answers: Annotated[
        Path | None,
        typer.Option(
            "--answers",
            metavar="FILE",
            help="With --simulate: fixed answers per agent (YAML: text, JSON, a list in order, {row.COLUMN}).",
            rich_help_panel="Expectations",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            metavar="RUN_DIR",
            help="Compare expectations with an earlier run or dataset folder; exit 6 on a pass -> fail.",
            rich_help_panel="Expectations",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="Pass-rate drop per expectation allowed against --baseline (0.02 = 2 points).",
            rich_help_panel="Expectations",
        ),
    ] = 0.0,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            metavar="K",
            min=1,
            max=1000,
            help="Run each case (the run, or each row) K times, the repeats never from --cache; report each "
            "case's pass rate and pass^K. Budgets and plans count every try.",
            rich_help_panel="Expectations",
        ),
    ] = 1,
    min_pass_rate: Annotated[
        float | None,
        typer.Option(
            "--min-pass-rate",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="The share of its tries a case must pass (default: every try); a case under it exits 5.",
            rich_help_panel="Expectations",
        ),
    ] = None,
    no_fail_on_expect: Annotated[
        bool,
        typer.Option(
            "--no-fail-on-expect",
            help="Exit 0 when the agents completed even if expectations failed (exploratory runs).",
            rich_help_panel="Expectations",
        ),
    ] = False,
    approve_all: Annotated[
        bool,
        typer.Option(
            "--approve-all", help="Approve every agent with an approval up front.", rich_help_panel="Approvals"
        ),
    ] = False,
    approver: Annotated[
        str | None,
        typer.Option(
            "--approver",
            metavar="NAME",
            help="Who approves (default: ORCHESTRATE_APPROVER, else the login name); kept in the audit trail.",
            rich_help_panel="Approvals",
        ),
    ] = None,
    audit_sink: Annotated[
        str | None,
        typer.Option(
            "--audit-sink",
            metavar="FILE|URL",
            help="Also append the audit trail's head to this append-only file (or POST it to this URL).",
        ),
    ] = None,
    no_content: Annotated[
        bool,
        typer.Option(
            "--no-content",
            help="Keep no prompts, answers or tool arguments anywhere the run writes: digests and sizes instead.",
        ),
    ] = False,
) -> None:
    """Run workflows and write result.json, cost.json and events.jsonl for each.

    In a terminal a live table shows each agent; elsewhere (CI, pipes) one plain
    line per change. At the end: counts by outcome, why each failed agent failed,
    the run folder and what to do next. --format json prints the summary as JSON.

    \b
    Examples:
      orchestrate run workflows/finance_month_end_close.yaml --simulate
      orchestrate run close.yaml --input period=2026-11 --budget 1.50
      orchestrate run --resume runs/finance_month_end_close-20261125T101010Z
      orchestrate run workflows/ --junit junit.xml --summary "$GITHUB_STEP_SUMMARY"
      orchestrate run screen.yaml --data vendors.jsonl --key vendor_id --simulate
      orchestrate run close.yaml --state redis://redis:6379/0 --budget-scope finance-2026-11

    \b
    Exit codes: 0 completed, 1 failed, 2 invalid input, 3 partially completed,
    4 waiting for an approval, 5 completed but expectations failed, or a case
    passed fewer of its --repeat tries than --min-pass-rate (see
    --no-fail-on-expect), 6 regressed against --baseline, 130 interrupted (Ctrl-C),
    143 terminated (SIGTERM).
    """
    from orchestrate.app.invocation import DatasetSpec, Invocation
    from orchestrate.cli.plan import workflow_files

    json_output = check_format(fmt, FORMATS, as_json=json_output) == "json"
    files = workflow_files(paths) if paths else []
    if not files and resume is None:
        fail("give a workflow file (or a folder of them), or --resume RUN_DIR to continue a run")
    if resume is not None and len(files) > 1:
        fail("--resume takes one workflow file at most (the run folder knows its own)")
    if batch_fallback not in ("batch", "online"):
        fail(f"--batch-fallback {batch_fallback!r}: choose 'batch' or 'online'")
    data_flags = bool(key or skip_invalid_rows or max_rows_parallel or shard or shards or engine != "local")
    if data is None and data_flags and resume is None:
        fail("--key, --skip-invalid-rows, --max-rows-parallel, --shard, --shards and --engine need --data")
    if engine not in ("local", "ray"):
        fail(f"--engine {engine!r}: choose 'local' or 'ray'")
    if engine == "local" and (address is not None or workers is not None):
        fail("--address and --workers go with --engine ray")
    if answers is not None and resume is None and (not simulate or len(files) != 1):
        fail("--answers takes --simulate and exactly one workflow file")
    if data is not None and len(files) != 1 and resume is None:
        fail("--data takes exactly one workflow file")
    from orchestrate.cli.common import parse_inputs

    values = parse_inputs(input_pairs or [], inputs_file)
    if dry_run and files:
        from orchestrate.cli.plan import print_plans

        print_plans(
            files,
            values,
            max_parallel=max_parallel,
            budget=budget,
            as_json=json_output,
            provider_batch=provider_batch,
            data=data,
            key=key,
            shard=shard,
            shards=shards,
        )
        return
    dataset = None
    if data is not None or (resume is not None and data_flags):  # with --resume: compared with the record
        from orchestrate.run.shards import resolve_shard

        shard_pair, shard_source = resolve_shard(shard, shards, os.environ)
        dataset = DatasetSpec(
            data=data or "",
            key=key,
            skip_invalid_rows=skip_invalid_rows,
            max_rows_parallel=max_rows_parallel,
            shard=shard_pair,
            shard_source=shard_source,
            engine=engine,
            address=address,
            workers=workers,
        )
    live = is_interactive(sys.stderr) and not no_progress and not quiet
    invocation = Invocation(
        workflows=files,
        simulate=simulate,
        inputs=values,
        output_dir=output_dir,
        max_parallel=max_parallel,
        budget=budget,
        resume=resume,
        cache=cache,
        cache_ttl=cache_ttl,
        state=state,
        state_namespace=state_namespace,
        budget_scope=budget_scope,
        residency=residency,
        junit=junit,
        summary=summary,
        sim_latency=sim_latency,
        sim_failure_rate=sim_failure_rate,
        seed=seed,
        provider_batch=provider_batch,
        batch_fallback=batch_fallback,
        batch_poll_max=batch_poll_max,
        batch_window=batch_window,
        cancel_batches=cancel_batches,
        otel=otel,
        otel_content=otel_content,
        approve=list(approve or []),
        approve_all=approve_all,
        max_threads=max_threads,
        prompt_cache=not no_prompt_cache,
        fail_on_expect=not no_fail_on_expect,
        answers=answers,
        baseline=baseline,
        tolerance=tolerance,
        repeat=repeat,
        min_pass_rate=min_pass_rate,
        approved_by=approver,
        audit_sink=audit_sink,
        no_content=no_content,
        ask=is_interactive(sys.stderr) and is_interactive(sys.stdin) and not approve_all,
        dataset=dataset,
        progress="quiet" if quiet else "live" if live else "plain",
    )
    if resume is not None:  # the same run: what the folder recorded, with only the flags that may change
        from orchestrate.app.record import resumed

        given = {_FIELDS.get(name, name) for name, source in _sources(ctx).items() if source}
        invocation = resumed(invocation, given)
    from collections.abc import Callable

    from orchestrate.cli.approve import TerminalApprover
    from orchestrate.cli.common import print_error, stdout_for_json

    approvers: list[TerminalApprover] = []  # the terminal's questions: Ctrl-C's notice ends an open one

    def ask(by: str, pause: Callable[[bool], None]) -> TerminalApprover:
        approvers.append(TerminalApprover(by=by, pause=pause))
        return approvers[-1]

    def notify(line: str) -> None:
        """A line for the person at the terminal: a signal being handled is news, not an error."""
        for approver in approvers:  # a question left open ends its line first
            approver.end_question()
        if line.startswith("received SIG"):
            from orchestrate.printable import printable

            # its first line, then lines that go on with it, indented
            parts = [("  " if n else "", printable(part, one_line=True)) for n, part in enumerate(line.split("\n"))]
            lines = [indent + text for indent, text in parts]
            if is_interactive(sys.stderr):  # broken between words at the terminal's width, never in one
                import shutil
                import textwrap

                width = shutil.get_terminal_size().columns
                lines = [
                    wrapped
                    for indent, text in parts
                    for wrapped in textwrap.wrap(
                        text, width, initial_indent=indent, subsequent_indent="  ", break_long_words=False
                    )
                ]
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
        else:
            print_error(line)

    def inform(line: str) -> None:
        if not (quiet or json_output):
            sys.stderr.write(line + "\n")

    if invocation.dataset is not None:
        from orchestrate.app.dataset import execute_dataset
        from orchestrate.cli.run_output import print_dataset_outcome

        with stdout_for_json(json_output):  # a code step's print() must not break the JSON
            data_outcome = execute_dataset(invocation, notify=notify, inform=inform, handle_signals=True)
        print_dataset_outcome(data_outcome, invocation, json_output=json_output)
        raise typer.Exit(data_outcome.exit_code)
    from orchestrate.app.session import execute_workflows
    from orchestrate.cli.run_output import print_run_outcome

    with stdout_for_json(json_output):  # a code step's print() must not break the JSON
        outcome = execute_workflows(
            invocation,
            make_approver=ask,
            notify=notify,
            inform=inform,
            handle_signals=True,
        )
    print_run_outcome(outcome, invocation, json_output=json_output)
    raise typer.Exit(outcome.exit_code)


def _sources(ctx: typer.Context) -> dict[str, bool]:
    """Each parameter of the command, and whether this command line (or the environment) gave it."""
    given = {}
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        given[name] = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    return given
