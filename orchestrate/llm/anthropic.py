"""Anthropic's Messages API.

Wire format: POST {base_url}/v1/messages with ``x-api-key`` and
``anthropic-version``. The system prompt is a top-level field; tool calls are
``tool_use`` blocks and their answers ``tool_result`` blocks in a user turn.
An output schema is sent natively (``output_config.format``, a JSON Schema)
to the families that have structured output, and as an instruction appended
to the system prompt to the others (its bytes are in the budget reservation
either way). Sampling parameters follow the capability table.

Anthropic reports `input_tokens` without the cached part; our LLMResponse
counts every prompt token, so input = input_tokens + cache_read + cache_creation;
``usage.cache_creation.ephemeral_1h_input_tokens`` is the part written for an hour.
A `prompt_cache` plan (`orchestrate.llm.prompt_cache`) puts ``cache_control`` marks
on the stable prefix.
Thinking tokens (``usage.output_tokens_details.thinking_tokens``) are part of
``output_tokens`` and are reported as `reasoning_tokens`.
"""

from __future__ import annotations

from typing import Any

from orchestrate.errors import MalformedResponseError
from orchestrate.llm.base import LLMResponse, ToolCall
from orchestrate.llm.capabilities import Capabilities, lookup
from orchestrate.llm.http import Reply
from orchestrate.llm.prompt_cache import mark_anthropic
from orchestrate.llm.structured import StructuredOutputClient, schema_instruction

__all__ = ["AnthropicClient"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicClient(StructuredOutputClient):
    """Anthropic Claude API client.

    Args:
        api_key: Anthropic API key; defaults to ``$ANTHROPIC_API_KEY``.
        base_url: Defaults to ``$ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``.
        timeout: Seconds a call may take to answer; `connect_timeout` to connect.
        version: The ``anthropic-version`` header.
    """

    provider = "anthropic"
    fallback_format = "prompt"
    key_env, url_env, default_url = "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", DEFAULT_BASE_URL

    def __init__(
        self, api_key: str | None = None, base_url: str | None = None, *, version: str = API_VERSION, **options: Any
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self.version = version

    usage_counts = (
        (("input_tokens",), True),
        (("output_tokens",), True),
        (("cache_read_input_tokens",), False),
        (("cache_creation_input_tokens",), False),
    )
    path = "/v1/messages"
    probe_path = "/v1/models"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": self.version}
        if self.api_key:
            headers["x-api-key"] = self.api_key
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
        """The Messages API request for a neutral conversation.

        Only what the model accepts is sent (`capabilities`, else the built-in table's entry
        for `model`): current families take no temperature or top_p, and some older ones not
        both at once. A `response_schema` goes in ``output_config.format`` where the model
        has native structured output (`response_format` ``json_schema``), else in the system prompt.
        """
        caps: Capabilities = kwargs.get("capabilities") or lookup(model, "anthropic")
        system = [str(m.get("content") or "") for m in messages if m["role"] == "system"]
        schema = kwargs.get("response_schema")
        native = (kwargs.get("response_format") or caps.response_format) == "json_schema"
        if schema is not None and not native:
            system.append(schema_instruction(schema))
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": int(max_tokens),
            "messages": _wire_messages([m for m in messages if m["role"] != "system"]),
        }
        body.update(caps.sampling(temperature, kwargs.get("top_p")))
        if system:
            body["system"] = "\n\n".join(system)
        if kwargs.get("stop") is not None and caps.stop:
            stop = kwargs["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if tools and caps.tools:
            body["tools"] = [
                {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "input_schema": t.get("parameters") or {"type": "object", "properties": {}},
                }
                for t in tools
            ]
        if schema is not None and native:
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        if kwargs.get("prompt_cache") is not None:
            mark_anthropic(body, kwargs["prompt_cache"], caps)
        return body

    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from a Messages body; MalformedResponseError if it is not one."""
        data = reply.data
        try:
            if data.get("type") not in (None, "message"):
                raise ValueError(f"type {data.get('type')!r}")
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in data["content"]:
                if block["type"] == "text":
                    texts.append(block["text"])
                elif block["type"] == "tool_use":
                    if not isinstance(block["input"], dict):
                        raise ValueError("tool_use input")
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=block["input"]))
            usage = data["usage"]
            cache_read = int(usage.get("cache_read_input_tokens") or 0)
            cache_write = int(usage.get("cache_creation_input_tokens") or 0)
            hour = int((usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0)
            details = usage.get("output_tokens_details") or {}
            stop = str(data.get("stop_reason") or "end_turn")
            return LLMResponse(
                content="".join(texts),
                model=str(data.get("model") or model),
                input_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
                output_tokens=int(usage.get("output_tokens") or 0),
                finish_reason=_FINISH.get(stop, stop),
                tool_calls=calls or None,
                metadata={"id": data.get("id"), "stop_reason": stop},
                cached_input_tokens=cache_read,
                cache_creation_input_tokens=cache_write,
                cache_creation_1h_input_tokens=min(hour, cache_write),
                reasoning_tokens=int(details.get("thinking_tokens") or 0),
                request_id=reply.request_id,
                provider=self.provider,
                rate_limit=reply.rate_limit,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponseError(
                f"anthropic: the answer is not a message (missing or bad {exc})",
                provider=self.provider,
                request_id=reply.request_id,
                billed=True,
            ) from None


def _wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages to Anthropic turns; consecutive tool results share one user turn."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": str(message.get("content") or ""),
            }
            if (
                wire
                and wire[-1]["role"] == "user"
                and isinstance(wire[-1]["content"], list)
                and wire[-1]["content"]
                and wire[-1]["content"][0].get("type") == "tool_result"
            ):
                wire[-1]["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if message.get("content"):
                blocks.append({"type": "text", "text": message["content"]})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message["tool_calls"]
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": role, "content": str(message.get("content") or "")})
    return wire
