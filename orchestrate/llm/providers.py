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

__all__ = ["ENV_KEYS", "PROVIDERS", "ClientPool", "infer_provider", "resolve_provider"]

PROVIDERS = ("openai", "anthropic", "azure", "simulated")
ENV_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}
AZURE_ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"


def infer_provider(model: str) -> str:
    """'anthropic' for claude-* models, 'openai' for everything else (OpenAI-compatible servers
    too); Azure's model names are deployment names, so `provider: azure` is never inferred."""
    return "anthropic" if model.lower().startswith("claude") else "openai"


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
    """

    def __init__(
        self, *, simulated: LLMClient | None = None, force_simulated: bool = False, timeout: float = 120.0
    ) -> None:
        self.simulated = simulated
        self.force_simulated = force_simulated
        self.timeout = timeout
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
        key = (provider, base_url, key_env, api_version)
        client = self._clients.get(key)
        if client is None:
            options: dict[str, Any] = {"base_url": base_url or None, "timeout": self.timeout}
            if key_env:  # never falls back to the provider's variable: that would bill another key
                options["api_key"] = os.environ.get(key_env, "")
            if provider == "anthropic":
                from orchestrate.llm.anthropic import AnthropicClient

                client = AnthropicClient(**options)
            elif provider == "azure":
                from orchestrate.llm.azure import AzureOpenAIClient

                client = AzureOpenAIClient(api_version=api_version or None, **options)
            else:
                from orchestrate.llm.openai import OpenAIClient

                client = OpenAIClient(**options)
            self._clients[key] = client
        return client

    def check_keys(self, llm_configs: list[dict[str, Any]]) -> None:
        """Raise MissingAPIKeyError for the first provider that needs a key and has none.

        An OpenAI-compatible server given by `base_url` (Ollama, vLLM, ...) may need no key.
        """
        for llm in llm_configs:
            provider = self.provider_of(llm)
            if provider == "azure" and not (llm.get("base_url") or os.environ.get(AZURE_ENDPOINT_ENV)):
                raise UserInputError(
                    f"azure: no endpoint; set {AZURE_ENDPOINT_ENV} (e.g. "
                    "https://my-resource.openai.azure.com) or llm_config.base_url"
                )
            named = llm.get("api_key_env")
            env = str(named) if named and provider != "simulated" else ENV_KEYS.get(provider)
            if env is None or os.environ.get(env):
                continue
            if provider == "openai" and llm.get("base_url") and not named:
                continue
            raise MissingAPIKeyError(provider, env)

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()
        if self.simulated is not None:
            await self.simulated.aclose()
