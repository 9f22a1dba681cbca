"""Running one agent: its attempts, each call's budget and rate limit, tools, and checked output.

Every provider call goes through `AgentExecutor._call`, which is where money
is guarded: the call's worst-case cost is reserved before it is made (refused
reservations end the agent `budget_exceeded` without calling), the limiter is
waited on, and the real cost is settled afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from orchestrate.errors import (
    BudgetExceededError,
    JournalError,
    LLMError,
    OrchestrateError,
    OutputValidationError,
    RateLimitError,
    ToolError,
    UserInputError,
)
from orchestrate.jsonline import MAX_DEPTH, nests_too_deep
from orchestrate.llm.base import LLMClient, LLMResponse
from orchestrate.llm.batch_api import CALL_TAG, CallTag
from orchestrate.llm.capabilities import Capabilities, lookup
from orchestrate.llm.presets import base_model, bills_as_served, region_of, served_price_name
from orchestrate.llm.prices import regional_uplift
from orchestrate.llm.prompt_cache import CachePlan
from orchestrate.llm.providers import infer_provider
from orchestrate.llm.residency import outside
from orchestrate.money.costs import CostTracker, Reservation, agent_key
from orchestrate.money.rate_limit import RateLimiterRegistry
from orchestrate.redaction import redact
from orchestrate.run.events import Event, EventType, new_event
from orchestrate.run.failures import FailureHandler, RetryPolicy
from orchestrate.run.prompt_cache import PromptCaching
from orchestrate.run.routes import Routes
from orchestrate.run.tools import Tool, load_tools, resolve_callable
from orchestrate.run.workers import WorkerPool, guard_exit
from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow

# Members read on every agent's path, bound once: in Python 3.11 `AgentStatus.COMPLETED` goes
# through EnumType.__getattr__'s slot (~0.17 us a read), a module global costs ~0.01 us.
_COMPLETED = AgentStatus.COMPLETED
_E_AGENT_STARTED = EventType.AGENT_STARTED
_E_LLM_CALL = EventType.LLM_CALL

__all__ = ["AgentExecutor", "Usage", "fold_usage", "parse_json_answer"]


@dataclass(slots=True)
class Usage:
    """What an agent's calls consumed, across attempts."""

    calls: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    cached_calls: int = 0
    rate_limited_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    tool_log: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    def add(self, response: LLMResponse, cost: float) -> None:
        self.calls += 1
        self.input_tokens += response.input_tokens
        self.cached_input_tokens += response.cached_input_tokens
        self.output_tokens += response.output_tokens
        self.reasoning_tokens += response.reasoning_tokens
        self.cost += cost


def _fresh_usage() -> Usage:
    """``Usage()``, its fields set one by one without the dataclass's Python ``__init__`` (a class's
    call with one is dear in 3.11: 0.72 -> 0.49 us). A test holds it to Usage's own fields."""
    usage = _new(Usage)
    usage.calls = 0
    usage.input_tokens = 0
    usage.cached_input_tokens = 0
    usage.output_tokens = 0
    usage.reasoning_tokens = 0
    usage.cost = 0.0
    usage.tool_calls = 0
    usage.cached_calls = 0
    usage.rate_limited_seconds = 0.0
    usage.errors = []
    usage.tool_log = []
    usage.anomalies = []
    return usage


_new = object.__new__


