"""Prompt caching on the wire: what a request marks as its stable prefix, per provider.

The executor decides what every call of an agent repeats (a `CachePlan`): the tool
definitions, the system prompt, and the first `user_prefix` characters of the first
user message (the prompt template's static text). The request builders lay that
prefix out first and mark it the way the model's provider wants, as the capability
table says (`Capabilities.prompt_cache`):

- ``breakpoints`` (Anthropic): a ``cache_control`` mark at the end of the tools, of
  the system prompt and of the user turn's static text, at most
  `Capabilities.cache_breakpoints` of them, each only where the prefix up to it
  reaches `Capabilities.cache_min_tokens` (a shorter prefix is silently not cached,
  so marking it would only promise what cannot happen). ``ttl: 1h`` when the plan
  asks for an hour.
- ``automatic`` (OpenAI): the provider caches prefixes of 1,024 tokens and more by
  itself; the request carries ``prompt_cache_key`` so that calls sharing the prefix
  reach the same cache, and ``prompt_cache_retention: 24h`` for an hour-long plan
  where the model accepts it (`Capabilities.cache_retention`).
- ``explicit`` (OpenAI, GPT-5.6 on): the same, plus a ``prompt_cache_breakpoint`` on
  the content part that ends the stable prefix and ``prompt_cache_options``.
- ``none``: nothing cache-related is sent.

Token counts here are estimates (four characters a token), used only to decide
whether a prefix is long enough to mark.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrate.llm.capabilities import Capabilities

__all__ = ["TTLS", "CachePlan", "estimate_tokens", "mark_anthropic", "mark_openai"]

TTLS = {"5m": 300.0, "1h": 3600.0}


@dataclass(slots=True)  # not frozen: built once a call, where frozen costs three times as much
class CachePlan:
    """What a request's stable prefix is and how long the provider should keep it.

    Attributes:
        ttl: ``"5m"`` or ``"1h"``.
        key: OpenAI's ``prompt_cache_key`` (calls with one key share a cache).
        user_prefix: Characters of the first user message that every call repeats.
    """

    ttl: str = "5m"
    key: str | None = None
    user_prefix: int = 0

    @classmethod
    def keyed_later(cls, ttl: str, user_prefix: int, make_key: Callable[..., str], *args: Any) -> CachePlan:
        """A plan whose `key` is `make_key(*args)`, worked out the first time it is read (a plan is
        made before every call, and most clients never read the key: two SHA-256 digests saved).
        It reads, compares, prints and copies as a plan built with that key."""
        later = _Later()  # (no __init__ of its own: made by the type's C call, cheaper than __new__)
        later.make = make_key
        later.args = args
        if cls is not CachePlan:  # a subclass's own __init__ runs
            return cls(ttl, later, user_prefix)  # type: ignore[arg-type]  # read as a str
        # The fields set here rather than by the dataclass's __init__: a class's call with a
        # Python __init__ is dear in 3.11, and a plan is made before every call.
        plan = _new(CachePlan)
        plan.ttl = ttl
        _set_key(plan, later)
        plan.user_prefix = user_prefix
        return plan


class _Later:
    """A key not worked out yet (held in the plan's `key` slot until first read)."""

    __slots__ = ("args", "make")

    make: Callable[..., str]
    args: tuple[Any, ...]


_new = object.__new__


_KEY_SLOT: Any = CachePlan.__dict__["key"]  # the slot under the property below
_set_key = _KEY_SLOT.__set__  # bound once: `_KEY_SLOT.__set__` makes a method-wrapper each time


def _read_key(plan: CachePlan) -> str | None:
    value = _KEY_SLOT.__get__(plan, CachePlan)
    if type(value) is _Later:
        value = value.make(*value.args)
        _set_key(plan, value)
    return value


# `key` read through a property over its slot, so that a plan made `keyed_later` gives the same
# value as one built with it; the dataclass's __init__, __eq__, __repr__ and pickling go through it.
setattr(CachePlan, "key", property(_read_key, _set_key))  # noqa: B010 (mypy keeps the field's type)


def estimate_tokens(chars: int) -> int:
    """Tokens of `chars` characters of text, roughly (four characters a token)."""
    return max(0, chars) // 4


def _control(plan: CachePlan) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": "1h"} if plan.ttl == "1h" else {"type": "ephemeral"}


def mark_anthropic(body: dict[str, Any], plan: CachePlan, caps: Capabilities) -> int:
    """Put ``cache_control`` marks on a Messages request's stable prefix; how many were placed."""
    if caps.prompt_cache != "breakpoints" or caps.cache_breakpoints <= 0:
        return 0
    size = 0
    spots: list[tuple[str, int]] = []  # (where, characters of the prefix up to and including it)
    tools: list[dict[str, Any]] = body.get("tools") or []
    if tools:
        size += len(json.dumps(tools))
        spots.append(("tools", size))
    system = body.get("system")
    if isinstance(system, str) and system:
        size += len(system)
        spots.append(("system", size))
    messages = body.get("messages") or []
    first: dict[str, Any] = messages[0] if messages else {}
    if (
        plan.user_prefix > 0
        and first.get("role") == "user"
        and isinstance(first.get("content"), str)
        and plan.user_prefix <= len(first["content"])
    ):
        size += plan.user_prefix
        spots.append(("user", size))
    chosen = [where for where, chars in spots if estimate_tokens(chars) >= caps.cache_min_tokens]
    chosen = chosen[-caps.cache_breakpoints :]
    control = _control(plan)
    for where in chosen:
        if where == "tools":
            body["tools"] = [*tools[:-1], {**tools[-1], "cache_control": control}]
        elif where == "system":
            body["system"] = [{"type": "text", "text": system, "cache_control": control}]
        else:
            text = first["content"]
            blocks: list[dict[str, Any]] = [
                {"type": "text", "text": text[: plan.user_prefix], "cache_control": control}
            ]
            if len(text) > plan.user_prefix:
                blocks.append({"type": "text", "text": text[plan.user_prefix :]})
            messages[0] = {**first, "content": blocks}
    return len(chosen)


def mark_openai(body: dict[str, Any], plan: CachePlan, caps: Capabilities) -> int:
    """Add the prompt-cache fields the model accepts to a Chat Completions request;
    the number of breakpoints placed (``explicit`` models only)."""
    if caps.prompt_cache not in ("automatic", "explicit"):
        return 0
    if plan.key:
        body["prompt_cache_key"] = plan.key
    if plan.ttl == "1h" and caps.cache_retention:
        body["prompt_cache_retention"] = "24h"
    if caps.prompt_cache != "explicit" or caps.cache_breakpoints <= 0:
        return 0
    body["prompt_cache_options"] = {"mode": "explicit", "ttl": "30m"} if plan.ttl == "1h" else {"mode": "explicit"}
    size = len(json.dumps(body["tools"])) if body.get("tools") else 0
    messages = body.get("messages") or []
    target = None
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, str):
            break
        if message.get("role") == "system":
            size += len(content)
            target = (i, len(content))
        elif message.get("role") == "user":
            if 0 < plan.user_prefix <= len(content):
                size += plan.user_prefix
                target = (i, plan.user_prefix)
            break
    if target is None or estimate_tokens(size) < caps.cache_min_tokens:
        return 0
    i, cut = target
    text = messages[i]["content"]
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": text[:cut], "prompt_cache_breakpoint": {"mode": "explicit"}}
    ]
    if len(text) > cut:
        parts.append({"type": "text", "text": text[cut:]})
    messages[i] = {**messages[i], "content": parts}
    return 1
