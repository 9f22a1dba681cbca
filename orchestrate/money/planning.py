"""Planning a run before spending anything: order, critical path, time and cost bounds.

The order is what the scheduler would do if every agent took its expected
time (`workflow.graph.expected_seconds`), under `max_parallel_agents`. Cost bounds:

- ``min_cost``: every agent answers on its first call with a one-token
  answer, its prompt counted at four bytes a token. A run that fails at once
  can cost less (down to 0); a run that completes costs about this or more.
- ``max_cost``: per call, the same worst case the budget guard reserves
  (every prompt byte a token, plus max_tokens of output), times the calls an
  agent may make (attempts x output corrections x tool rounds), each agent
  capped at its cost_limit and the total at the workflow's cost_budget. The
  hard budgets guarantee this ceiling; it is not an estimate.

The workflow language widens the range: a code step costs 0; an agent with
`when:` (or below one, which is skipped with it) may not run, so its least is
0; a `foreach` agent runs from 0 to `max_items` times, so its least is 0 and
its most is `max_items` times one run (still capped by its cost_limit).

With the provider's prompt cache, the least cost of an agent whose shared prefix
(system prompt, tools, the template's static start) is long enough to cache
drops: `min_cost_no_hits` and `min_cost_all_hits` are the least cost of the
calls counting the system prompt, with no call reading the cache and with every
call reading its shared prefix (``cacheable_agents`` > 0 only).
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any

from orchestrate.money.costs import CostTracker
from orchestrate.workflow.graph import DependencyGraph, expected_seconds
from orchestrate.workflow.models import Workflow

__all__ = ["AgentPlan", "BatchPlan", "Plan", "plan_batch", "plan_workflow"]


@dataclass(frozen=True)
class AgentPlan:
    name: str
    module: str
    model: str
    start: float
    finish: float
    min_cost: float
    max_cost: float
    max_calls: int
    conditional: bool = False  # has a `when:` or is below one: may be skipped
    max_items: int | None = None  # foreach: runs at most this many times
    code_step: bool = False
    min_cost_no_hits: float = 0.0  # the least, the system prompt counted, no call reading the prompt cache
    min_cost_all_hits: float = 0.0  # the same with every call reading its shared prefix
    cacheable: bool = False  # its shared prefix is long enough for its model to cache

    @property
    def runs(self) -> str:
        """How many times it runs: "1", "0-1" (conditional), "0-200" (foreach)."""
        most = self.max_items if self.max_items is not None else 1
        least = 0 if self.conditional or self.max_items is not None else 1
        return str(most) if least == most else f"{least}-{most}"


@dataclass(frozen=True)
class Plan:
    workflow: str
    agents: list[AgentPlan]
    critical_path: list[str]
    estimated_seconds: float
    min_cost: float
    max_cost: float
    budget: float
    budget_binds: bool
    # The rate limit that makes the run longer than its graph, when one does (see `pacing`).
    paced_by: dict[str, Any] | None = None

    @property
    def cacheable_agents(self) -> int:
        return sum(1 for a in self.agents if a.cacheable)

    @property
    def cache_bounds(self) -> tuple[float, float]:
        """The least cost with no prompt-cache hit and with every call hitting (capped by the budget)."""
        none = sum(a.min_cost_no_hits for a in self.agents)
        every = sum(a.min_cost_all_hits for a in self.agents)
        return min(none, self.budget), min(every, self.budget)

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.cacheable_agents:
            none, every = self.cache_bounds
            extra["prompt_cache"] = {
                "cacheable_agents": self.cacheable_agents,
                "min_cost_no_hits": round(none, 6),
                "min_cost_all_hits": round(every, 6),
            }
        if self.paced_by is not None:
            extra["paced_by"] = self.paced_by
        return extra | {
            "workflow": self.workflow,
            "order": [a.name for a in self.agents],
            "critical_path": self.critical_path,
            "estimated_seconds": round(self.estimated_seconds, 3),
            "min_cost": round(self.min_cost, 6),
            "max_cost": round(self.max_cost, 6),
            "cost_budget": self.budget,
            "budget_binds": self.budget_binds,
            "agents": [
                {
                    "name": a.name,
                    "module": a.module,
                    "model": a.model,
                    "start": round(a.start, 3),
                    "finish": round(a.finish, 3),
                    "min_cost": round(a.min_cost, 6),
                    "max_cost": round(a.max_cost, 6),
                    "max_calls": a.max_calls,
                    "conditional": a.conditional,
                    "max_items": a.max_items,
                    "code_step": a.code_step,
                    "runs": a.runs,
                }
                for a in self.agents
            ],
        }


def pacing(workflow: Workflow) -> dict[str, Any] | None:
    """The rate limit that holds the run longest, and for how long, or None when nothing is limited.

    Every call an agent makes at least once (a `foreach` once an item, up to `max_items`) is
    counted against its provider's limits (a workflow's `rate_limits`, else the default of
    60 requests a minute) and its model's, if named. Requests a minute are paced, started
    60/N s apart, so N + 1 calls at N a minute take a minute; tokens a minute (prompt estimate
    plus `max_tokens`) hold back what does not fit. The simulated provider has no limit unless named.
    """
    from orchestrate.llm.providers import PROVIDERS, resolve_provider
    from orchestrate.money.rate_limit import RateLimitConfig

    calls: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for agent in workflow.agents:
        if agent.is_code_step:
            continue
        llm = agent.llm_config
        n = agent.max_items or 1 if agent.foreach is not None else 1
        per_call = len(agent.prompt_template.encode()) // 4 + int(llm.get("max_tokens", 1000))
        for key in {resolve_provider(llm), str(llm.get("model"))}:
            calls[key] = calls.get(key, 0) + n
            tokens[key] = tokens.get(key, 0) + n * per_call
    slowest: dict[str, Any] | None = None
    for key, count in calls.items():
        named = workflow.rate_limits.get(key)
        if named is None and (key == "simulated" or key not in PROVIDERS):
            continue  # a model is limited only when named; the simulated provider has no quota
        if isinstance(named, RateLimitConfig):
            config = named
        else:
            config = RateLimitConfig.from_mapping(named, base=RateLimitConfig()) if named else RateLimitConfig()
        by_requests = (count - 1) * 60.0 / config.requests_per_minute
        by_tokens = max(0.0, tokens[key] - config.tokens_per_minute) * 60.0 / config.tokens_per_minute
        seconds = max(by_requests, by_tokens)
        if seconds > 0 and (slowest is None or seconds > slowest["seconds"]):
            rate = (
                f"{config.requests_per_minute}/min"
                if by_requests >= by_tokens
                else f"{config.tokens_per_minute:,} tokens/min"
            )
            slowest = {
                "limit": key,
                "rate": rate,
                "source": f"rate_limits.{key}" if named else "the default",
                "calls": count,
                "seconds": round(seconds, 3),
            }
    return slowest


def plan_workflow(
    workflow: Workflow,
    tracker: CostTracker,
    *,
    output_retries: int = 2,
    max_tool_rounds: int = 8,
    provider_batch: bool = False,
    input_bytes: int = 0,
) -> Plan:
    """The plan of `workflow` under its own limits.

    Agents whose calls go through a provider batch API (``llm_config.batch``, or every agent
    with `provider_batch` unless its ``batch`` is false) are priced at the batch rate.
    `input_bytes` is added to every prompt: the size of the input values a dataset row fills
    in (a batch plans each row with its own).
    """
    from orchestrate.llm.capabilities import lookup
    from orchestrate.llm.fallbacks import chain_of
    from orchestrate.llm.presets import base_model
    from orchestrate.llm.prompt_cache import estimate_tokens
    from orchestrate.llm.providers import resolve_provider
    from orchestrate.workflow.templates import static_prefix

    agents = {a.name: a for a in workflow.agents}
    weights = {a.name: expected_seconds(a) for a in workflow.agents}
    graph = DependencyGraph.from_agents(workflow.agents)
    remaining = graph.remaining_path_lengths(weights)
    order = _simulate(workflow, graph, weights, remaining)
    finish_of = {name: finish for name, _, finish in order}
    # May be skipped: a `when:` of its own, or a dependency that may be skipped.
    conditional: set[str] = set()
    for name in graph.topological_order():
        agent = agents[name]
        if agent.when is not None or any(d in conditional for d in agent.dependencies):
            conditional.add(name)
    rows = []
    for name, start, finish in order:
        agent = agents[name]
        llm = agent.llm_config
        fan = agent.max_items if agent.foreach is not None else None
        if agent.is_code_step:
            rows.append(
                AgentPlan(
                    name,
                    agent.module,
                    "code",
                    start,
                    finish,
                    0.0,
                    0.0,
                    0,
                    conditional=name in conditional,
                    max_items=fan,
                    code_step=True,
                )
            )
            continue
        model = llm["model"]
        # An Azure deployment is priced as its model, a Bedrock profile as the model it names.
        priced = llm.get("price_as") or base_model(resolve_provider(llm), model)
        max_tokens = int(llm.get("max_tokens", 1000))
        upstream_tokens = sum(
            int(agents[d].llm_config.get("max_tokens", 1000))
            * (agents[d].max_items or 1 if agents[d].foreach is not None else 1)
            for d in graph.dependencies[name]
        )
        prompt = agent.prompt_template + " " * (4 * upstream_tokens + input_bytes)
        messages = [{"role": "user", "content": prompt}]
        if llm.get("system"):
            messages.insert(0, {"role": "system", "content": llm["system"]})
        # A call may be served by any model of the agent's chain: bounded by the dearest.
        per_call = max(
            tracker.max_cost(
                route.get("price_as") or base_model(resolve_provider(route), route["model"]),
                messages,
                int(route.get("max_tokens", max_tokens)),
                overrides=workflow.prices,
                tools=agent.tools,
                response_schema=agent.output_schema,
            )
            for route in chain_of(llm)
        )
        calls = (agent.max_retries + 1) * ((output_retries + 1) if agent.output_schema else 1)
        calls *= (max_tool_rounds + 1) if agent.tools else 1
        low_tokens = len(agent.prompt_template.encode()) // 4 + upstream_tokens // 4
        low = 0.0 if name in conditional or fan is not None else tracker.calculate_cost(priced, low_tokens, 1)
        # The same least with the system prompt counted, without and with the prompt cache read.
        system = str(llm.get("system") or "")
        stable_chars = len(system) + len(static_prefix(agent.prompt_template))
        stable_chars += len(json.dumps(agent.tools)) if agent.tools else 0
        caps = lookup(priced, resolve_provider(llm), workflow.capabilities)
        stable = estimate_tokens(stable_chars)
        cacheable = (
            caps.prompt_cache != "none"
            and stable >= caps.cache_min_tokens
            and (llm.get("cache") or {}).get("prefix") != "off"
        )
        least_tokens = low_tokens + estimate_tokens(len(system))
        no_hits = all_hits = 0.0
        if name not in conditional and fan is None:
            no_hits = tracker.calculate_cost(priced, least_tokens, 1)
            hit = min(stable, least_tokens) if cacheable else 0
            all_hits = tracker.calculate_cost(priced, least_tokens, 1, cached_input_tokens=hit)
        if llm.get("batch", provider_batch):
            rate = tracker.batch_rate(resolve_provider(llm))
            per_call, low = per_call * rate, low * rate
            no_hits, all_hits = no_hits * rate, all_hits * rate
        calls *= fan or 1
        rows.append(
            AgentPlan(
                name,
                agent.module,
                model,
                start,
                finish,
                low,
                min(agent.cost_limit, per_call * calls),
                calls,
                conditional=name in conditional,
                max_items=fan,
                min_cost_no_hits=no_hits,
                min_cost_all_hits=all_hits,
                cacheable=cacheable,
            )
        )
    from orchestrate.money.judge_plan import judge_rows

    rows += [AgentPlan(**row) for row in judge_rows(workflow, tracker, finish_of, output_retries=output_retries)]
    uncapped = sum(r.max_cost for r in rows)
    graph_seconds = max(finish_of.values(), default=0.0)
    paced = pacing(workflow)
    if paced is not None and paced["seconds"] <= graph_seconds:
        paced = None  # the limits do not make the run longer than its graph
    return Plan(
        workflow=workflow.name,
        agents=rows,
        critical_path=graph.critical_path(weights),
        estimated_seconds=paced["seconds"] if paced is not None else graph_seconds,
        paced_by=paced,
        min_cost=min(sum(r.min_cost for r in rows), workflow.cost_budget),
        max_cost=min(uncapped, workflow.cost_budget),
        budget=workflow.cost_budget,
        budget_binds=uncapped > workflow.cost_budget,
    )


def _simulate(
    workflow: Workflow, graph: DependencyGraph, weights: dict[str, float], remaining: dict[str, float]
) -> list[tuple[str, float, float]]:
    """List-schedule the agents as the engine would: (name, start, finish) in start order."""
    priority = {a.name: a.priority for a in workflow.agents}
    position = {a.name: i for i, a in enumerate(workflow.agents)}
    waiting = {n: len(d) for n, d in graph.dependencies.items()}
    ready = [(-priority[n], -remaining[n], position[n], n) for n, c in waiting.items() if c == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, slots = 0.0, max(1, workflow.max_parallel_agents)
    order: list[tuple[str, float, float]] = []
    while ready or running:
        while ready and len(running) < slots:
            name = heapq.heappop(ready)[3]
            heapq.heappush(running, (now + weights[name], name))
            order.append((name, now, now + weights[name]))
        now, name = heapq.heappop(running)
        for child in graph.dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-priority[child], -remaining[child], position[child], child))
    return order


@dataclass(frozen=True)
class BatchPlan:
    """The cost bounds of a batch: each row planned with its own inputs, streamed."""

    workflow: str
    rows: int
    invalid_rows: int
    min_cost: float
    max_cost: float
    budget: float | None
    budget_binds: bool
    row_min_cost: float  # the cheapest row's least cost
    row_max_cost: float  # the dearest row's most cost
    min_cost_no_hits: float = 0.0  # the least, system prompts counted, no call reading the prompt cache
    min_cost_all_hits: float = 0.0  # the same with every call reading its shared prefix
    cacheable_agents: int = 0
    repeat: int = 1  # tries of each row (--repeat K), counted in min_cost and max_cost

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"repeat": self.repeat} if self.repeat > 1 else {}
        if self.cacheable_agents:
            extra["prompt_cache"] = {
                "cacheable_agents": self.cacheable_agents,
                "min_cost_no_hits": round(self.min_cost_no_hits, 6),
                "min_cost_all_hits": round(self.min_cost_all_hits, 6),
            }
        return extra | {
            "workflow": self.workflow,
            "rows": self.rows,
            "invalid_rows": self.invalid_rows,
            "min_cost": round(self.min_cost, 6),
            "max_cost": round(self.max_cost, 6),
            "budget": self.budget,
            "budget_binds": self.budget_binds,
            "row_min_cost": round(self.row_min_cost, 6),
            "row_max_cost": round(self.row_max_cost, 6),
        }


def plan_batch(
    template: Workflow, rows: Any, tracker: CostTracker, *, budget: float | None, repeat: int = 1
) -> BatchPlan:
    """Least and most a batch over `rows` (Row and BadRow items) can cost, before anything is spent.

    Each valid row is planned like a single run with its own inputs (its
    bounds capped by the workflow's per-row `cost_budget`); the batch's most
    is the sum, capped by the batch `budget`, which the engine never lets the
    batch cross. With `repeat` (``--repeat K``) each row is tried K times: the
    totals count every try (the per-row figures stay those of one try).
    """
    from orchestrate.workflow.dataset import BadRow, instantiate

    count = invalid = cacheable = 0
    low = high = no_hits = all_hits = 0.0
    row_low, row_high = float("inf"), 0.0
    for item in rows:
        if isinstance(item, BadRow):
            invalid += 1
            continue
        size = sum(len(str(v).encode()) for v in item.values.values())
        plan = plan_workflow(instantiate(template, item.values, "plan"), tracker, input_bytes=size)
        count += 1
        low += plan.min_cost * repeat
        high += plan.max_cost * repeat
        none, every = plan.cache_bounds
        no_hits, all_hits, cacheable = no_hits + none * repeat, all_hits + every * repeat, plan.cacheable_agents
        row_low, row_high = min(row_low, plan.min_cost), max(row_high, plan.max_cost)
    binds = budget is not None and high > budget
    return BatchPlan(
        template.name,
        count,
        invalid,
        min(low, budget) if budget is not None else low,
        min(high, budget) if budget is not None else high,
        budget,
        binds,
        row_low if count else 0.0,
        row_high,
        min(no_hits, budget) if budget is not None else no_hits,
        min(all_hits, budget) if budget is not None else all_hits,
        cacheable,
        max(1, repeat),
    )
