"""HTTP for the provider clients: one pooled httpx client, and every failure mapped in one place.

The only module that imports httpx. A provider client builds its request and
parses the JSON it gets back; everything between (time-outs, resets, status
codes, error bodies, retry-after, request ids, rate-limit headers, keys kept
out of messages) is decided here, the same way for every provider.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    UserInputError,
)
from orchestrate.finite import loads_strict
from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall, single_turn
from orchestrate.redaction import redact as _redact
from orchestrate.redaction import remember, scrub, scrub_error

__all__ = [
    "HTTPTransport",
    "ProviderClient",
    "Reply",
    "check_usage",
    "error_for_status",
    "parse_duration",
    "redact",
    "retry_after_of",
    "scrub_error",
    "scrub_response",
    "transport_limits",
]


def redact(text: str, secret: str | None) -> str:
    """`text` with the key, every credential the environment holds, and anything shaped like a key replaced by '***'."""
    return _redact(text, secret)


def _scrub(value: Any, secret: str | None) -> Any:
    """`value` with every string in it (dict keys too) redacted; numbers and None kept."""
    return scrub(value, secret)


def scrub_response(response: LLMResponse, secret: str | None) -> LLMResponse:
    """Every string a provider sent (text, model, ids, tool calls, metadata) with keys redacted.

    Done before the response reaches the engine, so no sink, report or cache
    entry ever holds what a server echoed back.
    """
    response.content = redact(response.content, secret)
    response.model = redact(response.model, secret)
    response.finish_reason = redact(response.finish_reason, secret)
    response.request_id = redact(response.request_id, secret) if response.request_id else response.request_id
    response.metadata = _scrub(response.metadata, secret)
    if response.tool_calls:
        response.tool_calls = [
            ToolCall(id=redact(c.id, secret), name=redact(c.name, secret), arguments=_scrub(c.arguments, secret))
            for c in response.tool_calls
        ]
    return response


def parse_duration(value: str | None) -> float | None:
    """Seconds in '1.5', '20ms', '6m0s', '1h2m3.5s' (OpenAI's reset headers), or None."""
    if not value:
        return None
    value = value.strip()
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    total, matched = 0.0, False
    for number, unit in re.findall(r"([0-9]*\.?[0-9]+)(ms|h|m|s)", value):
        matched = True
        total += float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    return total if matched and math.isfinite(total) else None


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


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def retry_after_of(headers: httpx.Headers) -> float | None:
    """The delay a provider asked for: `retry-after-ms`, else `retry-after` (seconds or a date).

    Uncapped; `HTTPTransport` caps what it honours (see `max_retry_after`).
    """
    millis = headers.get("retry-after-ms")
    if millis:
        seconds = _seconds(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    return seconds if seconds is not None else _seconds_until(value)


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
                value = _seconds(raw)
                if value is not None:
                    found[key] = value
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
        data = loads_strict(body)
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


def _clean_header(value: str, secret: str | None) -> str:
    """A header value fit for a message: key redacted, at most 200 characters."""
    return redact(value, secret)[:200]


# pydantic's report of a request body it refused ("1 validation error:\n  {... 'loc': ('body', 'top_p') ..."),
# which llama-cpp-python's server sends with a 500: the same request would be refused again.
_REQUEST_VALIDATION = re.compile(r"\d+ validation errors?:?\s.*'loc': \('body'", re.DOTALL)


def error_for_status(
    status: int, message: str, *, provider: str, retry_after: float | None, request_id: str | None
) -> LLMError:
    """The error class for an HTTP status; 408, 409, 424 (Bedrock's model error), 429 and 5xx
    (529 too) are retriable, except a 500 that is a server's validation of the request body."""
    kind: type[LLMError]
    if status == 429:
        kind = RateLimitError
    elif status == 500 and _REQUEST_VALIDATION.match(message):
        kind = BadRequestError  # llama-cpp-python's server answers its request validation with a 500
    elif status in (408, 409, 424) or status >= 500:
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
    return kind(
        f"{provider} {status}: {message}{suffix}",
        provider=provider,
        status_code=status,
        retry_after=retry_after,
        request_id=request_id,
    )


_MAX_COUNT = 10**15  # more tokens than any model has ever been sent: a lie, not a count


def check_usage(data: dict[str, Any], counts: tuple[tuple[tuple[str, ...], bool], ...], provider: str) -> str | None:
    """Why the answer's token counts cannot be trusted, or None; bad counts are zeroed in place.

    A count must be a whole number at least 0; a required one must be there. A
    call whose usage is not to be trusted is booked at its reserved worst case
    by the engine, never at what the server claimed (a negative count would
    book a refund and let later calls through the budget).
    """
    if not counts:
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        data["usage"] = {path[0]: 0 for path, required in counts if len(path) == 1 and required}
        return f"{provider} sent no usage" if usage is None else f"{provider} sent a usage that is not an object"
    problems: list[str] = []
    for path, required in counts:
        holder: Any = usage
        for part in path[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        name = ".".join(path)
        if not isinstance(holder, dict) or path[-1] not in holder or holder[path[-1]] is None:
            if required:
                problems.append(f"{name} missing")
                if isinstance(holder, dict):
                    holder[path[-1]] = 0
            elif holder is not None and not isinstance(holder, dict):
                problems.append(f"{'.'.join(path[:-1])} is not an object")
                usage[path[0]] = {}
            continue
        value = holder[path[-1]]
        if isinstance(value, float) and value.is_integer() and 0 <= value <= _MAX_COUNT:
            holder[path[-1]] = int(value)
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
            problems.append(f"{name} is {_short_value(value)}, not a count")
            holder[path[-1]] = 0
    return f"{provider} reported unusable usage: {'; '.join(problems)}" if problems else None


def _short_value(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Reply:
    """A successful provider answer: its JSON body and what the headers told us."""

    data: dict[str, Any]
    request_id: str | None
    rate_limit: dict[str, float]


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserInputError(f"{name}={raw!r}: expected a finite number at least 0")
    return value


DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_RETRY_AFTER = 300.0
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # a batch's result file: one line per request of the batch


def transport_limits() -> tuple[int, float]:
    """The answer-size cap and the retry-after cap from the environment (UserInputError if bad)."""
    return (
        int(_env_number("ORCHESTRATE_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)),
        _env_number("ORCHESTRATE_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER),
    )


class HTTPTransport:
    """One pooled `httpx.AsyncClient` for one provider client; POSTs JSON, maps failures.

    Args:
        provider: Name used in messages ("openai", "anthropic").
        secret: The API key, scrubbed from every message we build.
        timeout: Seconds a whole call may take to answer (read time-out).
        connect_timeout: Seconds to open a connection.
        max_connections: Size of the connection pool.
        max_response_bytes: The most of an answer's body ever read (after decompression);
            a longer answer fails the call. Default ``$ORCHESTRATE_MAX_RESPONSE_BYTES``, else 8 MiB.
        max_retry_after: The longest ``retry-after`` honoured, in seconds; a longer one is cut
            to this and the error says so. Default ``$ORCHESTRATE_MAX_RETRY_AFTER``, else 300.
    """

    def __init__(
        self,
        provider: str,
        *,
        secret: str | None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int | None = None,
        max_retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self._secret = secret
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.max_response_bytes = int(
            max_response_bytes
            if max_response_bytes is not None
            else _env_number("ORCHESTRATE_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)
        )
        self.max_retry_after = float(
            max_retry_after
            if max_retry_after is not None
            else _env_number("ORCHESTRATE_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER)
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits, transport=self._transport)
        return self._client

    async def _read_capped(self, response: httpx.Response, request_id: str | None, cap: int) -> bytes:
        """The body, never buffering more than `cap` bytes (+ one chunk)."""
        announced = response.headers.get("content-length")
        # Not retried: the same request would draw the same flood (and be paid for again).
        too_big = NonRetriableLLMError(
            f"{self.provider} {response.status_code}: the answer is larger than the limit of "
            f"{cap:,} bytes (ORCHESTRATE_MAX_RESPONSE_BYTES); not read",
            provider=self.provider,
            status_code=response.status_code,
            request_id=request_id,
            billed=response.is_success,  # an answer was made, and will be charged: booked at its worst case
        )
        if announced and announced.isdigit() and int(announced) > cap:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > cap:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _retry_after(self, headers: httpx.Headers) -> tuple[float | None, str]:
        asked = retry_after_of(headers)
        if asked is None or asked <= self.max_retry_after:
            return asked, ""
        return self.max_retry_after, (
            f" (asked to wait {asked:.0f}s; waiting at most {self.max_retry_after:.0f}s, ORCHESTRATE_MAX_RETRY_AFTER)"
        )

    async def post_json(
        self, url: str, headers: dict[str, str], body: dict[str, Any], *, timeout: float | None = None
    ) -> Reply:
        """POST `body`; the decoded JSON object on 2xx, else the mapped LLMError."""
        response = await self.send("POST", url, headers, json=body, timeout=timeout)
        return self._reply(response)

    async def get_json(self, url: str, headers: dict[str, str]) -> Reply:
        """GET a JSON object (a batch's status); mapped errors as for `post_json`."""
        return self._reply(await self.send("GET", url, headers))

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        timeout: float | None = None,
        max_bytes: int | None = None,
        **content: Any,
    ) -> httpx.Response:
        """Any request (JSON, multipart `files` + `data`); the 2xx response, else the mapped LLMError.

        The body is read up to `max_bytes` (default `max_response_bytes`; a GET, which
        downloads a batch's result file, up to `MAX_DOWNLOAD_BYTES`), never more. Every
        string taken from the answer (error text, request id, content type) has the key
        redacted before it is put in an error.
        """
        provider = self.provider
        secret = self._secret
        limit = (
            max_bytes
            if max_bytes is not None
            else (max(self.max_response_bytes, MAX_DOWNLOAD_BYTES) if method == "GET" else self.max_response_bytes)
        )
        client = self._http()
        try:
            request = client.build_request(
                method,
                url,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=self._timeout.connect) if timeout else httpx.USE_CLIENT_DEFAULT,
                **content,
            )
            streamed = await client.send(request, stream=True)
            try:
                request_id = _request_id(streamed, secret)
                body = await self._read_capped(streamed, request_id, limit)
            finally:
                await streamed.aclose()
        except httpx.TimeoutException as exc:
            where = redact(_without_query(url), secret)
            raise LLMTimeoutError(
                f"{provider}: request to {where} timed out ({type(exc).__name__})", provider=provider
            ) from None
        except (httpx.TransportError, httpx.DecodingError, httpx.StreamError) as exc:
            detail = redact(str(exc) or type(exc).__name__, secret)
            where = redact(_without_query(url), secret)
            raise LLMConnectionError(f"{provider}: connection to {where} failed: {detail}", provider=provider) from None
        if streamed.status_code >= 400:
            message = redact(_error_text(body), secret)
            kind = streamed.headers.get("x-amzn-errortype")  # AWS names the error in a header
            if kind:
                message = f"{message} ({redact(kind.split(':', 1)[0], secret)[:80]})"
            retry_after, note = self._retry_after(streamed.headers)
            raise error_for_status(
                streamed.status_code, message + note, provider=provider, retry_after=retry_after, request_id=request_id
            )
        return httpx.Response(streamed.status_code, headers=streamed.headers, content=body, request=request)

    def _reply(self, response: httpx.Response) -> Reply:
        provider, request_id = self.provider, _request_id(response, self._secret)
        try:
            data = loads_strict(response.content)
        except ValueError:
            kind = _clean_header(response.headers.get("content-type", "?"), self._secret)
            raise MalformedResponseError(
                f"{provider} {response.status_code}: the body is not JSON "
                f"({len(response.content)} bytes, content-type {kind})",
                provider=provider,
                status_code=response.status_code,
                request_id=request_id,
                billed=response.is_success,
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponseError(
                f"{provider}: expected a JSON object, got {type(data).__name__}",
                provider=provider,
                request_id=request_id,
                billed=response.is_success,
            )
        return Reply(data, request_id, rate_limit_of(response.headers))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _without_query(url: str) -> str:
    """The URL a connection error names: scheme, host and path, never a query string."""
    return url.split("?", 1)[0]


def _request_id(response: httpx.Response, secret: str | None) -> str | None:
    headers = response.headers
    raw = headers.get("x-request-id") or headers.get("request-id") or headers.get("x-amzn-requestid")
    return _clean_header(raw, secret) if raw else None


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
    def request_body(
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The provider's request for a neutral conversation."""

    @abstractmethod
    def parse(self, reply: Reply, model: str) -> LLMResponse:
        """An LLMResponse from the provider's answer; MalformedResponseError if it is not one."""

    # The cheap request `probe` makes (list the models), after the base URL.
    probe_path = "/models"
    # Whether the probe's answer says anything about the key (Bedrock's unsigned GET does not).
    probe_checks_key = True

    def probe_url(self) -> str:
        """The URL `probe` asks."""
        return f"{self.base_url}{self.probe_path}"

    async def probe(self, *, timeout: float) -> tuple[str, int]:
        """One cheap request (list the models): the URL asked and the HTTP status it answered.

        Raises:
            LLMError: As a call would (AuthenticationError for a refused key,
                LLMConnectionError or LLMTimeoutError naming the URL, ...), key scrubbed.
        """
        url = self.probe_url()
        try:
            response = await self._http.send("GET", url, self.headers(), timeout=timeout, max_bytes=1 << 20)
        except LLMError as exc:
            raise scrub_error(exc, self.api_key) from None
        return url, response.status_code

    # Where the token counts sit in the answer's ``usage`` object: (path, required).
    usage_counts: tuple[tuple[tuple[str, ...], bool], ...] = ()

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        body = self.request_body(messages, model, tools, temperature, max_tokens, **kwargs)
        return await self.exchange(f"{self.base_url}{self.path}", body, model, timeout=kwargs.get("request_timeout"))

    async def exchange(
        self, url: str, body: dict[str, Any], model: str, *, timeout: float | None = None
    ) -> LLMResponse:
        """POST a request body and parse the answer: its usage checked (`check_usage`), and every
        string in the answer or in the error scrubbed of the key before anything else sees it."""
        try:
            reply = await self._http.post_json(url, self.headers(), body, timeout=timeout)
        except LLMError as exc:
            raise scrub_error(exc, self.api_key) from None
        return self.parse_checked(reply, model)

    def parse_checked(self, reply: Reply, model: str) -> LLMResponse:
        """`parse`, with the usage checked first and every string scrubbed of the key after
        (also for answers that come back inside a batch's result file)."""
        try:
            anomaly = check_usage(reply.data, self.usage_counts, self.provider)
            response = self.parse(reply, model)
        except LLMError as exc:
            raise scrub_error(exc, self.api_key) from None
        if anomaly:
            response.metadata["usage_anomaly"] = anomaly
        return scrub_response(response, self.api_key)

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int | None = None,
        max_retry_after: float | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get(self.key_env)
        remember(self.api_key)
        self.base_url = (base_url or os.environ.get(self.url_env) or self.default_url).rstrip("/")
        self._http = HTTPTransport(
            self.provider,
            secret=self.api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            transport=transport,
            max_response_bytes=max_response_bytes,
            max_retry_after=max_retry_after,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        return await self.complete_with_tools(
            single_turn(prompt, kwargs.get("system")), model, tools or [], temperature, max_tokens, **kwargs
        )

    async def aclose(self) -> None:
        await self._http.aclose()
