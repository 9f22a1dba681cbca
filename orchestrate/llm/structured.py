"""Asking for structured output, and falling back once when a server refuses the native way.

An agent's output schema is asked for in one of three ways (`response_format`):
``json_schema`` (natively: OpenAI's ``response_format`` or Anthropic's
``output_config.format``), ``json_object`` (OpenAI's JSON mode, with the schema
in the prompt) or ``prompt`` (the schema in the system prompt only). Which one
comes from the agent's ``llm_config.response_format``, else the capability
table.

Some servers that speak the OpenAI wire format have no ``json_schema``
(llama.cpp's server answers it with a 500). When a server refuses the native
way, with a 400, 422 or 500 whose text names it, the call is made again at
once the next way down (``json_object`` for OpenAI-style servers, ``prompt``
for Anthropic), and the client remembers it for that model for the rest of
the run. The first such call carries a notice in its metadata and logs a
warning; later ones say nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from orchestrate.errors import BadRequestError, LLMError, ProviderUnavailableError
from orchestrate.llm.base import LLMResponse
from orchestrate.llm.capabilities import Capabilities, lookup
from orchestrate.llm.http import ProviderClient

__all__ = [
    "SCHEMA_MARKER",
    "StructuredOutputClient",
    "names_response_format",
    "schema_instruction",
    "with_schema_instruction",
]

logger = logging.getLogger("orchestrate")

SCHEMA_MARKER = "satisfies this JSON Schema:\n"
_REFUSAL_WORDS = ("response_format", "json_schema", "output_config", "output_format", "outputconfig")


def schema_instruction(schema: dict[str, Any]) -> str:
    """The system-prompt text that asks for a JSON answer satisfying `schema`."""
    return "Reply with only a JSON value, no prose and no code fence, that " + SCHEMA_MARKER + json.dumps(schema)


def with_schema_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """`messages` with the schema instruction added to the system prompt (made when there is none)."""
    instruction = schema_instruction(schema)
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{instruction}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def names_response_format(exc: LLMError) -> bool:
    """True when a provider error is a refusal of the native structured-output parameter."""
    if not isinstance(exc, (BadRequestError, ProviderUnavailableError)):
        return False
    if exc.status_code not in (400, 422, 500):
        return False
    text = str(exc).lower()
    return any(word in text for word in _REFUSAL_WORDS)


class StructuredOutputClient(ProviderClient):
    """An HTTP client that resolves each call's capabilities and response format, and falls
    back once (remembered per model) when the native format is refused.

    A provider sets `fallback_format` and may override `endpoint`.
    """

    fallback_format = "json_object"

    def __init__(self, api_key: str | None = None, base_url: str | None = None, **options: Any) -> None:
        super().__init__(api_key, base_url, **options)
        self._native_refused: set[str] = set()

    def response_format_for(self, model: str, caps: Capabilities, requested: str | None) -> str:
        """The way this call asks for structured output, the remembered fallback applied."""
        mode = requested or caps.response_format
        if mode == "json_schema" and model in self._native_refused:
            return self.fallback_format
        return mode

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        provider = self.provider
        caps = kwargs.pop("capabilities", None) or lookup(model, provider)
        mode = self.response_format_for(model, caps, kwargs.pop("response_format", None))
        try:
            return await self._post(messages, model, tools, temperature, max_tokens, caps, mode, kwargs)
        except LLMError as exc:
            if mode != "json_schema" or kwargs.get("response_schema") is None or not names_response_format(exc):
                raise
            self._native_refused.add(model)
            notice = (
                f"{provider}: {model} refused response_format json_schema; using "
                f"{self.fallback_format} with the schema in the prompt for the rest of the run"
            )
            logger.warning(notice)
        response = await self._post(messages, model, tools, temperature, max_tokens, caps, self.fallback_format, kwargs)
        response.metadata["notice"] = notice
        return response

    async def _post(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int,
        caps: Capabilities,
        mode: str,
        options: dict[str, Any],
    ) -> LLMResponse:
        body = self.request_body(
            messages, model, tools, temperature, max_tokens, capabilities=caps, response_format=mode, **options
        )
        return await self.exchange(self.endpoint(model), body, model, timeout=options.get("request_timeout"))

    def endpoint(self, model: str) -> str:
        """The URL a request for `model` is posted to."""
        return f"{self.base_url}{self.path}"
