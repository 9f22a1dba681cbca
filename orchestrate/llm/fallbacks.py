"""An agent's fallback chain, and which failures move a call down it.

::

    llm_config:
      model: claude-sonnet-4-5
      fallbacks:
        - {model: gpt-4.1, provider: openai}
        - {model: claude-haiku-4-5}
      fallback_on: [rate_limited, overloaded, timeout, server_error, context_window]   # the default

Each fallback is a whole model route: it inherits the agent's prompt, sampling
and limits (``system``, ``temperature``, ``max_tokens``...), never the
primary's provider, base URL, key variable, region or ``price_as`` (a
fallback on another vendor must not be sent the primary's model id or key).
Its provider, when not named, is inferred from its own model name.

Failure classes (`failure_class`): ``rate_limited`` (429), ``overloaded``
(529, 503, "overloaded"), ``timeout`` (time-outs, 408, 504), ``server_error``
(other 5xx, dropped connections), ``context_window`` (a 400 saying the prompt
is too long), ``content_policy`` (a refusal by the provider's content filter:
never a default, since for HR and Finance a refusal goes to a person, not to
another vendor). Anything else (a bad key, a bad request) is the same on every
model and never falls back. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrate.errors import (
    BadRequestError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)

__all__ = ["DEFAULT_FALLBACK_ON", "FAILURE_CLASSES", "MAX_CHAIN", "chain_of", "failure_class", "falls_back_on"]

FAILURE_CLASSES = ("rate_limited", "overloaded", "timeout", "server_error", "context_window", "content_policy")
DEFAULT_FALLBACK_ON = ("rate_limited", "overloaded", "timeout", "server_error", "context_window")
MAX_CHAIN = 5  # fallbacks after the primary; the schema allows no more
# Keys that belong to a route (who serves the model, and how it is billed), never inherited.
ROUTE_KEYS = ("provider", "base_url", "api_key_env", "price_as", "api_version", "region", "project", "response_format")
_NOT_INHERITED = (*ROUTE_KEYS, "model", "fallbacks", "fallback_on", "batch", "failure_rate")

_CONTEXT_WORDS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "too many input tokens",
    "reduce the length",
)
_POLICY_WORDS = (
    "content_policy",
    "content_filter",
    "content management policy",
    "responsibleaipolicyviolation",
    "safety system",
    "violates our usage policies",
)


def chain_of(llm_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The agent's own llm_config, then each fallback's, as complete llm_configs (bounded)."""
    primary = dict(llm_config)
    chain = [primary]
    shared = {k: v for k, v in primary.items() if k not in _NOT_INHERITED}
    for spec in list(primary.get("fallbacks") or [])[:MAX_CHAIN]:
        if isinstance(spec, Mapping) and spec.get("model"):
            chain.append({**shared, **dict(spec)})
    return chain


def failure_class(exc: LLMError) -> str | None:
    """Which of `FAILURE_CLASSES` a failed call belongs to, or None (not a reason to fall back)."""
    text = str(exc).lower()
    status = exc.status_code
    if isinstance(exc, BadRequestError) or status in (400, 413, 422):
        if any(word in text for word in _POLICY_WORDS):
            return "content_policy"
        if status == 413 or any(word in text for word in _CONTEXT_WORDS):
            return "context_window"
        return None
    if isinstance(exc, RateLimitError) or status == 429:
        return "rate_limited"
    if isinstance(exc, LLMTimeoutError) or status in (408, 504) or "timeout" in type(exc).__name__.lower():
        return "timeout"
    if status in (529, 503) or "overloaded" in text:
        return "overloaded"
    if isinstance(exc, (ProviderUnavailableError, LLMConnectionError)) or (status is not None and status >= 500):
        return "server_error"
    return None


def falls_back_on(llm_config: Mapping[str, Any]) -> tuple[str, ...]:
    """The failure classes that move this agent's calls to the next fallback."""
    listed = llm_config.get("fallback_on")
    return tuple(listed) if isinstance(listed, (list, tuple)) else DEFAULT_FALLBACK_ON
