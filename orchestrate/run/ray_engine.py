"""`run --data FILE --engine ray`: a dataset's rows on a pool of Ray actors, each an orchestrate engine.

The only module that imports `ray` (``pip install 'orchestrate[ray]'``).

The driver (the ``orchestrate run`` process) keeps the run folder as a dataset run
on one machine does: it reads the rows, records each row's outcome as it comes
back (results, calls, cost.json, report.html) and resumes like any dataset run.
The rows run on `RowWorker` actors: each holds one `OrchestrationEngine` and
drives up to ``rows_per_worker`` rows at once on its event loop. A worker with a
free slot gets the next row, so heavy rows never hold back a shard. Limits,
budget scopes and the cache are shared through the Redis state (a Ray run
requires ``--state redis://...``), so every worker counts against the same
ceilings.

Failure: a row's errors are caught in its worker and recorded as the row's
(``failed``), never failing other rows. When a worker dies (its node is lost,
it is killed), its rows in flight are run again on another worker, and a new
worker takes the dead one's place. A row run again is a new attempt: its calls
book under new ids in the scope because they are really made again; the calls
the dead worker had answered but not yet reported are in the scope (they were
paid) and not in cost.json (``orchestrate budget reconcile`` shows them).

Journals: each row's events come back with its outcome, and the driver writes them
into the run folder's events.jsonl and audit trail (the trail sealed there, in the
order the rows came back), so a Ray run is audited call by call as a local one is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise UserInputError("--engine ray needs Ray: pip install 'orchestrate[ray]'") from exc

from orchestrate.money.costs import CallRecord
from orchestrate.run.events import Event, EventType, try_id
from orchestrate.workflow.dataset import BadRow, Row
from orchestrate.workflow.models import Workflow, WorkflowStatus

__all__ = ["RayRunner", "RowOutcome", "RowWorker", "WorkerSpec"]

NAMESPACE = "orchestrate"  # Ray namespace of the workers (named orchestrate-<run>-<n>)


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker needs to build its engine (sent to the workers, so only plain values).

    The workflow file is loaded by each worker: it (and its prompts and tools) must be at
    the same path on every node (a shared volume, or Ray's ``runtime_env`` working_dir).
    Provider keys come from the workers' own environment, never through Ray.
    """

    workflow_file: str
    run_id: str
    state: str
    namespace: str = "orchestrate"
    budget_scope: str | None = None
    simulate: bool = False
    sim_latency: float = 0.0
    sim_failure_rate: float = 0.0
    seed: int = 0
    cache: str | None = None
    cache_ttl: float = 7 * 86400.0
    max_calls: int = 32  # calls in flight per worker
    rows_per_worker: int = 32
    repeat: int = 1  # tries of each row (`--repeat K`), run one after the other by the row's worker


@dataclass
class RowOutcome:
    """A row's result as a worker sends it back to the driver.

    ``events`` are the row's events on the worker (every try's, in order), for the driver's
    journals: its events.jsonl and its audit trail, which a local dataset run writes as they
    happen, and its traces. Only a call's messages and answer, a tool's arguments and result
    and an agent's prompt travel with them (the trail's digests, ``--otel-content``); other
    content stays in the worker.
    """

    key: str
    workflow: Workflow
    records: list[CallRecord]
    status: str
    worker: str
    events: list[Event] = field(default_factory=list)


# Content the driver's sinks read: the trail's digests (a call's messages and answer, a tool's
# arguments and result) and, with --otel-content, the spans' prompts too.
_CONTENT_KEPT = frozenset({EventType.LLM_CALL, EventType.TOOL_CALL, EventType.AGENT_STARTED})


class _Events:
    """The worker's sink keeping each run's events (by workflow id) until its row is sent back."""

    event_types: frozenset[EventType] | None = None  # all of them

    def __init__(self) -> None:
        self.by_run: dict[str, list[Event]] = {}

    def __call__(self, event: Event) -> None:
        run = event.workflow_id
        if run is None:
            return  # a provider batch's own events: not a row's
        if event.content is not None and event.type not in _CONTENT_KEPT:
            event = replace(event, content=None)
        found = self.by_run.get(run)
        if found is None:
            found = self.by_run[run] = []
        found.append(event)

    def take(self, run_id: str, tries: int) -> list[Event]:
        """The events of run `run_id` and of its later tries (``RUN.2`` ...), in try order."""
        events = self.by_run.pop(run_id, [])
        for n in range(2, tries + 1):
            events += self.by_run.pop(try_id(run_id, n), [])
        return events


class _Collect:
    """The workers' sink: keeps each row's outcome until `RowWorker.run_row` returns it."""

    def __init__(self) -> None:
        self.done: dict[str, tuple[Workflow, list[CallRecord], str]] = {}

    def row_finished(self, row: Row, workflow: Workflow, records: list[CallRecord], status: str) -> None:
        self.done[row.key] = (workflow, records, status)

    def row_invalid(self, bad: BadRow) -> None:  # the driver records invalid rows itself
        return

    def row_refused(self, row: Row, reason: str | None = None) -> None:
        return


