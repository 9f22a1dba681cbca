"""The provider interface: one small base class and the response it returns.

Messages use one neutral shape, close to Chat Completions, that every client
translates to its own wire format::

    {"role": "system" | "user" | "assistant", "content": "..."}
    {"role": "assistant", "content": "...", "tool_calls": [ToolCall, ...]}
    {"role": "tool", "tool_call_id": "...", "name": "...", "content": "..."}

Tools are given as ``{"name", "description", "parameters"}`` (a JSON Schema).
Clients raise the errors of `orchestrate.errors` (`LLMError` and below), never
their transport's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LLMClient", "LLMResponse", "ToolCall", "single_turn"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: its id, the tool's name and parsed arguments."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class LLMResponse:
    """What a provider answered, with its usage in full.

    `input_tokens` counts every prompt token, cached ones included;
    `cached_input_tokens` is the part read from the provider's prompt cache,
    `cache_creation_input_tokens` the part written to it (Anthropic), of which
    `cache_creation_1h_input_tokens` were written for an hour, and
    `reasoning_tokens` the part of `output_tokens` spent reasoning.
    `rate_limit` holds what the provider's headers said remains
    (``{"remaining_requests", "remaining_tokens", "reset_requests_s", "reset_tokens_s"}``).
    """

    content: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    tool_calls: list[ToolCall] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    request_id: str | None = None
    provider: str = ""
    rate_limit: dict[str, float] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LLMClient(ABC):
    """Base class for LLM providers.

    Subclasses set `provider` and implement both methods. A client that holds
    connections closes them in `aclose`.
    """

    provider: str = "unknown"

    @abstractmethod
    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        """Answer a single user prompt.

        Keyword options every client understands: ``system`` (a system prompt)
        and ``response_schema`` (a JSON Schema the answer must satisfy). A
        `temperature` of None is not sent (the provider's default applies); the
        HTTP clients also leave out any parameter the model refuses (see
        `orchestrate.llm.capabilities`).
        """

    @abstractmethod
    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        """Continue a conversation in which the model may call `tools`."""

    async def aclose(self) -> None:
        """Release connections; the default client holds none."""
        return None


def single_turn(prompt: str, system: str | None = None) -> list[dict[str, Any]]:
    """The conversation of a `complete()` call: an optional system prompt, then the user's prompt."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return messages
