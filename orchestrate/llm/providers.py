"""Choosing each agent's client: by `llm_config.provider`, else by the model's name.

`ClientPool` hands out one client per (provider, base_url, key variable,
api_version), so every agent of a run that talks to the same server with the
same key shares one connection pool, and closes them all at shutdown. Keys
come from the environment: the provider's variable, or the one an agent names
in `llm_config.api_key_env` (so two departments can bill to two keys in one
workflow). A missing one is reported before any call, naming the variable to
set; the key itself never appears anywhere.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrate.errors import MissingAPIKeyError, UserInputError
from orchestrate.llm.base import LLMClient
from orchestrate.llm.fallbacks import chain_of
from orchestrate.llm.presets import PRESETS, bedrock_region, is_bedrock_id, vertex_location

__all__ = ["ENV_KEYS", "PROVIDERS", "ClientPool", "infer_provider", "resolve_provider"]

PROVIDERS = ("openai", "anthropic", "azure", "bedrock", "vertex", *PRESETS, "simulated")
ENV_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY",
    "bedrock": "AWS_BEARER_TOKEN_BEDROCK",
    **{name: preset.key_env for name, preset in PRESETS.items() if preset.key_required},
}
AZURE_ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"


def infer_provider(model: str) -> str:
    """'anthropic' for claude-* models, 'bedrock' for Bedrock model ids and inference profiles
    (``eu.anthropic.claude-...``, ``amazon.nova-pro-v1:0``), 'openai' for everything else
    (OpenAI-compatible servers too); the other providers are never inferred."""
    lowered = model.lower()
    if lowered.startswith("claude"):
        return "anthropic"
    return "bedrock" if is_bedrock_id(lowered) else "openai"


def resolve_provider(llm_config: dict[str, Any]) -> str:
    """`llm_config.provider` when given, else inferred from `llm_config.model`."""
    provider = llm_config.get("provider")
    if provider:
        if provider not in PROVIDERS:
            raise UserInputError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        return str(provider)
    return infer_provider(str(llm_config.get("model") or ""))


class ClientPool:
    """One client per (provider, base_url), made on first use.

    Args:
        simulated: The client that answers `provider: simulated` agents.
        force_simulated: Answer every agent with `simulated` (``--simulate``).
        timeout: Seconds an HTTP call may take to answer.
        connect_timeout: Seconds to open a connection.
    """

    def __init__(
        self,
        *,
        simulated: LLMClient | None = None,
        force_simulated: bool = False,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.simulated = simulated
        self.force_simulated = force_simulated
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._clients: dict[tuple[str, str, str, str], LLMClient] = {}

    def provider_of(self, llm_config: dict[str, Any]) -> str:
        return "simulated" if self.force_simulated else resolve_provider(llm_config)

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        provider = self.provider_of(llm_config)
        if provider == "simulated":
            if self.simulated is None:
                from orchestrate.llm.simulated import SimulatedClient

                self.simulated = SimulatedClient()
            return self.simulated
        base_url = str(llm_config.get("base_url") or "")
        key_env = str(llm_config.get("api_key_env") or "")
        api_version = str(llm_config.get("api_version") or "") if provider == "azure" else ""
        if provider == "bedrock":
            api_version = bedrock_region(llm_config)  # one client (one endpoint) per region
        elif provider == "vertex":
            api_version = f"{llm_config.get('project') or ''}/{vertex_location(llm_config)}"
        key = (provider, base_url, key_env, api_version)
        client = self._clients.get(key)
        if client is None:
            options: dict[str, Any] = {
                "base_url": base_url or None,
                "timeout": self.timeout,
                "connect_timeout": self.connect_timeout,
            }
            if key_env:  # never falls back to the provider's variable: that would bill another key
                options["api_key"] = os.environ.get(key_env, "")
            if provider == "anthropic":
                from orchestrate.llm.anthropic import AnthropicClient

                client = AnthropicClient(**options)
            elif provider == "azure":
                from orchestrate.llm.azure import AzureOpenAIClient

                client = AzureOpenAIClient(api_version=api_version or None, **options)
            elif provider == "bedrock":
                from orchestrate.llm.bedrock import BedrockClient

                client = BedrockClient(region=api_version, **options)
            elif provider == "vertex":
                from orchestrate.llm.compatible import VertexClient

                if "api_key" in options:
                    options["access_token"] = options.pop("api_key")
                project = str(llm_config.get("project") or "") or None
                client = VertexClient(project=project, location=vertex_location(llm_config), **options)
            elif provider in PRESETS:
                from orchestrate.llm.compatible import CompatibleClient

                client = CompatibleClient(provider, **options)
            else:
                from orchestrate.llm.openai import OpenAIClient

                client = OpenAIClient(**options)
            self._clients[key] = client
        return client

    def check_keys(self, llm_configs: list[dict[str, Any]]) -> None:
        """Raise MissingAPIKeyError for the first provider that needs a key and has none.

        An OpenAI-compatible server given by `base_url` (Ollama, vLLM, ...) may need no key.
        Fallbacks are checked like the models they stand in for.
        """
        for llm in [route for config in llm_configs for route in chain_of(config)]:
            provider = self.provider_of(llm)
            if provider == "azure" and not (llm.get("base_url") or os.environ.get(AZURE_ENDPOINT_ENV)):
                raise UserInputError(
                    f"azure: no endpoint; set {AZURE_ENDPOINT_ENV} (e.g. "
                    "https://my-resource.openai.azure.com) or llm_config.base_url"
                )
            if provider == "vertex" and not (
                llm.get("project") or llm.get("base_url") or os.environ.get("GOOGLE_CLOUD_PROJECT")
            ):
                raise UserInputError("vertex: no project; set GOOGLE_CLOUD_PROJECT or llm_config.project")
            if provider == "vertex" and not os.environ.get("VERTEX_ACCESS_TOKEN") and not _has_module("google.auth"):
                raise UserInputError(
                    "vertex: set VERTEX_ACCESS_TOKEN, or pip install 'orchestrate[gcp]' to use Google's default "
                    "credentials"
                )
            named = llm.get("api_key_env")
            env = str(named) if named and provider != "simulated" else ENV_KEYS.get(provider)
            if env is None or os.environ.get(env):
                continue
            if provider in ("openai", *PRESETS) and llm.get("base_url") and not named:
                continue
            if provider == "bedrock" and not named and (_aws_keys_set() or _has_module("botocore")):
                continue  # signed (SigV4) with the environment's keys, or the AWS credential chain (orchestrate[aws])
            raise MissingAPIKeyError(provider, env)

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()
        if self.simulated is not None:
            await self.simulated.aclose()


def _aws_keys_set() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
