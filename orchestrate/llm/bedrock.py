"""Amazon Bedrock through the Converse API: one request shape for every model it serves.

Wire format: POST ``https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse``
(the model id, or an inference profile such as ``eu.anthropic.claude-sonnet-4-5-20250929-v1:0``,
URL-encoded). Authentication, first found:

- a Bedrock API key, ``$AWS_BEARER_TOKEN_BEDROCK`` (or ``llm_config.api_key_env``), sent as
  ``Authorization: Bearer``;
- otherwise SigV4 (`orchestrate.llm.sigv4`) with ``$AWS_ACCESS_KEY_ID``/``$AWS_SECRET_ACCESS_KEY``
  (and ``$AWS_SESSION_TOKEN``), else the rest of the AWS credential chain (profile, role)
  through botocore, the optional extra ``orchestrate[aws]``.

Messages are lists of content blocks (``text``, ``toolUse``, ``toolResult``); the
system prompt is a top-level ``system`` list; sampling goes in ``inferenceConfig``;
tools in ``toolConfig``; an output schema in ``outputConfig.textFormat`` (a JSON
Schema sent as a string) where the model has native structured output, else in
the system prompt. Errors carry their kind in ``x-amzn-ErrorType``:
ThrottlingException (429) is rate limited, ValidationException (400) is not
retried, ModelTimeoutException, ModelNotReadyException, ServiceUnavailable and
InternalServer errors are retried. ``usage.inputTokens`` leaves out the cached
part, so input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from orchestrate.errors import LLMError, MalformedResponseError, ProviderUnavailableError
from orchestrate.llm.base import LLMResponse, ToolCall
from orchestrate.llm.capabilities import Capabilities, lookup
from orchestrate.llm.http import Reply, scrub_error
from orchestrate.llm.sigv4 import CredentialChain, sign
from orchestrate.llm.structured import StructuredOutputClient, schema_instruction

__all__ = ["BedrockClient", "runtime_url"]

KEY_ENV = "AWS_BEARER_TOKEN_BEDROCK"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_RETRIED_KINDS = ("ModelNotReadyException", "ModelTimeoutException", "ModelErrorException")


def runtime_url(region: str) -> str:
    """The regional Bedrock runtime endpoint."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