class RowWorker:
    """One Ray actor: an orchestrate engine running the rows it is handed, many at once."""

    def __init__(self, spec: WorkerSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.runner: Any = None
        self.collect = _Collect()
        self.events = _Events()
        self._ready = asyncio.Lock()

    async def _start(self) -> Any:
        from orchestrate.llm.providers import ClientPool
        from orchestrate.llm.simulated import SimulatedClient
        from orchestrate.run.dataset_run import CappedClients, DatasetRunner, dataset_engine_config
        from orchestrate.run.engine import OrchestrationEngine
        from orchestrate.run.evaluation import Evaluator
        from orchestrate.state.backends import state_from_url
        from orchestrate.workflow.loader import load_workflow

        spec = self.spec
        state = state_from_url(spec.state, namespace=spec.namespace)
        await state.connect()
        simulated = SimulatedClient(latency=spec.sim_latency, failure_rate=spec.sim_failure_rate, seed=spec.seed)
        clients: Any = ClientPool(simulated=simulated, force_simulated=spec.simulate)
        if spec.cache is not None:
            from orchestrate.run.cache import CachingClients, cache_store

            clients = CachingClients(
                cache_store(spec.cache, state, namespace=spec.namespace, ttl=spec.cache_ttl), clients
            )
        engine = OrchestrationEngine(
            None,
            dataset_engine_config(spec.rows_per_worker),
            clients=CappedClients(clients, spec.max_calls),
            state=state,
        )
        engine.add_sink(self.events)
        template = load_workflow(Path(spec.workflow_file), bind=False)
        if spec.budget_scope is not None:
            template.budget_scope = spec.budget_scope
        # Each worker is a session of its own: a row it runs again after another worker died is a new attempt.
        return DatasetRunner(
            engine,
            template,
            [],
            sinks=[self.collect],
            run_id=spec.run_id,
            budget=None,
            max_rows_parallel=spec.rows_per_worker,
            session=f"{self.name}.{uuid.uuid4().hex[:6]}",
            evaluator=Evaluator.of(template),  # the row's expectations scored where it ran
            repeat=spec.repeat,  # its tries merged there too: the driver gets one case a row, as locally
        )

    async def run_row(self, row: Row) -> RowOutcome:
        """Run one row to its end; its errors become the row's (``failed``), never the worker's."""
        async with self._ready:
            if self.runner is None:
                self.runner = await self._start()
        try:
            await self.runner.run_row(row)
            workflow, records, status = self.collect.done.pop(row.key)
        except Exception as exc:  # a fault past the engine's own handling: this row fails, the others go on
            self.collect.done.pop(row.key, None)
            workflow = self.runner.template
            workflow = _failed_copy(workflow, row, f"{type(exc).__name__}: {exc}")
            records, status = [], "failed"
        events = self.events.take(workflow.id, self.spec.repeat)
        return RowOutcome(row.key, workflow, records, status, self.name, events)

    async def shutdown(self) -> None:
        if self.runner is not None:
            await self.runner.engine.shutdown()
            state = self.runner.engine.state
            if state is not None:
                await state.aclose()


def _failed_copy(template: Workflow, row: Row, error: str) -> Workflow:
    from orchestrate.workflow.dataset import instantiate

    workflow = instantiate(template, row.values, f"failed-{row.index}")
    workflow.status = WorkflowStatus.FAILED
    workflow.error = error
    return workflow


class RayRunner:
    """Runs a dataset's rows on Ray workers; the same `run()` / `stop()` as the one-process runner.

    Args:
        spec: How each worker builds its engine.
        rows: Rows (and bad rows, recorded as invalid), streamed.
        sinks: Receive each row's outcome (the run folder's recorder, a display).
        completed: Keys of rows already completed (a resumed run): not run again.
        workers: Actors at once (a dead one is replaced).
        address: The Ray cluster (``ray://HOST:10001``, ``auto``); None starts a local one.
        replacements: How many dead workers are replaced at most (then the rest carry on).
        journals: Told each row's events (as the worker saw them) before its outcome: the run
            folder's event log and audit trail.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        rows: Iterable[Row | BadRow],
        *,
        sinks: Iterable[Any],
        completed: set[str] | frozenset[str] = frozenset(),
        workers: int = 2,
        address: str | None = None,
        replacements: int | None = None,
        journals: Iterable[Any] = (),
    ) -> None:
        self.spec = spec
        self.journals = list(journals)
        self.rows = rows
        self.sinks = list(sinks)
        self.completed = completed
        self.workers = max(1, workers)
        self.address = address
        self.replacements = self.workers if replacements is None else replacements
        self.stopping: str | None = None
        self.retried: list[str] = []  # keys of rows run again after their worker died
        self.dead: list[str] = []  # names of the workers that died
        self.actors: dict[str, Any] = {}  # name -> handle, alive
        self._started_ray = False
        self._made = 0
        self._pending: dict[asyncio.Future[Any], tuple[str, Row, Any]] = {}

    def _tell(self, method: str, *args: Any) -> None:
        for sink in self.sinks:
            getattr(sink, method)(*args)

    def _journal(self, events: list[Event]) -> None:
        """A row's events into the journals, each told only the kinds it takes (as the engine routes)."""
        for journal in self.journals:
            wanted = getattr(journal, "event_types", None)
            for event in events:
                if wanted is None or event.type in wanted:
                    journal(event)

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False}
        if self.address is None:
            options.update(include_dashboard=False)
        else:
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray instance"
            raise UserInputError(f"--engine ray: cannot start or reach {where}: {exc}") from exc
        self._started_ray = True

    def _new_actor(self) -> None:
        name = f"orchestrate-{self.spec.run_id.split(':', 1)[-1]}-{uuid.uuid4().hex[:6]}-{self._made}"
        self._made += 1
        actor_class = ray.remote(RowWorker).options(
            name=name,
            namespace=NAMESPACE,
            max_concurrency=self.spec.rows_per_worker,
            num_cpus=0,  # I/O bound: the calls wait on the network, not on a CPU
            max_restarts=0,  # a dead worker is replaced by the driver, its rows re-run as new attempts
            max_task_retries=0,
        )
        self.actors[name] = actor_class.remote(self.spec, name)

    def _load(self, name: str) -> int:
        return sum(1 for owner, _, _ in self._pending.values() if owner == name)

    def _submit(self, name: str, row: Row) -> None:
        ref = self.actors[name].run_row.remote(row)
        self._pending[asyncio.wrap_future(ref.future())] = (name, row, ref)

    async def stop(self, reason: str = "run interrupted") -> None:
        """Start no more rows and cancel those in flight (they stay to be run by `--resume`)."""
        self.stopping = reason
        for _, _, ref in list(self._pending.values()):
            ray.cancel(ref)

    async def run(self) -> None:
        """Run every row; returns when the last one in flight has come back."""
        self._connect()
        try:
            await self._run()
        finally:
            await self._close()

    async def _run(self) -> None:
        for _ in range(self.workers):
            self._new_actor()
        again: deque[Row] = deque()
        rows = iter(self.rows)
        exhausted = False
        per_worker = self.spec.rows_per_worker
        while True:
            while not self.stopping and self.actors:  # fill every free slot, rows to run again first
                name = min(self.actors, key=self._load)
                if self._load(name) >= per_worker:
                    break
                row = again.popleft() if again else None
                while row is None and not exhausted:
                    item = next(rows, None)
                    if item is None:
                        exhausted = True
                    elif isinstance(item, BadRow):
                        self._tell("row_invalid", item)
                    elif item.key not in self.completed:
                        row = item
                if row is None:
                    break
                self._submit(name, row)
            if not self._pending:
                if not self.actors and not self.stopping and (again or not exhausted):
                    raise UserInputError("--engine ray: every worker died and none could be replaced")
                return
            done, _ = await asyncio.wait(list(self._pending), return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                name, row, _ = self._pending.pop(future)
                try:
                    outcome: RowOutcome = future.result()
                except (TaskCancelledError, asyncio.CancelledError):
                    continue  # stopped: the row stays for --resume
                except RayActorError:
                    if self.stopping:
                        continue
                    self._lost(name)
                    again.append(row)
                    self.retried.append(row.key)
                    continue
                except RayTaskError as exc:  # the worker raised past run_row's own catch
                    outcome = RowOutcome(row.key, _failed_copy(_template(self), row, str(exc)), [], "failed", name)
                self._journal(outcome.events)
                self._tell("row_finished", row, outcome.workflow, outcome.records, outcome.status)

    def dead_worker_notes(self, run_dir: Path) -> list[str]:
        """Closing lines when workers died: their rows ran again, and what only `reconcile` can show."""
        if not self.dead:
            return []
        rows = len(self.retried)
        lines = [
            f"warning: {len(self.dead)} Ray worker(s) died mid-run ({', '.join(self.dead)}); their "
            f"{rows} row(s) in flight ran again on other workers, each recorded once"
        ]
        scope = self.spec.budget_scope
        if scope is not None:
            most = len(self.dead) * self.spec.max_calls
            lines.append(
                f"warning: calls a dead worker had been answered for but had not reported (at most {most}, its "
                f"calls in flight) were paid and are booked in budget scope {scope!r}, but are not in "
                f"{run_dir / 'cost.json'}; see the difference with: orchestrate budget reconcile {scope} "
                f"{run_dir} --state URL"
            )
        return lines

    def _lost(self, name: str) -> None:
        if self.actors.pop(name, None) is None:
            return
        self.dead.append(name)
        if len(self.dead) <= self.replacements:
            self._new_actor()

    async def _close(self) -> None:
        for handle in list(self.actors.values()):
            try:
                await asyncio.wait_for(asyncio.wrap_future(handle.shutdown.remote().future()), timeout=30)
            except (RayActorError, RayTaskError, GetTimeoutError, TimeoutError):
                pass
            ray.kill(handle, no_restart=True)
        self.actors.clear()
        if self._started_ray:
            ray.shutdown()


def _template(runner: RayRunner) -> Workflow:
    from orchestrate.workflow.loader import load_workflow

    return load_workflow(Path(runner.spec.workflow_file), bind=False)
