"""The loopback server's prompt cache: what Anthropic and OpenAI would report as cached.

Written from the providers' documentation, not from orchestrate's code (so tests of
orchestrate's request shaping can fail):

- Anthropic caches the prefix up to a block marked ``cache_control`` (tools, then
  system, then messages, in that order), at most 4 marks a request (more: a 400).
  A mark whose prefix is shorter than the model's minimum is ignored without a
  word. A request reads the longest marked prefix already written and not expired
  (``cache_read_input_tokens``) and writes what lies between it and its last valid
  mark (``cache_creation_input_tokens``, split by TTL in ``cache_creation``).
  An entry lives 5 minutes (or 1 hour with ``ttl: "1h"``) from its last use (a
  read with a longer TTL extends it).
- OpenAI caches by itself, from 1,024 tokens, in steps of 128 tokens; entries are
  partitioned by ``prompt_cache_key`` (requests with different keys land on
  different machines) and live 5 minutes from their last use, or 24 hours with
  ``prompt_cache_retention: "24h"``. It reports ``prompt_tokens_details.cached_tokens``.

An entry becomes readable only when the request that wrote it has been answered:
`lookup` runs when a request arrives and `commit` when its answer is sent, so a
first wave of concurrent requests all miss, as they do at the providers. Time
comes from `clock` (injectable). Tokens are counted as the server counts them:
four characters a token.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANTHROPIC_MINIMUM", "CacheUse", "ProviderCache", "anthropic_minimum"]

# Minimum cacheable prefix per Claude family (documentation as of 2026-10); others 1,024.
ANTHROPIC_MINIMUM = {
    "claude-opus-5": 512,
    "claude-opus-4-7": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-haiku-5": 4096,
    "claude-sonnet-4-6": 2048,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
OPENAI_MINIMUM = 1024
OPENAI_STEP = 128
MAX_MARKS = 4


def anthropic_minimum(model: str) -> int:
    """The shortest prefix a Claude model caches."""
    for family in sorted(ANTHROPIC_MINIMUM, key=len, reverse=True):
        if model == family or model.startswith(family + "-"):
            return ANTHROPIC_MINIMUM[family]
    return 1024


def _tokens(chars: int) -> int:
    return chars // 4


def _digest(scope: str, text: str) -> str:
    return hashlib.sha256((scope + "\x00" + text).encode()).hexdigest()


@dataclass
class CacheUse:
    """What one request read and wrote; `commit` makes its writes readable."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0
    error: str | None = None
    writes: list[tuple[str, float]] = field(default_factory=list)  # (digest, seconds to live)
    commit: Callable[[], None] = lambda: None

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h


class ProviderCache:
    """Both providers' caches, keyed by prefix digests, with expiry times from `clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[str, tuple[float, float]] = {}  # digest -> (expires at, ttl)
        self._lock = threading.Lock()

    def _live(self, digest: str, now: float, ttl: float) -> bool:
        entry = self.entries.get(digest)
        if entry is None or entry[0] <= now:
            return False
        keep = max(entry[1], ttl)  # refreshed on use, for the longer of its TTL and the reader's
        self.entries[digest] = (now + keep, keep)
        return True

    def _committer(self, use: CacheUse) -> Callable[[], None]:
        def commit() -> None:
            with self._lock:
                now = self.clock()
                for digest, ttl in use.writes:
                    self.entries[digest] = (now + ttl, ttl)

        return commit

    # -- Anthropic --------------------------------------------------------------------------

    def anthropic(self, request: dict[str, Any]) -> CacheUse:
        """Look a Messages request up: what it reads now, what it will write."""
        blocks: list[tuple[str, dict[str, Any] | None]] = []  # (text, cache_control)
        for tool in request.get("tools") or []:
            plain = {k: v for k, v in tool.items() if k != "cache_control"}
            blocks.append((json.dumps(plain, sort_keys=True), tool.get("cache_control")))
        system = request.get("system")
        if isinstance(system, str):
            blocks.append((system, None))
        elif isinstance(system, list):
            for block in system:
                blocks.append((str(block.get("text", "")), block.get("cache_control")))
        for message in request.get("messages") or []:
            content = message.get("content")
            role = str(message.get("role"))
            if isinstance(content, str):
                blocks.append((role + ":" + content, None))
            else:
                for block in content or []:
                    plain = {k: v for k, v in block.items() if k != "cache_control"}
                    blocks.append((role + ":" + json.dumps(plain, sort_keys=True), block.get("cache_control")))
        marks = sum(1 for _, control in blocks if control)
        if marks > MAX_MARKS:
            return CacheUse(error=f"A maximum of {MAX_MARKS} blocks with cache_control may be provided. Found {marks}.")
        minimum = anthropic_minimum(str(request.get("model") or ""))
        scope = "anthropic:" + str(request.get("model") or "")
        prefixes: list[tuple[str, int, float]] = []  # (digest, tokens, ttl) of each valid mark
        text = ""
        for piece, control in blocks:
            text += piece + "\x1e"
            if control:
                tokens = _tokens(len(text))
                if tokens >= minimum:
                    ttl = 3600.0 if control.get("ttl") == "1h" else 300.0
                    prefixes.append((_digest(scope, text), tokens, ttl))
        use = CacheUse()
        with self._lock:
            now = self.clock()
            hit = -1
            for i in range(len(prefixes) - 1, -1, -1):
                if self._live(prefixes[i][0], now, prefixes[i][2]):
                    hit = i
                    break
        use.read = prefixes[hit][1] if hit >= 0 else 0
        done = use.read
        for digest, tokens, ttl in prefixes[hit + 1 :]:
            if ttl > 300.0:
                use.write_1h += tokens - done
            else:
                use.write_5m += tokens - done
            done = tokens
            use.writes.append((digest, ttl))
        use.commit = self._committer(use)
        return use

    # -- OpenAI -----------------------------------------------------------------------------

    def openai(self, request: dict[str, Any]) -> CacheUse:
        """Look a Chat Completions request up: its cached tokens now, what it will write."""
        messages = [
            {
                **m,
                "content": [{k: v for k, v in p.items() if k != "prompt_cache_breakpoint"} for p in m["content"]]
                if isinstance(m.get("content"), list)
                else m.get("content"),
            }
            for m in request.get("messages") or []
        ]
        text = json.dumps(request.get("tools") or [], sort_keys=True) + json.dumps(messages)
        scope = "openai:" + str(request.get("model") or "") + ":" + str(request.get("prompt_cache_key") or "")
        ttl = 86400.0 if request.get("prompt_cache_retention") == "24h" else 300.0
        step = OPENAI_STEP * 4
        cuts = list(range(OPENAI_MINIMUM * 4, len(text) + 1, step))
        digests = [_digest(scope, text[:cut]) for cut in cuts]
        use = CacheUse()
        with self._lock:
            now = self.clock()
            for cut, digest in zip(reversed(cuts), reversed(digests)):
                if self._live(digest, now, ttl):
                    use.read = _tokens(cut)
                    break
        use.writes = [(digest, ttl) for digest in digests]
        use.commit = self._committer(use)
        return use
