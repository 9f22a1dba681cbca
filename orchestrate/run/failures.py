"""Retry policies and the decisions taken when an agent fails.

Delays are computed here and waited through an injected `sleep`, so tests can
check every strategy without waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from orchestrate.workflow.models import Agent, AgentResult

__all__ = ["FailureHandler", "RetryPolicy", "RetryStrategy"]


class RetryStrategy(Enum):
    EXPONENTIAL_BACKOFF = "exponential_backoff"
    LINEAR_BACKOFF = "linear_backoff"
    CONSTANT_DELAY = "constant_delay"
    IMMEDIATE = "immediate"


@dataclass
class RetryPolicy:
    """How long to wait between attempts.

    The n-th retry (n from 1) waits, before jitter and the `max_delay` cap:
    exponential ``base_delay * exponential_base ** (n - 1)``, linear
    ``base_delay * n``, constant ``base_delay``, immediate 0. Jitter scales
    the delay by a random factor in [0.5, 1.0) so that callers refused
    together do not come back together. A provider's retry-after is a floor
    that neither the cap nor jitter lowers.
    """

    max_retries: int = 3
    strategy: RetryStrategy = RetryStrategy.EXPONENTIAL_BACKOFF
    base_delay: float = 1.0
    max_delay: float = 60.0
    exponential_base: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str):
            self.strategy = RetryStrategy(self.strategy)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any] | None, *, base: RetryPolicy | None = None, max_retries: int | None = None
    ) -> RetryPolicy:
        """A policy from a workflow's `retry` mapping, missing keys taken from `base`."""
        values = {f.name: getattr(base, f.name) for f in fields(cls)} if base else {}
        values.update(data or {})
        if max_retries is not None:
            values["max_retries"] = max_retries
        return cls(**values)

    def get_delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        attempt = max(1, attempt)
        if self.strategy is RetryStrategy.EXPONENTIAL_BACKOFF:
            delay = self.base_delay * self.exponential_base ** (attempt - 1)
        elif self.strategy is RetryStrategy.LINEAR_BACKOFF:
            delay = self.base_delay * attempt
        elif self.strategy is RetryStrategy.CONSTANT_DELAY:
            delay = self.base_delay
        else:
            delay = 0.0
        delay = min(delay, self.max_delay)
        if self.jitter and delay > 0:
            delay *= 0.5 + 0.5 * (rng or random).random()
        if retry_after is not None and retry_after > delay:
            delay = float(retry_after)
        return max(0.0, delay)


FailureCallback = Callable[[Agent, AgentResult], Any]


class FailureHandler:
    """Decides whether a failed agent is retried and whether its workflow fails.

    Args:
        default_policy: Used when an agent has no policy of its own.
        on_failure: Called with (agent, result) on every failure, retried or not;
            a coroutine function is scheduled on the running loop.
        sleep: Waits between attempts; tests pass a fake.
        rng: Source of jitter.
    """

    def __init__(
        self,
        default_policy: RetryPolicy | None = None,
        on_failure: FailureCallback | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.default_policy = default_policy or RetryPolicy()
        self.on_failure = on_failure
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.failures = 0
        self.retries = 0
        self._callback_tasks: set[asyncio.Task[Any]] = set()

    def handle_failure(self, agent: Agent, result: AgentResult, policy: RetryPolicy | None = None) -> bool:
        """Record a failure; True when the agent should be tried again.

        Only retriable results are retried, and only while `result.retry_count`
        is below the agent's `max_retries`.
        """
        self.failures += 1
        self._notify(agent, result)
        limit = agent.max_retries if agent.max_retries is not None else (policy or self.default_policy).max_retries
        retry = result.is_retriable() and result.retry_count < limit
        if retry:
            self.retries += 1
        return retry

    def get_delay(self, policy: RetryPolicy | None, attempt: int, retry_after: float | None = None) -> float:
        return (policy or self.default_policy).get_delay(attempt, retry_after, self.rng)

    async def wait(self, delay: float) -> None:
        if delay > 0:
            await self.sleep(delay)

    def should_fail_workflow(
        self,
        failed_agents: Sequence[Any],
        total_agents: int,
        allow_partial: bool = True,
        *,
        allow_partial_completion: bool | None = None,
    ) -> bool:
        """True when the workflow as a whole has failed.

        Any failure fails a workflow that does not allow partial completion;
        otherwise it fails only when no agent succeeded.
        """
        if allow_partial_completion is not None:
            allow_partial = allow_partial_completion
        if not failed_agents:
            return False
        if not allow_partial:
            return True
        return len(failed_agents) >= total_agents

    def _notify(self, agent: Agent, result: AgentResult) -> None:
        if self.on_failure is None:
            return
        outcome = self.on_failure(agent, result)
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
