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
