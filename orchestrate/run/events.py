"""Typed events the engine emits, and the one signature every sink has.

A sink is any callable taking an `Event`. The Monitor, the live table, the
plain CI log, the events.jsonl writer and the report builder are all sinks.
Sinks run inline on the event loop: they must be quick and must not raise
(the engine drops a sink's exception rather than lose a run to it).

Data carried by each type (all keys always present):

- ``workflow_started``: name, cost_budget, max_parallel_agents, agents
  (a list of {name, module, model, provider, dependencies, priority})
- ``agent_started``: attempt (1-based), model, provider, module
- ``agent_rate_limited``: waited (seconds spent in the rate limiter), provider; after a
  ``rate_limit_waiting`` also its limit, text and queued (the calls still waiting on that limit)
- ``rate_limit_waiting`` (only when a sink reads it): a call cannot start yet; provider, limit
  (the key whose limiter holds it), tier, rate (``60/min``), source (``rate_limits.openai`` or
  ``the default``), queued (calls waiting on it, this one included), text (``openai 60/min
  (rate_limits.openai)``)
- ``agent_retrying``: attempt (the one that failed), delay, error, error_type
  (the exception's class name), status_code (the provider's HTTP status or None)
- ``llm_call``: model, provider, input_tokens, cached_input_tokens,
  cache_creation_input_tokens, output_tokens, reasoning_tokens, cost, cached
  (answered from cache), duration (seconds in the provider call), finish_reason,
  response_model, request_id, max_tokens, temperature, tool_calls (how many asked for),
  batch_id (the provider batch that answered, or None)
  usage_anomaly (None, or why the provider's usage was not taken at its word)
- ``usage_anomaly``: model, provider, anomaly, booked (what the call was booked
  at), reserved (its worst case), spent (the workflow's spend after it), budget
- ``tool_call``: tool, error (None when it succeeded), call_id, duration
- ``agent_budget_refused``: scope ("workflow" or "agent"), limit, requested, committed
- ``agent_finished``: status, error, tokens_used, cost, execution_time,
  retry_count, model, provider, module, output, fingerprint, error_type, status_code
  (the provider's HTTP status of a failed last call; absent otherwise)
- ``expectations_checked``: owner (the agent, or ``outputs`` for the workflow's own; the
  event's agent is None then), passed, failed, errors, skipped, total, outcomes (each one
  that did not pass: name, kind, status, expected, got, reason, score when judged). Told as
  each agent with `expect:` finishes (after its judges answered) and, for the workflow's,
  as the run ends (see `orchestrate.run.live_scoring`)
- ``workflow_finished``: status, total_cost, total_tokens, duration
- ``items_started`` (a `foreach` agent, only when a sink reads it): total (items in its list)
- ``item_finished`` (each item of it, reused ones too): index, status, error, done (items
  finished so far), failed (of those, the ones that did not complete), total, retrying (items
  in flight now, waiting to try again)
- ``row_started`` (a dataset batch; workflow_id is the row's run): key, row (its line)
- ``row_finished``: key, row, status, cost, tokens, seconds, error
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["Event", "EventType", "Sink", "batch_events", "new_event", "try_id", "try_of"]


class EventType(str, Enum):
    WORKFLOW_STARTED = "workflow_started"
    AGENT_STARTED = "agent_started"
    AGENT_RATE_LIMITED = "agent_rate_limited"
    RATE_LIMIT_WAITING = "rate_limit_waiting"  # a call waits on a limit: which, and how many wait
    AGENT_RETRYING = "agent_retrying"
    AGENT_FALLBACK = "agent_fallback"  # a call moved to the agent's next model: from, to, reason
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    AGENT_BUDGET_REFUSED = "agent_budget_refused"
    USAGE_ANOMALY = "usage_anomaly"
    AGENT_FINISHED = "agent_finished"
    EXPECTATIONS_CHECKED = "expectations_checked"  # an agent's (or the workflow's) expectations scored
    ITEMS_STARTED = "items_started"  # a foreach agent's fan-out began (sent only if a sink reads it)
    ITEM_FINISHED = "item_finished"  # one of its items ended: counts so far
    APPROVAL_REQUESTED = "approval_requested"  # an agent waits for a person's decision
    APPROVAL_DECIDED = "approval_decided"  # approved or rejected: who, when, note
    WORKFLOW_FINISHED = "workflow_finished"
    BATCH_SUBMITTED = "batch_submitted"  # a provider accepted a batch (id, file id, custom ids)
    BATCH_STATUS = "batch_status"  # a poll saw its status or counts change
    BATCH_FINISHED = "batch_finished"  # its results were read and handed to the agents
    ROW_STARTED = "row_started"
    ROW_FINISHED = "row_finished"


@dataclass(slots=True)
class Event:
    """Something that happened in a run, stamped with wall-clock time (epoch seconds).

    Treat it as read-only: every sink sees the same object. (Not `frozen`, which
    would make each one three times dearer to build; the engine builds three an agent.)
    """

    type: EventType
    workflow_id: str | None = None
    agent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    workflow_name: str | None = None
    content: dict[str, Any] | None = None
    """In-process only, never written to events.jsonl: the rendered prompt and system prompt
    (``agent_started``, first attempt), the messages a call sent and the answer it got
    (``llm_call``), a tool's arguments and result (``tool_call``). Sinks that
    record content on request (OpenTelemetry with ``--otel-content``) read it at once;
    the objects are the run's own and may change after the event."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "type": self.type.value,
            "workflow_id": self.workflow_id,
            "workflow": self.workflow_name,
            "agent": self.agent,
            "data": self.data,
        }


Sink = Callable[[Event], None]


def new_event(
    kind: EventType,
    workflow_id: str | None,
    agent: str | None,
    data: dict[str, Any],
    workflow_name: str | None,
    content: dict[str, Any] | None = None,
) -> Event:
    """``Event(kind, workflow_id, agent, data, workflow_name=..., content=...)``, stamped now, made
    without the dataclass's Python ``__init__``: in 3.11 a class's call with one costs ~1 us, its
    fields set one by one ~0.55 us, and the engine builds three events an agent (a test holds this
    to Event's own fields)."""
    event = _new(Event)
    event.type = kind
    event.workflow_id = workflow_id
    event.agent = agent
    event.data = data
    event.timestamp = _time()
    event.workflow_name = workflow_name
    event.content = content
    return event


_time = time.time
_new = object.__new__  # bound once: `object.__new__` is two lookups an event (~200 instructions)


def batch_events(emit: Sink) -> Callable[[str, str | None, dict[str, Any], str | None], None]:
    """What a provider batch hub reports, as the run's events (``hub.emit = batch_events(engine.emit)``)."""

    def forward(kind: str, workflow_id: str | None, data: dict[str, Any], workflow_name: str | None) -> None:
        emit(Event(EventType(kind), workflow_id, None, data, workflow_name=workflow_name))

    return forward


def try_id(run_id: str, n: int) -> str:
    """The run id of try `n` (2 and up) of a case run as `run_id` (``--repeat K``): ``RUN.n``."""
    return f"{run_id}.{n}"


def try_of(run_id: str | None) -> int:
    """The try a run id is (``--repeat K``): n for ``RUN.n`` (see `try_id`), else 1 (the first)."""
    if run_id is None:
        return 1
    _base, dot, tail = run_id.rpartition(".")
    return int(tail) if dot and tail.isdigit() else 1
