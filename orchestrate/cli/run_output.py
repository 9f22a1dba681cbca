"""What `orchestrate run` prints when a run has ended: the closing lines, JSON, warnings."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from orchestrate.app.dataset import DatasetOutcome
from orchestrate.app.invocation import Invocation
from orchestrate.app.session import RunOutcome
from orchestrate.cli.common import print_error, print_json
from orchestrate.observe.dataset_results import outcome_counts, outcome_lines
from orchestrate.printable import printable

__all__ = ["print_dataset_outcome", "print_run_outcome"]


def print_run_outcome(outcome: RunOutcome, inv: Invocation, *, json_output: bool) -> None:
    """The closing lines (or JSON) of a run of workflows, then what went wrong on the side."""
    _print_summary(outcome, inv, json_output=json_output)
    for line in outcome.warnings:
        sys.stderr.write(line + "\n")
    for still, run_dir in zip(outcome.open_batches, outcome.run_dirs):
        if still:
            _report_open_batches(still, inv, f"'orchestrate run --resume {run_dir}'")
    _warn_usage(outcome.documents)
    _warn_cache(outcome.cache_problems)
    _print_lines(outcome.baseline_lines)
    if outcome.audit_failure is not None:
        print_error(outcome.audit_failure)
    if outcome.state_error is not None:
        # Failed closed: no call started after the state was lost; in-flight ones are in cost.json.
        print_error(
            f"{outcome.state_error}; no call was started without it, calls in flight were "
            "recorded in cost.json; run again with --resume RUN_DIR once it is back"
        )


def print_dataset_outcome(outcome: DatasetOutcome, inv: Invocation, *, json_output: bool) -> None:
    """The closing lines (or JSON) of a dataset run, then what went wrong on the side."""
    _print_dataset(outcome, inv, json_output=json_output)
    for line in outcome.warnings:
        sys.stderr.write(line + "\n")
    spec = inv.dataset
    assert spec is not None
    if outcome.open_batches:
        command = f"'orchestrate run --resume {outcome.run_dir}'"
        _report_open_batches(outcome.open_batches, inv, command)
    _print_lines(outcome.baseline_lines)
    if outcome.audit_failure is not None:
        print_error(outcome.audit_failure)
    if outcome.state_error is not None:
        print_error(
            f"{outcome.state_error}; no row or call was started without it, calls in flight "
            "were recorded; run again with --resume RUN_DIR once it is back"
        )


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")


def _report_open_batches(still: list[dict[str, Any]], inv: Invocation, command: str) -> None:
    """Say which provider batches are still running at the provider, and how to collect them."""
    verb = "cancel requested for" if inv.cancel_batches else "left running at the provider:"
    print_error(
        f"{len(still)} batch(es) {verb} {', '.join(b['batch_id'] for b in still)}; "
        f"{command} collects what they answer without submitting (or paying for) them again"
    )


def _print_summary(outcome: RunOutcome, inv: Invocation, *, json_output: bool) -> None:
    documents = outcome.documents
    if json_output:
        payload = [
            {
                "name": d["name"],
                "status": d["status"],
                "run_dir": str(run_dir),
                "total_cost": d["total_cost"],
                "total_tokens": d["total_tokens"],
                "retries": d["retries"],
                "duration_seconds": d["duration_seconds"],
                "rate_limit_waits": d.get("rate_limit_waits"),
                "simulated": d["simulated"],
                "outputs": d.get("outputs", {}),
                "agents": {a["name"]: a["status"] for a in d["agents"]},
                "expectations": d.get("expectations"),
            }
            for d, run_dir in zip(documents, outcome.run_dirs)
        ]
        print_json("run", {"runs": payload})
        return
    if inv.progress == "quiet":  # only what went wrong: a line per agent, cancelled ones grouped by cause
        from orchestrate.observe.summary import failure_lines

        for d in documents:
            for line in failure_lines(d, indent=""):
                print_error(printable(f"{d['name']}: {line}", one_line=True))
        return
    from orchestrate.observe.summary import closing_lines
    from orchestrate.run.evaluation import expectation_lines

    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    several = len(documents) > 1
    blocks = [
        "\n".join(
            [
                *closing_lines(d, run_dir, path, width=width, hints=not several),
                *expectation_lines(d.get("expectations")),
            ]
        )
        for d, run_dir, path in zip(documents, outcome.run_dirs, outcome.files)
    ]
    if several:  # one total and the commands once, not a cost-report hint a workflow
        from orchestrate.observe.summary import combined_lines

        blocks.append("\n".join(combined_lines(documents, outcome.run_dirs, outcome.files)))
    lead = "\n" if inv.progress == "live" else ""  # set apart from the live table's last frame
    sys.stdout.write(lead + printable("\n\n".join(blocks)) + "\n")  # provider text: controls escaped
    sys.stdout.flush()


def _warn_cache(problems: list[str]) -> None:
    """Cache entries that could not be used or stored: said once, after the run they did not stop."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        sys.stderr.write(
            printable(f"warning: --cache: {problems[0]}{more}; those requests went to the provider", one_line=True)
            + "\n"
        )


