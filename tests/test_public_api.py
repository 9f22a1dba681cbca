"""The public API is exactly what `orchestrate.__all__` names, and every name imports."""

from __future__ import annotations

import subprocess
import sys

import orchestrate

REFERENCE_NAMES = {
    "Agent",
    "AgentResult",
    "AgentStatus",
    "AnthropicClient",
    "CostConfig",
    "CostTracker",
    "EngineConfig",
    "FailureHandler",
    "LLMClient",
    "LLMResponse",
    "Monitor",
    "MonitorConfig",
    "OpenAIClient",
    "OrchestrationEngine",
    "RateLimitConfig",
    "RateLimiter",
    "RetryPolicy",
    "RetryStrategy",
    "Workflow",
    "WorkflowStatus",
}


def test_all_is_sorted_and_holds_every_reference_class() -> None:
    assert orchestrate.__all__ == sorted(orchestrate.__all__)
    assert REFERENCE_NAMES <= set(orchestrate.__all__)


def test_every_exported_name_imports_and_belongs_to_orchestrate() -> None:
    for name in orchestrate.__all__:
        value = getattr(orchestrate, name)
        if name != "__version__":
            assert value.__module__.startswith("orchestrate."), name


def test_unknown_names_raise_attribute_error() -> None:
    try:
        orchestrate.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError("orchestrate.NoSuchThing did not raise")


def test_importing_the_package_stays_light() -> None:
    # `orchestrate --help` must not pay for httpx, jsonschema or the engine.
    code = (
        "import sys, orchestrate.cli; "
        "print(','.join(m for m in ('httpx', 'jsonschema', 'orchestrate.run.engine', 'yaml') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
