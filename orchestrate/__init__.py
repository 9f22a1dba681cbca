"""orchestrate: run YAML workflows of LLM agents with hard budgets, rate limits and resumable runs.

The public API is what `__all__` names. Names are imported on first use, so
`orchestrate --help` does not pay for httpx, jsonschema or the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    "Agent": "orchestrate.workflow.models",
    "AgentResult": "orchestrate.workflow.models",
    "AgentStatus": "orchestrate.workflow.models",
    "AnthropicClient": "orchestrate.llm.anthropic",
    "DatasetOutcome": "orchestrate.app.dataset",
    "DatasetSpec": "orchestrate.app.invocation",
    "ExitCode": "orchestrate.errors",
    "Invocation": "orchestrate.app.invocation",
    "CostConfig": "orchestrate.money.costs",
    "CostTracker": "orchestrate.money.costs",
    "EngineConfig": "orchestrate.run.engine",
    "Event": "orchestrate.run.events",
    "EventType": "orchestrate.run.events",
    "FailureHandler": "orchestrate.run.failures",
    "LLMClient": "orchestrate.llm.base",
    "LLMResponse": "orchestrate.llm.base",
    "Monitor": "orchestrate.run.monitor",
    "MonitorConfig": "orchestrate.run.monitor",
    "OpenAIClient": "orchestrate.llm.openai",
    "OrchestrateError": "orchestrate.errors",
    "OrchestrationEngine": "orchestrate.run.engine",
    "RateLimitConfig": "orchestrate.money.rate_limit",
    "RateLimiter": "orchestrate.money.rate_limit",
    "RetryPolicy": "orchestrate.run.failures",
    "RetryStrategy": "orchestrate.run.failures",
    "RunOutcome": "orchestrate.app.session",
    "SimulatedClient": "orchestrate.llm.simulated",
    "ToolCall": "orchestrate.llm.base",
    "Workflow": "orchestrate.workflow.models",
    "WorkflowStatus": "orchestrate.workflow.models",
    "load_workflow": "orchestrate.workflow.loader",
    "run_dataset": "orchestrate.app.api",
    "run_workflow": "orchestrate.app.api",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors only
    from orchestrate.app.api import run_dataset, run_workflow
    from orchestrate.app.dataset import DatasetOutcome
    from orchestrate.app.invocation import DatasetSpec, Invocation
    from orchestrate.app.session import RunOutcome
    from orchestrate.errors import ExitCode, OrchestrateError
    from orchestrate.llm.anthropic import AnthropicClient
    from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall
    from orchestrate.llm.openai import OpenAIClient
    from orchestrate.llm.simulated import SimulatedClient
    from orchestrate.money.costs import CostConfig, CostTracker
    from orchestrate.money.rate_limit import RateLimitConfig, RateLimiter
    from orchestrate.run.engine import EngineConfig, OrchestrationEngine
    from orchestrate.run.events import Event, EventType
    from orchestrate.run.failures import FailureHandler, RetryPolicy, RetryStrategy
    from orchestrate.run.monitor import Monitor, MonitorConfig
    from orchestrate.workflow.loader import load_workflow
    from orchestrate.workflow.models import Agent, AgentResult, AgentStatus, Workflow, WorkflowStatus
