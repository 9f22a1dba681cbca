"""The orchestration engine: registers workflows and runs them on shared limits and budgets.

One engine holds one cost tracker, one set of rate limiters, one monitor and
the LLM clients, so several workflows run side by side without overrunning a
provider's limits. The engine never imports rich, typer, yaml or jsonschema
at module level; output checking borrows `orchestrate.workflow.schema` when an agent
has an output_schema.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, MethodType
from typing import Any, Protocol

from orchestrate.errors import UserInputError
from orchestrate.llm.base import LLMClient
from orchestrate.money.budget_scope import ScopeLedger
from orchestrate.money.costs import CostConfig, CostTracker, agent_key
from orchestrate.money.rate_limit import RateLimitConfig, RateLimiterRegistry
from orchestrate.run.approvals import Decision
from orchestrate.run.deadlines import Deadlines
from orchestrate.run.events import Event, EventType, Sink
from orchestrate.run.executor import AgentExecutor
from orchestrate.run.failures import FailureHandler, RetryPolicy
from orchestrate.run.monitor import Monitor, MonitorConfig
from orchestrate.run.prompt_cache import PromptCaching
from orchestrate.run.scheduler import Approver, RunShape, Settle, WorkflowRun
from orchestrate.run.workers import WorkerPool
from orchestrate.slots import Slots
from orchestrate.state.base import LeaseKeeper, SharedState
from orchestrate.workflow.models import AgentResult, Workflow

__all__ = ["ClientSource", "EngineConfig", "OrchestrationEngine"]


class ClientSource(Protocol):
    """Where the engine gets each agent's client: a provider pool, a cache, ..."""

    def get(self, llm_config: dict[str, Any]) -> LLMClient: ...

    async def aclose(self) -> None: ...


@dataclass
class EngineConfig:
    """Engine configuration.

    Beyond the reference's fields: `rate_limits` per provider or model
    (overriding `rate_limit_config`, which every provider gets by default;
    None limits only what `rate_limits` or a workflow names; a provider's
    429 with retry-after still pauses its callers), how many times an answer that fails its
    output_schema is sent back for correction, and how many tool rounds an
    agent may take. `max_threads` bounds the run's own worker threads, where
    sync tools and code steps run (`orchestrate.run.workers`; None: a default).
    `prompt_cache` False sends nothing cache-related to the
    providers (``--no-prompt-cache``); `prompt_cache_warm_up` False lets the calls
    sharing a prefix go at once instead of one first (see `orchestrate.run.prompt_cache`).
    """

    rate_limit_config: RateLimitConfig | None = field(default_factory=RateLimitConfig)
    cost_config: CostConfig = field(default_factory=CostConfig)
    monitor_config: MonitorConfig = field(default_factory=MonitorConfig)
    default_retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrent_workflows: int = 50
    rate_limits: dict[str, Any] = field(default_factory=dict)
    output_retries: int = 2
    max_tool_rounds: int = 8
    max_threads: int | None = None
    prompt_cache: bool = True
    prompt_cache_warm_up: bool = True


