"""Provider batch APIs behind the ordinary `LLMClient.complete()`: half price, answers later.

A `BatchingClient` (`batch_clients`) stands where an online client would. Its `complete()`
builds the provider's request (with the online client's own request builder),
queues it, and awaits the answer; the executor around it reserves the budget,
retries and books the cost exactly as for an online call. A `BatchHub` owns
the queues, one per (provider, base URL, model): a queue is submitted after a
short gather window or as soon as it reaches the provider's size limit, split
at the limit (`BatchAPI.max_requests`, `max_bytes`). Each open batch is polled
by one task, at an interval doubling from `poll_min` up to `poll_max` (or what
a retry-after asks); when it ends, its results resolve the waiting calls.

Custom ids are deterministic: ``<agent>-a<attempt>-<hash of workflow, agent and
request>``, so a resumed run (`adopt`) finds the answers of batches submitted
by the run it resumes, by (workflow, agent, request), instead of paying again.

Events (`batch_submitted`, `batch_status`, `batch_finished`) go to the engine's
sinks, one per workflow with requests in the batch; the run folder's batch
ledger and the live display are such sinks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrate.errors import BatchExpiredError, BatchFailedError, LLMError, MalformedResponseError
from orchestrate.llm.base import LLMResponse
from orchestrate.llm.batch_api import CALL_TAG, UNREAD, BatchAPI, BatchStatus, CallTag

BatchEmit = Callable[[str, str | None, dict[str, Any], str | None], None]

__all__ = ["BatchHub", "OpenBatch", "request_digest"]


def request_digest(body: dict[str, Any]) -> str:
    """A stable digest of a provider request (keys sorted)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _custom_id(tag: CallTag | None, digest: str) -> tuple[str, str]:
    """The custom id (``[A-Za-z0-9_-]{1,64}``, as Anthropic requires) and the key resume matches on."""
    if tag is None:
        return f"req-{digest}", f"//{digest}"
    match = f"{tag.workflow_name}/{tag.agent}/{digest}"
    run = hashlib.blake2b(match.encode(), digest_size=6).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", tag.agent)[:32]
    return f"{slug}-a{tag.attempt}-{run}{digest[:8]}", match


@dataclass(eq=False, slots=True)
class _Request:
    custom_id: str
    match: str
    item: dict[str, Any]
    size: int
    future: asyncio.Future[LLMResponse]
    workflows: dict[str, str]  # workflow id -> name, for events
    caller: tuple[str, str] | None = None  # (workflow id, agent)


@dataclass(eq=False)
class OpenBatch:
    """A submitted batch: where it lives, what it holds, and who waits for it."""

    batch_id: str
    provider: str
    base_url: str
    model: str
    file_id: str | None
    submitted_at: float
    custom_ids: dict[str, str]  # custom id -> match key (workflow/agent/digest)
    waiting: dict[str, _Request] = field(default_factory=dict)
    status: BatchStatus | None = None
    watcher: asyncio.Task[None] | None = None
    workflows: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, LLMResponse | LLMError] | None = None  # once its results are read

    def record(self, *, with_ids: bool = True) -> dict[str, Any]:
        """What the run folder keeps of it; the custom ids (one per request) only when asked."""
        status = self.status
        ids = {"custom_ids": dict(self.custom_ids)} if with_ids else {}
        return {
            "batch_id": self.batch_id,
            "provider": self.provider,
            "base_url": self.base_url,
            "model": self.model,
            "file_id": self.file_id,
            "submitted_at": self.submitted_at,
            **ids,
            "status": status.status if status else "submitted",
            "ended": bool(status and status.ended),
            "total": status.total if status else len(self.custom_ids),
            "done": status.done if status else 0,
            "failed": status.failed if status else 0,
            "reason": status.reason if status else None,
        }


