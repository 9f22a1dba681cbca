"""Which agents' calls go through a provider's batch API, and the clients that send them.

`BatchClients` wraps a client source (a `ClientPool`): an agent whose
``llm_config.batch`` is true, or every agent when the whole run is batched
(``--provider-batch``), gets a `BatchingClient` in front of its provider's
online client; ``llm_config.batch: false`` keeps an agent online even then.
The simulated provider and clients without a batch API stay online.
"""

from __future__ import annotations

from typing import Any

from orchestrate.llm.base import LLMClient
from orchestrate.llm.batch import BatchAPI, BatchHub, BatchingClient

__all__ = ["BatchClients", "batch_api_for"]


def batch_api_for(client: Any) -> BatchAPI | None:
    """The batch API of an online OpenAI or Anthropic client, else None."""
    from orchestrate.llm.anthropic import AnthropicClient
    from orchestrate.llm.openai import OpenAIClient

    if isinstance(client, OpenAIClient):
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

    def __init__(self, inner: Any, hub: BatchHub, *, everything: bool = False,
                 api_options: dict[str, Any] | None = None) -> None:
        self.inner = inner
        self.hub = hub
        self.everything = everything
        self.api_options = dict(api_options or {})
        self._wrapped: dict[int, LLMClient] = {}

    def wants_batch(self, llm_config: dict[str, Any]) -> bool:
        flag = llm_config.get("batch")
        return bool(flag) if flag is not None else self.everything

    def get(self, llm_config: dict[str, Any]) -> LLMClient:
        client: LLMClient = self.inner.get(llm_config)
        if not self.wants_batch(llm_config):
            return client
        wrapped = self._wrapped.get(id(client))
        if wrapped is None:
            api = batch_api_for(client)
            if api is None:
                wrapped = client
            else:
                for name, value in self.api_options.items():
                    setattr(api, name, value)
                wrapped = BatchingClient(client, api, self.hub)
            self._wrapped[id(client)] = wrapped
        return wrapped

    def check_keys(self, llm_configs: list[dict[str, Any]]) -> None:
        self.inner.check_keys(llm_configs)

    async def aclose(self) -> None:
        await self.hub.aclose()
        await self.inner.aclose()
