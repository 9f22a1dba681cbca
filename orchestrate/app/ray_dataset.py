"""A dataset run on Ray (``--engine ray``): what it needs checked first, and its runner.

The run folder, the recorder, the reports and resume are the dataset run's own
(`orchestrate.app.dataset`); only the rows run elsewhere, on the workers of
`orchestrate.run.ray_engine`, which share limits, budget scopes and the cache
through the Redis state.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrate.app.invocation import DatasetSpec, Invocation
from orchestrate.errors import UserInputError

__all__ = ["check_ray", "ray_runner"]


def check_ray(inv: Invocation, spec: DatasetSpec) -> None:
    """Refuse, before any folder is made, what the workers could not share (and a missing Ray)."""
    if not str(inv.state or "").startswith(("redis://", "rediss://")):
        raise UserInputError(
            "--engine ray: the workers share rate limits, budget scopes and the cache through Redis; "
            "pass --state redis://HOST:PORT/DB (or set ORCHESTRATE_STATE_URL)"
        )
    if inv.budget is not None:
        raise UserInputError(
            "--engine ray: --budget is kept by one process; give the workers one ceiling with a budget scope: "
            "orchestrate budget set NAME USD --state URL, then run with --budget-scope NAME"
        )
    if inv.provider_batch:
        raise UserInputError("--engine ray: the providers' batch APIs are used by one process; drop --provider-batch")
    if inv.cache is not None and "://" not in str(inv.cache):
        raise UserInputError(
            "--engine ray: a cache folder is not shared by the workers; use --cache redis://HOST:PORT/DB"
        )
    if inv.answers is not None:
        raise UserInputError("--engine ray: --answers is read by one process; run fixed answers without --engine ray")
    if spec.workers is not None and spec.workers < 1:
        raise UserInputError("--workers must be at least 1")
    import orchestrate.run.ray_engine  # noqa: F401  (says which extra to install when Ray is missing)


def ray_runner(
    inv: Invocation,
    spec: DatasetSpec,
    file: Path,
    run_id: str,
    rows: Iterable[Any],
    sinks: list[Any],
    completed: set[str] | frozenset[str],
    rows_parallel: int,
    max_calls: int,
    budget_scope: str | None,
    journals: list[Any],
) -> Any:
    """The `RayRunner` of a dataset run: each worker runs up to `rows_parallel` rows and `max_calls` calls;
    `journals` (the folder's event log and audit trail) are told each row's events as it comes back."""
    from orchestrate.run.ray_engine import RayRunner, WorkerSpec

    assert inv.state is not None
    worker = WorkerSpec(
        workflow_file=str(Path(file).resolve()),
        run_id=run_id,
        state=inv.state,
        namespace=inv.state_namespace,
        budget_scope=budget_scope,
        simulate=inv.simulate,
        sim_latency=inv.sim_latency,
        sim_failure_rate=inv.sim_failure_rate,
        seed=inv.seed,
        cache=str(inv.cache) if inv.cache is not None else None,
        cache_ttl=inv.cache_ttl,
        max_calls=max_calls,
        rows_per_worker=rows_parallel,
        repeat=inv.repeat,
    )
    return RayRunner(
        worker,
        rows,
        sinks=sinks,
        completed=completed,
        workers=spec.workers or 2,
        address=spec.address,
        journals=journals,
    )
