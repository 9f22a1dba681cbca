"""A fake Amazon Bedrock runtime on 127.0.0.1 speaking the Converse wire format.

``POST /model/{modelId}/converse`` answers a Converse response (``output.message.content``
blocks, ``stopReason``, ``usage`` with ``inputTokens``/``outputTokens`` and the cache
counts, ``metrics.latencyMs``) with an ``x-amzn-RequestId`` header. Faults are AWS's own:
a status, ``x-amzn-ErrorType`` naming the exception, and a ``{"message": ...}`` body.
Tests script answers with `script` and read what arrived in `requests`.

Given ``keys`` (access key -> secret), it checks SigV4 signatures as AWS does, with
botocore's ``SigV4Auth`` as the oracle: an unknown access key is
``UnrecognizedClientException`` and a signature that does not match (a wrong secret,
an unsigned header or body byte changed, a session token not signed) is
``InvalidSignatureException``, both 403.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from tests.loopback import LoopbackServer

__all__ = ["AWS_ERRORS", "FakeBedrock", "converse_answer"]

# The Converse API's exceptions and their statuses.
AWS_ERRORS = {
    "ThrottlingException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelNotReadyException": 429,
    "ModelErrorException": 424,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}


def converse_answer(
    request: dict[str, Any],
    *,
    text: str | None = None,
    tool_use: dict[str, Any] | None = None,
    cache_read: int = 0,
    stop: str | None = None,
) -> dict[str, Any]:
    """A Converse response to `request`: JSON satisfying its outputConfig schema, else `text`."""
    blocks: list[dict[str, Any]] = []
    if tool_use is not None:
        blocks.append({"toolUse": tool_use})
    else:
        if text is None:
            fmt = ((request.get("outputConfig") or {}).get("textFormat") or {}).get("structure") or {}
            schema = (fmt.get("jsonSchema") or {}).get("schema")
            if schema is not None:
                import random

                from orchestrate.llm.simulated import example_from_schema

                text = json.dumps(example_from_schema(json.loads(schema), random.Random(0)))
            else:
                text = f"answer to {len(json.dumps(request.get('messages')))} bytes"
        blocks.append({"text": text})
    prompt = len(json.dumps(request.get("messages"))) // 4 + 1
    return {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop or ("tool_use" if tool_use else "end_turn"),
        "usage": {
            "inputTokens": prompt,
            "outputTokens": 7,
            "totalTokens": prompt + 7 + cache_read,
            "cacheReadInputTokens": cache_read,
            "cacheWriteInputTokens": 0,
        },
        "metrics": {"latencyMs": 12},
    }


class FakeBedrock(LoopbackServer):
    """The server; `url` is its base. `script(answer, ...)`: each a dict (a 200 body), or
    ``("ThrottlingException", "message", {headers})`` for an AWS error."""

    def __init__(self, *, keys: dict[str, str] | None = None) -> None:
        self.keys = keys
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._listen(self._handler())
        self.url = self.origin

    def script(self, *answers: Any) -> None:
        with self._lock:
            self._script.extend(answers)

    def _refuse_signature(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[str, str] | None:
        """Why AWS would refuse this request's SigV4 signature, or None (botocore recomputes it)."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if self.keys is None or not auth.startswith("AWS4-HMAC-SHA256 "):
            return None
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
        access_key, _day, region, service, _end = fields["Credential"].split("/")
        if access_key not in self.keys:
            return "UnrecognizedClientException", "The security token included in the request is invalid."
        lower = {k.lower(): v for k, v in headers.items()}
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(
            method="POST",
            url=f"http://{lower['host']}{path}",
            data=raw,
            headers={name: lower.get(name, "") for name in signed if name != "host"},
        )
        request.context["timestamp"] = lower.get("x-amz-date", "")
        signer = SigV4Auth(
            Credentials(access_key, self.keys[access_key], lower.get("x-amz-security-token")), service, region
        )
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if "x-amz-security-token" in lower and "x-amz-security-token" not in signed:
            expected = ""
        if not hmac.compare_digest(expected, fields["Signature"]):
            return "InvalidSignatureException", (
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw)
                parts = self.path.split("/")
                model = unquote(parts[2]) if len(parts) > 3 and parts[1] == "model" else ""
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "model": model,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "raw": raw,
                        }
                    )
                    answer = fake._script.popleft() if fake._script else None
                headers = {"x-amzn-RequestId": "4f3a-fake-req"}
                refused = fake._refuse_signature(self.path, dict(self.headers.items()), raw)
                if not self.headers.get("authorization"):
                    status, data = 403, {"message": "Missing Authentication Token"}
                    headers["x-amzn-ErrorType"] = "MissingAuthenticationTokenException"
                elif refused is not None:
                    status, data = 403, {"message": refused[1]}
                    headers["x-amzn-ErrorType"] = refused[0]
                elif parts[-1] != "converse" or not model:
                    status, data = 404, {"message": "Unknown operation"}
                    headers["x-amzn-ErrorType"] = "UnknownOperationException"
                elif isinstance(answer, tuple):
                    kind, message, *extra = answer
                    status, data = AWS_ERRORS[kind], {"message": message}
                    headers["x-amzn-ErrorType"] = f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
                    for more in extra:
                        headers.update(more)
                else:
                    status, data = 200, answer if answer is not None else converse_answer(body)
                out = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler
