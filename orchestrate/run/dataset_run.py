"""Running one workflow over the rows of a dataset, in one engine, under one dataset budget.

Every row is a run of its own (a copy of the workflow with the row's input
values), registered with the same engine, so all rows share one rate limiter
per provider, one connection pool, one response cache and one cost tracker.
At most `max_rows_parallel` rows run at a time; the client source can cap the
calls in flight across all of them (`CappedClients`).

Money: each row's account has the workflow's `cost_budget`, and is a child of
the dataset run's account, whose limit is the dataset budget. A call's worst case is
reserved against the agent, the row and the dataset run in one synchronous step
(`CostTracker.reserve`), so no interleaving of rows can cross the dataset run
ceiling. Once the dataset run account refuses a call, no further row is started:
the rows not started are recorded ``budget_exceeded`` (counted, not run) while
the rows in flight finish. A shared budget scope (``budget_scope``, kept in
Redis) that refuses a call is the same: the refused row ends
``budget_exceeded``, not ``failed``, and no further row starts.

Admission (a dataset budget pays for whole rows, never halves): a row starts
only when its worst case, as `orchestrate plan` computes it for that row's
inputs, fits in what the dataset budget has left after the spend so far and
what the rows in flight may still spend (each one's worst case less what it
spent already). A row that does not fit waits for rows in flight to finish;
when none is left in flight and it still does not fit, it ends ``not
started`` with the reason, and the next rows are each tried in turn.

Rows are read, run and recorded one at a time: only the rows in flight are in
memory, and each row's accounts and call records are handed to the recorder
and dropped from the tracker as it finishes.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from orchestrate.llm.base import LLMClient, LLMResponse
from orchestrate.money.costs import CallRecord, agent_key
from orchestrate.run.cache import fresh_answers
from orchestrate.run.engine import EngineConfig
from orchestrate.run.evaluation import repeated
from orchestrate.run.events import Event, EventType, try_id
from orchestrate.run.live_scoring import LiveScoring
from orchestrate.run.monitor import MonitorConfig
from orchestrate.run.repeat import later_tries
from orchestrate.run.scheduler import RunShape
from orchestrate.slots import Slots
from orchestrate.workflow.dataset import BadRow, Row, instantiate
from orchestrate.workflow.models import AgentResult, Workflow, WorkflowStatus

__all__ = [
    "DatasetRunner",
    "DatasetSink",
    "CappedClients",
    "dataset_engine_config",
    "default_rows_parallel",
    "instantiate",
    "row_status",
]


class DatasetSink(Protocol):
    """Where a dataset run's outcomes go (the run folder's recorder, a display)."""

    def row_finished(self, row: Row, workflow: Workflow, records: list[CallRecord], status: str) -> None: ...

    def row_invalid(self, bad: BadRow) -> None: ...

    def row_refused(self, row: Row, reason: str | None = None) -> None: ...


def row_status(workflow: Workflow, refused_by_budget: bool) -> str:
    """A row's status: its workflow's, or ``budget_exceeded`` when the dataset budget (or the shared
    budget scope) stopped it."""
    if workflow.status is WorkflowStatus.COMPLETED:
        return "completed"
    if refused_by_budget:
        return "budget_exceeded"
    return workflow.status.value


class DatasetRunner:
    """Runs a workflow over rows; create, then `await run()`; `stop()` ends it early.

    Args:
        engine: The one engine every row runs in.
        template: The workflow, loaded and checked once, its inputs unbound.
        rows: Rows (and bad rows, when they are to be recorded and skipped), streamed.
        sinks: Receive each row's outcome.
        run_id: The tracker account of the whole dataset run.
        budget: The dataset run's ceiling in USD (None: none; each row keeps its own).
        max_rows_parallel: Rows in flight at most.
        completed: Keys of rows already completed (a resumed dataset run): not run again.
        reuse: Per row key, earlier results of its agents (fingerprints decide reuse).
        session: Makes the rows' run ids unique across the sessions of a dataset run.
        evaluator: Scores each row's expectations as the row finishes (its judges reserve
            against the row's and the dataset run's budgets like its agents).
        repeat: Tries of each row (``--repeat K``), one after the other in the row's slot, each
            a run of its own with the workflow's ``cost_budget``; the tries after the first
            skip the response cache. Admission reserves K times a row's worst case.
    """

    def __init__(
        self,
        engine: Any,
        template: Workflow,
        rows: Iterable[Row | BadRow],
        *,
        sinks: Iterable[DatasetSink],
        run_id: str,
        budget: float | None,
        max_rows_parallel: int,
        completed: set[str] | frozenset[str] = frozenset(),
        reuse: Mapping[str, dict[str, AgentResult]] | None = None,
        session: str | None = None,
        evaluator: Any = None,
        repeat: int = 1,
    ) -> None:
        self.engine = engine
        self.repeat = max(1, repeat)
        self.evaluator = evaluator
        # Each row's agents scored as they finish; none (and no sink) without expectations.
        self.scoring = LiveScoring(engine) if evaluator is not None else None
        self.template = template
        self.rows = rows
        self.sinks = list(sinks)
        self.run_id = run_id
        self.budget = budget
        self.max_rows_parallel = max(1, max_rows_parallel)
        self.completed = completed
        self.reuse = reuse or {}
        self.session = session or uuid.uuid4().hex[:6]
        self.tracker = engine.cost_tracker
        self.exhausted = False
        self.stopping: str | None = None
        self._refused: set[str] = set()
        self.refusal: str | None = None  # why rows are not started, when not the dataset budget
        # row run id -> [its worst case, what its finished tries spent, the run id of its try now]
        self._in_flight: dict[str, list[Any]] = {}
        self._pending_worst = 0.0
        self._freed = asyncio.Event()  # a row in flight finished
        self.tracker.set_workflow_budget(run_id, budget)
        if self.tracker.scopes is not None:  # a shared scope's booking ids: this run folder, this session
            self.tracker.scopes.origin = f"{run_id}/{self.session}"
        self.shape = RunShape.of(template, shared=True)  # checked once, shared by every row's run
        if hasattr(engine, "check_prices"):
            engine.check_prices(template)  # every row's agents are the template's
        caching = getattr(getattr(engine, "executor", None), "prompt_cache", None)
        if caching is not None:
            caching.long_runs = True  # rows come minutes apart: keep their shared prefix for an hour
        engine.add_sink(self._watch, types=(EventType.AGENT_BUDGET_REFUSED,))

    def _watch(self, event: Event) -> None:
        scope = str(event.data.get("scope") or "")
        if event.type is EventType.AGENT_BUDGET_REFUSED and (scope == "batch" or scope.startswith("budget_scope ")):
            if not self.exhausted and scope != "batch":
                self.refusal = f"not started: {scope} has no room left (it refused a call of an earlier row)"
            self.exhausted = True
            if event.workflow_id is not None:
                self._refused.add(event.workflow_id)

    async def stop(self, reason: str = "run interrupted") -> None:
        """Start no more rows and cancel those in flight (they end ``cancelled``)."""
        self.stopping = reason
        await self.engine.stop(reason)

    async def run(self) -> None:
        """Run every row; returns when the last one in flight has finished."""
        with _dataset_gc():
            await self._run()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        slots = Slots(self.max_rows_parallel)
        tasks: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            slots.give()

        try:
            for item in self.rows:
                if self.stopping or getattr(self.engine, "halted", None):  # a journal failed: no more rows
                    break
                if isinstance(item, BadRow):
                    self._tell("row_invalid", item)
                    continue
                if item.key in self.completed:
                    continue
                if not self.exhausted and not self._room():
                    self.exhausted = True
                if self.exhausted:
                    self._tell("row_refused", item, self.refusal)
                    continue
                if not slots.try_take():
                    await slots.take()
                if self.stopping or getattr(self.engine, "halted", None):
                    slots.give()
                    break
                refusal = await self._admit(item) if self.budget is not None and not self.exhausted else None
                if self.exhausted or refusal is not None:
                    slots.give()
                    self._tell("row_refused", item, refusal or self.refusal)
                    continue
                task = loop.create_task(self._row(item))
                tasks.add(task)
                task.add_done_callback(done)
        finally:
            if tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)

    async def _admit(self, row: Row) -> str | None:
        """Wait until `row`'s worst case fits in the dataset budget (see the module docstring);
        None when it may start, else why it is not started."""
        worst = self._worst_case(row)
        while True:
            if self.stopping or self.exhausted:
                return None  # the caller refuses it for that reason
            left = self.budget - self._committed() if self.budget is not None else float("inf")
            if worst <= left + 1e-12:
                self._pending_worst = worst
                return None
            if not self._in_flight:
                return (
                    f"not started: its worst case ${worst:.6f} does not fit in the ${max(left, 0.0):.6f} "
                    f"left of the dataset budget ${self.budget:.4f}"
                )
            self._freed.clear()
            await self._freed.wait()

    def _worst_case(self, row: Row) -> float:
        """The most `row` can cost, as `orchestrate plan` computes it for its inputs (its K tries)."""
        from orchestrate.money.planning import plan_workflow

        size = sum(len(str(v).encode()) for v in row.values.values())
        plan = plan_workflow(instantiate(self.template, row.values, "plan"), self.tracker, input_bytes=size)
        return plan.max_cost * self.repeat

    def _committed(self) -> float:
        """Spent so far, plus what the rows in flight may still spend (their worst case less their spend)."""
        tracker = self.tracker
        committed = tracker.spent(self.run_id)
        for worst, done, current in self._in_flight.values():
            committed += max(0.0, worst - done - tracker.spent(current))
        return committed

    def _room(self) -> bool:
        if self.budget is None:
            return True
        return self.tracker.spent(self.run_id) + self.tracker.reserved(self.run_id) < self.budget - 1e-12

    def _tell(self, method: str, *args: Any) -> None:
        for sink in self.sinks:
            getattr(sink, method)(*args)

    async def run_row(self, row: Row) -> None:
        """Run one row to its end and tell the sinks (a Ray worker is handed rows one at a time)."""
        await self._row(row)

    async def _row(self, row: Row) -> None:
        base = f"{self.session}-{row.index}"
        entry: list[Any] = [self._pending_worst, 0.0, base]
        if self.budget is not None:
            self._in_flight[base] = entry
        try:
            await self._run_row(row, base, entry)
        finally:
            if self._in_flight.pop(base, None) is not None:
                self._freed.set()

    async def _run_row(self, row: Row, base: str, entry: list[Any]) -> None:
        engine = self.engine
        engine.emit(
            Event(
                EventType.ROW_STARTED, base, None, {"key": row.key, "row": row.line}, workflow_name=self.template.name
            )
        )
        tries: list[Workflow] = []
        records: list[CallRecord] = []
        documents: list[dict[str, Any]] = []
        status = "completed"
        for n in range(1, self.repeat + 1):
            if n > 1 and (self.stopping or getattr(engine, "halted", None)):
                break
            run_id = base if n == 1 else try_id(base, n)
            entry[2] = run_id
            with fresh_answers(n > 1):  # a repeat asks again: never the cached answer of an earlier try
                workflow, own, refused = await self._try(row, run_id, first=n == 1)
            entry[1] += sum(r.cost for r in own)
            records += own
            try_status = row_status(workflow, refused)
            if status == "completed":
                status = try_status
            if workflow.evaluation is not None:
                documents.append(workflow.evaluation)
            tries.append(workflow)
        first = tries[0]
        if self.repeat > 1:  # the row as a case: its first try's answers, every try's money and scores
            first.repeats = later_tries(tries)
            first.total_cost = sum(r.cost for r in records)
            first.evaluation = repeated(documents) if documents else None
        self._tell("row_finished", row, first, records, status)
        duration = (
            (first.completed_at - first.started_at).total_seconds() if first.completed_at and first.started_at else 0.0
        )
        engine.emit(
            Event(
                EventType.ROW_FINISHED,
                first.id,
                None,
                {
                    "key": row.key,
                    "row": row.line,
                    "status": status,
                    "cost": first.total_cost,
                    "tokens": first.total_tokens,
                    "seconds": duration,
                    "error": first.error,
                },
                workflow_name=first.name,
            )
        )

    async def _try(self, row: Row, run_id: str, *, first: bool) -> tuple[Workflow, list[CallRecord], bool]:
        """One run of `row` (one try of it): its workflow, its calls, whether the dataset budget refused it."""
        engine, tracker = self.engine, self.tracker
        workflow = instantiate(self.template, row.values, run_id)
        engine.register_run(workflow, self.shape, parent=self.run_id)
        workflow.row = {**row.values, **row.columns}
        keys = [agent_key(workflow.id, a.name) for a in workflow.agents]
        scoring = self.scoring
        if scoring is not None:
            scoring.begin(workflow, self.evaluator, row=workflow.row)
            keys += self.evaluator.judge_keys(workflow.id)
        try:
            reuse = self.reuse.get(row.key) if first else None  # only a first try carries agents over
            await engine.execute_workflow(workflow.id, reuse=reuse)
            if scoring is not None:
                await scoring.finish(workflow, score=not self.stopping)
        finally:
            if scoring is not None:
                await scoring.finish(workflow, score=False)  # cancelled: its judges still asking too
            engine.forget(workflow.id)
            records = tracker.forget(workflow.id, keys)
        refused = workflow.id in self._refused
        self._refused.discard(workflow.id)
        return workflow, records, refused


@contextmanager
def _dataset_gc() -> Iterator[None]:
    """Collect garbage less often while a dataset run runs: a tenth of the engine's time otherwise.

    A row makes thousands of short-lived objects, almost all freed by reference
    counting; the cyclic collector's youngest generation would run every 700
    allocations and, now and then, rescan every object the process holds (the
    modules, the workflow, the engine). So what exists when the dataset run starts is
    frozen out of the collector's scans (`gc.freeze`) and the youngest
    generation is collected every 50,000 allocations instead; both are undone
    when the dataset run ends. Cycles are still collected, a little later.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _CappedClient(LLMClient):
    """A client whose calls wait for a slot of the dataset run's cap on calls in flight."""

    def __init__(self, inner: LLMClient, owner: CappedClients) -> None:
        self.inner = inner
        self.owner = owner
        self.provider = inner.provider

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        owner = self.owner
        if not owner.slots.try_take():
            await owner.slots.take()
        try:
            return await self.inner.complete(prompt, model, temperature, max_tokens, tools, **kwargs)
        finally:
            owner.slots.give()

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        owner = self.owner
        if not owner.slots.try_take():
            await owner.slots.take()
        try:
            return await self.inner.complete_with_tools(messages, model, tools, temperature, max_tokens, **kwargs)
        finally:
            owner.slots.give()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CappedClients:
    """A client source that lets at most `limit` calls be in flight across every client."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = max(1, limit)
        self.slots = Slots(self.limit)
        self._wrapped: dict[int, _CappedClient] = {}

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        return self.slots.held

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        client = self.inner.get(llm_config)
        if getattr(client, "batched", False):
            return client  # a provider batch call waits at the provider, not in one of our slots
        wrapped = self._wrapped.get(id(client))
        if wrapped is None:
            wrapped = self._wrapped[id(client)] = _CappedClient(client, self)
        return wrapped

    async def aclose(self) -> None:
        await self.inner.aclose()


def dataset_engine_config(
    rows_parallel: int, max_threads: int | None = None, *, prompt_cache: bool = True
) -> EngineConfig:
    """The engine configuration of `orchestrate run --data`.

    Every provider keeps its default limits. The monitor keeps its counters but
    neither a ring of recent events nor a logger line per event: a dataset run's
    events are in its events.jsonl, nothing reads the ring, and at thousands of
    events a second keeping each one's data alive costs the engine about 5 us a
    call.
    """
    return EngineConfig(
        max_concurrent_workflows=rows_parallel,
        monitor_config=MonitorConfig(enable_logging=False),
        max_threads=max_threads,
        prompt_cache=prompt_cache,
    )


def default_rows_parallel(workflow: Workflow, max_calls: int) -> int:
    """Enough rows to keep `max_calls` calls in flight, given how many a row can have at once."""
    from orchestrate.workflow.graph import DependencyGraph

    graph = DependencyGraph.from_agents(workflow.agents)
    depth: dict[str, int] = {}
    for agent in workflow.agents:  # the widest layer bounds a row's own parallelism
        depth[agent.name] = 0
    changed = True
    while changed:
        changed = False
        for agent in workflow.agents:
            level = max((depth[d] + 1 for d in graph.dependencies[agent.name]), default=0)
            if level != depth[agent.name]:
                depth[agent.name], changed = level, True
    layers: dict[int, int] = {}
    for level in depth.values():
        layers[level] = layers.get(level, 0) + 1
    width = min(max(layers.values(), default=1), max(1, workflow.max_parallel_agents))
    return max(1, -(-max_calls // width))
