"""The loopback server's batch APIs: OpenAI's Batch API and Anthropic's Message Batches.

`FakeBatchProvider` is a `FakeProvider` (so the online endpoints keep working)
that also serves, over real sockets and in each provider's wire format:

- OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``), ``POST /v1/batches``,
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/files/{id}/content``.
- Anthropic: ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
  ``GET /v1/messages/batches/{id}/results``, ``POST /v1/messages/batches/{id}/cancel``.

A batch moves with an injected clock (`FakeClock`; the client under test sleeps
on the same clock, so nothing really waits): ``validating`` for `validate_s`,
then ``in_progress`` for `process_s` (counts grow linearly), then ``finalizing``
for `finalize_s`, then its fate. `outcome(custom_id, body)` decides each request
(``ok``, ``error`` a 500, ``invalid`` a 400, ``billing`` Anthropic's 402
``billing_error``, ``expired``), `fate(n)` each batch
(``completed``, ``expired``: only every other request answered, ``failed``: a
validation error). The server counts submissions and polls, keeps every
submitted request (to check against the SDKs' types), and plays scripted
faults (`batch_script`) on the batch endpoints, e.g. a 429 with retry-after.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC
from typing import Any

from tests.fake_prompt_cache import CacheUse, ProviderCache
from tests.fake_provider import FakeProvider, Fault, anthropic_message, error_body, openai_completion

__all__ = ["FakeBatchProvider", "FakeClock"]


class FakeClock:
    """Time that moves only when someone sleeps on it; `sleep` is awaitable like asyncio.sleep."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        import asyncio

        self.sleeps.append(delay)
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


