"""The core model: agents, their results, and the workflows that hold them.

Field names, defaults and methods follow the API reference. A workflow file is
the `to_dict()` of a `Workflow`, so the keys here are the keys users write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

__all__ = [
    "MODULES",
    "Agent",
    "AgentResult",
    "AgentStatus",
    "Workflow",
    "WorkflowStatus",
]

MODULES = ("HR", "Finance", "Inventory", "Compliance", "General")


class AgentStatus(Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    SKIPPED = "skipped"  # its `when:` was false, or a dependency was skipped
    WAITING_APPROVAL = "waiting_approval"  # its `approval:` has no decision yet
    REJECTED = "rejected"  # its `approval:` was refused

    @property
    def is_terminal(self) -> bool:
        return self not in (
            AgentStatus.PENDING,
            AgentStatus.RUNNING,
            AgentStatus.RATE_LIMITED,
            AgentStatus.WAITING_APPROVAL,
        )

    @property
    def counts_as_success(self) -> bool:
        """Completed, or skipped by a condition: neither fails a workflow."""
        return self in (AgentStatus.COMPLETED, AgentStatus.SKIPPED)


class WorkflowStatus(Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIALLY_COMPLETED = "partially_completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # stopped at an approval nobody has decided yet; resume after `approve`


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass
class AgentResult:
    """What one agent's execution came to.

    `output` holds at least ``{"text": ...}`` and, for an agent with an
    output_schema, the parsed answer under ``"json"``. `metadata` carries the
    model, provider, token breakdown and, for failures, whether the error was
    retriable (``metadata["retriable"]``).
    """

    agent_id: str
    status: AgentStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    tokens_used: int = 0
    cost: float = 0.0
    execution_time: float = 0.0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_count: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def is_success(self) -> bool:
        """True when the agent completed."""
        return self.status is AgentStatus.COMPLETED

    def is_retriable(self) -> bool:
        """True when another attempt could succeed (rate limits, transient provider errors)."""
        if self.status is AgentStatus.RATE_LIMITED:
            return True
        if self.status is AgentStatus.FAILED:
            return bool(self.metadata.get("retriable", False))
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "tokens_used": self.tokens_used,
            "cost": self.cost,
            "execution_time": self.execution_time,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "retry_count": self.retry_count,
            "metadata": self.metadata,
        }


@dataclass
class Agent:
    """One LLM agent of a workflow: its definition, and its state during a run.

    Beyond the reference's fields, an agent may carry an `output_schema` (JSON
    Schema its JSON answer must satisfy) and a `retry` policy
    (``strategy``, ``base_delay``, ``max_delay``, ``exponential_base``, ``jitter``),
    and the workflow language's constructs: `function` and `arguments` (a code
    step: a Python callable instead of a model), `when` (a CEL condition),
    `foreach` and `max_items` (one run per item of a list), `approval`
    (``{"message": ...}``: wait for a person's decision), `tags`, and `expect`
    (checks of its answer, `orchestrate.workflow.expectations`).
    """

    name: str
    module: str
    description: str
    llm_config: dict[str, Any]
    prompt_template: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    max_retries: int = 3
    timeout: float = 300.0
    cost_limit: float = 1.0
    priority: int = 5
    output_schema: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    function: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    when: str | None = None
    foreach: str | None = None
    max_items: int | None = None
    approval: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    expect: list[dict[str, Any]] = field(default_factory=list)
    # Run state, not part of the definition.
    status: AgentStatus = field(default=AgentStatus.PENDING, compare=False)
    result: AgentResult | None = field(default=None, compare=False, repr=False)

    def reset(self) -> None:
        """Put the agent back to pending, forgetting any result."""
        self.status = AgentStatus.PENDING
        self.result = None

    def can_execute(self, completed_agents: set[str]) -> bool:
        """True when every dependency is in `completed_agents` (a set of agent names)."""
        return all(dep in completed_agents for dep in self.dependencies)

    @property
    def is_code_step(self) -> bool:
        """True for an agent that runs a Python function instead of calling a model."""
        return self.function is not None

    def to_dict(self) -> dict[str, Any]:
        """The agent as it is written in a workflow file."""
        data: dict[str, Any] = {
            "name": self.name,
            "module": self.module,
            "description": self.description,
            "llm_config": dict(self.llm_config),
            "prompt_template": self.prompt_template,
            "tools": [dict(t) for t in self.tools],
            "dependencies": list(self.dependencies),
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "cost_limit": self.cost_limit,
            "priority": self.priority,
        }
        if self.output_schema is not None:
            data["output_schema"] = self.output_schema
        if self.retry is not None:
            data["retry"] = dict(self.retry)
        if self.function is not None:
            for key in ("llm_config", "prompt_template", "tools"):
                del data[key]
            data["function"] = self.function
            data["arguments"] = dict(self.arguments)
        for key in ("when", "foreach", "max_items", "approval"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.tags:
            data["tags"] = list(self.tags)
        if self.expect:
            data["expect"] = list(self.expect)
        return data


@dataclass
class Workflow:
    """A set of agents and the dependencies between them.

    Beyond the reference's fields: declared `inputs` (name -> {type, default,
    description}), `defaults` that every agent inherits, `rate_limits`,
    `prices` and `capabilities` (per model family), a shared `budget_scope`, and, at run time, the
    input values supplied, the workflow's id, status, cost and timings.
    """

    name: str
    description: str
    agents: list[Agent]
    max_parallel_agents: int = 10
    cost_budget: float = 100.0
    timeout: float = 3600.0
    allow_partial_completion: bool = True
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    rate_limits: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget_scope: str | None = None
    residency: str | None = None  # "eu", "us": every endpoint the run calls must be in it
    outputs: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    expect: list[dict[str, Any]] = field(default_factory=list)
    data_protection: dict[str, Any] = field(default_factory=dict)  # the policy (workflow's, else defaults')
    audit: dict[str, Any] = field(default_factory=dict)  # retention_days
    # Run state.
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12], compare=False)
    status: WorkflowStatus = field(default=WorkflowStatus.PENDING, compare=False)
    input_values: dict[str, Any] = field(default_factory=dict, compare=False)
    total_cost: float = field(default=0.0, compare=False)
    started_at: datetime | None = field(default=None, compare=False)
    completed_at: datetime | None = field(default=None, compare=False)
    error: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False, repr=False)
    base_dir: str | None = field(default=None, compare=False, repr=False)  # where modules are found first
    output_values: dict[str, Any] = field(default_factory=dict, compare=False)
    evaluation: dict[str, Any] | None = field(default=None, compare=False)  # its expectations, once evaluated
    row: dict[str, Any] | None = field(default=None, compare=False)  # a dataset run's row: every column
    # --repeat K, on a case's first try: {"tries": K, "cost": ..., "tokens": ...} of its later tries' agents
    repeats: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    protector: Any = field(default=None, compare=False, repr=False)  # the run's data protection and vault

    def __post_init__(self) -> None:
        self._by_name = {agent.name: i for i, agent in enumerate(self.agents)}

    def get_agent_by_name(self, name: str) -> Agent | None:
        """The agent called `name`, or None."""
        # Its place in the list, checked: the list may have been edited since. (Not `agent in
        # self.agents`, which compared whole dataclasses field by field with each agent before it.)
        agents = self.agents
        i = self._by_name.get(name)
        if i is None or i >= len(agents) or agents[i].name != name:
            self._by_name = {a.name: i for i, a in enumerate(agents)}
            i = self._by_name.get(name)
            if i is None:
                return None
        return agents[i]

    def completed_agent_names(self) -> set[str]:
        return {a.name for a in self.agents if a.status is AgentStatus.COMPLETED}

    def get_ready_agents(self) -> list[Agent]:
        """Pending agents whose dependencies have all completed, highest priority first."""
        done = self.completed_agent_names()
        ready = [a for a in self.agents if a.status is AgentStatus.PENDING and a.can_execute(done)]
        return sorted(ready, key=lambda a: -a.priority)

    @property
    def results(self) -> dict[str, AgentResult]:
        """Results so far, by agent name."""
        return {a.name: a.result for a in self.agents if a.result is not None}

    @property
    def total_tokens(self) -> int:
        own = sum(a.result.tokens_used for a in self.agents if a.result is not None)
        return own + int(self.repeats["tokens"]) if self.repeats else own

    def get_statistics(self) -> dict[str, Any]:
        """Counts by status, progress, cost, tokens and timing of the run so far."""
        by_status = {status.value: 0 for status in AgentStatus}
        for agent in self.agents:
            by_status[agent.status.value] += 1
        total = len(self.agents)
        finished = sum(1 for a in self.agents if a.status.is_terminal)
        duration = None
        if self.started_at is not None:
            end = self.completed_at or datetime.now(self.started_at.tzinfo)
            duration = (end - self.started_at).total_seconds()
        return {
            "workflow_id": self.id,
            "name": self.name,
            "status": self.status.value,
            "total_agents": total,
            "agents_by_status": by_status,
            "completed_agents": by_status[AgentStatus.COMPLETED.value],
            "failed_agents": by_status[AgentStatus.FAILED.value],
            "progress": (finished / total) if total else 1.0,
            "total_cost": self.total_cost,
            "cost_budget": self.cost_budget,
            "total_tokens": self.total_tokens,
            "retries": sum(a.result.retry_count for a in self.agents if a.result is not None),
            "duration_seconds": duration,
        }

    def reset(self) -> None:
        """Put the workflow and all its agents back to pending."""
        for agent in self.agents:
            agent.reset()
        self.status = WorkflowStatus.PENDING
        self.total_cost = 0.0
        self.started_at = self.completed_at = None
        self.error = None
        self.output_values = {}
        self.evaluation = None

    def to_dict(self) -> dict[str, Any]:
        """The workflow as it is written in a workflow file."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "max_parallel_agents": self.max_parallel_agents,
            "cost_budget": self.cost_budget,
            "timeout": self.timeout,
            "allow_partial_completion": self.allow_partial_completion,
        }
        if self.budget_scope:
            data["budget_scope"] = self.budget_scope
        for key in (
            "inputs",
            "defaults",
            "rate_limits",
            "prices",
            "capabilities",
            "outputs",
            "tags",
            "expect",
            "data_protection",
            "audit",
        ):
            value = getattr(self, key)
            if value:
                data[key] = value
        data["agents"] = [agent.to_dict() for agent in self.agents]
        return data
