"""`orchestrate eval`: score what a run recorded with a workflow's expectations, without running it."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import fail, latest_run_dir, print_json

__all__ = ["eval_command"]


def eval_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="A run folder or a dataset run folder (latest: the newest in ./runs).",
            callback=latest_run_dir,
        ),
    ],
    workflow: Annotated[
        Path | None,
        typer.Option(
            "--workflow", "-w", metavar="FILE", help="The workflow whose expectations score it (default: the run's)."
        ),
    ] = None,
    judge: Annotated[
        bool, typer.Option("--judge", help="Ask the judges of rubric expectations (paid calls, under --budget).")
    ] = False,
    budget: Annotated[
        float | None, typer.Option("--budget", metavar="USD", min=0.0, help="Ceiling over the judges' calls.")
    ] = None,
    simulate: Annotated[bool, typer.Option("--simulate", help="Judges answered by the simulated provider.")] = False,
    answers: Annotated[
        Path | None, typer.Option("--answers", metavar="FILE", help="With --simulate: fixed answers for judges.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", metavar="RUN_DIR", help="Compare with an earlier run, dataset folder or eval file."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", metavar="RATE", min=0.0, max=1.0, help="Pass-rate drop allowed against --baseline."
        ),
    ] = 0.0,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report here.")
    ] = None,
    no_fail_on_expect: Annotated[
        bool, typer.Option("--no-fail-on-expect", help="Exit 0 even when expectations fail.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="The data file a dataset run ran on, for the columns expectations read that its rows.jsonl "
            "does not hold (folders written before expectations; default: the file its result.json names).",
        ),
    ] = None,
    min_pass_rate: Annotated[
        float | None,
        typer.Option(
            "--min-pass-rate",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="A run made with --repeat K: the share of its tries a case must pass (default: the run's own "
            "bar, else every try).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Score the outputs recorded in RUN_DIR with the expectations of a (perhaps edited) workflow.

    Deterministic expectations call nothing; rubrics are judged only with --judge, within --budget.
    A run made with --repeat K is scored on every try it recorded: each case's pass rate and
    pass^K, held to --min-pass-rate. Writes RUN_DIR/eval-TIME.json and prints the same summary
    as a run.

    \b
    Examples:
      orchestrate eval runs/finance_invoice_coding-20261203T101010Z
      orchestrate eval runs/coding-1 --workflow edited.yaml --baseline runs/coding-0
      orchestrate eval runs/coding-1 --judge --budget 0.50

    \b
    Exit codes: 0 every expectation passed, 2 invalid input (a workflow that declares no
    expectations too), 5 some expectation failed or could not be evaluated, 6 regressed
    against --baseline.
    """
    from orchestrate.run.evaluation import (
        EXIT_EXPECTATIONS,
        EXIT_REGRESSION,
        Evaluator,
        closing_line,
        expectations_failed,
        failure_lines,
        repeat_lines,
        write_evaluation,
    )
    from orchestrate.run.rescore import compare, fill_columns, keeps_content, load_cases, outcomes_of, rescore
    from orchestrate.workflow.loader import load_workflow

    if not run_dir.is_dir():
        fail(f"{run_dir}: no such run folder")
    if answers is not None and not simulate:
        fail("--answers takes --simulate")
    cases = load_cases(run_dir)
    source = workflow or _recorded_source(cases)
    template = load_workflow(source, bind=False)
    if not template.expect and not any(agent.expect for agent in template.agents):
        # Nothing to score is not a pass: "0/0 passed" would let a CI gate whose expectations
        # were deleted go green.
        fail(f"{source}: the workflow declares no expectations (expect:), so there is nothing to score")
    unfilled = fill_columns(cases, template, run_dir, data)
    if unfilled is not None:
        if data is not None:
            fail(unfilled)
        sys.stderr.write(f"note: {unfilled}\n")
    unrecorded = sum(case.unrecorded_tries for case in cases)
    if unrecorded:
        sys.stderr.write(
            f"note: {run_dir}: the answers of {unrecorded} later tries of --repeat are not recorded (a folder "
            "written before they were kept): those cases are scored on the tries it holds\n"
        )
    bar = min_pass_rate if min_pass_rate is not None else _recorded_bar(run_dir, cases)
    evaluator = Evaluator(template)
    if judge and evaluator.needs_judge and budget is None and not simulate:
        fail("--judge needs --budget USD: the ceiling over the judges' calls")
    engine = (
        _engine(template, evaluator, simulate=simulate, answers=answers) if judge and evaluator.needs_judge else None
    )

    async def score() -> Any:
        try:
            if engine is not None:
                engine.cost_tracker.set_workflow_budget("eval", budget)
            return await rescore(template, cases, engine=engine, budget_account="eval", min_pass_rate=bar)
        finally:
            if engine is not None:
                await engine.shutdown()

    totals, lines = asyncio.run(score())
    if not keeps_content(template, cases):  # the run kept no content: neither does its scoring
        from orchestrate.run.protection import evaluation_without_content

        lines = [evaluation_without_content(line) for line in lines]
    document: dict[str, Any] = {
        "workflow": str(source),
        "run_dir": str(run_dir),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "judged": engine is not None,
        "totals": totals.to_dict(),
        "cases": lines,
    }
    figures = document["totals"]
    single = len(lines) == 1 and lines[0]["key"] == "run" and "tries_passed" in lines[0]
    if single:  # one case tried K times: judged as the run judged it (its tries against the bar)
        figures = {**lines[0], "min_pass_rate": bar}
    code = EXIT_EXPECTATIONS if expectations_failed(figures) and not no_fail_on_expect else 0
    comparison = None
    if baseline is not None:
        comparison = compare({c["key"]: c for c in lines}, outcomes_of(baseline), tolerance=tolerance)
        document["baseline"] = {"path": str(baseline), **comparison.to_dict()}
        if comparison.regressed:
            code = EXIT_REGRESSION
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_evaluation(run_dir, document, f"eval-{stamp}.json")
    if junit is not None:
        from orchestrate.observe.expectation_reports import write_expectation_junit

        write_expectation_junit(junit, template.name, [{**line, "min_pass_rate": bar} for line in lines])
    if json_output:
        print_json("evaluation", {**document, "file": str(path)})
        raise typer.Exit(code)
    out = [closing_line(document["totals"]), *repeat_lines(figures)]
    for line in lines:
        out += [f"  {line['key']}: {text.strip()}" for text in failure_lines(line, limit=3, indent="")]
        if len(out) > 12:
            out.append("  ...")
            break
    if comparison is not None:
        out += list(comparison.lines())
    out.append(f"written: {path}")
    sys.stdout.write("\n".join(out) + "\n")
    raise typer.Exit(code)


