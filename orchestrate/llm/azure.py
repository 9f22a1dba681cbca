"""Azure OpenAI: Chat Completions on a resource's endpoint, authenticated by an ``api-key`` header.

Two URL shapes, as the official SDK's ``AzureOpenAI`` client builds them:

- with an ``api_version`` (argument, else ``$OPENAI_API_VERSION``), the classic
  deployments endpoint: ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``;
- without one, the v1 endpoint: ``{endpoint}/openai/v1/chat/completions``.

The model in a workflow is the deployment's name (it is also sent as
``model``, as the SDK does); ``llm_config.price_as`` names the model it runs,
for prices and for the capability table. The request body is OpenAI's.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from orchestrate.llm.openai import OpenAIClient

__all__ = ["AzureOpenAIClient"]


class AzureOpenAIClient(OpenAIClient):
    """Azure OpenAI client.

    Args:
        api_key: Defaults to ``$AZURE_OPENAI_API_KEY``.
        base_url: The resource's endpoint, e.g. ``https://my-resource.openai.azure.com``;
            defaults to ``$AZURE_OPENAI_ENDPOINT``. A trailing ``/openai`` or
            ``/openai/v1`` is accepted too.
        api_version: Use the deployments endpoint with this ``api-version``; defaults to
            ``$OPENAI_API_VERSION``; without either, the v1 endpoint.
        timeout: Seconds a call may take to answer; `connect_timeout` to connect.
    """

    provider = "azure"
    key_env, url_env, default_url = "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", ""

    def __init__(
        self, api_key: str | None = None, base_url: str | None = None, *, api_version: str | None = None, **options: Any
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self.organization = None
        self.api_version = api_version or os.environ.get("OPENAI_API_VERSION") or None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["api-key"] = self.api_key
        return headers

    def probe_url(self) -> str:
        return (
            self.endpoint("")
            .replace("/deployments//chat/completions", "/models")
            .replace("/chat/completions", "/models")
        )

    def endpoint(self, model: str) -> str:
        root = self.base_url
        for suffix in ("/openai/v1", "/openai"):
            if root.endswith(suffix):
                root = root[: -len(suffix)]
                break
        if self.api_version:
            return (
                f"{root}/openai/deployments/{quote(model, safe='')}/chat/completions"
                f"?api-version={quote(self.api_version, safe='')}"
            )
        return f"{root}/openai/v1/chat/completions"