def parse_json_answer(text: str) -> Any:
    """The JSON in a model's answer, tolerating a Markdown code fence around it."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        value = json.loads(body)
    except RecursionError:
        value = None
    else:
        if not nests_too_deep(value):
            return value
    raise ValueError(f"the answer nests deeper than {MAX_DEPTH} levels")


class AgentExecutor:
    """Executes agents for an engine; one instance serves every workflow it runs."""

    def __init__(
        self,
        *,
        client_for: Callable[[dict[str, Any]], LLMClient],
        tracker: CostTracker,
        limits: RateLimiterRegistry,
        failures: FailureHandler,
        emit: Callable[[Event], None],
        check_output: Callable[[Any, dict[str, Any]], str | None],
        default_policy: RetryPolicy,
        output_retries: int = 2,
        max_tool_rounds: int = 8,
        clock: Callable[[], float] = time.perf_counter,
        workers: WorkerPool | None = None,
        prompt_cache: PromptCaching | None = None,
    ) -> None:
        self.client_for = client_for
        self.tracker = tracker
        self.limits = limits
        self.failures = failures
        self.emit = emit
        self.check_output = check_output
        self.default_policy = default_policy
        self.output_retries = output_retries
        self.max_tool_rounds = max_tool_rounds
        self.clock = clock
        self.workers = workers if workers is not None else WorkerPool()
        self.prompt_cache = prompt_cache or PromptCaching()
        self.halted: str | None = None  # set by the engine when a journal fails: no call starts
        self.wants: Callable[[EventType], bool] = _every  # whether a sink reads a kind (the engine's)
        self._batching: bool | None = None
        self._regions: dict[tuple[Any, ...], tuple[str, str, float, Capabilities | None]] = {}
        # The last call's provider, a copy of its llm_config and its route; replaced whole, never changed.
        self._last_route: tuple[str | None, dict[str, Any] | None, CallRoute] = (None, None, _NO_ROUTE)

    async def execute(self, workflow: Workflow, agent: Agent, prompt: str, result: AgentResult) -> None:
        """Run `agent` until it succeeds or fails for good, filling in `result` as it goes.

        `result` is shared with the caller so that, if the agent is cancelled
        or times out mid-way, what it already spent is still on the record.
        """
        llm = agent.llm_config
        client = self.client_for(llm)
        routes = Routes(llm, self.client_for) if llm.get("fallbacks") else None
        policy = (
            self.default_policy if agent.retry is None else RetryPolicy.from_dict(agent.retry, base=self.default_policy)
        )
        usage = _fresh_usage()
        meta = result.metadata
        # The rendered prompt and system prompt, as every call of this agent sent them first, so
        # that a run can be inspected (`orchestrate show`) after the fact.
        meta["model"] = llm["model"]  # set one by one, in this order (not update(**...), which builds a dict)
        meta["provider"] = client.provider
        meta["attempts"] = 0
        meta["usage"] = usage
        meta["prompt"] = prompt
        meta["system_prompt"] = llm.get("system")
        # An agent with no tools and no output_schema makes one call an attempt and answers with its
        # text: awaited here, without `_attempt`'s coroutine (one frame fewer a call).
        plain = not agent.tools and agent.output_schema is None
        attempt = 0
        while True:
            attempt += 1
            meta["attempts"] = attempt
            result.retry_count = attempt - 1
            CALL_TAG.set(_tuple_new(CallTag, (workflow.id, workflow.name, agent.name, attempt)))
            self.emit(
                new_event(
                    _E_AGENT_STARTED,
                    workflow.id,
                    agent.name,
                    {"attempt": attempt, "model": llm["model"], "provider": client.provider, "module": agent.module},
                    workflow.name,
                    {"prompt": prompt, "system": llm.get("system")} if attempt == 1 else None,
                )
            )
            if routes is not None:
                routes.restart()
                meta["fallbacks"] = routes.taken
            try:
                if plain:
                    messages = _messages(llm, prompt)
                    answer = await self._call(workflow, agent, client, messages, [], usage, routes)
                    result.output = {"text": answer.content}
                else:
                    result.output = await self._attempt(workflow, agent, client, prompt, usage, routes)
                result.status = _COMPLETED
                if routes is not None and routes.index:
                    meta.update(
                        served_model=routes.llm["model"],
                        served_provider=routes.client.provider,
                        fallback_reason=routes.fallback_reason(),
                    )
                return
            except JournalError as exc:  # the run stopped calling: not this agent's failure
                result.status, result.error = AgentStatus.CANCELLED, str(exc)
                return
            except BudgetExceededError as exc:
                result.status, result.error = AgentStatus.BUDGET_EXCEEDED, str(exc)
                self.emit(
                    Event(
                        EventType.AGENT_BUDGET_REFUSED,
                        workflow.id,
                        agent.name,
                        {
                            "scope": exc.scope,
                            "limit": exc.limit,
                            "requested": exc.requested,
                            "committed": exc.committed,
                        },
                        workflow_name=workflow.name,
                    )
                )
                return
            except LLMError as exc:
                result.status, result.error = AgentStatus.FAILED, str(exc)
                meta["retriable"] = exc.retriable
                meta["error_type"] = type(exc).__name__
                if exc.status_code is not None:  # the final failure's span carries it (tracing)
                    meta["status_code"] = exc.status_code
                usage.errors.append(str(exc))
                if isinstance(exc, RateLimitError) and exc.retry_after:
                    # Every caller of the provider waits, whether or not this agent tries again.
                    self.limits.pause_provider((routes.client if routes else client).provider, exc.retry_after)
                if not self.failures.handle_failure(agent, result, policy):
                    return
                delay = self.failures.get_delay(policy, attempt, exc.retry_after)
                if isinstance(exc, RateLimitError):
                    agent.status = AgentStatus.RATE_LIMITED
                self.emit(
                    Event(
                        EventType.AGENT_RETRYING,
                        workflow.id,
                        agent.name,
                        {
                            "attempt": attempt,
                            "delay": delay,
                            "error": str(exc),
                            "error_type": type(exc).__name__,
                            "status_code": exc.status_code,
                        },
                        workflow_name=workflow.name,
                    )
                )
                await self.failures.wait(delay)
                agent.status = AgentStatus.RUNNING
                result.status, result.error = AgentStatus.RUNNING, None
                meta.pop("error_type", None)
                meta.pop("status_code", None)
            except OrchestrateError as exc:  # output, tool and template errors: not retriable
                result.status, result.error = AgentStatus.FAILED, str(exc)
                meta["retriable"] = False
                meta["error_type"] = type(exc).__name__
                self.failures.handle_failure(agent, result, policy)
                return

    def uses_batching(self) -> bool:
        """Whether the clients come from a provider-batching source (under any wrappers, such as a
        response cache); worked out once, the source being the engine's for its whole life."""
        if self._batching is None:
            source = getattr(self.client_for, "__self__", None)
            while source is not None and not hasattr(source, "wants_batch"):
                source = getattr(source, "inner", None)
            self._batching = source is not None
        return self._batching

    def batched(self, agent: Agent) -> bool:
        """Whether the agent's calls go through a provider batch API (answers come late)."""
        return bool(getattr(self.client_for(agent.llm_config), "batched", False))

    async def execute_code(
        self, workflow: Workflow, agent: Agent, arguments: dict[str, Any], result: AgentResult
    ) -> None:
        """Run a code step's function until it returns or fails for good; no model, cost 0.

        A sync function runs in a worker thread, an async one is awaited. An
        exception is a failed attempt, retried under the agent's `max_retries` and
        retry policy; a value that is not JSON, or breaks the output_schema, is not
        (the same call would return it again).
        """
        function_path = agent.function or ""
        policy = (
            self.default_policy if agent.retry is None else RetryPolicy.from_dict(agent.retry, base=self.default_policy)
        )
        meta = result.metadata
        meta.update(function=function_path, arguments=arguments, attempts=0)
        try:
            function = resolve_callable(function_path, workflow.base_dir)
        except ToolError as exc:
            result.status, result.error = AgentStatus.FAILED, str(exc)
            meta["retriable"] = False
            self.failures.handle_failure(agent, result, policy)
            return
        attempt = 0
        while True:
            if self.halted is not None:
                result.status, result.error = AgentStatus.CANCELLED, f"not started: {self.halted}"
                return
            attempt += 1
            meta["attempts"] = attempt
            result.retry_count = attempt - 1
            self.emit(
                Event(
                    _E_AGENT_STARTED,
                    workflow.id,
                    agent.name,
                    {
                        "attempt": attempt,
                        "model": None,
                        "provider": None,
                        "module": agent.module,
                        "function": function_path,
                    },
                    workflow_name=workflow.name,
                )
            )
            try:
                try:
                    given = copy.deepcopy(arguments)  # the function may change what it is given
                    if inspect.iscoroutinefunction(function):
                        value = await function(**given)
                    else:
                        value = await self.workers.call(function, **given)
                        if inspect.isawaitable(value):
                            value = await value
                except asyncio.CancelledError:
                    raise
                except BaseException as raw:  # sys.exit() in a step fails the step, not orchestrate
                    raise guard_exit(raw) from None
            except Exception as exc:  # the function failed: an attempt, maybe retried
                result.status = AgentStatus.FAILED
                result.error = redact(f"{function_path} raised {type(exc).__name__}: {exc}")
                meta["retriable"] = True
                if not self.failures.handle_failure(agent, result, policy):
                    return
                delay = self.failures.get_delay(policy, attempt)
                self.emit(
                    Event(
                        EventType.AGENT_RETRYING,
                        workflow.id,
                        agent.name,
                        {"attempt": attempt, "delay": delay, "error": result.error},
                        workflow_name=workflow.name,
                    )
                )
                await self.failures.wait(delay)
                result.status, result.error = AgentStatus.RUNNING, None
                continue
            problem: str | None
            try:
                if nests_too_deep(value):
                    raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
                # What a step returns reaches result.json, the journal, the reports and later prompts: never a key.
                text = redact(json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False))
            except (TypeError, ValueError, RecursionError) as exc:
                problem = f"{function_path} returned a value that is not JSON ({exc})"
            else:
                value = json.loads(text)  # tuples become lists, keys strings: what downstream sees
                problem = None
                if agent.output_schema is not None:
                    found = self.check_output(value, agent.output_schema)
                    if found is not None:
                        problem = (
                            f"agent {agent.name!r}: {function_path} returned a value that "
                            f"does not satisfy output_schema: {found}"
                        )
            if problem is not None:
                result.status, result.error = AgentStatus.FAILED, problem
                meta["retriable"] = False
                self.failures.handle_failure(agent, result, policy)
                return
            result.output = {"text": text, "json": value}
            result.status = _COMPLETED
            return

    def carry_over(self, workflow: Workflow, agent: Agent, prior: AgentResult) -> AgentResult:
        """Reuse an earlier run's result for `agent`; its cost counts against this run's budgets."""
        result = AgentResult(
            agent_id=agent.name,
            status=_COMPLETED,
            output=prior.output,
            tokens_used=prior.tokens_used,
            cost=prior.cost,
            execution_time=0.0,
            started_at=prior.started_at,
            completed_at=prior.completed_at,
            retry_count=prior.retry_count,
            metadata={**prior.metadata, "reused": True},
        )
        meta = result.metadata
        if not agent.is_code_step:
            self.book_reused(workflow, agent, prior.cost, meta.get("model"), meta.get("provider"))
        return result

    def book_reused(
        self, workflow: Workflow, agent: Agent, cost: float, model: str | None, provider: str | None
    ) -> None:
        """Count what an earlier run spent on `agent` (reused now) against this run's budgets."""
        self.tracker.record_cost(
            agent_key(workflow.id, agent.name),
            agent.name,
            workflow.id,
            model or "",
            0,
            0,
            {"reused": True},
            provider=provider or "",
            module=agent.module,
            cost=cost,
        )

    async def _attempt(
        self,
        workflow: Workflow,
        agent: Agent,
        client: LLMClient,
        prompt: str,
        usage: Usage,
        routes: Routes | None = None,
    ) -> dict[str, Any]:
        """One attempt: the tool loop, then the answer checked against output_schema."""
        messages = _messages(agent.llm_config, prompt)
        tools = load_tools(agent.tools, workflow.base_dir) if agent.tools else []
        by_name = {tool.name: tool for tool in tools} if tools else {}
        schema = agent.output_schema
        rounds = corrections = 0
        while True:
            response = await self._call(workflow, agent, client, messages, tools, usage, routes)
            if response.tool_calls and tools:
                rounds += 1
                if rounds > self.max_tool_rounds:
                    raise ToolError(
                        f"agent {agent.name!r}: tool loop did not finish within {self.max_tool_rounds} rounds"
                    )
                await self._run_tools(workflow, agent, response, by_name, messages, usage)
                if routes is not None and any(
                    by_name[c.name].side_effects for c in response.tool_calls if c.name in by_name
                ):
                    routes.side_effects = True  # the world has changed: this attempt stays on its model
                continue
            text = response.content
            if schema is None:
                return {"text": text}
            problem = None
            if response.finish_reason == "length":
                problem = "the answer was cut off at max_tokens"
            else:
                try:
                    parsed = parse_json_answer(text)
                except ValueError as exc:
                    problem = f"not valid JSON ({exc})"
                else:
                    problem = self.check_output(parsed, schema)
                    if problem is None:
                        return {"text": text, "json": parsed}
            corrections += 1
            if corrections > self.output_retries:
                raise OutputValidationError(
                    f"agent {agent.name!r}: answer does not satisfy output_schema after "
                    f"{self.output_retries} correction(s): {problem}"
                )
            messages.append({"role": "assistant", "content": text})
            messages.append(
                {
                    "role": "user",
                    "content": (
                        f"Your answer was rejected: {problem}. Reply again with only a JSON value that "
                        f"satisfies this JSON Schema:\n{json.dumps(schema)}"
                    ),
                }
            )

    async def _run_tools(
        self,
        workflow: Workflow,
        agent: Agent,
        response: LLMResponse,
        by_name: dict[str, Tool],
        messages: list[dict[str, Any]],
        usage: Usage,
    ) -> None:
        messages.append(
            {"role": "assistant", "content": response.content, "tool_calls": list(response.tool_calls or [])}
        )
        for call in response.tool_calls or []:
            tool = by_name.get(call.name)
            t0 = self.clock()
            if tool is None:
                error: str | None = f"unknown tool {call.name!r}; available: {sorted(by_name)}"
                content = json.dumps({"error": error})
            else:
                content, error = await tool.call(call.arguments, self.workers)
            usage.tool_calls += 1
            usage.tool_log.append({"tool": call.name, "arguments": call.arguments, "error": error})
            self.emit(
                Event(
                    EventType.TOOL_CALL,
                    workflow.id,
                    agent.name,
                    {"tool": call.name, "error": error, "call_id": call.id, "duration": self.clock() - t0},
                    workflow_name=workflow.name,
                    content={"arguments": call.arguments, "result": content},
                )
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content})

    def _call(
        self,
        workflow: Workflow,
        agent: Agent,
        client: LLMClient,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        usage: Usage,
        routes: Routes | None = None,
    ) -> Coroutine[Any, Any, LLMResponse]:
        """One provider call, paid for by reservation and paced by the limiter; with fallbacks,
        moved down the agent's chain at once on the failures it names (`orchestrate.run.routes`).

        A plain function handing back the call's coroutine: without fallbacks, a coroutine
        of its own around `_call_route` would be one more frame created, started and
        finished before every call, for nothing.
        """
        if routes is None:
            return self._call_route(workflow, agent, client, agent.llm_config, messages, tools, usage)
        return self._call_routes(workflow, agent, messages, tools, usage, routes)

    async def _call_routes(
        self,
        workflow: Workflow,
        agent: Agent,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        usage: Usage,
        routes: Routes,
    ) -> LLMResponse:
        """`_call` down an agent's chain of fallbacks."""
        while True:
            client = routes.client
            if routes.can_fall_back():
                paused = await self.limits.shared_pause(client.provider)
                if paused > 0:  # waiting for a 429's pause to end: the next model instead
                    self._fall_back(workflow, agent, routes, "rate_limited", f"{client.provider} paused {paused:.1f}s")
                    continue
            try:
                return await self._call_route(workflow, agent, client, routes.llm, messages, tools, usage, routes)
            except LLMError as exc:
                reason = routes.reason_to_fall_back(exc)
                if reason is None:
                    raise
                usage.errors.append(str(exc))
                if isinstance(exc, RateLimitError) and exc.retry_after:
                    self.limits.pause_provider(client.provider, exc.retry_after)
                self._fall_back(workflow, agent, routes, reason, str(exc))

    def _fall_back(self, workflow: Workflow, agent: Agent, routes: Routes, reason: str, error: str) -> None:
        record = routes.advance(reason, error)
        self.emit(Event(EventType.AGENT_FALLBACK, workflow.id, agent.name, record, workflow_name=workflow.name))

    async def _call_route(
        self,
        workflow: Workflow,
        agent: Agent,
        client: LLMClient,
        llm: dict[str, Any],
        messages: list[dict[str, Any]],
        tools: list[Tool],
        usage: Usage,
        routes: Routes | None = None,
    ) -> LLMResponse:
        """One call to one model (`llm`: the agent's own, or a fallback's)."""
        model = llm["model"]
        # An Azure deployment is priced as its model; a Bedrock profile (eu.anthropic.claude-...) or an
        # OpenRouter name (anthropic/claude-...) as the model of the table it names.
        priced, region, uplift, built_in, max_tokens, passthrough, served = self._route(client.provider, llm)
        if workflow.residency:
            self._check_residency(workflow.residency, client.provider, llm)
        if max_tokens is None:  # int() refused it: raised here, where it always was
            max_tokens = int(llm.get("max_tokens", 1000))
        specs = [tool.spec() for tool in tools] if tools else []
        # A batched call is reserved and priced at the provider's batch rate; it waits at the
        # provider, so the online rate limits do not apply to it.
        batched = getattr(client, "batched", False) and not getattr(client, "goes_online", bool)()
        # What the model accepts: by the model it is priced as (an Azure deployment's
        # model), with the workflow's own `capabilities:` over the built-in table.
        caps = (
            None
            if client.provider == "simulated"
            else built_in
            if not workflow.capabilities
            else lookup(llm.get("price_as") or model, client.provider, workflow.capabilities)
        )
        prefix = (
            None
            if caps is None
            else self.prompt_cache.plan(workflow, agent, llm, messages, specs, caps, batched=batched)
        )
        lead = False
        if prefix is not None:
            if specs:
                specs = sorted(specs, key=lambda spec: str(spec.get("name")))  # stable first: one order, always
            if prefix.cacheable and self.prompt_cache.warm_up and not batched:
                lead = await self.prompt_cache.warmup.enter(prefix.digest)  # send-one-then-fan
        rate = (self.tracker.batch_rate(client.provider) if batched else 1.0) * uplift
        try:
            worst = rate * self.tracker.max_cost(
                priced,
                messages,
                max_tokens,
                overrides=workflow.prices,
                tools=specs,
                response_schema=agent.output_schema,
                cache_ttl=prefix.plan.ttl if prefix is not None else None,
            )
            key = agent_key(workflow.id, agent.name)
            if self.halted is not None:
                raise JournalError(f"not started: {self.halted}")
            reservation = self.tracker.reserve(workflow.id, key, worst, agent.cost_limit)
        except BaseException:
            if lead and prefix is not None:
                self.prompt_cache.warmup.failed(prefix.digest)
            raise
        permit = None
        try:
            if self.tracker.scopes is not None:
                await self.tracker.reserve_shared(reservation, simulated=client.provider == "simulated")
            if self.limits.active and not batched:
                chars = 0
                for m in messages:  # a loop, not a generator: this runs before every call
                    chars += len(str(m.get("content") or ""))
                estimate = chars // 4 + max_tokens
                permit = self.limits.try_acquire(client.provider, model, estimate)
                held: dict[str, Any] | None = None
                if permit is None:  # some limiter needs a wait (a shared one: its state tells)

                    def waits(holding: dict[str, Any]) -> None:
                        nonlocal held
                        held = holding
                        holding["provider"] = client.provider
                        if self.wants(EventType.RATE_LIMIT_WAITING):
                            self.emit(
                                Event(
                                    EventType.RATE_LIMIT_WAITING,
                                    workflow.id,
                                    agent.name,
                                    holding,
                                    workflow_name=workflow.name,
                                )
                            )

                    if self.wants(EventType.RATE_LIMIT_WAITING):
                        holding = self.limits.holding(client.provider, model, estimate)
                        if holding is not None:
                            waits(holding)
                    permit = await self.limits.acquire(
                        client.provider, model, estimate, on_wait=waits if held is None else None
                    )
                # A shared limiter's round trip is no wait: only what its state held back is one.
                if held is not None or (permit.waited > 0.0005 and self.limits.state is None):
                    usage.rate_limited_seconds += permit.waited
                    waited: dict[str, Any] = {"waited": permit.waited, "provider": client.provider}
                    if held is not None:
                        waited.update(limit=held["limit"], text=held["text"], queued=self.limits.queued(held["limit"]))
                    self.emit(
                        Event(
                            EventType.AGENT_RATE_LIMITED,
                            workflow.id,
                            agent.name,
                            waited,
                            workflow_name=workflow.name,
                        )
                    )
            sent = self.clock()
            response = await self._send(
                client,
                llm,
                passthrough,
                messages,
                specs,
                agent.output_schema,
                max_tokens,
                caps,
                prefix.plan if prefix else None,
            )
        except LLMError as exc:
            if lead and prefix is not None:
                self.prompt_cache.warmup.failed(prefix.digest)
            if exc.billed:  # accepted, answered, unreadable: it may well be charged
                self._book_unread(workflow, agent, client.provider, key, reservation, worst, usage, exc, llm)
            else:
                self.tracker.release(reservation)
            raise
        except BaseException:
            if lead and prefix is not None:
                self.prompt_cache.warmup.failed(prefix.digest)
            self.tracker.release(reservation)
            raise
        finally:
            if permit is not None:
                permit.release()
        if prefix is not None and prefix.cacheable:
            self.prompt_cache.warmup.answered(prefix.digest, prefix.plan.ttl)
        cached = bool(response.metadata.get("cached"))
        batch_id = response.metadata.get("batch_id") if not cached else None
        if served:  # OpenRouter bills the model that served
            priced = served_price_name(client.provider, priced, response.model)
        cost, anomaly = self._price(
            priced, response, worst, cached, (self.tracker.batch_rate(client.provider) if batch_id else 1.0) * uplift
        )
        self.tracker.settle(reservation, cost)
        savings = 0.0
        # cache_savings is 0.0 for a call that read and wrote no cache (most): not asked then
        if (
            not cached
            and anomaly is None
            and (
                response.cached_input_tokens
                or response.cache_creation_input_tokens
                or response.cache_creation_1h_input_tokens
            )
        ):
            savings = self.tracker.cache_savings(
                priced,
                response.input_tokens,
                cached_input_tokens=response.cached_input_tokens,
                cache_creation_input_tokens=response.cache_creation_input_tokens,
                cache_creation_1h_input_tokens=response.cache_creation_1h_input_tokens,
            )
            if savings:  # (most calls read and write no cache: 0.0, and round() is dear)
                savings = round(savings * (self.tracker.batch_rate(client.provider) if batch_id else 1.0) * uplift, 10)
        self.tracker.record_cost(
            key,
            agent.name,
            workflow.id,
            model,
            response.input_tokens,
            response.output_tokens,
            _call_metadata(cached, batch_id, priced if priced != model else None, region, agent, routes),
            cached_input_tokens=response.cached_input_tokens,
            cache_creation_input_tokens=response.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=response.cache_creation_1h_input_tokens,
            reasoning_tokens=response.reasoning_tokens,
            provider=client.provider,
            module=agent.module,
            cost=cost,
            usage_anomaly=anomaly,
            cache_savings=savings,
        )
        usage.add(response, cost)
        usage.cached_calls += cached
        if response.rate_limit:
            self.limits.observe(client.provider, response.rate_limit)
        # A copy of the keys in their order, then the values set: a literal of 20 keys is built as
        # 16 and 4 merged (the compiler's limit), ~1.5 times the cost.
        data = _LLM_CALL_KEYS.copy()
        data["model"] = model
        data["provider"] = client.provider
        data["input_tokens"] = response.input_tokens
        data["cached_input_tokens"] = response.cached_input_tokens
        data["output_tokens"] = response.output_tokens
        data["reasoning_tokens"] = response.reasoning_tokens
        data["cache_creation_input_tokens"] = response.cache_creation_input_tokens
        data["cache_creation_1h_input_tokens"] = response.cache_creation_1h_input_tokens
        data["cache_savings"] = savings
        data["cost"] = cost
        data["cached"] = cached
        data["batch_id"] = batch_id
        data["duration"] = self.clock() - sent
        data["finish_reason"] = response.finish_reason
        data["response_model"] = response.model
        data["request_id"] = response.request_id
        data["max_tokens"] = max_tokens
        data["temperature"] = llm.get("temperature")
        data["tool_calls"] = len(response.tool_calls or ())
        data["usage_anomaly"] = anomaly
        if response.metadata.get("notice"):  # the structured-output fallback, said once
            data["notice"] = response.metadata["notice"]
        if routes is not None and routes.index:
            data["requested_model"] = routes.requested
            data["fallback_reason"] = routes.fallback_reason()
        data["region"] = region
        self.emit(
            new_event(
                _E_LLM_CALL,
                workflow.id,
                agent.name,
                data,
                workflow.name,
                {"messages": messages, "answer": response.content},
            )
        )
        if anomaly is not None:
            self._anomaly(workflow, agent, client.provider, anomaly, cost, worst, usage)
        return response

    def _route(self, provider: str, llm: dict[str, Any]) -> CallRoute:
        """What a call of `llm` through `provider` needs that depends on them alone (`CallRoute`):
        worked out once per route and config, not before every call."""
        last = self._last_route  # read once: another thread may replace it (never change it)
        if provider == last[0] and llm == last[1]:
            # The config of the call before (most calls share one), so the same route and the same
            # answers below, each of which an equal config gives alike: without working them out.
            return last[2]
        price_as = llm.get("price_as")
        key = (provider, price_as, llm["model"], llm.get("base_url"), llm.get("region"), llm.get("provider"))
        found = self._regions.get(key)
        if found is None:
            model = llm["model"]
            priced = price_as or base_model(provider, model)
            built_in = None if provider == "simulated" else lookup(price_as or model, provider)
            served_by = provider
            if provider == "simulated":  # --simulate: where the configured endpoint would serve it
                served_by = str(llm.get("provider") or infer_provider(model))
            region = region_of(served_by, llm)
            found = self._regions[key] = (priced, region, regional_uplift(served_by, priced, region), built_in)
        try:  # (equal numbers have equal int(): 64, 64.0 and a Decimal 64 give 64)
            max_tokens: int | None = int(llm.get("max_tokens", 1000))
        except Exception:  # noqa: BLE001 (raised again by the call, after its residency check)
            max_tokens = None
        served = bills_as_served(provider)
        route = CallRoute(
            *found,
            max_tokens,
            tuple(k for k in (_PASSTHROUGH_SIMULATED if provider == "simulated" else _PASSTHROUGH) if k in llm),
            served,
        )
        self._last_route = (provider, dict(llm), route)  # a copy: the agent's own dict may change later
        return route

    def _check_residency(self, residency: str, provider: str, llm: dict[str, Any]) -> None:
        """Refuse a call to an endpoint outside the workflow's residency (the run's own check
        comes first; this one holds for every caller of the engine)."""
        if provider == "simulated":
            provider = str(llm.get("provider") or infer_provider(llm["model"]))
            if provider == "simulated":
                return
        why = outside(residency, provider, llm)
        if why is not None:
            raise UserInputError(f"{why}; not called")

    def _anomaly(
        self,
        workflow: Workflow,
        agent: Agent,
        provider: str,
        anomaly: str,
        booked: float,
        reserved: float,
        usage: Usage,
    ) -> None:
        """Note why a call's usage could not be taken at its word, on the agent and as an event."""
        usage.anomalies.append(anomaly)
        self.emit(
            Event(
                EventType.USAGE_ANOMALY,
                workflow.id,
                agent.name,
                {
                    "model": agent.llm_config["model"],
                    "provider": provider,
                    "anomaly": anomaly,
                    "booked": booked,
                    "reserved": reserved,
                    "spent": self.tracker.spent(workflow.id),
                    "budget": workflow.cost_budget,
                },
                workflow_name=workflow.name,
            )
        )

    def _book_unread(
        self,
        workflow: Workflow,
        agent: Agent,
        provider: str,
        key: str,
        reservation: Reservation,
        worst: float,
        usage: Usage,
        exc: LLMError,
        llm: dict[str, Any] | None = None,
    ) -> None:
        """Book a call the provider accepted but whose answer could not be read at its reserved
        worst case: it is probably billed, and a budget must not learn of it from the invoice."""
        llm = llm if llm is not None else agent.llm_config
        model = llm["model"]
        priced = llm.get("price_as") or base_model(provider, model)
        anomaly = (
            f"{provider} answered {exc.status_code or 'with success'} but the answer could not be read; "
            f"booked the reserved worst case ${worst:.6f}"
        )
        self.tracker.settle(reservation, worst)
        self.tracker.record_cost(
            key,
            agent.name,
            workflow.id,
            model,
            0,
            0,
            _call_metadata(False, None, priced if priced != model else None),
            provider=provider,
            module=agent.module,
            cost=worst,
            usage_anomaly=anomaly,
        )
        usage.calls += 1
        usage.cost += worst
        self._anomaly(workflow, agent, provider, anomaly, worst, worst, usage)

    def _price(
        self, model: str, response: LLMResponse, worst: float, cached: bool, rate: float = 1.0
    ) -> tuple[float, str | None]:
        """What a call is booked at, and why its usage cannot be taken at its word (or None).

        Usage that is not a count (negative, fractional, missing) books the reserved
        worst case. Usage above the reservation is booked as reported (it is what
        will be billed) and flagged; the budget then refuses every later call.
        """
        if cached:
            return 0.0, None
        reported = response.metadata.get("usage_anomaly")
        if reported:
            return worst, f"{reported}; booked the reserved worst case ${worst:.6f}"
        cost = self.tracker.calculate_cost(
            model,
            response.input_tokens,
            response.output_tokens,
            cached_input_tokens=response.cached_input_tokens,
            cache_creation_input_tokens=response.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=response.cache_creation_1h_input_tokens,
        )
        if rate != 1.0:  # a batch answer, at the provider's batch discount
            cost = round(cost * rate, 10)
        if not math.isfinite(cost):
            return worst, f"usage priced at {cost}; booked the reserved worst case ${worst:.6f}"
        if cost > worst + 1e-9:
            return cost, (
                f"{response.provider or 'the provider'} reported {response.input_tokens} input and "
                f"{response.output_tokens} output tokens, ${cost:.6f}, above the "
                f"${worst:.6f} reserved for the call; booked as reported"
            )
        return cost, None

    @staticmethod
    def _send(
        client: LLMClient,
        llm: dict[str, Any],
        passthrough: tuple[str, ...],
        messages: list[dict[str, Any]],
        specs: list[dict[str, Any]],
        schema: dict[str, Any] | None,
        max_tokens: int,
        caps: Capabilities | None,
        plan: CachePlan | None = None,
    ) -> Coroutine[Any, Any, LLMResponse]:
        """The client's coroutine for one call (a plain function: one coroutine frame fewer a call).

        Its options, as keywords: the llm_config's `passthrough` ones, then capabilities,
        prompt_cache, response_schema and, for a call of a prompt and a system prompt, system.
        """
        # An llm_config without the key gets the reference's 0.7; None means "not sent".
        raw = llm.get("temperature", 0.7)
        temperature = None if raw is None else float(raw)
        one_prompt = not specs and len(messages) <= 2 and messages[-1]["role"] == "user"
        if one_prompt and caps is not None and plan is not None and not passthrough and schema is None:
            # Most calls: the same keywords written in the call, not a dict made to be unpacked
            # into it (~2,000 instructions a call).
            if messages[0]["role"] == "system":
                return client.complete(
                    messages[-1]["content"],
                    llm["model"],
                    temperature,
                    max_tokens,
                    None,
                    capabilities=caps,
                    prompt_cache=plan,
                    system=messages[0]["content"],
                )
            return client.complete(
                messages[-1]["content"],
                llm["model"],
                temperature,
                max_tokens,
                None,
                capabilities=caps,
                prompt_cache=plan,
            )
        options: dict[str, Any] = {}
        for k in passthrough:  # the options of `llm` sent as they are (its route's `passthrough`)
            options[k] = llm[k]
        if caps is not None:
            options["capabilities"] = caps
        if plan is not None:
            options["prompt_cache"] = plan
        if schema is not None:
            options["response_schema"] = schema
        if one_prompt:
            if messages[0]["role"] == "system":
                options["system"] = messages[0]["content"]
            return client.complete(messages[-1]["content"], llm["model"], temperature, max_tokens, None, **options)
        return client.complete_with_tools(messages, llm["model"], specs, temperature, max_tokens, **options)


