"""A fake OpenAI + Anthropic server on 127.0.0.1: real sockets, the providers' wire formats.

Tests script what it answers (`server.script(...)`) and read what it received
(`server.requests`). With no script it answers like the real APIs: a chat
completion on ``POST /v1/chat/completions`` and a message on ``POST /v1/messages``,
with usage that grows with the prompt. Faults it can play: any status with the
provider's own error body and headers (retry-after, retry-after-ms, request
ids, rate-limit headers), a delay (to trip time-outs), a body cut short
(Content-Length larger than what is sent), and a body that is not JSON.

Run alone for demos, from the repository: ``python -m tests.fake_provider --port 0 --failure-rate 0.3
--seed 1 --latency 0.2`` prints ``PORT=<n>`` and serves until killed, failing
that share of calls at random with 429s, 500s, 529s and truncated bodies.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fake_prompt_cache import CacheUse, ProviderCache
from tests.loopback import LoopbackServer

__all__ = ["FakeProvider", "Fault", "anthropic_message", "openai_completion"]


@dataclass
class Fault:
    """One scripted answer. `body` is a dict (sent as JSON), bytes, or None for the default answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False  # announce the full length, send only part, close
    held: threading.Event | None = None  # answer only once the test sets it (a call kept in flight)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


_MARKER = "satisfies this JSON Schema:\n"


def _schema_in(text: str) -> dict[str, Any] | None:
    """The schema orchestrate put in a prompt ("... satisfies this JSON Schema:\n{...}"), if any."""
    return json.loads(text.split(_MARKER, 1)[1]) if _MARKER in text else None


def _answer_for(schema: dict[str, Any] | None, prompt: str) -> str:
    """Plain text, or a JSON answer that satisfies `schema` (built by the simulator's generator)."""
    if schema is None:
        return f"answer to {len(prompt)} bytes"
    from orchestrate.llm.simulated import example_from_schema

    return json.dumps(example_from_schema(schema, random.Random(len(prompt))))


def openai_completion(
    request: dict[str, Any],
    *,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    cached: int = 0,
    reasoning: int = 0,
    finish_reason: str | None = None,
    cache: CacheUse | None = None,
) -> dict[str, Any]:
    """A Chat Completions body answering `request` (`cache`: what the prompt cache found)."""
    prompt = json.dumps(request.get("messages", []))
    if content is None and tool_calls is None:
        schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is None:
            system = [m.get("content") or "" for m in request.get("messages", []) if m.get("role") == "system"]
            schema = _schema_in("\n".join(system))
        content = _answer_for(schema, prompt)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    completion = _tokens(content or "") + reasoning
    if cache is not None:
        cached = min(cache.read, _tokens(prompt))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1764000000,
        "model": request.get("model", "gpt-4o-mini"),
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}
        ],
        "usage": {
            "prompt_tokens": _tokens(prompt),
            "completion_tokens": completion,
            "total_tokens": _tokens(prompt) + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
        },
    }


def _system_text(request: dict[str, Any]) -> str:
    """A Messages request's system prompt, given as a string or as text blocks."""
    system = request.get("system", "")
    if isinstance(system, list):
        return "".join(str(block.get("text", "")) for block in system)
    return str(system)


def _anthropic_prompt(request: dict[str, Any]) -> str:
    """The text whose length gives a Messages request's input tokens: cache marks and the
    block wrappers of a marked system prompt do not count, as they are not tokens."""
    system = _system_text(request)
    messages = [
        {**m, "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]}
        if isinstance(m.get("content"), list)
        else m
        for m in request.get("messages", [])
    ]
    return json.dumps(messages) + str(system)


def anthropic_message(
    request: dict[str, Any],
    *,
    content: list[dict[str, Any]] | None = None,
    cache_read: int = 0,
    cache_write: int = 0,
    stop_reason: str | None = None,
    thinking: int = 0,
    cache: CacheUse | None = None,
) -> dict[str, Any]:
    """A Messages API body answering `request` (JSON satisfying `output_config.format.schema`,
    or the schema in the system prompt, when there is one). With `cache` (what the prompt
    cache found), input_tokens counts only what was neither read nor written, as Anthropic's does."""
    prompt = _anthropic_prompt(request)
    if content is None:
        schema = ((request.get("output_config") or {}).get("format") or {}).get("schema") or _schema_in(
            _system_text(request)
        )
        content = [{"type": "text", "text": _answer_for(schema, prompt)}]
    uses_tool = any(block.get("type") == "tool_use" for block in content)
    out = sum(_tokens(json.dumps(block)) for block in content) + thinking
    usage: dict[str, Any] = {
        "input_tokens": _tokens(prompt),
        "output_tokens": out,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }
    if cache is not None:
        total = max(_tokens(prompt), cache.read + cache.write)
        usage.update(
            input_tokens=total - cache.read - cache.write,
            cache_read_input_tokens=cache.read,
            cache_creation_input_tokens=cache.write,
            cache_creation={"ephemeral_5m_input_tokens": cache.write_5m, "ephemeral_1h_input_tokens": cache.write_1h},
        )
    if thinking:
        usage["output_tokens_details"] = {"thinking_tokens": thinking}
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": request.get("model"),
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if uses_tool else "end_turn"),
        "stop_sequence": None,
        "usage": usage,
    }