def _warn_usage(documents: list[dict[str, Any]]) -> None:
    """Usage a provider reported that was not taken at its word, and any budget it pushed past:
    printed even with --quiet, since it is money spent that the budget did not foresee."""
    for doc in documents:
        for item in doc.get("usage_anomalies") or ():
            sys.stderr.write(
                printable(f"warning: {doc['name']}/{item['agent']}: usage anomaly: {item['anomaly']}", one_line=True)
                + "\n"
            )
        overrun = doc.get("budget_overrun")
        if overrun:
            sys.stderr.write(
                f"warning: {doc['name']}: budget of ${overrun['budget']:.4f} passed: "
                f"${overrun['spent']:.4f} spent ({overrun['cause']})\n"
            )
    sys.stderr.flush()


def _print_dataset(outcome: DatasetOutcome, inv: Invocation, *, json_output: bool) -> None:
    d, run_dir = outcome.document, outcome.run_dir
    if json_output:
        keys = ("name", "status", "rows", "counts", "total_cost", "total_tokens", "duration_seconds", "simulated")
        payload = {k: d[k] for k in (*keys, "budget")}
        payload["run_dir"] = str(run_dir)
        payload["expectations"] = d.get("expectations")
        payload["outcomes"] = outcome_counts(run_dir)
        print_json("dataset_run", payload)
        return
    if inv.progress == "quiet":
        return
    counts = d["counts"]
    from orchestrate.observe.summary import status_text

    others = ", ".join(f"{n} {status_text(s)}" for s, n in counts.items() if s != "completed")
    rows = max(int(d["rows"]), outcome.rows)
    if rows > int(d["rows"]):  # stopped early: the rows never reached are counted too
        others += f"{', ' if others else ''}{rows - int(d['rows'])} not started"
    label = " (simulated)" if d["simulated"] else ""
    from orchestrate.money.amounts import usd
    from orchestrate.observe.summary import next_steps, plural

    # As a single run's closing block: figures after the counts, the run folder on its own line.
    head = f"{d['name']}: {status_text(d['status'])}{label} - {counts.get('completed', 0)}/{rows} rows completed"
    if others:  # on a line of their own when the sentence would pass 80 columns (a terminal's wrap)
        head += (",\n  " if len(head) + len(others) + 3 > 80 else ", ") + others
    sys.stdout.write(
        f"{head};\n  {usd(float(d['total_cost']))}, "
        f"{plural(int(d['total_tokens']), 'token')}, {d['duration_seconds']:.2f}s"
        + (f" over {len(d['sessions'])} sessions" if len(d.get("sessions") or []) > 1 else "")
        + "\n"
        + "".join(f"{line}\n" for line in outcome_lines(run_dir))
        + f"run folder: {run_dir}\n"
    )
    if d.get("expectations"):
        from orchestrate.run.evaluation import dataset_lines

        sys.stdout.write("".join(f"{line}\n" for line in dataset_lines(d["expectations"])))
    if d["status"] != "completed":  # what to do about the rows left: above all, how to resume
        sys.stdout.write("next:\n" + "".join(f"{step}\n" for step in next_steps(d, run_dir, outcome.file)))
