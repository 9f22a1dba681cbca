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
    "Agent": "orchestrate.models",
    "AgentResult": "orchestrate.models",
    "AgentStatus": "orchestrate.models",
    "AnthropicClient": "orchestrate.llm.anthropic",
    "CostConfig": "orchestrate.costs",
    "CostTracker": "orchestrate.costs",
    "EngineConfig": "orchestrate.engine",
    "Event": "orchestrate.events",
    "EventType": "orchestrate.events",
    "FailureHandler": "orchestrate.failures",
    "LLMClient": "orchestrate.llm.base",
    "LLMResponse": "orchestrate.llm.base",
    "Monitor": "orchestrate.monitor",
    "MonitorConfig": "orchestrate.monitor",
    "OpenAIClient": "orchestrate.llm.openai",
    "OrchestrateError": "orchestrate.errors",
    "OrchestrationEngine": "orchestrate.engine",
    "RateLimitConfig": "orchestrate.rate_limit",
    "RateLimiter": "orchestrate.rate_limit",
    "RetryPolicy": "orchestrate.failures",
    "RetryStrategy": "orchestrate.failures",
    "SimulatedClient": "orchestrate.llm.simulated",
    "ToolCall": "orchestrate.llm.base",
    "Workflow": "orchestrate.models",
    "WorkflowStatus": "orchestrate.models",
    "load_workflow": "orchestrate.loader",
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
    from orchestrate.costs import CostConfig, CostTracker
    from orchestrate.engine import EngineConfig, OrchestrationEngine
    from orchestrate.errors import OrchestrateError
    from orchestrate.events import Event, EventType
    from orchestrate.failures import FailureHandler, RetryPolicy, RetryStrategy
    from orchestrate.llm.anthropic import AnthropicClient
    from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall
    from orchestrate.llm.openai import OpenAIClient
    from orchestrate.llm.simulated import SimulatedClient
    from orchestrate.loader import load_workflow
    from orchestrate.models import Agent, AgentResult, AgentStatus, Workflow, WorkflowStatus
    from orchestrate.monitor import Monitor, MonitorConfig
    from orchestrate.rate_limit import RateLimitConfig, RateLimiter
