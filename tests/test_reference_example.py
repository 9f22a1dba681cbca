"""The API reference's Complete Example, with our import path and a simulated client."""

from __future__ import annotations

import asyncio

import pytest


def test_complete_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrate import (
        Agent,
        CostConfig,
        EngineConfig,
        MonitorConfig,
        OrchestrationEngine,
        RateLimitConfig,
        RetryPolicy,
        SimulatedClient,
        Workflow,
    )

    async def main() -> None:
        # Initialize client
        llm_client = SimulatedClient()

        # Configure engine
        config = EngineConfig(
            rate_limit_config=RateLimitConfig(requests_per_minute=60),
            cost_config=CostConfig(),
            monitor_config=MonitorConfig(),
            default_retry_policy=RetryPolicy(max_retries=3),
        )

        # Create engine
        engine = OrchestrationEngine(llm_client, config)

        # Define workflow
        agent = Agent(
            name="analyzer",
            module="Finance",
            description="Analyze data",
            llm_config={"model": "gpt-4"},
            prompt_template="Analyze...",
        )

        workflow = Workflow(
            name="analysis",
            description="Data analysis",
            agents=[agent],
            cost_budget=5.0,
        )

        # Execute
        wf_id = await engine.register_workflow(workflow)
        result = await engine.execute_workflow(wf_id)

        # Get results
        print(f"Status: {result.status.value}")
        print(f"Cost: ${result.total_cost:.4f}")

        # Get system status
        status = engine.get_system_status()
        print(f"Total calls: {status['rate_limiting']['total_requests']}")

    asyncio.run(main())
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Status: completed"
    assert out[1].startswith("Cost: $") and float(out[1][7:]) > 0
    assert out[2] == "Total calls: 1"


def test_engine_config_example_and_defaults() -> None:
    from orchestrate import CostConfig, EngineConfig, MonitorConfig, RateLimitConfig, RetryPolicy

    config = EngineConfig(
        rate_limit_config=RateLimitConfig(requests_per_minute=60, concurrent_requests=10),
        cost_config=CostConfig(),
        monitor_config=MonitorConfig(),
        default_retry_policy=RetryPolicy(max_retries=3),
        max_concurrent_workflows=50,
    )
    assert config.rate_limit_config.concurrent_requests == 10
    assert EngineConfig().max_concurrent_workflows == 50


def test_every_default_the_reference_states() -> None:
    from orchestrate import EngineConfig, MonitorConfig, RateLimitConfig, RetryPolicy, RetryStrategy

    limits = RateLimitConfig()
    assert (
        limits.requests_per_minute,
        limits.requests_per_hour,
        limits.requests_per_day,
        limits.tokens_per_minute,
        limits.concurrent_requests,
    ) == (60, 3000, 50000, 100000, 10)
    monitor = MonitorConfig()
    assert (monitor.enable_metrics, monitor.enable_logging, monitor.metrics_interval) == (True, True, 60.0)
    policy = RetryPolicy()
    assert (
        policy.max_retries,
        policy.strategy,
        policy.base_delay,
        policy.max_delay,
        policy.exponential_base,
        policy.jitter,
    ) == (3, RetryStrategy.EXPONENTIAL_BACKOFF, 1.0, 60.0, 2.0, True)
    assert EngineConfig().max_concurrent_workflows == 50


def test_rate_limiter_and_cost_config_examples_run_as_written() -> None:
    from orchestrate import CostConfig, CostTracker, RateLimitConfig, RateLimiter

    async def limiter_example() -> None:
        rate_limiter = RateLimiter(RateLimitConfig())
        await rate_limiter.acquire(estimated_tokens=1500, timeout=30.0)
        try:
            pass  # the reference's "Make API call"
        finally:
            rate_limiter.release()
        assert rate_limiter.get_statistics()["total_requests"] == 1

    asyncio.run(limiter_example())
    config = CostConfig(
        model_costs={
            "gpt-4": {"input": 0.03, "output": 0.06},
            "gpt-3.5-turbo": {"input": 0.0005, "output": 0.0015},
        }
    )
    cost_tracker = CostTracker(config)
    cost = cost_tracker.calculate_cost("gpt-4", 1000, 500)
    assert f"Estimated cost: ${cost:.4f}" == "Estimated cost: $0.0600"
    recorded = cost_tracker.record_cost("wf:a", "a", "wf", "gpt-3.5-turbo", 1000, 500, {"note": "x"})
    assert recorded == pytest.approx(0.00125) and cost_tracker.check_workflow_budget("wf")
    assert cost_tracker.check_agent_budget("wf:a")
    assert cost_tracker.get_statistics()["total_cost"] == pytest.approx(0.00125)
