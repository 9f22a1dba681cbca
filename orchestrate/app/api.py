"""The Python API's runners: a workflow, or a workflow over a data file, with what the command does.

`run_dataset` and `run_workflow` take the options of `orchestrate run` as keyword
arguments (the fields of `Invocation`), run with the same budget, resume and run
folder as the command, print nothing unless asked (``progress="plain"``), and return
the outcome instead of exiting. They call `asyncio.run`, so they are for synchronous
code; from a running event loop, call them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from orchestrate.app.dataset import DatasetOutcome, execute_dataset
from orchestrate.app.invocation import DatasetSpec, Invocation
from orchestrate.app.session import RunOutcome, execute_workflows
from orchestrate.run.events import Sink

__all__ = ["run_dataset", "run_workflow"]

_DATASET_FIELDS = ("key", "skip_invalid_rows", "max_rows_parallel", "shard")


def run_dataset(
    workflow: str | PathLike[str],
    data: str | PathLike[str],
    *,
    sinks: Sequence[Sink] = (),
    **options: Any,
) -> DatasetOutcome:
    """Run `workflow` over every row of `data` (JSONL or CSV) and write one dataset-run folder.

    Args:
        workflow: The workflow file.
        data: The data file: one row a line (JSONL) or a CSV with a header.
        sinks: More sinks for the engine's events (every row's).
        **options: `key`, `skip_invalid_rows`, `max_rows_parallel`, `shard` (``(K, N)``), and any
            field of `Invocation`: ``budget`` (the ceiling over every row), ``inputs`` (shared by
            every row), ``simulate``, ``output_dir``, ``resume`` (a folder to continue), ``state``...

    Returns:
        The outcome: its result.json document, run folder and exit code.

    Raises:
        UserInputError: The workflow, a row or an option is invalid (nothing was run).
    """
    given = {*options, "workflows", "data"}
    spec = DatasetSpec(data=str(data), **{k: options.pop(k) for k in _DATASET_FIELDS if k in options})
    invocation = Invocation(workflows=[Path(workflow)], dataset=spec, **_paths(options))
    return execute_dataset(_resumed(invocation, given), sinks=sinks)


def run_workflow(workflow: str | PathLike[str], *, sinks: Sequence[Sink] = (), **options: Any) -> RunOutcome:
    """Run `workflow` once and write its run folder (result.json, cost.json, events.jsonl, report.html).

    Args:
        workflow: The workflow file.
        sinks: More sinks for the engine's events.
        **options: Any field of `Invocation`: ``inputs``, ``budget``, ``simulate``, ``output_dir``,
            ``resume``, ``approve``...

    Raises:
        UserInputError: The workflow, an input or an option is invalid (nothing was run).
    """
    given = {*options, "workflows"}
    invocation = Invocation(workflows=[Path(workflow)], **_paths(options))
    return execute_workflows(_resumed(invocation, given), sinks=sinks)


def _resumed(invocation: Invocation, given: set[str]) -> Invocation:
    """With `resume`: the recorded run, the options given checked against it (as the command does)."""
    if invocation.resume is None:
        return invocation
    from orchestrate.app.record import resumed

    return resumed(invocation, given)


def _paths(options: dict[str, Any]) -> dict[str, Any]:
    """Folders and files given as strings, as the paths `Invocation` holds."""
    for name in ("output_dir", "resume", "junit", "summary", "answers", "baseline"):
        if isinstance(options.get(name), (str, PathLike)):
            options[name] = Path(options[name])
    return options
