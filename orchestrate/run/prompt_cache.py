"""Making the provider's prompt cache hit: each call's stable prefix, and send-one-then-fan.

Every call of an agent repeats a prefix: its tool definitions (sorted by name), its
system prompt, and the static text its prompt template starts with. `PromptCaching`
describes that prefix to the clients (`orchestrate.llm.prompt_cache.CachePlan`),
which mark it on the wire, and schedules around it: the first call of each distinct
prefix goes alone, and the others sharing it are released once it has answered
(`Warmup`), so that they read what it wrote instead of all writing it at once. The
cost is one call's latency once per prefix (and again when its TTL has passed).

An agent's ``cache:`` (``prefix: auto | off``, ``ttl: 5m | 1h``) chooses; without a
``ttl``, dataset runs and provider batches keep the prefix for an hour (the wait
between their calls can pass five minutes), other runs for five minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrate.llm.capabilities import Capabilities
from orchestrate.llm.prompt_cache import TTLS, CachePlan, estimate_tokens
from orchestrate.workflow.models import Agent, Workflow
from orchestrate.workflow.templates import static_prefix

__all__ = ["PrefixPlan", "PromptCaching", "Warmup"]

_NO_CACHE_CONFIG: dict[str, Any] = {}  # an agent without `cache:` (read, never written)
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it


@dataclass(slots=True)  # not frozen: built once a call, where frozen costs three times as much
class PrefixPlan:
    """A call's cache plan for the client, with what scheduling needs to know of its prefix."""

    plan: CachePlan
    digest: str  # of the stable prefix (and the model it is cached for)
    cacheable: bool  # long enough for the model to cache, and the provider caches


@dataclass(slots=True)
class _Lead:
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    warm_until: float | None = None  # None while the leading call is in flight


class Warmup:
    """Send-one-then-fan: per prefix, one call leads and the others wait until it has answered.

    Args:
        clock: Monotonic seconds; a prefix is warm for its TTL after its last answer.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._leads: dict[str, _Lead] = {}
        self.led = 0  # calls that went first for their prefix
        self.held = 0  # calls that waited for one

    async def enter(self, digest: str) -> bool:
        """Wait while another call leads `digest`; True when this call leads (call `answered`
        or `failed` after it)."""
        waited = False
        while True:
            lead = self._leads.get(digest)
            if lead is None or (lead.warm_until is not None and lead.warm_until <= self.clock()):
                self._leads[digest] = _Lead()
                self.led += 1
                return True
            if lead.warm_until is not None:
                return False
            if not waited:
                waited = True
                self.held += 1
            await lead.answered.wait()

    def answered(self, digest: str, ttl: str) -> None:
        """A call with this prefix was answered: the prefix is warm for `ttl` from now."""
        lead = self._leads.get(digest)
        if lead is None:
            lead = self._leads[digest] = _Lead()
        lead.warm_until = self.clock() + TTLS.get(ttl, 300.0)
        lead.answered.set()

    def failed(self, digest: str) -> None:
        """The leading call failed: the next waiting call leads instead."""
        lead = self._leads.get(digest)
        if lead is not None and lead.warm_until is None:
            del self._leads[digest]
            lead.answered.set()


class PromptCaching:
    """What the executor asks before each call: its cache plan, and whether to wait first.

    Attributes:
        enabled: False sends nothing cache-related (``--no-prompt-cache``).
        warm_up: Send one call of each prefix first (send-one-then-fan).
        long_runs: The run is a dataset run: an hour's TTL unless the agent says otherwise.
    """

    def __init__(self, *, enabled: bool = True, warm_up: bool = True, clock: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self.warm_up = warm_up
        self.long_runs = False
        self.warmup = Warmup(clock)

    def plan(
        self,
        workflow: Workflow,
        agent: Agent,
        llm: dict[str, Any],
        messages: list[dict[str, Any]],
        specs: list[dict[str, Any]],
        caps: Capabilities,
        *,
        batched: bool = False,
    ) -> PrefixPlan | None:
        """The cache plan of one call of `agent` to the model of `llm` (its own, or a fallback's),
        or None when the agent or the run has caching off."""
        own = agent.llm_config.get("cache") or _NO_CACHE_CONFIG
        if not self.enabled or own.get("prefix") == "off":
            return None
        ttl = str(own.get("ttl") or ("1h" if self.long_runs or batched else "5m"))
        system = ""
        first = None  # the first user message
        for m in messages:  # a loop, not two generators: this runs before every call
            role = m["role"]
            if role == "system":
                system += str(m.get("content") or "")
            elif role == "user" and first is None:
                first = m
        static = static_prefix(agent.prompt_template)
        text = str(first.get("content") or "") if first is not None else ""
        user_prefix = len(static) if static and text.startswith(static) else 0
        # json.dumps([json.dumps(specs, sort_keys=True), system, prefix]), written out: the same text
        # (its default separators and ASCII escapes) for a fifth of the cost, once a call.
        tools = json.dumps(specs, sort_keys=True) if specs else "[]"
        stable = f"[{_quote(tools)}, {_quote(system)}, {_quote(text[:user_prefix])}]"
        digest = hashlib.sha256(f"{llm.get('model')}\x00{stable}".encode()).hexdigest()
        key = hashlib.sha256(f"{workflow.name}\x00{agent.name}\x00{digest}".encode()).hexdigest()[:32]
        cacheable = caps.prompt_cache != "none" and estimate_tokens(len(stable)) >= caps.cache_min_tokens
        return PrefixPlan(CachePlan(ttl=ttl, key=key, user_prefix=user_prefix), digest, cacheable)