def _recorded_bar(run_dir: Path, cases: list[Any]) -> float | None:
    """The --min-pass-rate the run was made with: in its result.json (a run) or evaluation.json
    (a dataset run); None when it had none."""
    import json

    found: Any = None
    if len(cases) == 1 and cases[0].key == "run":
        found = (cases[0].document.get("expectations") or {}).get("min_pass_rate")
    else:
        try:
            from orchestrate.fsutil import read_regular_text

            found = json.loads(read_regular_text(run_dir / "evaluation.json")).get("min_pass_rate")
        except (OSError, ValueError, AttributeError):
            found = None
    return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None


def _recorded_source(cases: list[Any]) -> Path:
    source = cases[0].document.get("source") if cases else None
    if not source:
        fail("the run does not say which workflow it ran; give --workflow FILE")
    path = Path(source)
    if not path.is_file():
        fail(f"the run's workflow {source} is not there; give --workflow FILE")
    return path


def _engine(template: Any, evaluator: Any, *, simulate: bool, answers: Path | None) -> Any:
    from orchestrate.llm.providers import ClientPool
    from orchestrate.llm.simulated import SimulatedClient
    from orchestrate.run.engine import EngineConfig, OrchestrationEngine
    from orchestrate.run.fixed_answers import bind_engine, with_answers

    simulated = with_answers(SimulatedClient(), answers, template)
    clients = ClientPool(simulated=simulated, force_simulated=simulate)
    if not simulate:
        clients.check_keys(evaluator.judge_configs())
    engine = OrchestrationEngine(None, EngineConfig(), clients=clients)
    if template.prices:
        engine.cost_tracker.add_prices(template.prices)
    engine.rate_limiter.configure(template.rate_limits)
    bind_engine(simulated, engine)
    return engine