class OrchestrationEngine:
    """Main orchestration engine.

    Args:
        llm_client: Answers every agent's calls. When None, each agent gets a
            client for its own provider (`llm_config.provider`, else inferred
            from the model name) from a pool, or from `clients`.
        config: Engine configuration.
        clients: Hands out the client for an agent's llm_config (`get`) and
            closes them all (`aclose`); takes precedence over `llm_client`.
        sinks: Further receivers of every event (live table, event log, ...).
        on_failure: Called with (agent, result) whenever an agent attempt fails.
        sleep: Waits between retries; tests pass a fake.
        clock: Seconds for agent timings and deadlines.
        state: Shared state (`orchestrate.state.base.state_from_url`): rate
            limits, pauses and budget scopes shared with every process using
            it. None keeps limits in this process; a workflow naming a
            `budget_scope` then gets an in-process state where no scope is set.
        limiter_clock: Monotonic seconds of the rate limiters (default `time.monotonic`).
        limiter_sleep: Their sleep (default `asyncio.sleep`); tests pass virtual time.
        approver: Asked for a decision when an agent with `approval:` is reached and
            none was given (`async (workflow, agent, message) -> Decision | None`);
            without one, or when it returns None, the agent waits and the run ends
            `waiting` once nothing else can progress.
    """

    def __init__(
        self,
        llm_client: LLMClient | None = None,
        config: EngineConfig | None = None,
        *,
        clients: ClientSource | None = None,
        sinks: Iterable[Sink] = (),
        on_failure: Callable[..., Any] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
        state: SharedState | None = None,
        limiter_clock: Callable[[], float] = time.monotonic,
        limiter_sleep: Callable[[float], Any] = asyncio.sleep,
        approver: Approver | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.state = state
        self.approver = approver
        self.llm_client = llm_client
        if clients is None and llm_client is None:
            from orchestrate.llm.providers import ClientPool

            clients = ClientPool()
        self._clients = clients
        self._client_for: Callable[[dict[str, Any]], LLMClient] = (
            clients.get if clients is not None else (lambda _llm: llm_client)  # type: ignore[assignment,return-value]
        )
        self.monitor = Monitor(self.config.monitor_config)
        self.cost_tracker = CostTracker(self.config.cost_config)
        self._keeper = LeaseKeeper(state, limiter_sleep) if state is not None else None
        self.rate_limiter = RateLimiterRegistry(
            self.config.rate_limit_config,
            self.config.rate_limits,
            clock=limiter_clock,
            sleep=limiter_sleep,
            state=state,
            keeper=self._keeper,
        )
        if state is not None and self._keeper is not None:
            self.cost_tracker.scopes = ScopeLedger(state, self._keeper)
        self.failure_handler = FailureHandler(self.config.default_retry_policy, on_failure, sleep=sleep)
        self.sinks: list[Sink] = [self.monitor, *sinks]
        self._sink_types: dict[int, frozenset[EventType]] = {}
        self._routes: dict[str, tuple[tuple[Sink, Sink], ...]] = {}  # kind -> (sink, what calling it runs)
        self._routed = -1  # len(self.sinks) when _routes was made
        self.workflows: dict[str, Workflow] = {}
        self._shapes: dict[str, RunShape] = {}
        self._deadlines = Deadlines()  # every run's timeouts, on one timer
        self._priced: tuple[Any, Any] = (None, None)  # the last workflow `prices` table added, and a copy
        self._runs: dict[str, WorkflowRun] = {}
        self._slots = Slots(max(1, self.config.max_concurrent_workflows))
        self._closed = False
        self.halted: str | None = None  # why no call may start any more (a journal failed)
        self.sink_failures: dict[str, str] = {}  # sink name -> its first error
        # Asked, as a run's agents are done and before its end is told, for what they still do for
        # it (a judge still asking): (workflow, cancel) -> an awaitable, or None.
        self.settlers: list[Settle] = []
        self.workers = WorkerPool(self.config.max_threads)
        self.executor = AgentExecutor(
            client_for=self._client_for,
            tracker=self.cost_tracker,
            limits=self.rate_limiter,
            failures=self.failure_handler,
            emit=self.emit,
            check_output=_check_output,
            default_policy=self.config.default_retry_policy,
            output_retries=self.config.output_retries,
            max_tool_rounds=self.config.max_tool_rounds,
            clock=clock,
            workers=self.workers,
            prompt_cache=PromptCaching(enabled=self.config.prompt_cache, warm_up=self.config.prompt_cache_warm_up),
        )
        self.executor.wants = self.wants
        self.clock = clock

    def add_sink(self, sink: Sink, *, types: Iterable[EventType] | None = None) -> None:
        """Send every further event to `sink` as well, or only those of `types`.

        A sink may also say which events it wants with an ``event_types``
        attribute; at thousands of rows a second, not calling the sinks that
        ignore an event is a fair share of the engine's own time.
        """
        self.sinks.append(sink)
        if types is not None:
            self._sink_types[id(sink)] = frozenset(types)
        self._route()

    def _route(self) -> None:
        wanted = [(sink, self._sink_types.get(id(sink), getattr(sink, "event_types", None))) for sink in self.sinks]
        # A sink that emits in answer to an event (`answers_events`, the live scoring of
        # expectations) gets it after the others, so what it emits follows the event everywhere.
        wanted.sort(key=lambda pair: getattr(pair[0], "answers_events", False) is True)
        # Keyed by the type's value: an EventType hashes through Enum.__hash__, a Python-level call.
        calls = [(sink, _caller(sink)) for sink, _ in wanted]
        self._routes = {
            kind._value_: tuple(
                pair for pair, (_, types) in zip(calls, wanted, strict=True) if types is None or kind in types
            )
            for kind in EventType
        }
        self._routed = len(self.sinks)

    def wants(self, kind: EventType) -> bool:
        """Whether some sink reads events of `kind`: progress detail (a fan-out's items, a
        rate-limit queue) is not even built when none does."""
        if self._routed != len(self.sinks):
            self._route()
        return bool(self._routes[kind._value_])

    def emit(self, event: Event) -> None:
        if self._routed != len(self.sinks):  # sinks appended to the list directly
            self._route()
        for sink, call in self._routes[event.type._value_]:
            try:
                call(event)
            except Exception as exc:  # a broken display must never cost a paid-for run
                self._sink_failed(sink, exc)

    def _settle(self, workflow: Workflow, cancel: bool) -> Awaitable[Any] | None:
        """What the settlers still do for `workflow` before its end is told (None: nothing)."""
        waiting = [w for settle in self.settlers if (w := settle(workflow, cancel)) is not None]
        if not waiting:
            return None
        return waiting[0] if len(waiting) == 1 else asyncio.gather(*waiting)

    def _sink_failed(self, sink: Sink, exc: Exception) -> None:
        """Keep the first failure of each sink (its name and error), to be reported once."""
        name = _sink_name(sink)
        if name not in self.sink_failures:
            self.sink_failures[name] = f"{type(exc).__name__}: {exc}"

    def journal_failed(self, reason: str) -> None:
        """A journal of the run cannot be written (`reason`: ``"PATH: error"``): fail closed.

        No call starts after this (agents that would call end ``cancelled`` with the
        reason, and a dataset run starts no more rows); calls in flight finish and
        are recorded where they still can be. The CLI then exits 1 naming it.
        """
        if self.halted is None:
            self.halted = f"cannot write {reason}"
            self.executor.halted = self.halted

    async def register_workflow(self, workflow: Workflow) -> str:
        """Register a workflow for execution; returns its id.

        Raises:
            ValueError: When agent names repeat, a dependency names no agent, or
                the dependencies form a cycle (the message shows it: ``a -> c -> b -> a``).
        """
        shape = RunShape.of(workflow)
        self.check_prices(workflow)
        for agent in workflow.agents:  # a run of the same id again takes the limits as they are now
            self.cost_tracker.set_agent_budget(agent_key(workflow.id, agent.name), agent.cost_limit)
        return self.register_run(workflow, shape)

    def check_prices(self, workflow: Workflow) -> None:
        """Refuse a workflow with an agent whose model has no price (unless the cost config
        allows unknown models at its default prices).

        Raises:
            UserInputError: Naming the agent, the model and where to give it a price.
        """
        tracker = self.cost_tracker
        if tracker.config.price_unknown_models:
            return
        from orchestrate.llm.presets import LOCAL_PROVIDERS, base_model
        from orchestrate.llm.providers import infer_provider

        checked: set[tuple[Any, Any, Any]] = set()  # agents mostly share a few models: each checked once
        for agent in workflow.agents:
            llm = agent.llm_config
            model = llm.get("model")
            if agent.is_code_step or not isinstance(model, str):
                continue
            price_as = llm.get("price_as")
            seen = (model, price_as, llm.get("provider"))
            try:
                if seen in checked:
                    continue
                checked.add(seen)
            except TypeError:  # an unhashable price_as or provider: checked (and refused) below
                pass
            provider = str(llm.get("provider") or infer_provider(model))
            if provider in LOCAL_PROVIDERS and not isinstance(price_as, str):
                continue  # a server on the user's own machines: no price per token
            priced = price_as if isinstance(price_as, str) else model
            if tracker.has_price(priced, workflow.prices) or tracker.has_price(
                base_model(provider, priced), workflow.prices
            ):
                continue
            raise UserInputError(
                f"workflow {workflow.name!r}, agent {agent.name!r}: no price known for model {priced!r}; "
                "give it one under the workflow's 'prices:' (USD per 1K tokens: input, output), in "
                "CostConfig.model_costs or a price_file, or set CostConfig.price_unknown_models"
            )

    def register_run(self, workflow: Workflow, shape: RunShape, *, parent: str | None = None) -> str:
        """Register a run of a workflow whose `shape` was made (and checked) already; returns its id.

        A batch registers each row this way: the names, dependencies and cycles
        of its workflow are checked once, not once a row. `parent` is the
        tracker account (the batch's) the run's spend also counts against.
        """
        self.workflows[workflow.id] = workflow
        self._shapes[workflow.id] = shape
        self.cost_tracker.set_workflow_budget(workflow.id, workflow.cost_budget, parent=parent)
        # Each agent's cost_limit comes with its first reservation (a batch's rows are new ids).
        prices = workflow.prices
        if prices and (prices is not self._priced[0] or prices != self._priced[1]):
            self.cost_tracker.add_prices(prices)  # once for all the rows of a batch, which share it
            self._priced = (prices, {model: dict(entry) for model, entry in prices.items()})
        self.rate_limiter.configure(workflow.rate_limits)
        if workflow.budget_scope:
            self._scopes().scopes[workflow.id] = workflow.budget_scope
        return workflow.id

    def forget(self, workflow_id: str) -> None:
        """Drop a finished workflow from the engine (a batch does so as each row ends)."""
        self.workflows.pop(workflow_id, None)
        self._shapes.pop(workflow_id, None)

    def _scopes(self) -> ScopeLedger:
        if self.cost_tracker.scopes is None:  # no shared state: scopes live (unset) in this process
            from orchestrate.state.memory import MemoryState

            self.state = MemoryState()
            self._keeper = LeaseKeeper(self.state)
            self.cost_tracker.scopes = ScopeLedger(self.state, self._keeper)
        return self.cost_tracker.scopes

    @property
    def state_error(self) -> str | None:
        """Why the shared state was lost mid-run (the run failed closed), or None."""
        return self.state.lost if self.state is not None else None

    async def execute_workflow(
        self,
        workflow_id: str,
        *,
        reuse: Mapping[str, AgentResult] | None = None,
        decisions: Mapping[str, Decision] | None = None,
    ) -> Workflow:
        """Execute a registered workflow and return it with its results.

        Args:
            workflow_id: As returned by `register_workflow`.
            reuse: Results of agents to carry over instead of calling them
                again (by agent name), as when resuming a run; their cost
                counts against the budgets.
            decisions: Approvals decided already (by agent name), e.g. recorded
                with `orchestrate approve` in the run folder being resumed.

        Raises:
            ValueError: If no workflow has that id.
        """
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise ValueError(f"workflow {workflow_id!r} not found")
        if not self._slots.try_take():
            await self._slots.take()
        _QUIET_GC.enter()
        try:
            run = WorkflowRun(
                workflow,
                self.executor,
                self.failure_handler,
                self.emit,
                reuse=reuse,
                clock=self.clock,
                decisions=decisions,
                approver=self.approver,
                shape=self._shapes.pop(workflow_id, None),
                deadlines=self._deadlines,
                settle=self._settle if self.settlers else None,
            )
            self._runs[workflow_id] = run
            try:
                if self._closed:
                    await run.stop("engine shut down")
                return await run.run()
            finally:
                self._runs.pop(workflow_id, None)
        finally:
            _QUIET_GC.leave()
            self._slots.give()

    async def execute_multiple_workflows(self, workflow_ids: list[str]) -> list[Workflow]:
        """Execute several workflows at once, at most `max_concurrent_workflows` at a time."""
        return list(await asyncio.gather(*(self.execute_workflow(wid) for wid in workflow_ids)))

    def get_workflow_status(self, workflow_id: str) -> dict[str, Any] | None:
        """Status, progress, cost and per-agent states of a workflow, or None if unknown."""
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            return None
        status = workflow.get_statistics()
        status["agents"] = {agent.name: agent.status.value for agent in workflow.agents}
        return status

    def get_system_status(self) -> dict[str, Any]:
        """Monitoring summary, rate limiting and cost statistics, and the workflows known."""
        limiting = self.rate_limiter.get_statistics()
        if not limiting["enabled"]:  # calls skip an idle limiter, so the Monitor counted them
            limiting["total_requests"] = self.monitor.get_metrics().get("llm_calls", 0)
        return {
            "monitoring": self.monitor.get_summary(),
            "rate_limiting": limiting,
            "cost_tracking": self.cost_tracker.get_statistics(),
            "workflows": {wid: wf.status.value for wid, wf in self.workflows.items()},
            "running_workflows": len(self._runs),
        }

    async def stop(self, reason: str = "run interrupted") -> None:
        """Cancel every running workflow; each ends with its results so far recorded."""
        await asyncio.gather(*(run.stop(reason) for run in list(self._runs.values())))

    async def shutdown(self) -> None:
        """Cancel in-flight work (agents end `cancelled`, results kept) and close the clients."""
        self._closed = True
        await self.stop("engine shut down")
        self.workers.close()
        await self.rate_limiter.aclose()
        if self.cost_tracker.scopes is not None:
            await self.cost_tracker.scopes.drain()
        if self._keeper is not None:
            await self._keeper.aclose()
        if self._clients is not None:
            await self._clients.aclose()
        if self.llm_client is not None:
            await self.llm_client.aclose()


def _caller(sink: Sink) -> Sink:
    """What calling `sink` runs: for an object whose class defines `__call__` in Python (the
    Monitor, the displays), that method bound to it, which the interpreter enters directly; the
    object itself goes through its type's call slot, a round trip through C for each event."""
    for klass in type(sink).__mro__:
        call = klass.__dict__.get("__call__")
        if call is not None:
            return MethodType(call, sink) if isinstance(call, FunctionType) else sink
    return sink


def _sink_name(sink: Any) -> str:
    """What a sink is called in a report: its own `name`, its class, or the function's name."""
    inner = getattr(sink, "__wrapped__", sink)
    name = getattr(inner, "name", None)
    if isinstance(name, str) and name:
        return name
    if hasattr(inner, "__qualname__"):
        return str(inner.__qualname__)
    return type(inner).__name__


def _check_output(instance: Any, schema: dict[str, Any]) -> str | None:
    from orchestrate.workflow.schema import check_instance

    return check_instance(instance, schema)


class _QuietCollector:
    """The cyclic garbage collector, quieter while any run is in flight in this process.

    An agent makes a few dozen short-lived objects, nearly all freed by reference
    counting, yet the collector's youngest generation runs every 700 allocations
    and now and then rescans every object the process holds: about a tenth of the
    engine's time per agent at 10,000 agents (a profile with the collector off).
    While runs are in flight, what existed before the first is frozen out of the
    scans (`gc.freeze`) and the youngest generation is collected every 50,000
    allocations; both are undone when the last run ends. Cycles are still
    collected, a little later. When something else (a dataset run) has quieted
    the collector already, it is left as it is.
    """

    GEN0 = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()  # engines on several threads' event loops share the collector
        self._runs = 0
        self._saved: tuple[int, ...] | None = None

    def enter(self) -> None:
        with self._lock:
            if self._runs == 0:
                thresholds = gc.get_threshold()
                if thresholds[0] < self.GEN0:
                    self._saved = thresholds
                    gc.freeze()
                    gc.set_threshold(self.GEN0, *thresholds[1:])
            self._runs += 1

    def leave(self) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0 and self._saved is not None:
                gc.set_threshold(*self._saved)
                self._saved = None
                gc.unfreeze()


_QUIET_GC = _QuietCollector()