class FakeBatchProvider(FakeProvider):
    def __init__(
        self,
        clock: FakeClock,
        *,
        validate_s: float = 10.0,
        process_s: float = 60.0,
        finalize_s: float = 10.0,
        outcome: Callable[[str, dict[str, Any]], str] | None = None,
        fate: Callable[[int], str] | None = None,
        **options: Any,
    ) -> None:
        if options.get("caching", True) and options.get("prompt_cache") is None:
            options["prompt_cache"] = ProviderCache(clock)  # batch requests read and write it too
        super().__init__(**options)
        self.clock = clock
        self.validate_s, self.process_s, self.finalize_s = validate_s, process_s, finalize_s
        self.outcome = outcome or (lambda custom_id, body: "ok")
        self.fate = fate or (lambda n: "completed")
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.submitted: list[dict[str, Any]] = []  # {"provider", "batch_id", "items"} per submission
        self.polls: dict[str, int] = {}
        self.failure_message = "The batch input file is not valid."  # what a failed batch's error says
        self.results_base: str | None = None  # where Anthropic's results_url points (default: this server)
        # Rewrites a results file as served (OpenAI's output and error files, Anthropic's results):
        # (provider, content) -> content, e.g. to garble a line or repeat one.
        self.results_filter: Callable[[str, bytes], bytes] | None = None
        self.batch_script: deque[Fault] = deque()
        self.uploads: list[dict[str, Any]] = []  # {"filename", "purpose", "content_type"} per upload
        self._ids = itertools.count(1)
        self._batch_lock = threading.Lock()

    @property
    def submissions(self) -> int:
        return len(self.submitted)

    # -- state ----------------------------------------------------------------------------------

    def _new_batch(self, provider: str, items: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        n = len(self.submitted)
        prefix = "batch_" if provider == "openai" else "msgbatch_"
        batch = {
            "id": f"{prefix}{next(self._ids):04d}",
            "provider": provider,
            "items": items,
            "created": self.clock(),
            "fate": self.fate(n),
            "cancelled_at": None,
            "final": None,
            **extra,
        }
        if provider == "openai":
            models = {str((item.get("body") or {}).get("model")) for item in items}
            if len(models) > 1:
                batch["fate"] = "mismatched_model"
        self.batches[batch["id"]] = batch
        self.submitted.append({"provider": provider, "batch_id": batch["id"], "items": items})
        return batch

    def _phase(self, batch: dict[str, Any]) -> tuple[str, float]:
        """(phase, share of requests done) at the clock's time."""
        if batch["cancelled_at"] is not None:
            return ("cancelled", 0.0)
        if batch["fate"] in ("failed", "mismatched_model"):
            return ("failed", 0.0) if self.clock() - batch["created"] >= self.validate_s else ("validating", 0.0)
        elapsed = self.clock() - batch["created"]
        if elapsed < self.validate_s:
            return ("validating", 0.0)
        elapsed -= self.validate_s
        if elapsed < self.process_s:
            return ("in_progress", elapsed / self.process_s)
        if elapsed < self.process_s + self.finalize_s:
            return ("finalizing", 1.0)
        return ("expired" if batch["fate"] == "expired" else "completed", 1.0)

    def _answers(self, batch: dict[str, Any], phase: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(custom_id, outcome, body) of every request once the batch is over."""
        if batch["final"] is None:
            rows = []
            for i, item in enumerate(batch["items"]):
                body = item.get("body") if batch["provider"] == "openai" else item.get("params")
                if phase == "cancelled":
                    kind = "cancelled"
                elif phase == "expired" and i % 2:
                    kind = "expired"
                else:
                    kind = self.outcome(item["custom_id"], body or {})
                rows.append((item["custom_id"], kind, body or {}))
            batch["final"] = rows
            batch["cache"] = {}
            if self.prompt_cache is not None:  # the requests answered one after another, caching as online
                for custom_id, kind, request in rows:
                    if kind == "ok":
                        look = (
                            self.prompt_cache.openai if batch["provider"] == "openai" else self.prompt_cache.anthropic
                        )
                        use = look(request)
                        use.commit()
                        batch["cache"][custom_id] = use
        return batch["final"]

    @staticmethod
    def _use(batch: dict[str, Any], custom_id: str) -> CacheUse | None:
        use = (batch.get("cache") or {}).get(custom_id)
        return None if use is None or use.error else use

    def _rewritten(self, request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """An answer inside a result file, through the same `rewrite` hook as online answers."""
        return self.rewrite(request, answer) if self.rewrite is not None else answer

    # -- OpenAI ---------------------------------------------------------------------------------

    def _openai_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        phase, share = self._phase(batch)
        total = len(batch["items"])
        created = int(batch["created"])
        body: dict[str, Any] = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": batch["input_file_id"],
            "completion_window": "24h",
            "status": phase,
            "output_file_id": None,
            "error_file_id": None,
            "created_at": created,
            "in_progress_at": None,
            "expires_at": created + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "metadata": batch.get("metadata"),
            "request_counts": {"total": total, "completed": int(total * share), "failed": 0},
        }
        if phase == "failed":
            body["failed_at"] = created + int(self.validate_s)
            code = "mismatched_model" if batch["fate"] == "mismatched_model" else "invalid_json_line"
            body["errors"] = {
                "object": "list",
                "data": [{"code": code, "message": self.failure_message, "param": None, "line": 1}],
            }
            body["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        if phase in ("completed", "expired", "cancelled"):
            rows = self._answers(batch, phase)
            output, errors, done, failed = [], [], 0, 0
            for custom_id, kind, request in rows:
                line: dict[str, Any] = {"id": f"batch_req_{custom_id}", "custom_id": custom_id}
                if kind == "ok":
                    line.update(
                        response={
                            "status_code": 200,
                            "request_id": f"req_{custom_id}",
                            "body": self._rewritten(
                                request, openai_completion(request, cache=self._use(batch, custom_id))
                            ),
                        },
                        error=None,
                    )
                    output.append(line)
                    done += 1
                elif kind in ("error", "invalid"):
                    status = 500 if kind == "error" else 400
                    line.update(
                        response={
                            "status_code": status,
                            "request_id": f"req_{custom_id}",
                            "body": error_body("/v1/chat/completions", status, f"fake {status} inside the batch"),
                        },
                        error=None,
                    )
                    errors.append(line)
                    failed += 1
                else:
                    code = "batch_expired" if kind == "expired" else "batch_cancelled"
                    line.update(response=None, error={"code": code, "message": f"This request was {kind}."})
                    errors.append(line)
                    failed += 1
            body["request_counts"] = {"total": total, "completed": done, "failed": failed}
            if output:
                body["output_file_id"] = self._file(batch, "out", output)
            if errors:
                body["error_file_id"] = self._file(batch, "err", errors)
            body[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[phase]] = int(
                self.clock()
            )
        return body

    def _file(self, batch: dict[str, Any], kind: str, lines: list[dict[str, Any]]) -> str:
        file_id = f"file-{batch['id']}-{kind}"
        if file_id not in self.files:
            self.files[file_id] = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return file_id

    # -- Anthropic ------------------------------------------------------------------------------

    def _anthropic_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        phase, share = self._phase(batch)
        total = len(batch["items"])
        created = batch["created"]
        counts = {"processing": total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        ended = phase in ("completed", "expired", "cancelled")
        body: dict[str, Any] = {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if ended else ("canceling" if phase == "cancelling" else "in_progress"),
            "request_counts": counts,
            "ended_at": None,
            "created_at": _iso(created),
            "expires_at": _iso(created + 86400),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        }
        if not ended:
            done = int(total * share)
            counts.update(processing=total - done, succeeded=done)
            return body
        counts["processing"] = 0
        for _, kind, _ in self._answers(batch, phase):
            key = {
                "ok": "succeeded",
                "error": "errored",
                "invalid": "errored",
                "billing": "errored",
                "expired": "expired",
                "cancelled": "canceled",
            }[kind]
            counts[key] += 1
        body["ended_at"] = _iso(self.clock())
        body["results_url"] = f"{self.results_base or self.url}/v1/messages/batches/{batch['id']}/results"
        return body

    def _anthropic_results(self, batch: dict[str, Any]) -> bytes:
        lines = []
        for custom_id, kind, request in batch["final"] or []:
            if kind == "ok":
                result: dict[str, Any] = {
                    "type": "succeeded",
                    "message": self._rewritten(request, anthropic_message(request, cache=self._use(batch, custom_id))),
                }
            elif kind in ("error", "invalid", "billing"):
                status = {"error": 500, "invalid": 400, "billing": 402}[kind]
                result = {
                    "type": "errored",
                    "error": error_body("/v1/messages", status, f"fake {status} inside the batch"),
                }
            else:
                result = {"type": "expired" if kind == "expired" else "canceled"}
            lines.append(json.dumps({"custom_id": custom_id, "result": result}).encode() + b"\n")
        return b"".join(lines)

    # -- HTTP -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any] | None:
        """(status, body) for a batch endpoint, or None for the online endpoints."""
        parts = path.split("?")[0].strip("/").split("/")
        with self._batch_lock:
            if parts[:2] == ["v1", "files"] and method == "POST":
                return self._upload(headers, raw)
            if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                content = self.files.get(parts[2])
                if content is not None and self.results_filter is not None and parts[2].startswith("file-batch_"):
                    content = self.results_filter("openai", content)
                return (200, content) if content is not None else (404, _not_found("file", path))
            if parts[:2] == ["v1", "batches"]:
                if len(parts) == 2 and method == "POST":
                    request = json.loads(raw)
                    content = self.files.get(request.get("input_file_id"), b"")
                    items = [json.loads(line) for line in content.splitlines() if line.strip()]
                    batch = self._new_batch(
                        "openai",
                        items,
                        {
                            "input_file_id": request["input_file_id"],
                            "metadata": request.get("metadata"),
                            "request": request,
                        },
                    )
                    return 200, self._openai_batch(batch)
                batch = self.batches.get(parts[2]) if len(parts) > 2 else None
                if batch is None:
                    return 404, _not_found("batch", path)
                if len(parts) == 4 and parts[3] == "cancel":
                    batch["cancelled_at"] = self.clock()
                    return 200, {**self._openai_batch(batch), "status": "cancelling"}
                self.polls[batch["id"]] = self.polls.get(batch["id"], 0) + 1
                return 200, self._openai_batch(batch)
            if parts[:3] == ["v1", "messages", "batches"]:
                if len(parts) == 3 and method == "POST":
                    batch = self._new_batch("anthropic", json.loads(raw)["requests"], {})
                    return 200, self._anthropic_batch(batch)
                batch = self.batches.get(parts[3]) if len(parts) > 3 else None
                if batch is None:
                    return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
                if len(parts) == 5 and parts[4] == "results":
                    if batch["final"] is None:
                        return 404, {
                            "type": "error",
                            "error": {"type": "not_found_error", "message": "results not ready"},
                        }
                    results = self._anthropic_results(batch)
                    if self.results_filter is not None:
                        results = self.results_filter("anthropic", results)
                    return 200, results
                if len(parts) == 5 and parts[4] == "cancel":
                    batch["cancelled_at"] = self.clock()
                    return 200, self._anthropic_batch(batch)
                self.polls[batch["id"]] = self.polls.get(batch["id"], 0) + 1
                return 200, self._anthropic_batch(batch)
        return None

    def _upload(self, headers: Any, raw: bytes) -> tuple[int, Any]:
        message = email.message_from_bytes(
            f"Content-Type: {headers.get('content-type')}\r\n\r\n".encode() + raw, policy=email.policy.HTTP
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        if fields.get("purpose", (None, b""))[1] != b"batch" or "file" not in fields:
            return 400, error_body("/v1/files", 400, "purpose must be 'batch' and a file is required")
        filename, content = fields["file"]
        self.uploads.append(
            {
                "filename": filename,
                "purpose": fields["purpose"][1].decode(),
                "content_type": headers.get("content-type", "").split(";")[0],
            }
        )
        file_id = f"file-in-{next(self._ids):04d}"
        self.files[file_id] = content
        return 200, {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(self.clock()),
            "filename": filename,
            "purpose": "batch",
            "status": "processed",
        }

    def _handler(self) -> Any:
        base = super()._handler()
        provider = self

        class Handler(base):  # type: ignore[misc,valid-type]
            def _serve(self, method: str) -> bool:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                routed = provider._route(method, self.path, self.headers, raw)
                if routed is None:
                    self._raw = raw
                    return False
                status, payload = routed
                fault = None
                if provider.batch_script:
                    fault = provider.batch_script.popleft()
                    status, payload = (
                        fault.status,
                        fault.body
                        if fault.body is not None
                        else error_body(self.path, fault.status, f"fake {fault.status} from the batch endpoint"),
                    )
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header(
                    "content-type", "application/binary" if isinstance(payload, bytes) else "application/json"
                )
                for name, value in (fault.headers if fault else {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._serve("GET"):
                    self.send_error(404)

            def do_POST(self) -> None:  # noqa: N802
                path = self.path
                if "/batches" in path or path.startswith("/v1/files"):
                    self._serve("POST")
                    return
                super().do_POST()

        return Handler


def _iso(moment: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _not_found(kind: str, path: str) -> dict[str, Any]:
    return {
        "error": {"message": f"No such {kind}: {path}", "type": "invalid_request_error", "param": None, "code": None}
    }
