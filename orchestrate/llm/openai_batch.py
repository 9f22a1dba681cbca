"""OpenAI's Batch API: a JSONL file of Chat Completions requests, answered within 24 hours.

Wire format: upload the file (``POST {base}/files``, multipart, ``purpose=batch``;
each line ``{custom_id, method: POST, url: /v1/chat/completions, body}``), create
the batch (``POST {base}/batches`` with ``input_file_id``, ``endpoint`` and
``completion_window: 24h``), poll ``GET {base}/batches/{id}`` (``validating``,
``in_progress``, ``finalizing``, then ``completed``, ``failed``, ``expired`` or
``cancelled``), and read the output and error files (``GET
{base}/files/{id}/content``), matched by ``custom_id``. A file holds at most
50,000 requests and 200 MB.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrate.errors import BatchExpiredError, LLMError, MalformedResponseError
from orchestrate.llm.base import LLMResponse
from orchestrate.llm.batch_api import BatchAPI, BatchStatus, Submitted, read_results
from orchestrate.llm.http import Reply, error_for_status, redact, scrub_error

__all__ = ["OpenAIBatchAPI"]

ENDPOINT = "/v1/chat/completions"
_ENDED = ("completed", "failed", "expired", "cancelled")


class OpenAIBatchAPI(BatchAPI):
    """The Batch API of an `OpenAIClient` (its base URL, key and connection pool)."""

    provider = "openai"
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024

    def _headers(self) -> dict[str, str]:
        return {k: v for k, v in self.client.headers().items() if k.lower() != "content-type"}

    def item(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}

    async def submit(self, model: str, items: list[dict[str, Any]]) -> Submitted:
        http, base = self.client._http, self.client.base_url
        content = b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in items)
        upload = await http.send(
            "POST",
            f"{base}/files",
            self._headers(),
            files={"file": ("orchestrate-batch.jsonl", content, "application/jsonl")},
            data={"purpose": "batch"},
        )
        file_id = http._reply(upload).data.get("id")
        if not isinstance(file_id, str):
            raise MalformedResponseError("openai: the file upload answered without an id", provider="openai")
        created = await http.post_json(
            f"{base}/batches",
            self.client.headers(),
            {
                "input_file_id": file_id,
                "endpoint": ENDPOINT,
                "completion_window": "24h",
                "metadata": {"created_by": "orchestrate", "model": model},
            },
        )
        batch_id = created.data.get("id")
        if not isinstance(batch_id, str):
            raise MalformedResponseError("openai: the batch was created without an id", provider="openai")
        return Submitted(batch_id, file_id)

    async def status(self, batch_id: str) -> BatchStatus:
        reply = await self.client._http.get_json(f"{self.client.base_url}/batches/{batch_id}", self._headers())
        data = reply.data
        state = str(data.get("status") or "unknown")
        counts = data.get("request_counts") or {}
        completed, failed = int(counts.get("completed") or 0), int(counts.get("failed") or 0)
        reason = None
        errors = ((data.get("errors") or {}).get("data") or []) if isinstance(data.get("errors"), dict) else []
        if errors:
            reason = "; ".join(
                f"{e.get('code') or 'error'}: {e.get('message') or ''}"
                + (f" (line {e['line']})" if e.get("line") else "")
                for e in errors[:3]
            )
        elif state == "expired":
            reason = "not finished within the 24h completion window"
        if reason:  # the provider's words reach batches.json, events, reports and the terminal
            reason = redact(reason, self.client.api_key)
        return BatchStatus(
            batch_id, state, state in _ENDED, int(counts.get("total") or 0), completed + failed, failed, reason, data
        )

    async def results(self, status: BatchStatus, model: str) -> dict[str, LLMResponse | LLMError]:
        out: dict[str, LLMResponse | LLMError] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = status.raw.get(key)
            if not file_id:
                continue
            response = await self.client._http.send(
                "GET", f"{self.client.base_url}/files/{file_id}/content", self._headers()
            )
            read_results(
                response.content,
                provider="openai",
                what=key.replace("_id", ""),
                batch_id=status.batch_id,
                outcome=lambda row: self._outcome(row, model, status.batch_id),
                into=out,
                secret=self.client.api_key,
            )
        return out

    def _outcome(self, row: dict[str, Any], model: str, batch_id: str) -> LLMResponse | LLMError:
        answer = row.get("response") or {}
        code = int(answer.get("status_code") or 0)
        body = answer.get("body")
        request_id = answer.get("request_id")
        if code == 200 and isinstance(body, dict):
            return self.client.parse_checked(Reply(body, request_id, {}), model)
        if code >= 400:
            error = (body or {}).get("error") if isinstance(body, dict) else None
            message = (error or {}).get("message") if isinstance(error, dict) else None
            failed = error_for_status(
                code,
                f"in batch {batch_id}: {message or 'request failed'}",
                provider="openai",
                retry_after=None,
                request_id=request_id,
            )
            return scrub_error(failed, self.client.api_key)
        error = row.get("error") or {}
        expired = BatchExpiredError(
            f"openai batch {batch_id}: {error.get('code') or 'no answer'}: "
            f"{error.get('message') or 'the request was not answered'}",
            provider="openai",
        )
        return scrub_error(expired, self.client.api_key)

    async def cancel(self, batch_id: str) -> None:
        await self.client._http.post_json(
            f"{self.client.base_url}/batches/{batch_id}/cancel", self.client.headers(), {}
        )