class BedrockClient(StructuredOutputClient):
    """Amazon Bedrock Converse client.

    Args:
        api_key: A Bedrock API key; defaults to ``$AWS_BEARER_TOKEN_BEDROCK``. Without one,
            requests are signed (SigV4) with the AWS credentials (`orchestrate.llm.sigv4`).
        base_url: Defaults to ``$BEDROCK_BASE_URL``, else the runtime endpoint of `region`.
        region: The AWS region (``eu-central-1``...); see `orchestrate.llm.presets.bedrock_region`.
    """

    provider = "bedrock"
    fallback_format = "prompt"
    key_env, url_env, default_url = KEY_ENV, "BEDROCK_BASE_URL", ""
    probe_path, probe_checks_key = "/", False  # the runtime lists nothing: any answer means it is there
    usage_counts = (
        (("inputTokens",), True),
        (("outputTokens",), True),
        (("cacheReadInputTokens",), False),
        (("cacheWriteInputTokens",), False),
    )

    def __init__(
        self, api_key: str | None = None, base_url: str | None = None, *, region: str = "us-east-1", **options: Any
    ) -> None:
        self.region = region
        self.default_url = runtime_url(region)
        super().__init__(api_key, base_url, **options)
        self._credentials: CredentialChain | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def endpoint(self, model: str) -> str:
        return f"{self.base_url}/model/{quote(model, safe='')}/converse"

    async def exchange(
        self, url: str, body: dict[str, Any], model: str, *, timeout: float | None = None
    ) -> LLMResponse:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = self.headers()
        if not self.api_key:
            headers = self._sign(url, data, headers)
        try:
            response = await self._http.send("POST", url, headers, content=data, timeout=timeout)
            reply = self._http._reply(response)
        except LLMError as exc:
            if exc.status_code != 429 and any(kind in str(exc) for kind in _RETRIED_KINDS) and not exc.retriable:
                exc = ProviderUnavailableError(
                    str(exc), provider=exc.provider, status_code=exc.status_code, request_id=exc.request_id
                )
            raise scrub_error(exc, self.api_key) from None
        return self.parse_checked(reply, model)

    def _sign(self, url: str, data: bytes, headers: dict[str, str]) -> dict[str, str]:
        """SigV4 headers for this request, signed with the AWS credentials found now."""
        if self._credentials is None:
            self._credentials = CredentialChain()
        return sign("POST", url, headers, data, self._credentials.get(), region=self.region, service="bedrock")

    @staticmethod
    def request_body(
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The Converse request for a neutral conversation (only what the model accepts is sent)."""
        caps: Capabilities = kwargs.get("capabilities") or lookup(model, "bedrock")
        schema = kwargs.get("response_schema")
        native = (kwargs.get("response_format") or caps.response_format) == "json_schema"
        if tools and not caps.tools_with_schema:
            native = False
        system = [str(m.get("content") or "") for m in messages if m["role"] == "system"]
        if schema is not None and not native:
            system.append(schema_instruction(schema))
        inference: dict[str, Any] = {"maxTokens": int(max_tokens)}
        sampling = caps.sampling(temperature, kwargs.get("top_p"))
        if "temperature" in sampling:
            inference["temperature"] = sampling["temperature"]
        if "top_p" in sampling:
            inference["topP"] = sampling["top_p"]
        if kwargs.get("stop") is not None and caps.stop:
            stop = kwargs["stop"]
            inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        body: dict[str, Any] = {
            "messages": _wire_messages([m for m in messages if m["role"] != "system"]),
            "inferenceConfig": inference,
        }
        if system:
            body["system"] = [{"text": text} for text in system if text]
        if tools and caps.tools:
            body["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t["name"],
                            "description": t.get("description") or t["name"],
                            "inputSchema": {"json": t.get("parameters") or {"type": "object", "properties": {}}},
                        }
                    }
                    for t in tools
                ]
            }
        if schema is not None and native:
            body["outputConfig"] = {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"name": "answer", "schema": json.dumps(schema)}},
                }
            }
        return body

    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from a Converse answer; MalformedResponseError if it is not one."""
        data = reply.data
        try:
            message = data["output"]["message"]
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in message["content"]:
                if "text" in block:
                    texts.append(str(block["text"]))
                elif "toolUse" in block:
                    use = block["toolUse"]
                    if not isinstance(use["input"], dict):
                        raise ValueError("toolUse input")
                    calls.append(ToolCall(id=use["toolUseId"], name=use["name"], arguments=use["input"]))
            usage = data["usage"]
            cache_read = int(usage.get("cacheReadInputTokens") or 0)
            cache_write = int(usage.get("cacheWriteInputTokens") or 0)
            stop = str(data.get("stopReason") or "end_turn")
            return LLMResponse(
                content="".join(texts),
                model=model,
                input_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
                output_tokens=int(usage.get("outputTokens") or 0),
                finish_reason=_FINISH.get(stop, stop),
                tool_calls=calls or None,
                metadata={"stop_reason": stop, "latency_ms": (data.get("metrics") or {}).get("latencyMs")},
                cached_input_tokens=cache_read,
                cache_creation_input_tokens=cache_write,
                request_id=reply.request_id,
                provider=self.provider,
                rate_limit=reply.rate_limit,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponseError(
                f"bedrock: the answer is not a Converse response (missing or bad {exc})",
                provider=self.provider,
                request_id=reply.request_id,
                billed=True,
            ) from None


def _wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages to Converse turns; consecutive tool results share one user turn."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            block = {
                "toolResult": {
                    "toolUseId": message["tool_call_id"],
                    "content": [{"text": str(message.get("content") or "")}],
                }
            }
            last = wire[-1] if wire else None
            if last is not None and last["role"] == "user" and last["content"] and "toolResult" in last["content"][0]:
                last["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if message.get("content"):
                blocks.append({"text": message["content"]})
            blocks += [
                {"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in message["tool_calls"]
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": role, "content": [{"text": str(message.get("content") or "")}]})
    return wire
