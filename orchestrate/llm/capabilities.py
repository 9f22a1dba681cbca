"""What each model family accepts: the capability table, and the request options it allows.

The table is data (``orchestrate/data/capabilities.json``, dated like the price
table): per provider the defaults, per model family what differs. A workflow
extends or overrides it with ``capabilities:`` (same keys, same matching), and
an agent's ``llm_config.response_format`` chooses how its output schema is
asked for. The request builders ask `Capabilities` what to send, so a
parameter a model refuses is never sent; ``orchestrate validate`` asks it what
to warn about. Standard library only: the workflow checks use it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from orchestrate.fsutil import package_text
from orchestrate.llm.presets import base_model

__all__ = [
    "PROMPT_CACHE_MODES",
    "RESPONSE_FORMATS",
    "Capabilities",
    "capability_table",
    "family_of",
    "lookup",
    "refused",
]

RESPONSE_FORMATS = ("json_schema", "json_object", "prompt")
PROMPT_CACHE_MODES = ("none", "automatic", "explicit", "breakpoints")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one model accepts in a request (see the table's ``note`` for each key)."""

    temperature: bool = True
    top_p: bool = True
    stop: bool = True
    temperature_and_top_p: bool = True
    max_tokens_field: str = "max_tokens"
    response_format: str = "json_schema"
    tools: bool = True
    max_temperature: float = 2.0
    tools_with_schema: bool = True
    context_window: int = 0  # tokens of prompt and answer together; 0: not known
    prompt_cache: str = "none"
    cache_min_tokens: int = 1024
    cache_breakpoints: int = 0
    cache_retention: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sampling(self, temperature: float | None, top_p: float | None) -> dict[str, float]:
        """The sampling parameters to send: refused ones left out, temperature capped.

        When the model refuses both in one request, temperature is kept and top_p left out.
        """
        sent: dict[str, float] = {}
        if temperature is not None and self.temperature:
            sent["temperature"] = min(float(temperature), self.max_temperature)
        if top_p is not None and self.top_p and (self.temperature_and_top_p or "temperature" not in sent):
            sent["top_p"] = float(top_p)
        return sent


KEYS = {f.name: f.type for f in fields(Capabilities)}


@lru_cache(maxsize=1)
def capability_table() -> dict[str, Any]:
    """The built-in table: ``{"date", "note", "defaults": {provider: ...}, "families": {name: ...},
    "cache_min_tokens": {name: tokens}}``."""
    return json.loads(package_text("capabilities.json"))


def family_of(model: str, table: Mapping[str, Any]) -> str | None:
    """The family in `table` that `model` belongs to: its own name, else the longest family
    name it starts with followed by '-' or '.' (a dated snapshot, a size, a point release)."""
    if model in table:
        return model
    best = None
    for name in table:
        if (model.startswith(name + "-") or model.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def lookup(
    model: str, provider: str = "openai", overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Capabilities:
    """The capabilities of `model` served by `provider`: the provider's defaults, its family's
    entry of the built-in table, then its entry in `overrides` (a workflow's ``capabilities:``)."""
    name, base = _route(provider, model)
    if not overrides:
        return _built_in(name, base)
    merged = _built_in(name, base).to_dict()
    own = family_of(model, overrides) or family_of(name, overrides)
    if own is not None:
        merged.update({k: v for k, v in overrides[own].items() if k in KEYS})
    return Capabilities(**merged)


@lru_cache(maxsize=512)
def _route(provider: str, model: str) -> tuple[str, str]:
    """The table's name of `model` served by `provider` (`base_model`) and whose defaults apply:
    a Claude model takes Anthropic's on any provider; a provider with defaults of its own
    (gemini, vertex, mistral, bedrock) takes those; any other OpenAI's."""
    name = base_model(provider, model)
    if provider == "anthropic" or (provider in ("bedrock", "openrouter", "vertex") and name.startswith("claude")):
        return name, "anthropic"
    return name, provider if provider in capability_table()["defaults"] else "openai"


@lru_cache(maxsize=512)
def _built_in(model: str, base: str) -> Capabilities:
    """The capabilities the built-in table gives `model` under `base`'s defaults.

    Kept per model: finding a family walks the whole table, and the engine asks
    this before every call (a Capabilities is frozen, so one can be shared).
    """
    table = capability_table()
    merged: dict[str, Any] = dict(table["defaults"][base])
    family = family_of(model, table["families"])
    if family is not None:
        merged.update(table["families"][family])
    minimums = {k: v for k, v in table.get("cache_min_tokens", {}).items() if k != "note"}
    shortest = family_of(model, minimums)
    if shortest is not None:
        merged["cache_min_tokens"] = minimums[shortest]
    return Capabilities(**merged)


def refused(caps: Capabilities, llm_config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, reason) for each parameter of `llm_config` that will not be sent to this model."""
    found: list[tuple[str, str]] = []
    model = llm_config.get("model")
    for key in ("temperature", "top_p", "stop"):
        if llm_config.get(key) is not None and not getattr(caps, key):
            found.append((key, f"{model} does not accept {key}; it will not be sent"))
    if (
        llm_config.get("temperature") is not None
        and llm_config.get("top_p") is not None
        and caps.temperature
        and caps.top_p
        and not caps.temperature_and_top_p
    ):
        found.append(("top_p", f"{model} does not accept temperature and top_p together; top_p will not be sent"))
    temperature = llm_config.get("temperature")
    if isinstance(temperature, (int, float)) and caps.temperature and temperature > caps.max_temperature:
        found.append(
            (
                "temperature",
                f"{model} accepts temperature up to {caps.max_temperature:g}; {caps.max_temperature:g} will be sent",
            )
        )
    return found
