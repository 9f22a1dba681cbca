"""Anthropic's Message Batches API: Messages requests answered within 24 hours.

Wire format: ``POST {base}/v1/messages/batches`` with ``requests: [{custom_id,
params}]`` (params as for ``POST /v1/messages``), poll ``GET
{base}/v1/messages/batches/{id}`` until ``processing_status`` is ``ended``, then
read ``results_url``: JSONL of ``{custom_id, result: {type: succeeded | errored |
canceled | expired, ...}}``. A batch holds at most 100,000 requests and 256 MB.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from orchestrate.errors import BatchExpiredError, BatchFailedError, LLMError, MalformedResponseError
from orchestrate.llm.base import LLMResponse
from orchestrate.llm.batch_api import BatchAPI, BatchStatus, Submitted, read_results
from orchestrate.llm.http import Reply, error_for_status, scrub_error
from orchestrate.redaction import scrub_url

__all__ = ["AnthropicBatchAPI"]

_STATUS_OF = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,  # not retried, as a 402 online is not
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatchAPI(BatchAPI):
    """The Message Batches API of an `AnthropicClient` (its base URL, key and connection pool)."""

    provider = "anthropic"
    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024

    def item(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    async def submit(self, model: str, items: list[dict[str, Any]]) -> Submitted:
        reply = await self.client._http.post_json(
            f"{self.client.base_url}/v1/messages/batches", self.client.headers(), {"requests": items}
        )
        batch_id = reply.data.get("id")
        if not isinstance(batch_id, str):
            raise MalformedResponseError("anthropic: the batch was created without an id", provider="anthropic")
        return Submitted(batch_id, None)

    async def status(self, batch_id: str) -> BatchStatus:
        reply = await self.client._http.get_json(
            f"{self.client.base_url}/v1/messages/batches/{batch_id}", self.client.headers()
        )
        data = reply.data
        state = str(data.get("processing_status") or "unknown")
        counts = {k: int(v or 0) for k, v in (data.get("request_counts") or {}).items()}
        total = sum(counts.values())
        failed = counts.get("errored", 0) + counts.get("canceled", 0) + counts.get("expired", 0)
        reason = None
        if counts.get("expired"):
            reason = f"{counts['expired']} request(s) expired before the 24h window closed"
        return BatchStatus(
            batch_id, state, state == "ended", total, total - counts.get("processing", 0), failed, reason, data
        )

    async def results(self, status: BatchStatus, model: str) -> dict[str, LLMResponse | LLMError]:
        url = status.raw.get("results_url")
        if not url:
            return {}
        url = self._own(str(url), status.batch_id)
        response = await self.client._http.send("GET", str(url), self.client.headers())
        out: dict[str, LLMResponse | LLMError] = {}
        read_results(
            response.content,
            provider="anthropic",
            what="results",
            batch_id=status.batch_id,
            outcome=lambda row: self._outcome(row, model, status.batch_id),
            into=out,
            secret=self.client.api_key,
        )
        return out

    def _own(self, url: str, batch_id: str) -> str:
        """`url` if it is on the provider's own origin (the key is sent with it), else an error."""
        if _origin(url) != _origin(self.client.base_url):
            raise BatchFailedError(
                f"anthropic batch {batch_id}: its results_url is on {scrub_url(url)!r}, not on "
                f"{scrub_url(self.client.base_url)!r}; results are fetched (with the key) only from the provider's own host",
                provider="anthropic",
            )
        return url

    def _outcome(self, row: dict[str, Any], model: str, batch_id: str) -> LLMResponse | LLMError:
        result = row.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded" and isinstance(result.get("message"), dict):
            return self.client.parse_checked(Reply(result["message"], None, {}), model)
        if kind == "errored":
            error = (result.get("error") or {}).get("error") or result.get("error") or {}
            status = _STATUS_OF.get(str(error.get("type")), 500)
            failed = error_for_status(
                status,
                f"in batch {batch_id}: {error.get('message') or error.get('type')}",
                provider="anthropic",
                retry_after=None,
                request_id=None,
            )
            return scrub_error(failed, self.client.api_key)
        expired = BatchExpiredError(
            f"anthropic batch {batch_id}: request {kind or 'not answered'}", provider="anthropic"
        )
        return scrub_error(expired, self.client.api_key)

    async def cancel(self, batch_id: str) -> None:
        await self.client._http.post_json(
            f"{self.client.base_url}/v1/messages/batches/{batch_id}/cancel", self.client.headers(), {}
        )


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    except ValueError:
        return None
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)
