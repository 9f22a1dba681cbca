"""Scheduling one workflow's agents: no polling, no sleeps, linear in agents plus edges.

Ready agents wait in a heap ordered by priority (higher first), then by the
longest chain of expected work still behind them (critical path first), then
by their place in the file. An agent is started the moment its last
dependency completes and a slot under `max_parallel_agents` is free; the run
wakes only when an agent finishes.

Before an agent starts, its gates are passed in order (`_gate`): a dependency
that was skipped skips it too, unless it has its own `when:` (as GitHub
Actions does with `if:`); a false `when:` skips it; an `approval:` needs a
decision (given up front, asked of the `approver`, or else the agent waits,
and the run ends `waiting` once nothing else can progress).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrate.run.approvals import Decision
from orchestrate.run.deadlines import Deadlines
from orchestrate.run.events import Event, EventType, new_event
from orchestrate.run.executor import AgentExecutor, fold_usage
from orchestrate.run.failures import FailureHandler
from orchestrate.run.fanout import run_items, step_input
from orchestrate.run.resume import definition_digest, fingerprint
from orchestrate.run.workers import guard_exit
from orchestrate.workflow.graph import DependencyGraph, expected_seconds, remaining_work
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow, WorkflowStatus
from orchestrate.workflow.templates import lookup, render, single_placeholder

# Members read on every agent's path, bound once: in Python 3.11 `AgentStatus.COMPLETED` goes
# through EnumType.__getattr__'s slot (~0.17 us a read), a module global costs ~0.01 us.
_COMPLETED = AgentStatus.COMPLETED
_PENDING = AgentStatus.PENDING
_RUNNING = AgentStatus.RUNNING
_SKIPPED = AgentStatus.SKIPPED
_WAITING_APPROVAL = AgentStatus.WAITING_APPROVAL
_E_AGENT_FINISHED = EventType.AGENT_FINISHED
# `datetime.now` bound once: read through the class, a classmethod makes its bound method on
# every call (~500 of the ~2,700 instructions of a stamp; an agent takes two).
_now = datetime.now

__all__ = ["Approver", "RunShape", "Settle", "WorkflowRun"]

# Asked for a decision on an agent (with its rendered message); None leaves it waiting.
Approver = Callable[[Workflow, Agent, str], Awaitable[Decision | None]]
# Called as a run's agents are done, before its end is told: (workflow, cancel) -> what to await, or None.
Settle = Callable[[Workflow, bool], Awaitable[Any] | None]


class RunShape:
    """What a run needs to know of its workflow's graph, worked out once for every run of it.

    The agents' indexes, who waits on whom, and the order in which ready agents
    start (priority, then the critical path, then the file). A batch runs one
    workflow thousands of times, so it works this out once (`of(...,
    shared=True)`) and hands it to each row's run; a shared shape also keeps
    what every run would otherwise make again (the agents as `workflow_started`
    describes them, the digests of their definitions), which a single run of
    a large workflow would only hold in memory for nothing.

    Raises:
        ValueError: (`of`) When names repeat, a dependency names no agent, or
            the dependencies form a cycle (the message shows it).
    """

    __slots__ = ("_definitions", "_described", "dependents", "index", "shared", "urgency", "waiting_on")

    def __init__(self, agents: list[Agent], *, shared: bool = False) -> None:
        self.shared = shared
        names = [agent.name for agent in agents]
        index = {name: i for i, name in enumerate(names)}
        self.index = index
        # An agent nothing depends on shares one empty tuple (at 10,000 agents, an empty list
        # each was half a megabyte held for the whole run).
        dependents: list[Sequence[int]] = [_NOBODY] * len(agents)
        waiting_on = self.waiting_on = [0] * len(agents)
        try:  # the graph's edges are walked once, here (`of` relies on it for its checks)
            for i, agent in enumerate(agents):
                deps = agent.dependencies
                if deps:
                    waiting_on[i] = len(deps)
                    for dep in deps:
                        j = index[dep]
                        known = dependents[j]
                        if known:
                            known.append(i)  # type: ignore[attr-defined]  # a list once it has one
                        else:
                            dependents[j] = [i]
        except KeyError:
            name, dep = next((a.name, d) for a in agents for d in a.dependencies if d not in index)
            raise ValueError(f"agent {name!r} depends on unknown agent {dep!r}") from None
        self.dependents = dependents
        remaining = remaining_work(dependents, self.waiting_on, [expected_seconds(a) for a in agents])
        if remaining is None:
            raise _Cycle("dependency cycle")
        # A ready agent's place in the heap is (-priority, urgency, index): the tuple is made when it
        # becomes ready and dropped when it starts, not kept for every agent through the whole run.
        self.urgency = [-work for work in remaining]
        self._described: list[dict[str, Any]] | None = None
        self._definitions: list[Any] = [None] * len(agents) if shared else []

    def described(self, agents: list[Agent]) -> list[dict[str, Any]]:
        """The agents as workflow_started describes them (a shared shape's list is read-only)."""
        if self._described is not None:
            return self._described
        described = [
            {
                "name": a.name,
                "module": a.module,
                "model": a.llm_config.get("model"),
                "provider": a.llm_config.get("provider"),
                "dependencies": a.dependencies,
                "priority": a.priority,
            }
            for a in agents
        ]
        if self.shared:
            self._described = described
        return described

    def definition(self, i: int, agent: Agent) -> Any:
        """The digest of agent `i`'s definition (see `resume.fingerprint`); a shared shape keeps it."""
        if not self.shared:
            return definition_digest(agent)
        digest = self._definitions[i]
        if digest is None:
            digest = self._definitions[i] = definition_digest(agent)
        return digest

    @classmethod
    def of(cls, workflow: Workflow, *, shared: bool = False) -> RunShape:
        """The shape of `workflow`, after checking its names and dependencies."""
        names = [agent.name for agent in workflow.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"workflow {workflow.name!r} has duplicate agent names")
        try:  # unknown dependencies are refused by the shape's own pass over the edges
            return cls(workflow.agents, shared=shared)
        except _Cycle:  # the shape's own pass (Kahn's) found one: the search names it
            cycle = DependencyGraph.from_agents(workflow.agents).find_cycle() or []
            raise ValueError(f"workflow {workflow.name!r} has a dependency cycle: {' -> '.join(cycle)}") from None


class WorkflowRun:
    """One execution of a workflow. Create, then `await run()`; `stop()` ends it early.

    `shape` is the workflow's `RunShape` when the caller has it already (every row
    of a batch shares one); it must have been made from the same agents.
    """

    def __init__(
        self,
        workflow: Workflow,
        executor: AgentExecutor,
        failures: FailureHandler,
        emit: Callable[[Event], None],
        *,
        reuse: Mapping[str, AgentResult] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        decisions: Mapping[str, Decision] | None = None,
        approver: Approver | None = None,
        shape: RunShape | None = None,
        deadlines: Deadlines | None = None,
        settle: Settle | None = None,
    ) -> None:
        self.workflow = workflow
        self.settle = settle
        self._settling: asyncio.Future[Any] | None = None
        self.executor = executor
        self.failures = failures
        self.emit = emit
        self.clock = clock
        agents = workflow.agents
        self.agents = agents
        if shape is None:
            try:
                shape = RunShape(agents)
            except _Cycle:  # register_workflow refuses cycles; a list edited since may not
                raise ValueError(f"workflow {workflow.name!r} has a dependency cycle") from None
        self.shape = shape
        self.index = shape.index
        self.dependents = shape.dependents  # shared by every run of the shape: read only
        self.waiting_on = list(shape.waiting_on)
        self.urgency = shape.urgency
        self.outputs: dict[str, dict[str, Any] | None] = {}  # None: the agent was skipped
        self.reuse = dict(reuse or {})
        self.ready: list[tuple[int, float, int]] = []
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.finished = 0
        self.stopping: str | None = None
        self.stopped = False
        self.timed_out = False
        self.done: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self.deadlines = deadlines if deadlines is not None else Deadlines()
        self.pending_deadlines = 0  # entries of ours in `deadlines` not yet come due
        self.timing = _Timing(self)  # what the entries hold, rather than the whole run
        self.expired: set[int] = set()
        self.limit = max(1, int(workflow.max_parallel_agents))
        # Agents whose calls go through a provider batch API wait at the provider, not here:
        # they take no slot under max_parallel_agents and have no agent timeout (a batch may
        # take up to 24 hours); the workflow's timeout still applies.
        self.batched = (
            [not agent.is_code_step and executor.batched(agent) for agent in agents]
            if executor.uses_batching()
            else None
        )
        self.online = 0
        self._item_slots: asyncio.Semaphore | None = None  # foreach items, across every fan-out
        self.decisions = dict(decisions or {})
        self.approver = approver
        self.approved: dict[int, Decision] = {}
        self.blocked: set[int] = set()  # pending behind an agent that waits for approval
        self.any_skipped = False

    async def run(self) -> Workflow:
        """Execute every agent that can be executed; returns the workflow with its results."""
        wf = self.workflow
        loop = self.loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        wf.status = WorkflowStatus.RUNNING
        wf.started_at = datetime.now(UTC)
        t0 = self.clock()
        self.emit(
            Event(
                EventType.WORKFLOW_STARTED,
                wf.id,
                None,
                {
                    "name": wf.name,
                    "cost_budget": wf.cost_budget,
                    "max_parallel_agents": wf.max_parallel_agents,
                    "agents": self.shape.described(self.agents),
                },
                workflow_name=wf.name,
            )
        )
        for i, agent in enumerate(self.agents):
            agent.status = AgentStatus.PENDING
            if self.waiting_on[i] == 0:
                heapq.heappush(self.ready, (-agent.priority, self.urgency[i], i))
        self._fill()
        if self.finished == len(self.agents) and not self.done.done():
            self.done.set_result(None)
        # The workflow's deadline joins the agents' heap, after the first agents have set its
        # timer: a row of a batch then needs one timer, not two (or asyncio.timeout's).
        if math.isfinite(wf.timeout):
            self._deadline(loop.time() + wf.timeout, _WORKFLOW, None)
        try:
            await self.done  # cancelling run() cancels it too; _halt then leaves it be
        except asyncio.CancelledError:
            await self._halt("run interrupted")
            if self.settle is not None:
                await self._settled(cancel=True)
            self._conclude(t0, WorkflowStatus.CANCELLED)
            raise
        if self.timed_out:
            await self._halt(f"workflow timed out after {wf.timeout:g}s")
            wf.error = f"timed out after {wf.timeout:g}s"
        if self.stopping and wf.error is None:
            wf.error = self.stopping
        if self.settle is not None:
            try:
                await self._settled(cancel=self.timed_out or self.stopped)
            except asyncio.CancelledError:  # run() itself cancelled while its judges were asked
                self._conclude(t0, WorkflowStatus.CANCELLED)
                raise
        self._conclude(t0, WorkflowStatus.CANCELLED if self.stopped else None)
        return wf

    async def _settled(self, *, cancel: bool) -> None:
        """Before the end is told, what the engine's settlers still do for this run (the judges
        of its expectations still asking) is done, or cancelled when the run was stopped or timed
        out: ``workflow_finished`` is then the run's last event. They see the workflow's outputs
        and the moment its agents ended (`completed_at`, set again as the run ends)."""
        settle = self.settle
        assert settle is not None
        wf = self.workflow
        wf.output_values = self._outputs()
        wf.completed_at = datetime.now(UTC)
        waiting = settle(wf, cancel)
        if waiting is None:
            return
        task = self._settling = asyncio.ensure_future(waiting)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # run() itself was cancelled
            # stop() came while it was waited for: what is left is settled as stopped runs are
            waiting = settle(wf, True)
            if waiting is not None:
                await waiting
        finally:
            self._settling = None

    def _time_out(self) -> None:
        if self.done is not None and not self.done.done():
            self.timed_out = True
            self.done.set_result(None)
        elif self._settling is not None and not self.stopped:
            # The agents are done and the settlers (judges still asking) are waited for: the
            # workflow's timeout bounds that wait too. The run keeps its agents' statuses; its
            # error says why the judges' expectations are errors.
            self.timed_out = True
            self.workflow.error = f"timed out after {self.workflow.timeout:g}s"
            self._settling.cancel()

    async def stop(self, reason: str = "run interrupted") -> None:
        """Cancel what is in flight, record it, and let `run()` return (status cancelled)."""
        self.stopped = True
        if self._settling is not None:  # the agents are done; what the settlers wait for is not
            self._settling.cancel()
        await self._halt(reason)

    def _conclude(self, t0: float, forced: WorkflowStatus | None) -> None:
        self._disarm()
        wf = self.workflow
        wf.completed_at = datetime.now(UTC)
        waiting = partial = False
        unfinished: list[Agent] = []
        for i, a in enumerate(self.agents):  # one pass: this runs once a row of a batch
            status = a.status
            if status is _COMPLETED:
                pass
            elif status is _WAITING_APPROVAL:
                waiting = True
            elif not status.counts_as_success and i not in self.blocked:
                unfinished.append(a)
            if a.result is not None and a.result.metadata.get("failed_items"):
                partial = True
        wf.output_values = self._outputs()
        if forced is not None:
            wf.status = forced
        elif not unfinished and not waiting and not partial:
            wf.status = WorkflowStatus.COMPLETED
        elif unfinished and self.failures.should_fail_workflow(
            unfinished, len(self.agents), wf.allow_partial_completion
        ):
            wf.status = WorkflowStatus.FAILED
        elif waiting:
            wf.status = WorkflowStatus.WAITING
        else:
            wf.status = WorkflowStatus.PARTIALLY_COMPLETED
        self.emit(
            Event(
                EventType.WORKFLOW_FINISHED,
                wf.id,
                None,
                {
                    "status": wf.status.value,
                    "total_cost": wf.total_cost,
                    "total_tokens": wf.total_tokens,
                    "duration": self.clock() - t0,
                    "error": wf.error,
                    "outputs": wf.output_values,
                },
                workflow_name=wf.name,
            )
        )

    def _outputs(self) -> dict[str, Any]:
        """The workflow's named `outputs:`; null where what they name did not complete."""
        values: dict[str, Any] = {}
        for key, template in self.workflow.outputs.items():
            try:
                ref = single_placeholder(template)
                values[key] = (
                    lookup(ref, inputs=self.workflow.input_values, outputs=self.outputs)
                    if ref is not None
                    else render(template, inputs=self.workflow.input_values, outputs=self.outputs)
                )
            except Exception:  # an upstream agent failed or was skipped: nothing to name
                values[key] = None
        return values

    def _fill(self, carry: bool = False) -> int:
        """Start ready agents, best first, while there is room.

        Called by an agent's task as it ends (`carry`), the first agent to start is handed
        to that task rather than to a new one, and its index returned for the task to run
        next (-1 when none was): a task and a turn of the event loop fewer an agent where
        each ends by starting the next (a chain). Only when nothing else waits its turn of
        the loop, so that every event comes in the order it always did.
        """
        ready, agents = self.ready, self.agents
        handed = -1
        tasks, loop = self.tasks, self.loop
        if self.batched is not None:
            self._fill_batching()
            carry = False
        elif carry and getattr(loop, "_ready", True):
            # Another agent's answer or a task not yet started waits its turn (asyncio's own
            # queue; a loop without one, such as uvloop's, always takes this branch): a new
            # task queues behind it, as it always did.
            carry = False
        while ready and len(tasks) < self.limit and not self.stopping and self.batched is None:
            i = _heappop(ready)[2]
            agent = agents[i]
            if agent.status is not _PENDING:
                continue
            # _gate's common case (nothing to decide) read here, without its call
            if (agent.when is not None or agent.approval is not None or self.any_skipped) and self._gate(i):
                continue
            agent.status = _RUNNING
            carrier = _current_task() if carry and agent.approval is None else None
            if carrier is not None:
                tasks[i], carry, handed = carrier, False, i
            else:
                tasks[i] = loop.create_task(self._run_agent(i))
            if agent.approval is None or i in self.approved:
                # _arm, without its two calls: an agent asking a person is timed from the decision on
                self.pending_deadlines += 1
                self.deadlines.add(loop, loop.time() + agent.timeout, self.timing, i, None)
        if self.finished == len(self.agents) and self.done is not None and not self.done.done():
            self.done.set_result(None)
        return handed

    def _fill_batching(self) -> None:
        """`_fill` when some agents are batched: those start at once, without a slot or a deadline."""
        ready, agents, batched = self.ready, self.agents, self.batched or []
        held: list[tuple[int, float, int]] = []
        while ready and not self.stopping:
            entry = heapq.heappop(ready)
            i = entry[2]
            agent = agents[i]
            if agent.status is not AgentStatus.PENDING:
                continue
            if not batched[i]:
                if self.online >= self.limit:
                    held.append(entry)
                    continue
            if self._gate(i):
                continue
            if not batched[i]:
                self.online += 1
            agent.status = AgentStatus.RUNNING
            task = self.tasks[i] = self.loop.create_task(self._run_agent(i))
            if not batched[i] and (agent.approval is None or i in self.approved):
                self._arm(i, task)
        for entry in held:
            heapq.heappush(ready, entry)

    # -- gates: skip propagation, when, approval ------------------------------------------------

    def _gate(self, i: int) -> bool:
        """Decide, before agent `i` starts, whether it runs; True when it was settled here."""
        agent = self.agents[i]
        wf = self.workflow
        if agent.when is None and agent.approval is None and not self.any_skipped:
            return False  # the common case, kept cheap: nothing to decide
        if agent.when is None:
            skipped = [d for d in agent.dependencies if self.agents[self.index[d]].status is AgentStatus.SKIPPED]
            if skipped:
                self._settle(i, AgentStatus.SKIPPED, None, {"skipped": f"dependency {skipped[0]!r} was skipped"})
                return True
        else:
            from orchestrate.workflow.expressions import ExpressionError, compile_condition

            variables: dict[str, Any] = {**wf.input_values, "inputs": wf.input_values}
            for dep in self._upstream(i):
                other = self.agents[self.index[dep]]
                output = self.outputs.get(dep)
                value = None if output is None else (output["json"] if "json" in output else output.get("text"))
                variables[dep] = {"output": value, "status": other.status.value}
            try:
                go = compile_condition(agent.when).evaluate(variables)
            except ExpressionError as exc:
                self._settle(i, AgentStatus.FAILED, str(exc), {})
                return True
            except RecursionError:
                self._settle(i, AgentStatus.FAILED, "its when: condition nests too deeply to evaluate", {})
                return True
            except Exception as exc:  # whatever the data upstream was, this agent ends with the reason
                self._settle(i, AgentStatus.FAILED, f"its when: condition failed: {type(exc).__name__}: {exc}", {})
                return True
            if not go:
                self._settle(i, AgentStatus.SKIPPED, None, {"skipped": f"when {agent.when!r} was false"})
                return True
        if agent.approval is None:
            return False
        decision = self.decisions.get(agent.name)
        if decision is not None:
            return self._decide(i, decision)
        if self.approver is not None:
            return False  # its task asks
        message = self._approval_message(agent)
        self.emit(Event(EventType.APPROVAL_REQUESTED, wf.id, agent.name, {"message": message}, workflow_name=wf.name))
        self._settle(i, AgentStatus.WAITING_APPROVAL, None, {"approval": {"status": "waiting", "message": message}})
        return True

    def _upstream(self, i: int) -> set[str]:
        seen: set[str] = set()
        todo = list(self.agents[i].dependencies)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.agents[self.index[name]].dependencies)
        return seen

    def _approval_message(self, agent: Agent) -> str:
        template = (agent.approval or {}).get("message", "")
        try:
            return render(template, inputs=self.workflow.input_values, outputs=self.outputs)
        except Exception as exc:  # the question is still worth asking
            return f"{template} ({exc})"

    def _decide(self, i: int, decision: Decision) -> bool:
        """Apply a decision on agent `i`; True when it was rejected (settled here)."""
        wf = self.workflow
        agent = self.agents[i]
        self.emit(Event(EventType.APPROVAL_DECIDED, wf.id, agent.name, decision.to_dict(), workflow_name=wf.name))
        if decision.approved:
            self.approved[i] = decision
            return False
        note = f": {decision.note}" if decision.note else ""
        self._settle(i, AgentStatus.REJECTED, f"rejected by {decision.by}{note}", {"approval": decision.to_dict()})
        return True

    def _settle(self, i: int, status: AgentStatus, error: str | None, metadata: dict[str, Any]) -> None:
        """Record an outcome decided without running the agent (no cost, no time)."""
        now = datetime.now(UTC)
        self._record(
            i,
            AgentResult(
                agent_id=self.agents[i].name,
                status=status,
                error=error,
                started_at=None,
                completed_at=now,
                metadata=metadata,
            ),
        )

    # Timeouts: the agents' and the workflow's deadlines go to the engine's `Deadlines`, one
    # heap and one timer for every run (see orchestrate/run/deadlines.py).

    def _arm(self, i: int, task: asyncio.Task[None]) -> None:
        # The entry names the agent, not its task: an agent runs in one task a run (`tasks[i]`
        # while it runs), and a finished task held by the heap until the run ends was a third
        # of the engine's memory at 10,000 agents.
        self._deadline(self.loop.time() + self.agents[i].timeout, i, None)

    def _deadline(self, at: float, i: int, task: asyncio.Task[None] | None) -> None:
        self.pending_deadlines += 1
        self.deadlines.add(self.loop, at, self.timing, i, task)

    def deadline_passed(self, i: int, task: asyncio.Task[Any] | None) -> None:
        """Cancel agent `i` if it still runs, or end the wait for the workflow's deadline."""
        self.pending_deadlines -= 1
        if i == _WORKFLOW:
            self._time_out()
        else:
            running = self.tasks.get(i)
            if running is not None and (task is None or running is task):
                self.expired.add(i)
                running.cancel()

    def _disarm(self) -> None:
        timing = self.timing
        if not timing.ended:
            timing.ended, timing.run = True, None  # what the heap still holds of us is this, emptied
            self.deadlines.ended(self.pending_deadlines)
            self.pending_deadlines = 0

    async def _run_agent(self, i: int) -> None:
        """An agent's task: agent `i`, then each agent `_fill` hands it as one ends."""
        while i >= 0:
            i = await self._run_one(i)

    async def _run_one(self, i: int) -> int:
        """Run agent `i` and record it; the agent this task runs next, or -1."""
        agent = self.agents[i]
        wf = self.workflow
        result = _running(agent.name, _now(UTC))
        t0 = self.clock()
        try:
            if agent.approval is not None and i not in self.approved:
                if not await self._ask(i):
                    return -1
                t0 = self.clock()
                result.started_at = _now(UTC)
            if i in self.approved:
                result.metadata["approval"] = self.approved[i].to_dict()
            prior = self.reuse.get(agent.name)
            if agent.foreach is not None:
                if self._item_slots is None:
                    self._item_slots = asyncio.Semaphore(self.limit)
                await run_items(wf, agent, self.executor, self.outputs, prior, self._item_slots, result)
            else:
                given, text = step_input(agent, wf.input_values, self.outputs)
                if prior is not None and prior.status is _COMPLETED:
                    digest = self._fingerprint(i, text)
                    if prior.metadata.get("fingerprint") == digest:
                        self._untrack(i)
                        carried = self.executor.carry_over(wf, agent, prior)
                        if i in self.approved:
                            carried.metadata["approval"] = self.approved[i].to_dict()
                        self._finish(i, carried)
                        return -1
                if agent.function is not None:  # `is_code_step`, without the property's call
                    await self.executor.execute_code(wf, agent, given, result)
                else:
                    await self.executor.execute(wf, agent, given, result)
                # Fingerprinted after the call, so that it does not delay it: only a completed
                # agent's fingerprint is ever compared, by a later --resume.
                result.metadata["fingerprint"] = (
                    self._fingerprint(i, text) if self.shape.shared else fingerprint(agent, text)
                )
        except asyncio.CancelledError:
            result.status = AgentStatus.CANCELLED
            task = asyncio.current_task()
            if i in self.expired and not self.stopping and task is not None:
                self.expired.discard(i)
                task.uncancel()  # our own deadline: the run goes on without this agent
                result.error = f"agent timed out after {agent.timeout:g}s"
            else:
                result.error = self.stopping or "cancelled"
        except RecursionError:
            result.status = AgentStatus.FAILED
            result.error = "its input or answer nests too deeply to handle"
        except BaseException as raw:  # a template or tool problem, even sys.exit(), ends this agent alone
            exc = guard_exit(raw)
            result.status = AgentStatus.FAILED
            result.error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
        result.execution_time = self.clock() - t0
        result.completed_at = _now(UTC)
        self._untrack(i)
        try:
            self._record(i, result)  # _finish's two steps, without its call
            return self._fill(carry=True)
        except Exception as exc:  # noqa: BLE001 (a fault here must end the run, never hang it)
            self._fault(f"{type(exc).__name__}: {exc}")
        return -1

    def _fault(self, reason: str) -> None:
        """Something past the agents' own handling failed: stop what runs and end the run, recorded."""
        self.stopping = self.stopping or f"internal error: {reason}"
        for task in list(self.tasks.values()):
            task.cancel()
        for j, agent in enumerate(self.agents):
            if agent.status is _PENDING:
                self._mark_cancelled(j, self.stopping)
        if not self.tasks and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fingerprint(self, i: int, text: str) -> str:
        """`resume.fingerprint` of agent `i`, its definition's part hashed once per shape."""
        shape = self.shape
        if not shape.shared:  # each agent's definition hashed once a run: one hash of it all
            return fingerprint(self.agents[i], text)
        digest = shape.definition(i, self.agents[i]).copy()  # the shape keeps the original for every other run
        digest.update(b"\x00")
        digest.update(text.encode())
        return digest.hexdigest()

    def _untrack(self, i: int) -> None:
        if self.tasks.pop(i, None) is not None and self.batched is not None and not self.batched[i]:
            self.online -= 1

    async def _ask(self, i: int) -> bool:
        """Ask the approver about agent `i`; True when it may run (its deadline then starts)."""
        agent = self.agents[i]
        wf = self.workflow
        message = self._approval_message(agent)
        self.emit(Event(EventType.APPROVAL_REQUESTED, wf.id, agent.name, {"message": message}, workflow_name=wf.name))
        assert self.approver is not None
        decision = await self.approver(wf, agent, message)
        self._untrack(i)
        if decision is None:
            self._settle(i, AgentStatus.WAITING_APPROVAL, None, {"approval": {"status": "waiting", "message": message}})
        elif not self._decide(i, decision):
            task = asyncio.current_task()
            if task is not None and not self.stopping:
                self.tasks[i] = task
                if self.batched is None or not self.batched[i]:
                    self.online += self.batched is not None
                    self._arm(i, task)
                return True
        self._fill()
        return False

    def _finish(self, i: int, result: AgentResult) -> None:
        """Record a result, release dependents or cancel them, and start what is ready."""
        self._record(i, result)
        self._fill()

    def _record(self, i: int, result: AgentResult) -> None:
        """Record a result and release its dependents, or cancel or hold them."""
        agent = self.agents[i]
        wf = self.workflow
        fold_usage(result)
        agent.result = result
        agent.status = result.status
        wf.total_cost += result.cost
        self.finished += 1
        self.emit(_finished_event(wf, agent, result))
        status = result.status
        if status is _COMPLETED or status is _SKIPPED:
            if status is _COMPLETED:
                self.outputs[agent.name] = result.output or {"text": ""}
            else:
                self.any_skipped = True
                self.outputs[agent.name] = None
            dependents = self.dependents[i]
            if dependents:
                waiting_on = self.waiting_on
                for j in dependents:
                    waiting_on[j] -= 1
                    if waiting_on[j] == 0:
                        heapq.heappush(self.ready, (-self.agents[j].priority, self.urgency[j], j))
        elif status is _WAITING_APPROVAL:
            self._hold_dependents(i)
        else:
            self._cancel_dependents(i, f"dependency {agent.name!r} {status.value.replace('_', ' ')}")

    def _hold_dependents(self, i: int) -> None:
        """Dependents of an agent waiting for approval stay pending; the run need not wait for them."""
        reason = f"waiting for the approval of {self.agents[i].name!r}"
        todo = list(self.dependents[i])
        while todo:
            j = todo.pop()
            agent = self.agents[j]
            if agent.status is not AgentStatus.PENDING or j in self.blocked:
                continue
            self.blocked.add(j)
            agent.result = AgentResult(agent_id=agent.name, status=AgentStatus.PENDING, error=reason)
            self.finished += 1
            todo.extend(self.dependents[j])

    def _cancel_dependents(self, i: int, reason: str) -> None:
        todo = list(self.dependents[i])
        while todo:
            j = todo.pop()
            agent = self.agents[j]
            if agent.status is not AgentStatus.PENDING:
                continue
            self._mark_cancelled(j, reason)
            todo.extend(self.dependents[j])

    def _mark_cancelled(self, j: int, reason: str) -> None:
        agent = self.agents[j]
        now = datetime.now(UTC)
        agent.status = AgentStatus.CANCELLED
        agent.result = AgentResult(
            agent_id=agent.name, status=AgentStatus.CANCELLED, error=reason, started_at=None, completed_at=now
        )
        if j in self.blocked:  # already counted as finished when it was held
            self.blocked.discard(j)
        else:
            self.finished += 1
        self.emit(_finished_event(self.workflow, agent, agent.result))

    async def _halt(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for j, agent in enumerate(self.agents):
            if agent.status is AgentStatus.PENDING:
                self._mark_cancelled(j, self.stopping)
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class _Timing:
    """A run as its entries in the engine's `Deadlines` see it: let go of when the run ends."""

    __slots__ = ("ended", "run")

    def __init__(self, run: WorkflowRun) -> None:
        self.ended = False
        self.run: WorkflowRun | None = run

    def deadline_passed(self, key: int, task: asyncio.Task[Any] | None) -> None:
        if self.run is not None:
            self.run.deadline_passed(key, task)


def _finished_event(wf: Workflow, agent: Agent, result: AgentResult) -> Event:
    meta = result.metadata
    data = {
        "status": result.status._value_,  # not `.value`: a Python-level descriptor in an Enum
        "error": result.error,
        "tokens_used": result.tokens_used,
        "cost": result.cost,
        "execution_time": result.execution_time,
        "retry_count": result.retry_count,
        "model": meta["model"] if "model" in meta else agent.llm_config.get("model"),
        "provider": meta["provider"] if "provider" in meta else agent.llm_config.get("provider"),
        "module": agent.module,
        "output": result.output,
        "fingerprint": meta.get("fingerprint"),
        "error_type": meta.get("error_type"),
    }
    if meta.get("status_code") is not None:
        data["status_code"] = meta["status_code"]
    for key in _LANGUAGE_KEYS:
        if key in meta:
            data[key] = meta[key]
    return new_event(_E_AGENT_FINISHED, wf.id, agent.name, data, wf.name)


def _running(name: str, started_at: datetime) -> AgentResult:
    """``AgentResult(agent_id=name, status=RUNNING, started_at=started_at)``, its fields set one by one
    in their order, without the dataclass's Python ``__init__`` (1.46 -> 0.55 us: a class's call
    with one is dear in 3.11). A test holds it to AgentResult's own fields."""
    result = _new(AgentResult)
    result.agent_id = name
    result.status = _RUNNING
    result.output = None
    result.error = None
    result.tokens_used = 0
    result.cost = 0.0
    result.execution_time = 0.0
    result.started_at = started_at
    result.completed_at = None
    result.retry_count = 0
    result.metadata = {}
    return result


_new = object.__new__
_heappop = heapq.heappop
_current_task = asyncio.current_task  # a Python function in 3.11 (~0.4 us): asked at a hand-over only

_WORKFLOW = -1  # the workflow's own entry in the deadline heap

_NOBODY: tuple[int, ...] = ()  # the dependents of an agent nothing depends on


class _Cycle(ValueError):
    """The dependencies form a cycle (RunShape's own pass found it; `RunShape.of` names it)."""


_LANGUAGE_KEYS = ("items", "failed_items", "approval", "skipped", "function")
