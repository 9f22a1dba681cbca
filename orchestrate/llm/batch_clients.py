"""Which agents' calls go through a provider's batch API, and the clients that send them.

`BatchClients` wraps a client source (a `ClientPool`): an agent whose
``llm_config.batch`` is true, or every agent when the whole run is batched
(``--provider-batch``), gets a `BatchingClient` in front of its provider's
online client; ``llm_config.batch: false`` keeps an agent online even then.
The simulated provider and clients without a batch API stay online.
"""

from __future__ import annotations

from typing import Any

from orchestrate.llm.base import LLMClient, LLMResponse, single_turn
from orchestrate.llm.batch import BatchHub
from orchestrate.llm.batch_api import CALL_TAG, BatchAPI

__all__ = ["BatchClients", "BatchingClient", "batch_api_for"]


def batch_api_for(client: Any) -> BatchAPI | None:
    """The batch API of an online OpenAI, Gemini (its OpenAI-compatible layer) or Anthropic client,
    else None."""
    from orchestrate.llm.anthropic import AnthropicClient
    from orchestrate.llm.azure import AzureOpenAIClient
    from orchestrate.llm.openai import OpenAIClient

    if isinstance(client, AzureOpenAIClient):
        return None  # Azure's batch API needs global-batch deployments: its calls go online
    if isinstance(client, OpenAIClient) and client.provider not in ("openai", "gemini"):
        return None  # local servers, Mistral, OpenRouter, Vertex: no OpenAI-style batch API
    if isinstance(client, OpenAIClient):  # OpenAI's, and Gemini's OpenAI-compatible one
        from orchestrate.llm.openai_batch import OpenAIBatchAPI

        return OpenAIBatchAPI(client)
    if isinstance(client, AnthropicClient):
        from orchestrate.llm.anthropic_batch import AnthropicBatchAPI

        return AnthropicBatchAPI(client)
    return None


class BatchClients:
    """A client source that batches what may be batched.

    Args:
        inner: The source of online clients (`get`, `aclose`).
        hub: The run's batch queues and pollers.
        everything: Batch every agent unless its ``llm_config.batch`` is false.
        api_options: Passed to each provider's `BatchAPI` (``max_requests``, ``max_bytes``).
    """

    def __init__(
        self, inner: Any, hub: BatchHub, *, everything: bool = False, api_options: dict[str, Any] | None = None
    ) -> None:
        self.inner = inner
        self.hub = hub
        self.everything = everything
        self.api_options = dict(api_options or {})
        self._wrapped: dict[tuple[int, bool], LLMClient] = {}

    def wants_batch(self, llm_config: dict[str, Any]) -> bool:
        flag = llm_config.get("batch")
        return bool(flag) if flag is not None else self.everything

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        client: LLMClient = self.inner.get(llm_config)
        wants = self.wants_batch(llm_config)
        if not wants and not self.hub.adopted:
            return client
        # An online agent of a resumed run still collects what the run it resumes left in
        # open batches (already paid for); only its new requests go online.
        key = (id(client), wants)
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            api = batch_api_for(client)
            if api is None:
                wrapped = client
            else:
                for name, value in self.api_options.items():
                    setattr(api, name, value)
                wrapped = BatchingClient(client, api, self.hub, collect_only=not wants)
            self._wrapped[key] = wrapped
        return wrapped

    def check_keys(self, llm_configs: list[dict[str, Any]]) -> None:
        self.inner.check_keys(llm_configs)

    async def aclose(self) -> None:
        await self.hub.aclose()
        await self.inner.aclose()


class BatchingClient(LLMClient):
    """An online provider client's stand-in that sends every call through the batch API.

    Args:
        online: The provider's online client; its request builder and parser are reused,
            and with ``fallback="online"`` it answers the retries of failed batch requests.
        api: The provider's batch endpoints.
        hub: The run's queues and pollers.
        collect_only: Send new requests online; only answers already waiting in batches
            adopted from a resumed run are collected from them.
    """

    def __init__(self, online: Any, api: BatchAPI, hub: BatchHub, *, collect_only: bool = False) -> None:
        self.online, self.api, self.hub = online, api, hub
        self.provider = online.provider
        self.base_url = online.base_url
        self.collect_only = collect_only
        self.batched = not collect_only  # the executor reserves and paces a batched call as such

    def __repr__(self) -> str:
        return f"BatchingClient({self.online!r})"

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        return await self.complete_with_tools(
            single_turn(prompt, kwargs.get("system")), model, tools or [], temperature, max_tokens, **kwargs
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
        if self.goes_online():
            return await self.online.complete_with_tools(messages, model, tools, temperature, max_tokens, **kwargs)
        body = self._body(messages, model, tools, temperature, max_tokens, kwargs)
        if self.collect_only and not self.hub.is_adopted(body):
            return await self.online.complete_with_tools(messages, model, tools, temperature, max_tokens, **kwargs)
        return await self.hub.call(self.api, self.base_url, model, body)

    def _body(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """The request the online client would post: same capabilities, same structured-output way."""
        options = dict(kwargs)
        resolve = getattr(self.online, "response_format_for", None)
        if resolve is not None:
            from orchestrate.llm.capabilities import lookup

            caps = options.pop("capabilities", None) or lookup(model, self.online.provider)
            options.update(
                capabilities=caps, response_format=resolve(model, caps, options.pop("response_format", None))
            )
        body: dict[str, Any] = self.online.request_body(messages, model, tools, temperature, max_tokens, **options)
        return body

    def goes_online(self) -> bool:
        """True when the calling agent's next call is sent online (``--batch-fallback online``
        after a batch left one of its requests unanswered); the executor prices it so."""
        if self.collect_only:
            return False
        if self.hub.fallback != "online" or not self.hub.failed_callers:
            return False
        tag = CALL_TAG.get()
        return tag is not None and (tag.workflow_id, tag.agent) in self.hub.failed_callers

    async def aclose(self) -> None:
        await self.online.aclose()
