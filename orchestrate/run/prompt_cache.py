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

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it


class PrefixPlan:
    """A call's cache plan for the client, with what scheduling needs to know of its prefix.

    Attributes:
        plan: What the client is told (`CachePlan`).
        digest: Of the stable prefix and the model it is cached for: the warm-up's key.
        cacheable: Long enough for the model to cache, and the provider caches.

    The digest, and the plan's key made from it, are hashed the first time either is read:
    a prefix too short to cache is never waited on, and most clients never read the key.
    """

    __slots__ = ("_digest", "_parts", "cacheable", "plan")

    # Made by `PromptCaching.plan` (it sets the four slots); no __init__ of its own.
    _parts: tuple[str, ...]  # (workflow, agent, model, tools, system, user prefix)
    _digest: str | None
    cacheable: bool
    plan: CachePlan

    @property
    def digest(self) -> str:
        digest = self._digest
        if digest is None:
            digest = self._digest = _digest_of(self._parts)
        return digest

    def __repr__(self) -> str:
        return f"PrefixPlan(plan={self.plan!r}, digest={self.digest!r}, cacheable={self.cacheable!r})"


def _stable(tools: str, system: str, prefix: str) -> str:
    """json.dumps([tools, system, prefix]), written out: the same text (its default separators
    and ASCII escapes) for a fifth of the cost."""
    return f"[{_quote(tools)}, {_quote(system)}, {_quote(prefix)}]"


def _digest(model: str, stable: str) -> str:
    return hashlib.sha256(f"{model}\x00{stable}".encode()).hexdigest()


def _digest_of(parts: tuple[str, ...]) -> str:
    _, _, model, tools, system, prefix = parts
    return _digest(model, _stable(tools, system, prefix))


def _key(parts: tuple[str, ...], digest: str | None) -> str:
    """OpenAI's prompt_cache_key of a prefix: its digest, hashed with the workflow and agent names."""
    if digest is None:
        digest = _digest_of(parts)
    return hashlib.sha256(f"{parts[0]}\x00{parts[1]}\x00{digest}".encode()).hexdigest()[:32]


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
        if not self.enabled:
            return None
        own = agent.llm_config.get("cache")  # {prefix, ttl}, or None (most agents)
        ttl = None
        if own:
            if own.get("prefix") == "off":
                return None
            ttl = own.get("ttl")
        ttl = str(ttl) if ttl else "1h" if self.long_runs or batched else "5m"
        system = ""
        first = None  # the first user message
        for m in messages:  # a loop, not two generators: this runs before every call
            role = m["role"]
            if role == "system":
                system += str(m.get("content") or "")
            elif role == "user" and first is None:
                first = m
        template = agent.prompt_template
        # static_prefix's answer for a template without placeholders (itself), without its call.
        static = template if "{" not in template and "}" not in template else static_prefix(template)
        text = "" if first is None else first.get("content") or ""
        if type(text) is not str:  # (str() of a str is the str itself: skipped)
            text = str(text)
        user_prefix = len(static) if static and (text is static or text.startswith(static)) else 0
        prefix = text[:user_prefix]
        tools = json.dumps(specs, sort_keys=True) if specs else "[]"
        model = llm.get("model")
        parts = (workflow.name, agent.name, model if type(model) is str else str(model), tools, system, prefix)
        # The stable text is written (and its digest hashed) now only when it may be long enough
        # to cache: its JSON is at most 12 characters a character (an escaped surrogate pair) plus
        # 10 of brackets, quotes and separators, so a shorter prefix is known to be too short
        # (12 * chars + 12 >= 4 * tokens, divided by four).
        digest = None
        cacheable = False
        if caps.prompt_cache != "none" and 3 * (len(tools) + len(system) + user_prefix) + 3 >= caps.cache_min_tokens:
            stable = _stable(tools, system, prefix)
            digest = _digest(parts[2], stable)
            cacheable = estimate_tokens(len(stable)) >= caps.cache_min_tokens
        # Made here rather than by a Python __init__ (a class's call with one is dear in 3.11; the
        # class has none, so its call is the type's own C code, cheaper than object.__new__).
        made = PrefixPlan()
        made._parts = parts
        made._digest = digest
        made.cacheable = cacheable
        # The key is made from the parts, not from this object: no reference cycle a call.
        made.plan = CachePlan.keyed_later(ttl, user_prefix, _key, parts, digest)
        return made
