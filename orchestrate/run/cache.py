"""A response cache on disk (`orchestrate run --cache DIR`) or in Redis (`--cache redis://...`).

A request is identified by everything that decides its answer: provider,
base URL, model, messages, temperature, max_tokens, tools and options. Identical
requests are answered from ``DIR/<2 hex>/<digest>.json`` (or the shared
state's ``NS:cache:<digest>``, which lapses after its TTL) without calling the
provider, and the answer is marked ``cached`` so the engine prices it at 0.
Only whole answers are stored: errors raise before anything is written, and
an answer cut off at max_tokens (finish_reason "length") is never kept.
Entries are written atomically, so concurrent runs may share a folder.

Reuse is decided request by request, so a failure early in a run does not
make any later agent call again.

The repeats of ``--repeat K`` (every try of a case after its first) are asked
fresh: inside `fresh_answers()` the cache is neither read nor written, or a
repeat would only replay the first try's answer and its pass rate would mean
nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrate.finite import loads_strict
from orchestrate.fsutil import TooLargeError, atomic_write_text, read_bytes_capped
from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall
from orchestrate.llm.http import scrub_response
from orchestrate.state.base import SharedState

__all__ = ["CachingClient", "CachingClients", "FolderStore", "StateStore", "cache_store", "fresh_answers"]

_NOT_STORED_FINISH = {"length", "max_tokens", "error"}
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_FRESH: ContextVar[bool] = ContextVar("orchestrate_fresh_answers", default=False)


@contextmanager
def fresh_answers(on: bool = True) -> Iterator[None]:
    """Calls made inside (and in the tasks started inside) skip the response cache: a repeat's try."""
    token = _FRESH.set(on)
    try:
        yield
    finally:
        _FRESH.reset(token)


