"""HTTP for the provider clients: one pooled httpx client, and every failure mapped in one place.

The only module that imports httpx. A provider client builds its request and
parses the JSON it gets back; everything between (time-outs, resets, status
codes, error bodies, retry-after, request ids, rate-limit headers, keys kept
out of messages) is decided here, the same way for every provider.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from orchestrate.errors import (
    AuthenticationError,
    BadRequestError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    ModelNotFoundError,
    NonRetriableLLMError,
    ProviderUnavailableError,
    RateLimitError,
)
from orchestrate.llm.base import LLMClient, LLMResponse, single_turn

__all__ = ["HTTPTransport", "ProviderClient", "Reply", "error_for_status", "parse_duration", "redact", "retry_after_of"]

_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{4,}|[A-Za-z0-9_\-]{8,}\*{3,}[A-Za-z0-9_\-]*)")


def redact(text: str, secret: str | None) -> str:
    """`text` with the key, and anything shaped like a key, replaced by '***'."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def parse_duration(value: str | None) -> float | None:
    """Seconds in '1.5', '20ms', '6m0s', '1h2m3.5s' (OpenAI's reset headers), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    total, matched = 0.0, False
    for number, unit in re.findall(r"([0-9]*\.?[0-9]+)(ms|h|m|s)", value):
        matched = True
        total += float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    return total if matched else None


def _seconds_until(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds until an HTTP-date or RFC 3339 moment, or None when it is neither."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        from datetime import datetime

        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return max(0.0, moment - now())


def retry_after_of(headers: httpx.Headers) -> float | None:
    """The delay a provider asked for: `retry-after-ms`, else `retry-after` (seconds or a date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return _seconds_until(value)


def rate_limit_of(headers: httpx.Headers) -> dict[str, float]:
    """What remains, from OpenAI's `x-ratelimit-*` or Anthropic's `anthropic-ratelimit-*` headers."""
    found: dict[str, float] = {}
    spellings = {
        "remaining_requests": ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
        "remaining_tokens": ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"),
    }
    for key, names in spellings.items():
        for name in names:
            raw = headers.get(name)
            if raw is not None:
                try:
                    found[key] = float(raw)
                except ValueError:
                    pass
                break
    resets = {
        "reset_requests_s": ("x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"),
        "reset_tokens_s": ("x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset"),
    }
    for key, (openai_name, anthropic_name) in resets.items():
        seconds = parse_duration(headers.get(openai_name))
        if seconds is None:
            seconds = _seconds_until(headers.get(anthropic_name))
        if seconds is not None:
            found[key] = seconds
    return found


def _error_text(body: bytes) -> str:
    """The provider's own error message, from either provider's error body, else the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:300] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "").strip()
            kind = error.get("type") or error.get("code")
            if message:
                return f"{message} ({kind})" if kind else message
        elif isinstance(error, str):
            return error
        if data.get("message"):
            return str(data["message"])
    return json.dumps(data)[:300]


def error_for_status(status: int, message: str, *, provider: str, retry_after: float | None,
                     request_id: str | None) -> LLMError:
    """The error class for an HTTP status; 408, 409, 429 and 5xx (529 too) are retriable."""
    kind: type[LLMError]
    if status == 429:
        kind = RateLimitError
    elif status in (408, 409) or status >= 500:
        kind = ProviderUnavailableError
    elif status in (401, 403):
        kind = AuthenticationError
    elif status == 404:
        kind = ModelNotFoundError
    elif status in (400, 413, 422):
        kind = BadRequestError
    else:
        kind = NonRetriableLLMError
    suffix = f" [request {request_id}]" if request_id else ""
    return kind(f"{provider} {status}: {message}{suffix}", provider=provider, status_code=status,
                retry_after=retry_after, request_id=request_id)


@dataclass
class Reply:
    """A successful provider answer: its JSON body and what the headers told us."""

    data: dict[str, Any]
    request_id: str | None
    rate_limit: dict[str, float]


class HTTPTransport:
    """One pooled `httpx.AsyncClient` for one provider client; POSTs JSON, maps failures.

    Args:
        provider: Name used in messages ("openai", "anthropic").
        secret: The API key, scrubbed from every message we build.
        timeout: Seconds a whole call may take to answer (read time-out).
        connect_timeout: Seconds to open a connection.
        max_connections: Size of the connection pool.
    """

    def __init__(self, provider: str, *, secret: str | None, timeout: float = 120.0,
                 connect_timeout: float = 10.0, max_connections: int = 100,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.provider = provider
        self._secret = secret
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits,
                                             transport=self._transport)
        return self._client

    async def post_json(self, url: str, headers: dict[str, str], body: dict[str, Any],
                        *, timeout: float | None = None) -> Reply:
        """POST `body`; the decoded JSON object on 2xx, else the mapped LLMError."""
        response = await self.send("POST", url, headers, json=body, timeout=timeout)
        return self._reply(response)

    async def get_json(self, url: str, headers: dict[str, str]) -> Reply:
        """GET a JSON object (a batch's status); mapped errors as for `post_json`."""
        return self._reply(await self.send("GET", url, headers))

    async def send(self, method: str, url: str, headers: dict[str, str], *,
                   timeout: float | None = None, **content: Any) -> httpx.Response:
        """Any request (JSON, multipart `files` + `data`); the 2xx response, else the mapped LLMError."""
        provider = self.provider
        try:
            response = await self._http().request(
                method, url, headers=headers,
                timeout=httpx.Timeout(timeout, connect=self._timeout.connect) if timeout else httpx.USE_CLIENT_DEFAULT,
                **content)
        except httpx.TimeoutException as exc:
            raise LLMTimeoutError(f"{provider}: request timed out ({type(exc).__name__})",
                                  provider=provider) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            detail = redact(str(exc) or type(exc).__name__, self._secret)
            raise LLMConnectionError(f"{provider}: connection failed: {detail}", provider=provider) from None
        if response.status_code >= 400:
            message = redact(_error_text(response.content), self._secret)
            raise error_for_status(response.status_code, message, provider=provider,
                                   retry_after=retry_after_of(response.headers),
                                   request_id=_request_id(response))
        return response

    def _reply(self, response: httpx.Response) -> Reply:
        provider, request_id = self.provider, _request_id(response)
        try:
            data = response.json()
        except ValueError:
            raise MalformedResponseError(
                f"{provider} {response.status_code}: the body is not JSON "
                f"({len(response.content)} bytes, content-type {response.headers.get('content-type', '?')})",
                provider=provider, status_code=response.status_code, request_id=request_id) from None
        if not isinstance(data, dict):
            raise MalformedResponseError(f"{provider}: expected a JSON object, got {type(data).__name__}",
                                         provider=provider, request_id=request_id)
        return Reply(data, request_id, rate_limit_of(response.headers))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _request_id(response: httpx.Response) -> str | None:
    return response.headers.get("x-request-id") or response.headers.get("request-id")


class ProviderClient(LLMClient):
    """What the HTTP clients share: key and base URL (argument, else environment, else the
    default), one pooled transport, the call itself (build the body, POST, parse), `complete`
    as a one-turn `complete_with_tools`, and a repr that never shows the key.

    A provider sets the class attributes below and writes `headers`, `request_body` and `parse`.
    """

    key_env = ""
    url_env = ""
    default_url = ""
    path = ""

    @abstractmethod
    def headers(self) -> dict[str, str]:
        """The request headers, authentication included."""

    @staticmethod
    @abstractmethod
    def request_body(messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]],
                     temperature: float | None, max_tokens: int, **kwargs: Any) -> dict[str, Any]:
        """The provider's request for a neutral conversation."""

    @abstractmethod
    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from the provider's answer; MalformedResponseError if it is not one."""

    async def complete_with_tools(self, messages: list[dict[str, Any]], model: str,
                                  tools: list[dict[str, Any]], temperature: float | None = 0.7,
                                  max_tokens: int = 1000, **kwargs: Any) -> LLMResponse:
        body = self.request_body(messages, model, tools, temperature, max_tokens, **kwargs)
        reply = await self._http.post_json(f"{self.base_url}{self.path}", self.headers(), body,
                                           timeout=kwargs.get("request_timeout"))
        return self.parse(reply, model)

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float = 120.0, connect_timeout: float = 10.0, max_connections: int = 100,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get(self.key_env)
        self.base_url = (base_url or os.environ.get(self.url_env) or self.default_url).rstrip("/")
        self._http = HTTPTransport(self.provider, secret=self.api_key, timeout=timeout,
                                   connect_timeout=connect_timeout, max_connections=max_connections,
                                   transport=transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def complete(self, prompt: str, model: str, temperature: float | None = 0.7,
                       max_tokens: int = 1000, tools: list[dict[str, Any]] | None = None,
                       **kwargs: Any) -> LLMResponse:
        return await self.complete_with_tools(single_turn(prompt, kwargs.get("system")), model,
                                              tools or [], temperature, max_tokens, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()
