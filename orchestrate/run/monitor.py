"""The Monitor: counters, summaries and recent events of everything an engine runs.

The Monitor is a sink: the engine hands it every `Event`, and it keeps O(1)
counters per event (the engine's overhead budget is 50 us an agent) and a
bounded deque of recent events. Metric snapshots are taken lazily, when an
event arrives and `metrics_interval` has passed since the last one: there is
no background thread or timer to stop. Events are also logged to the
``orchestrate`` logger (at DEBUG, failures at WARNING) when `enable_logging`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrate.run.events import Event, EventType
from orchestrate.run.waits import WaitClock

__all__ = ["Monitor", "MonitorConfig"]

logger = logging.getLogger("orchestrate")
logger.addHandler(logging.NullHandler())  # a library stays silent unless the application configures logging
_DEBUG = logging.DEBUG
# What `logger.isEnabledFor(level)` answered, as logging keeps it (emptied, never replaced, whenever
# a level changes): an event read False there without the method's call, and asks it otherwise.
_ENABLED: dict[int, bool] = getattr(logger, "_cache", {})

_KIND = {t: t.value for t in EventType}  # EventType.value goes through a slow descriptor

# Progress detail the Monitor neither counts nor keeps: a fan-out's items (so that, with no
# display listening, the engine does not even build them).
_DETAIL = frozenset({EventType.ITEMS_STARTED, EventType.ITEM_FINISHED})

# Ends whose failure is logged as a warning.
_ENDS = frozenset({"agent_finished", "workflow_finished", "row_finished"})
_FAILED = frozenset({"failed", "budget_exceeded", "rejected"})

_COUNTERS = (
    "workflows_started",
    "workflows_completed",
    "workflows_partially_completed",
    "workflows_failed",
    "workflows_cancelled",
    "agents_started",
    "agents_completed",
    "agents_failed",
    "agents_cancelled",
    "agents_budget_exceeded",
    "agents_retried",
    "agents_rate_limited",
    "budget_refusals",
    "llm_calls",
    "cached_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
)

# The counter an end's status moves ("completed" -> "agents_completed"), made once rather than an f-string an event.
_AGENT_COUNTER = {name.removeprefix("agents_"): name for name in _COUNTERS if name.startswith("agents_")}
_WORKFLOW_COUNTER = {name.removeprefix("workflows_"): name for name in _COUNTERS if name.startswith("workflows_")}


@dataclass
class MonitorConfig:
    """Monitoring configuration.

    Attributes:
        enable_metrics: Keep counters and snapshots.
        enable_logging: Keep recent events and log them to the ``orchestrate`` logger.
        metrics_interval: Seconds between metric snapshots.
        max_events: How many recent events are kept (each keeps its data alive: at
            thousands of events a second, a longer memory costs the engine time).
        max_snapshots: How many snapshots are kept.
    """

    enable_metrics: bool = True
    enable_logging: bool = True
    metrics_interval: float = 60.0
    max_events: int = 1_000
    max_snapshots: int = 1_440


class Monitor:
    """Collects metrics from events; a sink of the engine.

    Args:
        config: What to collect.
        clock: Wall-clock seconds, injectable for tests.
    """

    def __init__(self, config: MonitorConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or MonitorConfig()
        self.clock = clock
        self.started = clock()
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.total_cost = 0.0
        self.waits = WaitClock()  # ten calls waiting 6 s side by side: 6 s lost, 60 call-seconds
        self.agent_time = 0.0
        self.agents_finished = 0
        self.workflow_time = 0.0
        self.events: deque[tuple[float, str, str | None, str | None, dict[str, Any]]] = deque(
            maxlen=max(1, self.config.max_events)
        )
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=max(1, self.config.max_snapshots))
        self._next_snapshot = self.started + self.config.metrics_interval
        self._counts: dict[str, Callable[[dict[str, Any]], None]] = {
            "agent_finished": self._agent_finished,
            "llm_call": self._llm_call,
            "agent_started": self._agent_started,
            "agent_rate_limited": self._agent_rate_limited,
            "workflow_finished": self._workflow_finished,
            "agent_retrying": self._counter("agents_retried"),
            "agent_budget_refused": self._counter("budget_refusals"),
            "tool_call": self._counter("tool_calls"),
            "workflow_started": self._counter("workflows_started"),
        }

    @property
    def event_types(self) -> frozenset[EventType] | None:
        """The events the engine need hand over (see `OrchestrationEngine.add_sink`): all of
        them but progress detail (a fan-out's items) while recent events are kept, else only
        those that move a counter."""
        if self.config.enable_logging:
            return frozenset(EventType) - _DETAIL
        return frozenset(t for t in EventType if _KIND[t] in self._counts)

    def __call__(self, event: Event) -> None:
        # `_record`, inlined: a sink runs three times per agent, and a call is a good part of it.
        # The three kinds every agent sends are counted here, not through their handler's call:
        # the same sums as `_agent_started`, `_llm_call` and `_agent_finished` (which `record_event`
        # uses), with int() and float() skipped for values of that type already (int(1) is 1).
        kind = event.type._value_  # not `.value` (a descriptor) nor a dict keyed by the enum (its hash is Python code)
        data = event.data
        config = self.config
        stamp = event.timestamp
        if config.enable_metrics:
            if kind == "llm_call":
                c = self.counters
                c["llm_calls"] += 1
                if data.get("cached"):
                    c["cached_calls"] += 1
                tokens_in = data.get("input_tokens") or 0
                if type(tokens_in) is not int:
                    tokens_in = int(tokens_in)
                tokens_out = data.get("output_tokens") or 0
                if type(tokens_out) is not int:
                    tokens_out = int(tokens_out)
                c["input_tokens"] += tokens_in
                c["output_tokens"] += tokens_out
                c["total_tokens"] += tokens_in + tokens_out
                cost = data.get("cost") or 0.0
                self.total_cost += cost if type(cost) is float else float(cost)
            elif kind == "agent_finished":
                status = data.get("status", "")
                key = _AGENT_COUNTER.get(status) if type(status) is str or isinstance(status, str) else None
                if key is not None:
                    self.counters[key] += 1
                self.agents_finished += 1
                seconds = data.get("execution_time") or 0.0
                self.agent_time += seconds if type(seconds) is float else float(seconds)
            elif kind == "agent_started":
                attempt = data.get("attempt") or 1
                if (attempt if type(attempt) is int else int(attempt)) == 1:
                    self.counters["agents_started"] += 1
            else:
                count = self._counts.get(kind)
                if count is not None:
                    count(data)
            if stamp >= self._next_snapshot:
                self.snapshots.append({"timestamp": stamp, **self.get_metrics()})
                self._next_snapshot = stamp + config.metrics_interval
        if config.enable_logging:
            self.events.append((stamp, kind, event.agent, event.workflow_id, data))
            if kind in _ENDS and data.get("status") in _FAILED:
                logger.warning("%s workflow=%s agent=%s %s", kind, event.workflow_id, event.agent, data)
            elif _ENABLED.get(_DEBUG) is not False and logger.isEnabledFor(_DEBUG):
                logger.debug("%s workflow=%s agent=%s %s", kind, event.workflow_id, event.agent, data)

    def record_event(
        self,
        event_type: str | EventType,
        agent_id: str | None = None,
        workflow_id: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        timestamp: float | None = None,
    ) -> None:
        """Record one event: update the counters, keep it among the recent events, log it."""
        kind = event_type.value if isinstance(event_type, EventType) else str(event_type)
        self._record(kind, agent_id, workflow_id, data or {}, timestamp if timestamp is not None else self.clock())

    def _record(
        self, kind: str, agent_id: str | None, workflow_id: str | None, data: dict[str, Any], now: float
    ) -> None:
        config = self.config
        if config.enable_metrics:
            count = self._counts.get(kind)
            if count is not None:
                count(data)
            if now >= self._next_snapshot:
                self.snapshots.append({"timestamp": now, **self.get_metrics()})
                self._next_snapshot = now + self.config.metrics_interval
        if config.enable_logging:
            # A tuple, made into a dict only when read: this runs three times per agent.
            self.events.append((now, kind, agent_id, workflow_id, data))
            # A failed end is a warning; anything else is logged at DEBUG, when that is on.
            if kind in _ENDS and data.get("status") in _FAILED:
                logger.warning("%s workflow=%s agent=%s %s", kind, workflow_id, agent_id, data)
            elif logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s workflow=%s agent=%s %s", kind, workflow_id, agent_id, data)

    # -- counting, one method per kind of event (a dict lookup, not a chain of comparisons) ------

    def _agent_finished(self, data: dict[str, Any]) -> None:
        status = data.get("status", "")
        key = _AGENT_COUNTER.get(status) if isinstance(status, str) else None
        if key is not None:
            self.counters[key] += 1
        self.agents_finished += 1
        self.agent_time += float(data.get("execution_time") or 0.0)

    def _llm_call(self, data: dict[str, Any]) -> None:
        c = self.counters
        c["llm_calls"] += 1
        if data.get("cached"):
            c["cached_calls"] += 1
        tokens_in, tokens_out = int(data.get("input_tokens") or 0), int(data.get("output_tokens") or 0)
        c["input_tokens"] += tokens_in
        c["output_tokens"] += tokens_out
        c["total_tokens"] += tokens_in + tokens_out
        self.total_cost += float(data.get("cost") or 0.0)

    def _agent_started(self, data: dict[str, Any]) -> None:
        if int(data.get("attempt") or 1) == 1:
            self.counters["agents_started"] += 1

    def _agent_rate_limited(self, data: dict[str, Any]) -> None:
        self.counters["agents_rate_limited"] += 1
        # sinks run as the event is emitted: the clock is its end, read only for these rare events
        self.waits.add(self.clock(), float(data.get("waited") or 0.0))

    def _workflow_finished(self, data: dict[str, Any]) -> None:
        status = data.get("status", "")
        key = _WORKFLOW_COUNTER.get(status) if isinstance(status, str) else None
        if key is not None:
            self.counters[key] += 1
        self.workflow_time += float(data.get("duration") or 0.0)

    def _counter(self, name: str) -> Callable[[dict[str, Any]], None]:
        def count(_data: dict[str, Any]) -> None:
            self.counters[name] += 1

        return count

    def get_metrics(self) -> dict[str, Any]:
        """The current counters, total cost, uptime and time spent waiting on rate limits."""
        return {
            "uptime_seconds": self.clock() - self.started,
            **self.counters,
            "total_cost": round(self.total_cost, 10),
            "rate_limited_seconds": self.waits.call_seconds,
            "rate_limited_wall_seconds": self.waits.seconds,
        }

    def get_summary(self) -> dict[str, Any]:
        """Workflows, agents, calls and costs, with success rates (in percent) and averages."""
        c = self.counters
        wf_done = (
            c["workflows_completed"]
            + c["workflows_partially_completed"]
            + c["workflows_failed"]
            + c["workflows_cancelled"]
        )
        return {
            "uptime_seconds": self.clock() - self.started,
            "workflows": {
                "started": c["workflows_started"],
                "completed": c["workflows_completed"],
                "partially_completed": c["workflows_partially_completed"],
                "failed": c["workflows_failed"],
                "cancelled": c["workflows_cancelled"],
                "success_rate": 100.0 * c["workflows_completed"] / wf_done if wf_done else 0.0,
                "avg_duration": self.workflow_time / wf_done if wf_done else 0.0,
            },
            "agents": {
                "started": c["agents_started"],
                "completed": c["agents_completed"],
                "failed": c["agents_failed"],
                "cancelled": c["agents_cancelled"],
                "budget_exceeded": c["agents_budget_exceeded"],
                "retries": c["agents_retried"],
                "success_rate": 100.0 * c["agents_completed"] / self.agents_finished if self.agents_finished else 0.0,
                "avg_execution_time": self.agent_time / self.agents_finished if self.agents_finished else 0.0,
            },
            "llm": {
                "calls": c["llm_calls"],
                "cached_calls": c["cached_calls"],
                "tool_calls": c["tool_calls"],
                "input_tokens": c["input_tokens"],
                "output_tokens": c["output_tokens"],
                "total_tokens": c["total_tokens"],
            },
            "costs": {"total_cost": round(self.total_cost, 10)},
            "rate_limiting": {
                "rate_limited": c["agents_rate_limited"],
                "waited_seconds": self.waits.call_seconds,
                "waited_wall_seconds": self.waits.seconds,
                "budget_refusals": c["budget_refusals"],
            },
        }

    def get_recent_events(self, count: int = 100, event_type: str | EventType | None = None) -> list[dict[str, Any]]:
        """The last `count` events, oldest first, optionally of one type only."""
        if count <= 0:
            return []
        kind = event_type.value if isinstance(event_type, EventType) else event_type
        rows = list(self.events) if kind is None else [e for e in self.events if e[1] == kind]
        return [
            {"timestamp": t, "event_type": k, "agent_id": a, "workflow_id": w, "data": d}
            for t, k, a, w, d in rows[-count:]
        ]