class FolderStore:
    """Entries as files ``DIR/<2 hex>/<digest>.json``, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.problems: list[str] = []  # entries that could not be used or stored, for one warning

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.json"

    async def get(self, digest: str) -> bytes | None:
        path = self._path(digest)
        try:
            return read_bytes_capped(path, MAX_ENTRY_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not there (a blocked folder is reported when the answer cannot be stored)
        except (OSError, TooLargeError) as exc:  # a folder, unreadable, huge: ask the provider again
            self.problems.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
            return None

    async def put(self, digest: str, data: bytes) -> None:
        path = self._path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, data.decode("utf-8"))
        except OSError as exc:  # the call was made and is booked; only the copy is lost
            self.problems.append(f"{path}: not stored: {exc.strerror or exc}")


class StateStore:
    """Entries in a shared state (Redis), each living `ttl` seconds."""

    def __init__(self, state: SharedState, ttl: float) -> None:
        self.state = state
        self.ttl = ttl

    async def get(self, digest: str) -> bytes | None:
        return await self.state.cache_get(digest)

    async def put(self, digest: str, data: bytes) -> None:
        await self.state.cache_set(digest, data, self.ttl)

    async def aclose(self) -> None:
        await self.state.aclose()


def cache_store(
    spec: str | Path, state: SharedState | None = None, *, namespace: str = "orchestrate", ttl: float = 7 * 86400.0
) -> FolderStore | StateStore:
    """The store `--cache` names: a folder, or a state URL (the run's own `state` when it is the same)."""
    text = str(spec)
    if "://" not in text:
        return FolderStore(Path(text))
    from orchestrate.state.backends import state_from_url
    from orchestrate.state.base import scrub_url

    if state is not None and state.url == scrub_url(text):
        return StateStore(state, ttl)
    return StateStore(state_from_url(text, namespace=namespace), ttl)


class CachingClient(LLMClient):
    """Wraps a client; answers repeated requests from the cache store."""

    def __init__(self, inner: LLMClient, store: FolderStore | StateStore | Path, *, namespace: str = "") -> None:
        self.inner = inner
        self.store = store if not isinstance(store, Path) else FolderStore(store)
        self.namespace = namespace
        self.provider = inner.provider
        self.hits = 0
        self.misses = 0
        self.fresh = 0  # calls that skipped the cache (a repeat's tries)

    @property
    def batched(self) -> bool:
        """Whether misses go through a provider batch API (priced at its rate)."""
        return bool(getattr(self.inner, "batched", False))

    def goes_online(self) -> bool:
        return bool(getattr(self.inner, "goes_online", lambda: False)())

    def _digest(self, request: dict[str, Any]) -> str:
        blob = json.dumps(request, sort_keys=True, default=_plain, ensure_ascii=False)
        return hashlib.sha256(f"{self.provider}\x00{self.namespace}\x00{blob}".encode()).hexdigest()

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        request = {
            "kind": "complete",
            "prompt": prompt,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "tools": tools,
            "options": _options(kwargs),
        }
        return await self._through(
            request, lambda: self.inner.complete(prompt, model, temperature, max_tokens, tools, **kwargs)
        )

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        request = {
            "kind": "messages",
            "messages": messages,
            "model": model,
            "tools": tools,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "options": _options(kwargs),
        }
        return await self._through(
            request, lambda: self.inner.complete_with_tools(messages, model, tools, temperature, max_tokens, **kwargs)
        )

    async def _through(self, request: dict[str, Any], call: Any) -> LLMResponse:
        if _FRESH.get():  # a repeat: asked again, and its answer kept out of the cache
            self.fresh += 1
            fresh: LLMResponse = await call()
            return fresh
        digest = self._digest(request)
        raw = await self.store.get(digest)
        stored = _parse(raw)
        if raw is not None and stored is None and hasattr(self.store, "problems"):
            self.store.problems.append(f"entry {digest[:12]}... is not a cached answer; ignored")
        if stored is not None:
            self.hits += 1
            # An entry written by an earlier version, or by hand, may hold a key: it is replayed scrubbed.
            return scrub_response(stored, getattr(self.inner, "api_key", None))
        self.misses += 1
        response: LLMResponse = await call()
        if response.finish_reason not in _NOT_STORED_FINISH:
            await self.store.put(digest, json.dumps(asdict(response), default=_plain).encode("utf-8"))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class CachingClients:
    """A client source whose every client answers through one cache store (or folder)."""

    def __init__(self, store: FolderStore | StateStore | Path, inner: Any) -> None:
        self.store = store if not isinstance(store, Path) else FolderStore(store)
        self.inner = inner
        self._wrapped: dict[int, CachingClient] = {}

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        client = self.inner.get(llm_config)
        wrapped = self._wrapped.get(id(client))
        if wrapped is None:
            wrapped = CachingClient(client, self.store, namespace=str(llm_config.get("base_url") or ""))
            self._wrapped[id(client)] = wrapped
        return wrapped

    async def aclose(self) -> None:
        await self.inner.aclose()


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Simulation knobs change latency and failures, never a successful answer.
    return {k: v for k, v in kwargs.items() if k not in ("latency", "failure_rate")}


def _plain(value: Any) -> Any:
    if isinstance(value, ToolCall):
        return value.to_dict()
    return str(value)


def _parse(raw: bytes | None) -> LLMResponse | None:
    """A cached answer, or None when the entry is absent or is not one (a poisoned or damaged
    entry is a miss, never an error: every field is checked before it is trusted)."""
    if raw is None:
        return None
    try:
        data = loads_strict(raw)
    except ValueError:
        return None  # unreadable: ask the provider again
    if not isinstance(data, dict) or not _looks_cached(data):
        return None
    calls = data.get("tool_calls")
    data["tool_calls"] = (
        [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in calls] if calls else None
    )
    data["metadata"] = {**(data.get("metadata") or {}), "cached": True}
    try:
        return LLMResponse(**data)
    except TypeError:
        return None


def _looks_cached(data: dict[str, Any]) -> bool:
    def count(name: str) -> bool:
        value = data.get(name, 0)
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not all(isinstance(data.get(k), str) for k in ("content", "model", "finish_reason")):
        return False
    if not all(
        count(k)
        for k in (
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_creation_input_tokens",
            "reasoning_tokens",
        )
    ):
        return False
    if not isinstance(data.get("metadata") or {}, dict) or not isinstance(data.get("rate_limit") or {}, dict):
        return False
    if not isinstance(data.get("request_id"), (str, type(None))) or not isinstance(data.get("provider", ""), str):
        return False
    calls = data.get("tool_calls")
    if calls is None:
        return True
    return isinstance(calls, list) and all(
        isinstance(c, dict)
        and isinstance(c.get("id"), str)
        and isinstance(c.get("name"), str)
        and isinstance(c.get("arguments"), dict)
        for c in calls
    )