class CallRoute(NamedTuple):
    """What a call needs that its provider and llm_config alone decide (`AgentExecutor._route`)."""

    priced: str  # the name it is priced as (an Azure deployment's model, a Bedrock profile's)
    region: str  # where it is served (`region_of`)
    uplift: float  # the price multiplier of that region (`regional_uplift`)
    built_in: Capabilities | None  # the model's built-in capabilities (None: the simulated provider)
    max_tokens: int | None  # int() of its max_tokens (None: int() refused it)
    passthrough: tuple[str, ...]  # its options the client is given as they are (top_p, stop, ...)
    served: bool  # the provider bills the model that served (the name priced is known only then)


_NO_ROUTE = CallRoute("", "", 1.0, None, None, (), False)  # before the first call (no provider is None)


def _messages(llm: dict[str, Any], prompt: str) -> list[dict[str, Any]]:
    """An attempt's first messages: the system prompt, if any, and the rendered prompt."""
    if llm.get("system"):
        return [{"role": "system", "content": llm["system"]}, {"role": "user", "content": prompt}]
    return [{"role": "user", "content": prompt}]


def _call_metadata(
    cached: bool,
    batch_id: str | None,
    price_as: str | None,
    region: str | None = None,
    agent: Agent | None = None,
    routes: Routes | None = None,
) -> dict[str, Any] | None:
    """What a cost record notes beyond its tokens: cached or batched, the model it was priced as,
    where it was served, and, for a fallback, the model the agent asked for and why it did not serve.

    The common case, a call that notes only its region, gets one dict per region, shared by
    every record (records are read, never written, once booked): a dict a call was 1.8 MB of
    a run of 10,000 agents.
    """
    if not cached and not batch_id and not price_as and region and (routes is None or not routes.index):
        shared = _REGION_ONLY.get(region)
        if shared is None:
            shared = _REGION_ONLY[region] = {"region": region}
        return shared
    meta: dict[str, Any] = {"cached": True} if cached else {"batch": True, "batch_id": batch_id} if batch_id else {}
    if price_as:
        meta["price_as"] = price_as
    if region:
        meta["region"] = region
    if routes is not None and routes.index:
        meta["requested_model"] = routes.requested
        meta["fallback_reason"] = routes.fallback_reason()
    return meta or None