def error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """The error body each provider sends for `status`."""
    if path.endswith("/messages"):
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            402: "billing_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            500: "api_error",
            529: "overloaded_error",
        }
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
    kinds = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        429: "requests",
        500: "server_error",
        503: "server_error",
    }
    return {
        "error": {
            "message": message,
            "type": kinds.get(status, "server_error"),
            "param": None,
            "code": "invalid_api_key" if status == 401 else None,
        }
    }


class FakeProvider(LoopbackServer):
    """The server. Use as a context manager; `url` is its base, e.g. ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        failure_rate: float = 0.0,
        seed: int = 0,
        latency: float = 0.0,
        port: int = 0,
        refuse_json_schema: int | None = None,
        refused_params: dict[str, tuple[str, ...]] | None = None,
        rewrite: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        prompt_cache: ProviderCache | None = None,
        caching: bool = True,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        # The providers' prompt caches (`tests/fake_prompt_cache.py`); `caching=False` turns them off.
        self.prompt_cache = (prompt_cache or ProviderCache()) if caching else None
        # Like llama.cpp's server: `response_format` json_schema (or Anthropic's
        # output_config) answered with this status and a body naming it.
        self.refuse_json_schema = refuse_json_schema
        # Like a strict proxy: model name prefix -> parameters it answers 400 to.
        self.refused_params = refused_params or {}
        self.rewrite = rewrite  # (request, default answer) -> the answer sent: lying usage, echoes
        self.headers = dict(headers or {})  # sent with every answer (after the defaults)
        self._script: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.latency = latency
        self._listen(self._handler(), port)
        self.url = self.origin

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these, in order; then default answers."""
        with self._lock:
            self._script.extend(faults)

    def _next(self) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.failure_rate and self._rng.random() < self.failure_rate:
                return self._rng.choice(
                    [
                        Fault(
                            429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"retry-after": "1"}
                        ),
                        Fault(500, None),
                        Fault(529, None),
                        Fault(200, None, truncate=True),
                    ]
                )
            return None

    def _refusal(self, path: str, headers: Any, body: Any) -> Fault | None:
        """What a strict server refuses before answering: Azure without its api-key header,
        a json_schema it does not support, parameters the model does not take."""
        if path.startswith("/openai/") and not headers.get("api-key"):
            return Fault(
                401,
                {
                    "error": {
                        "code": "401",
                        "message": "Access denied due to invalid subscription key or wrong API endpoint.",
                    }
                },
            )
        if not isinstance(body, dict):
            return None
        native = (body.get("response_format") or {}).get("type") == "json_schema" or "output_config" in body
        if self.refuse_json_schema and native:
            status = self.refuse_json_schema
            if path.endswith("/messages"):
                return Fault(
                    status,
                    error_body(
                        path, status, "output_config.format: structured outputs are not supported for this model"
                    ),
                )
            return Fault(
                status,
                {
                    "error": {
                        "code": status,
                        "type": "server_error",
                        "message": 'response_format type must be one of "text" or "json_object", but got: json_schema',
                    }
                },
            )
        model = str(body.get("model") or "")
        for prefix, params in self.refused_params.items():
            sent = [p for p in params if p in body]
            if model.startswith(prefix) and sent:
                return Fault(400, error_body(path, 400, f"{model} does not support parameters: {sent}"))
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                """``GET /v1/models`` (the cheap request `orchestrate doctor` makes): a model list,
                or the next scripted fault (a 401 for a refused key)."""
                with provider._lock:
                    provider.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": None,
                            "time": time.monotonic(),
                        }
                    )
                fault = provider._refusal(self.path, self.headers, None) or provider._next()
                status = fault.status if fault else 200
                payload = (fault.body if fault else None) or (
                    error_body(self.path, status, f"fake {status} from the test server")
                    if status >= 400
                    else {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with provider._lock:
                    provider.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )
                fault = provider._refusal(self.path, self.headers, body) or provider._next()
                use = None
                if fault is None and isinstance(body, dict) and provider.prompt_cache is not None:
                    anthropic = self.path.endswith("/messages")
                    use = (provider.prompt_cache.anthropic if anthropic else provider.prompt_cache.openai)(body)
                    if use.error:
                        fault, use = Fault(400, error_body(self.path, 400, use.error)), None
                if provider.latency:
                    time.sleep(provider.latency)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and fault.held is not None:
                    fault.held.wait(timeout=120)
                status = fault.status if fault else 200
                payload = fault.body if fault else None
                if payload is None:
                    if status >= 400:
                        payload = error_body(self.path, status, f"fake {status} from the test server")
                    elif self.path.endswith("/messages"):
                        payload = anthropic_message(body or {}, cache=use)
                    else:
                        payload = openai_completion(body or {}, cache=use)
                    if use is not None:
                        use.commit()  # readable from now on, as at the providers
                    if provider.rewrite is not None:
                        payload = provider.rewrite(body or {}, payload)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                is_json = not isinstance(payload, bytes)
                extra = {**provider.headers, **(fault.headers if fault else {})}
                given = {name.lower() for name in extra}
                id_header = "x-request-id" if "/chat/" in self.path else "request-id"
                if "content-type" not in given:
                    self.send_header("content-type", "application/json" if is_json else "text/html")
                if id_header not in given:
                    self.send_header(id_header, "req_fake_123")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if fault is not None and fault.truncate:
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FakeProvider(failure_rate=args.failure_rate, seed=args.seed, latency=args.latency, port=args.port) as server:
        print(f"PORT={server.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
