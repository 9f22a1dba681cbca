"""Retry policies and failure decisions."""

from __future__ import annotations

import random

import pytest

from orchestrate import Agent, AgentResult, AgentStatus, FailureHandler, RetryPolicy, RetryStrategy


def test_reference_defaults() -> None:
    policy = RetryPolicy()
    assert (
        policy.max_retries,
        policy.strategy,
        policy.base_delay,
        policy.max_delay,
        policy.exponential_base,
        policy.jitter,
    ) == (3, RetryStrategy.EXPONENTIAL_BACKOFF, 1.0, 60.0, 2.0, True)


def test_reference_example_policy() -> None:
    policy = RetryPolicy(
        max_retries=5, strategy=RetryStrategy.EXPONENTIAL_BACKOFF, base_delay=2.0, max_delay=120.0, jitter=True
    )
    assert policy.max_retries == 5 and policy.max_delay == 120.0


@pytest.mark.parametrize(
    ("strategy", "delays"),
    [
        (RetryStrategy.EXPONENTIAL_BACKOFF, [2.0, 6.0, 18.0, 30.0]),
        (RetryStrategy.LINEAR_BACKOFF, [2.0, 4.0, 6.0, 8.0]),
        (RetryStrategy.CONSTANT_DELAY, [2.0, 2.0, 2.0, 2.0]),
        (RetryStrategy.IMMEDIATE, [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_each_strategy_delay_sequence(strategy: RetryStrategy, delays: list[float]) -> None:
    policy = RetryPolicy(strategy=strategy, base_delay=2.0, exponential_base=3.0, max_delay=30.0, jitter=False)
    assert [policy.get_delay(n) for n in range(1, 5)] == delays


def test_jitter_stays_between_half_and_full_delay() -> None:
    policy = RetryPolicy(base_delay=4.0, jitter=True)
    rng = random.Random(3)
    draws = [policy.get_delay(1, rng=rng) for _ in range(200)]
    assert all(2.0 <= d < 4.0 for d in draws)
    assert len(set(draws)) > 100


def test_retry_after_is_a_floor_above_the_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=True)
    assert policy.get_delay(1, retry_after=90.0) == 90.0


def test_strategy_may_be_given_by_name() -> None:
    policy = RetryPolicy.from_dict({"strategy": "linear_backoff", "base_delay": 3})
    assert policy.strategy is RetryStrategy.LINEAR_BACKOFF and policy.get_delay(2) < 6.0 + 1e-9


def _agent(max_retries: int = 3) -> Agent:
    return Agent(
        name="a",
        module="HR",
        description="",
        llm_config={"model": "gpt-4o"},
        prompt_template="x",
        max_retries=max_retries,
    )


def test_handle_failure_retries_only_retriable_results_within_max_retries() -> None:
    calls: list[str] = []
    handler = FailureHandler(on_failure=lambda agent, result: calls.append(agent.name))
    retriable = AgentResult("a", AgentStatus.FAILED, retry_count=1, metadata={"retriable": True})
    fatal = AgentResult("a", AgentStatus.FAILED, metadata={"retriable": False})
    exhausted = AgentResult("a", AgentStatus.FAILED, retry_count=3, metadata={"retriable": True})
    assert handler.handle_failure(_agent(), retriable) is True
    assert handler.handle_failure(_agent(), fatal) is False
    assert handler.handle_failure(_agent(), exhausted) is False
    assert calls == ["a", "a", "a"]


def test_rate_limited_results_are_retriable() -> None:
    assert AgentResult("a", AgentStatus.RATE_LIMITED).is_retriable()
    assert not AgentResult("a", AgentStatus.COMPLETED).is_retriable()


def test_should_fail_workflow() -> None:
    handler = FailureHandler()
    assert handler.should_fail_workflow([], 3, True) is False
    assert handler.should_fail_workflow(["x"], 3, False) is True
    assert handler.should_fail_workflow(["x"], 3, True) is False
    assert handler.should_fail_workflow(["x", "y", "z"], 3, True) is True
    assert handler.should_fail_workflow(["x"], 3, allow_partial_completion=False) is True
