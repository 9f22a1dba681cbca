"""OpenAI Chat Completions, also for any OpenAI-compatible server (Ollama, vLLM, LM Studio).

Wire format: POST {base_url}/chat/completions with a bearer key. What is sent
follows the capability table (`orchestrate.llm.capabilities`): reasoning models
(o1, o3, o4, gpt-5 families) take `max_completion_tokens` and no temperature,
top_p or stop; the others `max_tokens`. An output schema is sent as
``response_format: {"type": "json_schema", ...}``, or as JSON mode plus the
schema in the prompt where the model or server has no json_schema. A
`prompt_cache` plan adds ``prompt_cache_key`` (and retention, breakpoints) where
the model takes them (`orchestrate.llm.prompt_cache`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from orchestrate.errors import MalformedResponseError
from orchestrate.llm.base import LLMResponse, ToolCall
from orchestrate.llm.capabilities import Capabilities, lookup
from orchestrate.llm.http import Reply
from orchestrate.llm.prompt_cache import mark_openai
from orchestrate.llm.structured import StructuredOutputClient, with_schema_instruction

__all__ = ["OpenAIClient"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIClient(StructuredOutputClient):
    """OpenAI API client.

    Args:
        api_key: OpenAI API key; defaults to ``$OPENAI_API_KEY``. A server
            that needs none (a local Ollama) may be used with no key.
        base_url: Defaults to ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        timeout: Seconds a call may take to answer; `connect_timeout` to connect.
        organization: Sent as ``OpenAI-Organization`` when given (or ``$OPENAI_ORG_ID``).
    """

    provider = "openai"
    key_env, url_env, default_url = "OPENAI_API_KEY", "OPENAI_BASE_URL", DEFAULT_BASE_URL

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        organization: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self.organization = organization or os.environ.get("OPENAI_ORG_ID")

    usage_counts = (
        (("prompt_tokens",), True),
        (("completion_tokens",), True),
        (("prompt_tokens_details", "cached_tokens"), False),
        (("completion_tokens_details", "reasoning_tokens"), False),
    )
    path = "/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        return headers

    @staticmethod
    def request_body(
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The Chat Completions request for a neutral conversation.

        Only what the model accepts is sent (`capabilities`, else the built-in table's entry
        for `model`); `response_format` chooses how a `response_schema` is asked for.
        """
        caps: Capabilities = kwargs.get("capabilities") or lookup(model, "openai")
        schema = kwargs.get("response_schema")
        mode = kwargs.get("response_format") or caps.response_format
        if tools and caps.tools and not caps.tools_with_schema and mode != "prompt":
            mode = "prompt"  # Gemini's layer refuses tools with response_format: the schema goes in the prompt
        if schema is not None and mode != "json_schema":
            messages = with_schema_instruction(messages, schema)
        body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in messages]}
        body[caps.max_tokens_field] = int(max_tokens)
        body.update(caps.sampling(temperature, kwargs.get("top_p")))
        if kwargs.get("stop") is not None and caps.stop:
            body["stop"] = kwargs["stop"]
        if tools and caps.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t.get("description", ""),
                        "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                    },
                }
                for t in tools
            ]
        if schema is not None and mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": False},
            }
        elif schema is not None and mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        if kwargs.get("prompt_cache") is not None:
            mark_openai(body, kwargs["prompt_cache"], caps)
        return body

    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from a Chat Completions body; MalformedResponseError if it is not one."""
        data = reply.data
        try:
            choice = data["choices"][0]
            message = choice["message"]
            usage = data.get("usage") or {}
            content = message.get("content") or ""
            calls = [
                ToolCall(id=c["id"], name=c["function"]["name"], arguments=_arguments(c["function"].get("arguments")))
                for c in message.get("tool_calls") or []
            ]
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
                provider=self.provider,
                request_id=reply.request_id,
                billed=True,
            ) from None


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
        return {
            "role": "assistant",
            "content": message.get("content") or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in message["tool_calls"]
            ],
        }
    return {"role": role, "content": message.get("content") or ""}
