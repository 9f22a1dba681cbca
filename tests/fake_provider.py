"""A fake OpenAI + Anthropic server on 127.0.0.1: real sockets, the providers' wire formats.

Tests script what it answers (`server.script(...)`) and read what it received
(`server.requests`). With no script it answers like the real APIs: a chat
completion on ``POST /v1/chat/completions`` and a message on ``POST /v1/messages``,
with usage that grows with the prompt. Faults it can play: any status with the
provider's own error body and headers (retry-after, retry-after-ms, request
ids, rate-limit headers), a delay (to trip time-outs), a body cut short
(Content-Length larger than what is sent), and a body that is not JSON.

Run alone for demos: ``python tests/fake_provider.py --port 0 --failure-rate 0.3
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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeProvider", "Fault", "anthropic_message", "openai_completion"]


@dataclass
class Fault:
    """One scripted answer. `body` is a dict (sent as JSON), bytes, or None for the default answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False   # announce the full length, send only part, close


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _answer_for(schema: dict[str, Any] | None, prompt: str) -> str:
    """Plain text, or a JSON answer that satisfies `schema` (built by the simulator's generator)."""
    if schema is None:
        return f"answer to {len(prompt)} bytes"
    from orchestrate.llm.simulated import example_from_schema

    return json.dumps(example_from_schema(schema, random.Random(len(prompt))))


def openai_completion(request: dict[str, Any], *, content: str | None = None,
                      tool_calls: list[dict[str, Any]] | None = None, cached: int = 0,
                      reasoning: int = 0, finish_reason: str | None = None) -> dict[str, Any]:
    """A Chat Completions body answering `request`."""
    prompt = json.dumps(request.get("messages", []))
    if content is None and tool_calls is None:
        schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
        content = _answer_for(schema, prompt)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    completion = _tokens(content or "") + reasoning
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1764000000,
        "model": request.get("model", "gpt-4o-mini"), "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}],
        "usage": {"prompt_tokens": _tokens(prompt), "completion_tokens": completion,
                  "total_tokens": _tokens(prompt) + completion,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}},
    }


def anthropic_message(request: dict[str, Any], *, content: list[dict[str, Any]] | None = None,
                      cache_read: int = 0, cache_write: int = 0, stop_reason: str | None = None) -> dict[str, Any]:
    """A Messages API body answering `request`."""
    prompt = json.dumps(request.get("messages", [])) + str(request.get("system", ""))
    if content is None:
        system = str(request.get("system", ""))
        marker = "satisfies this JSON Schema:\n"
        schema = json.loads(system.split(marker, 1)[1]) if marker in system else None
        content = [{"type": "text", "text": _answer_for(schema, prompt)}]
    uses_tool = any(block.get("type") == "tool_use" for block in content)
    out = sum(_tokens(json.dumps(block)) for block in content)
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": request.get("model"),
        "content": content, "stop_reason": stop_reason or ("tool_use" if uses_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": _tokens(prompt), "output_tokens": out,
                  "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write},
    }


def error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """The error body each provider sends for `status`."""
    if path.endswith("/messages"):
        kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests",
             500: "server_error", 503: "server_error"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None,
                      "code": "invalid_api_key" if status == 401 else None}}


class FakeProvider:
    """The server. Use as a context manager; `url` is its base, e.g. ``http://127.0.0.1:PORT``."""

    def __init__(self, *, failure_rate: float = 0.0, seed: int = 0, latency: float = 0.0,
                 port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.latency = latency
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these, in order; then default answers."""
        with self._lock:
            self._script.extend(faults)

    def _next(self) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.failure_rate and self._rng.random() < self.failure_rate:
                return self._rng.choice([
                    Fault(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                          {"retry-after": "1"}),
                    Fault(500, None), Fault(529, None), Fault(200, None, truncate=True)])
            return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with provider._lock:
                    provider.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                              "body": body, "time": time.monotonic()})
                fault = provider._next()
                if provider.latency:
                    time.sleep(provider.latency)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                status = fault.status if fault else 200
                payload = fault.body if fault else None
                if payload is None:
                    if status >= 400:
                        payload = error_body(self.path, status, f"fake {status} from the test server")
                    elif self.path.endswith("/messages"):
                        payload = anthropic_message(body or {})
                    else:
                        payload = openai_completion(body or {})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                is_json = not isinstance(payload, bytes)
                self.send_header("content-type", "application/json" if is_json else "text/html")
                self.send_header("x-request-id" if "/chat/" in self.path else "request-id", "req_fake_123")
                for name, value in (fault.headers if fault else {}).items():
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
    with FakeProvider(failure_rate=args.failure_rate, seed=args.seed, latency=args.latency,
                      port=args.port) as server:
        print(f"PORT={server.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