# The llm_call event's keys before its optional ones, in their order (values set by each call).
_LLM_CALL_KEYS: dict[str, Any] = dict.fromkeys(
    (
        "model",
        "provider",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cache_creation_input_tokens",
        "cache_creation_1h_input_tokens",
        "cache_savings",
        "cost",
        "cached",
        "batch_id",
        "duration",
        "finish_reason",
        "response_model",
        "request_id",
        "max_tokens",
        "temperature",
        "tool_calls",
        "usage_anomaly",
    )
)

_REGION_ONLY: dict[str, dict[str, Any]] = {}  # region -> the metadata of a call that notes only it

_PASSTHROUGH = ("top_p", "stop", "request_timeout", "response_format")
_PASSTHROUGH_SIMULATED = (*_PASSTHROUGH, "latency", "failure_rate")


def _every(_kind: EventType) -> bool:
    return True


_tuple_new = tuple.__new__  # CallTag(...) goes through the named tuple's Python __new__: ~0.3 us of 0.55


def fold_usage(result: AgentResult) -> None:
    """Move the executor's running Usage into the result's plain fields and metadata."""
    usage = result.metadata.pop("usage", None)
    if usage is None:
        return
    result.cost = usage.cost
    result.tokens_used = usage.input_tokens + usage.output_tokens
    meta = result.metadata  # set one by one, in this order (not update(**...), which builds a dict to copy)
    meta["calls"] = usage.calls
    meta["input_tokens"] = usage.input_tokens
    meta["cached_input_tokens"] = usage.cached_input_tokens
    meta["output_tokens"] = usage.output_tokens
    meta["reasoning_tokens"] = usage.reasoning_tokens
    meta["tool_calls"] = usage.tool_calls
    meta["cached_calls"] = usage.cached_calls
    meta["rate_limited_seconds"] = usage.rate_limited_seconds
    if usage.errors:
        meta["errors"] = usage.errors[-5:]
    if usage.tool_log:
        meta["tool_log"] = usage.tool_log[-50:]
    if usage.anomalies:
        meta["usage_anomalies"] = list(usage.anomalies)