class _Queue:
    """Requests for one (provider, base URL, model), gathered into submissions."""

    def __init__(self, hub: BatchHub, api: BatchAPI, base_url: str, model: str) -> None:
        self.hub, self.api, self.base_url, self.model = hub, api, base_url, model
        self.pending: list[_Request] = []
        self.size = 0
        self.timer: asyncio.Task[None] | None = None

    def add(self, request: _Request) -> None:
        self.pending.append(request)
        self.size += request.size
        api = self.api
        if len(self.pending) >= api.max_requests or self.size >= api.max_bytes:
            self._flush_now()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().create_task(self._after_window())

    def _flush_now(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.size = self.pending, [], 0
        self.hub._submitting.add(self.hub._spawn(self.hub._submit(self, batch)))

    async def _after_window(self) -> None:
        await self.hub.sleep(self.hub.window)
        self.timer = None
        if self.pending:
            self._flush_now()

    def chunks(self, requests: list[_Request]) -> list[list[_Request]]:
        """`requests` split so that no submission passes the provider's count or size limit."""
        out: list[list[_Request]] = []
        current: list[_Request] = []
        size = 0
        for request in requests:
            if current and (len(current) >= self.api.max_requests or size + request.size > self.api.max_bytes):
                out.append(current)
                current, size = [], 0
            current.append(request)
            size += request.size
        if current:
            out.append(current)
        return out


class BatchHub:
    """The queues, the open batches and their pollers, shared by a run's batching clients.

    Args:
        window: Seconds to gather requests before a submission.
        poll_min: First wait before polling a batch; doubled after each poll.
        poll_max: The longest wait between two polls of a batch.
        fallback: "batch" (a request that errored or expired goes into a later batch) or
            "online" (its retry is sent as an ordinary call).
        cancel_on_close: Cancel open batches at `aclose` (``--cancel-batches``); else they
            are left to finish at the provider, to be collected by ``--resume``.
        adopt: Batches recorded by an earlier run (``OpenBatch`` records) to collect from.
        per_workflow_events: One event per workflow with requests in the batch, carrying that
            workflow's custom ids (each workflow has its own run folder); else one event for the
            batch with no workflow (a dataset's rows share one folder).
        sleep, clock: Injected so tests never wait.
    """

    def __init__(
        self,
        *,
        window: float = 2.0,
        poll_min: float = 5.0,
        poll_max: float = 300.0,
        fallback: str = "batch",
        cancel_on_close: bool = False,
        adopt: list[dict[str, Any]] | None = None,
        per_workflow_events: bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fallback not in ("batch", "online"):
            raise ValueError(f"fallback must be 'batch' or 'online', not {fallback!r}")
        self.window, self.poll_min, self.poll_max = window, poll_min, max(poll_min, poll_max)
        self.fallback, self.cancel_on_close = fallback, cancel_on_close
        self.sleep, self.clock = sleep, clock
        self.per_workflow_events = per_workflow_events
        # What the hub tells its run: (kind, workflow id, data, workflow name). The run turns these into
        # its own events (`orchestrate.run.events.batch_events`); the hub knows nothing of the engine above it.
        self.emit: BatchEmit = lambda kind, workflow_id, data, workflow_name: None
        self.queues: dict[tuple[str, str, str], _Queue] = {}
        self.open: dict[str, OpenBatch] = {}
        self.adopted: dict[str, tuple[OpenBatch, str]] = {}  # match key -> (batch, custom id)
        self.failed_callers: set[tuple[str, str]] = set()  # agents with a request a batch did not answer
        self.submissions = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._submitting: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.submit_grace = 30.0  # seconds `aclose` lets a submission in flight finish, so it is recorded
        self._apis: dict[tuple[str, str], BatchAPI] = {}
        for record in adopt or ():
            batch = OpenBatch(
                batch_id=record["batch_id"],
                provider=record["provider"],
                base_url=record.get("base_url") or "",
                model=record["model"],
                file_id=record.get("file_id"),
                submitted_at=float(record.get("submitted_at") or 0),
                custom_ids=dict(record.get("custom_ids") or {}),
            )
            for custom_id, match in batch.custom_ids.items():
                self.adopted.setdefault(match, (batch, custom_id))

    # -- requests -------------------------------------------------------------------------------

    def is_adopted(self, body: dict[str, Any]) -> bool:
        """Whether the calling agent's request waits in a batch adopted from a resumed run."""
        return bool(self.adopted) and _custom_id(CALL_TAG.get(), request_digest(body))[1] in self.adopted

    async def call(self, api: BatchAPI, base_url: str, model: str, body: dict[str, Any]) -> LLMResponse:
        """Queue one request (or find it in an adopted batch) and wait for its answer."""
        tag = CALL_TAG.get()
        custom_id, match = _custom_id(tag, request_digest(body))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LLMResponse] = loop.create_future()
        workflows = {tag.workflow_id: tag.workflow_name} if tag is not None else {}
        caller = (tag.workflow_id, tag.agent) if tag is not None else None
        adopted = self.adopted.pop(match, None)
        if adopted is not None:
            batch, old_id = adopted
            self._apis.setdefault((batch.provider, batch.base_url), api)
            item = api.item(old_id, body)
            request = batch.waiting[old_id] = _Request(old_id, match, item, 0, future, workflows, caller)
            batch.workflows.update(workflows)
            if batch.outcomes is not None and batch.status is not None:  # collected already
                self._resolve(batch, request, batch.status)
            elif batch.watcher is None:
                self.open[batch.batch_id] = batch
                batch.watcher = self._spawn(self._watch(api, batch, first_wait=0.0, adopted=True))
            return await future
        item = api.item(custom_id, body)
        size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        key = (api.provider, base_url, model)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = _Queue(self, api, base_url, model)
        queue.add(_Request(custom_id, match, item, size, future, workflows, caller))
        return await future

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._submitting.discard)
        return task

    async def _submit(self, queue: _Queue, requests: list[_Request]) -> None:
        requests = [r for r in requests if not r.future.done()]  # drop calls cancelled meanwhile
        if not requests:
            return
        unique: dict[str, _Request] = {}
        for request in requests:  # the same agent sending the same request twice: one line
            while request.custom_id in unique:
                request.custom_id += "x"
                request.item = queue.api.item(request.custom_id, _body_of(request.item))
            unique[request.custom_id] = request
        for chunk in queue.chunks(list(unique.values())):
            try:
                submitted = await queue.api.submit(queue.model, [r.item for r in chunk])
            except LLMError as exc:
                for request in chunk:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self.submissions += 1
            batch = OpenBatch(
                batch_id=submitted.batch_id,
                provider=queue.api.provider,
                base_url=queue.base_url,
                model=queue.model,
                file_id=submitted.file_id,
                submitted_at=self.clock(),
                custom_ids={r.custom_id: r.match for r in chunk},
                waiting={r.custom_id: r for r in chunk},
            )
            for request in chunk:
                batch.workflows.update(request.workflows)
            self.open[batch.batch_id] = batch
            self._event("batch_submitted", batch)
            if not self.closing:
                batch.watcher = self._spawn(self._watch(queue.api, batch, first_wait=self.poll_min))

    # -- polling --------------------------------------------------------------------------------

    async def _watch(self, api: BatchAPI, batch: OpenBatch, *, first_wait: float, adopted: bool = False) -> None:
        delay, wait = self.poll_min, first_wait
        while True:
            if batch.waiting and all(r.future.done() for r in batch.waiting.values()):
                return  # nobody waits any more (the run was stopped): leave it to the provider
            if wait > 0:
                await self.sleep(wait)
            try:
                status = await api.status(batch.batch_id)
            except LLMError as exc:
                if not exc.retriable:
                    if adopted:  # a batch an earlier run recorded is gone: its requests go in anew
                        exc = BatchExpiredError(
                            f"{batch.provider} batch {batch.batch_id} recorded by the resumed run cannot be "
                            f"read ({exc}); its requests are submitted again",
                            provider=batch.provider,
                        )
                    self._fail(batch, exc)
                    return
                wait = max(exc.retry_after or 0.0, min(delay, self.poll_max))
                delay = min(delay * 2, self.poll_max)
                continue
            previous = batch.status
            batch.status = status
            if previous is None or (previous.status, previous.done, previous.failed) != (
                status.status,
                status.done,
                status.failed,
            ):
                self._event("batch_status", batch)
            if status.ended:
                break
            wait, delay = delay, min(delay * 2, self.poll_max)
        await self._collect(api, batch, status)

    async def _collect(self, api: BatchAPI, batch: OpenBatch, status: BatchStatus) -> None:
        outcomes: dict[str, LLMResponse | LLMError] = {}
        for attempt in range(5):
            try:
                outcomes = await api.results(status, batch.model)
                break
            except LLMError as exc:
                if not exc.retriable or attempt == 4:
                    self._fail(batch, exc)
                    return
                await self.sleep(max(exc.retry_after or 0.0, self.poll_min))
        batch.outcomes = outcomes
        for request in batch.waiting.values():
            self._resolve(batch, request, status)
        self.open.pop(batch.batch_id, None)
        self._event("batch_finished", batch)

    def _resolve(self, batch: OpenBatch, request: _Request, status: BatchStatus) -> None:
        if request.future.done():
            return
        outcome = (batch.outcomes or {}).get(request.custom_id)
        if outcome is None:  # not answered, unless one of the lines that could not be read is its own
            unread = (batch.outcomes or {}).get(UNREAD)
            outcome = (
                MalformedResponseError(str(unread), provider=batch.provider, billed=True)
                if unread is not None
                else self._missing(batch, status)
            )
        if isinstance(outcome, LLMResponse):
            outcome.metadata.update(batch=True, batch_id=batch.batch_id)
            request.future.set_result(outcome)
        else:
            if outcome.retriable and request.caller is not None:
                self.failed_callers.add(request.caller)
            request.future.set_exception(outcome)

    def _missing(self, batch: OpenBatch, status: BatchStatus) -> LLMError:
        provider = batch.provider
        if status.status in ("failed",):
            return BatchFailedError(
                f"{provider} batch {batch.batch_id} failed: {status.reason or 'no reason given'}", provider=provider
            )
        word = status.status if status.status in ("expired", "cancelled", "canceled") else "ended"
        return BatchExpiredError(
            f"{provider} batch {batch.batch_id} {word} without answering this request"
            + (f": {status.reason}" if status.reason else ""),
            provider=provider,
        )

    def _fail(self, batch: OpenBatch, exc: LLMError) -> None:
        for request in batch.waiting.values():
            if not request.future.done():
                if exc.retriable and request.caller is not None:
                    self.failed_callers.add(request.caller)
                request.future.set_exception(exc)
        self.open.pop(batch.batch_id, None)

    def _event(self, kind: str, batch: OpenBatch) -> None:
        # Only the submission carries custom ids, each workflow's own: a 50,000-request batch
        # polled twenty times must not write its ids into events.jsonl twenty times.
        data = batch.record(with_ids=False)
        submitted = kind == "batch_submitted"
        if not self.per_workflow_events:
            name = next(iter(batch.workflows.values()), None)
            extra = {"custom_ids": dict(batch.custom_ids)} if submitted else {}
            self.emit(kind, None, {**data, **extra, "requests": len(batch.custom_ids)}, name)
            return
        for workflow_id, name in batch.workflows.items():
            mine = {r.custom_id: r.match for r in batch.waiting.values() if workflow_id in r.workflows}
            extra = {"custom_ids": mine} if submitted else {}
            self.emit(kind, workflow_id, {**data, **extra, "requests": len(mine)}, name)

    async def aclose(self) -> None:
        """Stop gathering and polling; cancel open batches only when told to.

        A submission already on the wire is let finish (up to `submit_grace` seconds), so
        that a batch the provider accepted is always recorded for ``--resume``.
        """
        self.closing = True
        for queue in self.queues.values():
            if queue.timer is not None:
                queue.timer.cancel()
        pending = [task for task in self._submitting if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.submit_grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.cancel_on_close:
            return
        for batch in list(self.open.values()):
            if batch.status is not None and batch.status.ended:
                continue
            api = self._api_for(batch)
            if api is None:
                continue
            try:
                await api.cancel(batch.batch_id)
            except LLMError:
                continue
            batch.status = BatchStatus(
                batch.batch_id,
                "cancelling",
                False,
                *(batch.status.total, batch.status.done, batch.status.failed)
                if batch.status
                else (len(batch.custom_ids), 0, 0),
            )
            self._event("batch_status", batch)

    def _api_for(self, batch: OpenBatch) -> BatchAPI | None:
        for queue in self.queues.values():
            if queue.api.provider == batch.provider and queue.base_url == batch.base_url:
                return queue.api
        return self._apis.get((batch.provider, batch.base_url))


def _body_of(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("body") or item.get("params") or {}
