"""The providers a workflow may name, and what each needs: base URL, key variable, region, model names.

Five of them speak OpenAI's Chat Completions and differ only in where they
live and which key they take; they are *presets* of the OpenAI client:

=============  ====================================================  ======================  ==================
provider       default base URL                                      key variable            base URL variable
=============  ====================================================  ======================  ==================
gemini         https://generativelanguage.googleapis.com/v1beta/openai  ``GEMINI_API_KEY``    ``GEMINI_BASE_URL``
mistral        https://api.mistral.ai/v1                             ``MISTRAL_API_KEY``     ``MISTRAL_BASE_URL``
ollama         http://127.0.0.1:11434/v1                             none needed             ``OLLAMA_HOST``
vllm           http://127.0.0.1:8000/v1                              ``VLLM_API_KEY`` (opt.) ``VLLM_BASE_URL``
openrouter     https://openrouter.ai/api/v1                          ``OPENROUTER_API_KEY``  ``OPENROUTER_BASE_URL``
=============  ====================================================  ======================  ==================

`bedrock` (Converse) and `vertex` (Gemini through Vertex's OpenAI-compatible
endpoint) have clients of their own. Model names differ by provider (Bedrock's
``eu.anthropic.claude-sonnet-4-5-20250929-v1:0``, OpenRouter's
``anthropic/claude-sonnet-4.5``, Vertex's ``google/gemini-2.5-flash``);
`base_model` turns each into the name the price and capability tables use, so
one table serves every route to a model. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "LOCAL_PROVIDERS",
    "PRESETS",
    "Preset",
    "base_model",
    "bedrock_region",
    "bills_as_served",
    "is_bedrock_id",
    "ollama_base_url",
    "region_of",
    "served_price_name",
    "vertex_location",
]


@dataclass(frozen=True, slots=True)
class Preset:
    """An OpenAI-compatible provider: where it lives and how it is authenticated.

    Attributes:
        key_required: False for local servers (a key is sent when its variable is set).
        local: Runs on the user's own machines: no per-token price, data stays where it runs.
        billed_as_served: The provider routes to a model of its choosing and bills that one
            (OpenRouter): calls are priced as the model its answer names.
    """

    name: str
    base_url: str
    key_env: str
    url_env: str
    key_required: bool = True
    local: bool = False
    billed_as_served: bool = False


PRESETS: dict[str, Preset] = {
    "gemini": Preset(
        "gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY", "GEMINI_BASE_URL"
    ),
    "mistral": Preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", "MISTRAL_BASE_URL"),
    "ollama": Preset(
        "ollama", "http://127.0.0.1:11434/v1", "OLLAMA_API_KEY", "OLLAMA_HOST", key_required=False, local=True
    ),
    "vllm": Preset("vllm", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", "VLLM_BASE_URL", key_required=False, local=True),
    "openrouter": Preset(
        "openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", billed_as_served=True
    ),
}
LOCAL_PROVIDERS = frozenset(name for name, preset in PRESETS.items() if preset.local)


def ollama_base_url(value: str) -> str:
    """``OLLAMA_HOST`` as Ollama itself reads it (``host``, ``host:port``, ``http://host:port``),
    made the OpenAI-compatible base URL (``.../v1``)."""
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"http://{value}"
    parts = urlsplit(value)
    host = parts.hostname or "127.0.0.1"
    if host == "0.0.0.0":  # a server's bind-all address; a client reaches it on loopback
        host = "127.0.0.1"
    port = parts.port or 11434
    path = parts.path if parts.path not in ("", "/") else "/v1"
    return f"{parts.scheme}://{host}:{port}{path}"


_BEDROCK_GEO = re.compile(r"^(?:us|eu|apac|au|ca|jp|us-gov|global)\.")
_BEDROCK_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer)\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_DATED = re.compile(r"-\d{8}$")


def is_bedrock_id(model: str) -> bool:
    """Whether `model` is written as a Bedrock model id or inference profile (``vendor.name``,
    ``eu.vendor.name``)."""
    return bool(_BEDROCK_VENDOR.match(_BEDROCK_GEO.sub("", model)))


@lru_cache(maxsize=1024)  # asked before every call; two regular expressions were ~3 us of it
def base_model(provider: str, model: str) -> str:
    """The name of `model` in the price and capability tables, for the provider that serves it.

    ``eu.anthropic.claude-sonnet-4-5-20250929-v1:0`` (Bedrock) is ``claude-sonnet-4-5``;
    ``anthropic/claude-sonnet-4.5`` (OpenRouter) is ``claude-sonnet-4-5``;
    ``google/gemini-2.5-flash`` (Vertex) is ``gemini-2.5-flash``. Other names are kept.
    """
    name = model
    if provider == "bedrock" or is_bedrock_id(name):
        name = _BEDROCK_VENDOR.sub("", _BEDROCK_GEO.sub("", name))
        name = _DATED.sub("", _BEDROCK_VERSION.sub("", name))
    elif "/" in name and provider in ("openrouter", "vertex", "vllm", "ollama"):
        name = name.rsplit("/", 1)[1]
    if name.startswith("claude-"):
        name = re.sub(r"(\d)\.(\d)", r"\1-\2", name)  # OpenRouter writes claude-sonnet-4.5
    return name


def bills_as_served(provider: str) -> bool:
    """Whether `provider` routes to a model of its choosing and bills that one (OpenRouter)."""
    preset = PRESETS.get(provider)
    return preset is not None and preset.billed_as_served


def served_price_name(provider: str, priced: str, served: str) -> str:
    """The name a call is priced under: for a provider that bills the model it routed to
    (OpenRouter), that model's, when the price table knows it; else `priced`."""
    if not served or not bills_as_served(provider):
        return priced
    from orchestrate.llm.prices import find_price

    name = base_model(provider, served)
    return name if find_price(name) is not None else priced


def bedrock_region(llm_config: Mapping[str, Any]) -> str:
    """The AWS region of a Bedrock agent: ``llm_config.region``, else ``$AWS_REGION``,
    ``$AWS_DEFAULT_REGION``, else ``us-east-1`` (as the AWS SDKs choose it)."""
    return str(
        llm_config.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )


def vertex_location(llm_config: Mapping[str, Any]) -> str:
    """The Vertex location of an agent: ``llm_config.region``, else ``$GOOGLE_CLOUD_LOCATION``, else
    ``global``."""
    return str(llm_config.get("region") or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global")


def region_of(provider: str, llm_config: Mapping[str, Any]) -> str:
    """Where a call of this agent is served, as precisely as its configuration says: an AWS or
    Google region, ``eu``/``us`` for a geographic inference profile or a regional endpoint,
    ``local`` for a server on the user's machines, ``global`` when the provider chooses."""
    model = str(llm_config.get("model") or "")
    base_url = str(llm_config.get("base_url") or "")
    if provider == "bedrock":
        geo = _BEDROCK_GEO.match(model)
        if geo:
            scope = geo.group(0).rstrip(".")
            return "global" if scope == "global" else f"{scope}:{bedrock_region(llm_config)}"
        return bedrock_region(llm_config)
    if provider == "vertex":
        return vertex_location(llm_config)
    if provider in LOCAL_PROVIDERS or provider == "simulated":
        host = urlsplit(base_url).hostname if base_url else "127.0.0.1"
        return "local" if host in (None, "localhost", "127.0.0.1", "::1") else f"host:{host}"
    if provider == "azure":
        declared = llm_config.get("region")
        return str(declared) if declared else "azure"
    if provider == "mistral" and not base_url:
        return "eu"  # La Plateforme serves from the EU
    if provider == "openai" and base_url:
        host = urlsplit(base_url).hostname or ""
        match = re.match(r"^(eu|us|au|in|jp)\.api\.openai\.com$", host)
        if match:
            return match.group(1)
        if host in ("localhost", "127.0.0.1", "::1"):
            return "local"
        return f"host:{host}" if host != "api.openai.com" else "global"
    return "global"
