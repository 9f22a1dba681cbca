"""OpenAI Chat Completions, also for any OpenAI-compatible server (Ollama, vLLM, LM Studio).

Wire format: POST {base_url}/chat/completions with a bearer key. Reasoning
models (o1, o3, o4, gpt-5 families) take `max_completion_tokens` and no
temperature; the others `max_tokens`. An output schema is sent as
``response_format: {"type": "json_schema", ...}``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from orchestrate.errors import MalformedResponseError
from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall
from orchestrate.llm.http import HTTPTransport, Reply

__all__ = ["OpenAIClient"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_REASONING = re.compile(r"^(o1|o3|o4|gpt-5)(\b|-|$)")


class OpenAIClient(LLMClient):
    """OpenAI API client.

    Args:
        api_key: OpenAI API key; defaults to ``$OPENAI_API_KEY``. A server
            that needs none (a local Ollama) may be used with no key.
        base_url: Defaults to ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        timeout: Seconds a call may take to answer; `connect_timeout` to connect.
        organization: Sent as ``OpenAI-Organization`` when given (or ``$OPENAI_ORG_ID``).
    """

    provider = "openai"

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float = 120.0, connect_timeout: float = 10.0,
                 organization: str | None = None, max_connections: int = 100,
                 transport: Any = None) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.organization = organization or os.environ.get("OPENAI_ORG_ID")
        self._http = HTTPTransport(self.provider, secret=self.api_key, timeout=timeout,
                                   connect_timeout=connect_timeout, max_connections=max_connections,
                                   transport=transport)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIClient(base_url={self.base_url!r})"

    async def complete(self, prompt: str, model: str, temperature: float = 0.7,
                       max_tokens: int = 1000, tools: list[dict[str, Any]] | None = None,
                       **kwargs: Any) -> LLMResponse:
        messages: list[dict[str, Any]] = []
        if kwargs.get("system"):
            messages.append({"role": "system", "content": kwargs["system"]})
        messages.append({"role": "user", "content": prompt})
        return await self.complete_with_tools(messages, model, tools or [], temperature, max_tokens,
                                              **kwargs)

    async def complete_with_tools(self, messages: list[dict[str, Any]], model: str,
                                  tools: list[dict[str, Any]], temperature: float = 0.7,
                                  max_tokens: int = 1000, **kwargs: Any) -> LLMResponse:
        body = self.request_body(messages, model, tools, temperature, max_tokens, **kwargs)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        reply = await self._http.post_json(f"{self.base_url}/chat/completions", headers, body,
                                           timeout=kwargs.get("request_timeout"))
        return self.parse(reply, model)

    @staticmethod
    def request_body(messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]],
                     temperature: float, max_tokens: int, **kwargs: Any) -> dict[str, Any]:
        """The Chat Completions request for a neutral conversation."""
        body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in messages]}
        if _REASONING.match(model):
            body["max_completion_tokens"] = int(max_tokens)
        else:
            body["max_tokens"] = int(max_tokens)
            body["temperature"] = float(temperature)
        if kwargs.get("top_p") is not None:
            body["top_p"] = kwargs["top_p"]
        if kwargs.get("stop") is not None:
            body["stop"] = kwargs["stop"]
        if tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t["name"], "description": t.get("description", ""),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}}}}
                for t in tools]
        schema = kwargs.get("response_schema")
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": schema, "strict": False}}
        return body

    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from a Chat Completions body; MalformedResponseError if it is not one."""
        data = reply.data
        try:
            choice = data["choices"][0]
            message = choice["message"]
            usage = data.get("usage") or {}
            content = message.get("content") or ""
            calls = [ToolCall(id=c["id"], name=c["function"]["name"],
                              arguments=_arguments(c["function"].get("arguments")))
                     for c in message.get("tool_calls") or []]
            prompt_details = usage.get("prompt_tokens_details") or {}
            completion_details = usage.get("completion_tokens_details") or {}
            return LLMResponse(
                content=content if isinstance(content, str) else json.dumps(content),
                model=str(data.get("model") or model),
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=str(choice.get("finish_reason") or "stop"),
                tool_calls=calls or None,
                metadata={"id": data.get("id"), "system_fingerprint": data.get("system_fingerprint")},
                cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
                reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
                request_id=reply.request_id,
                provider=self.provider,
                rate_limit=reply.rate_limit,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponseError(
                f"openai: the answer is not a chat completion (missing or bad {exc})",
                provider=self.provider, request_id=reply.request_id) from None

    async def aclose(self) -> None:
        await self._http.aclose()


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    value = json.loads(raw or "{}")
    if not isinstance(value, dict):
        raise ValueError("tool arguments")
    return value


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message["role"]
    if role == "tool":
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]}
    if role == "assistant" and message.get("tool_calls"):
        return {"role": "assistant", "content": message.get("content") or None, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in message["tool_calls"]]}
    return {"role": role, "content": message.get("content") or ""}
