"""The seam between the batch layer and one provider's batch endpoints.

`BatchAPI` is the small base each provider implements (`openai_batch`,
`anthropic_batch`): shape one request as the batch takes it, submit, poll,
read results, cancel. `CALL_TAG` carries who is calling (workflow, agent,
attempt) from the executor to the batch layer, which names requests by it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from orchestrate.errors import LLMError
from orchestrate.llm.base import LLMResponse

__all__ = ["CALL_TAG", "BatchAPI", "BatchStatus", "CallTag", "Submitted"]


class CallTag(NamedTuple):
    """Who is calling: set by the executor around each attempt, read by the batch layer.

    (A named tuple: made once per attempt, and a frozen dataclass costs three times as much.)
    """

    workflow_id: str
    workflow_name: str
    agent: str
    attempt: int


CALL_TAG: ContextVar[CallTag | None] = ContextVar("orchestrate_call_tag", default=None)


@dataclass(slots=True)
class BatchStatus:
    """A batch as the provider last described it."""

    batch_id: str
    status: str  # the provider's word: validating, in_progress, ended, ...
    ended: bool  # no further change will come; results can be read
    total: int = 0
    done: int = 0  # answered, successfully or not
    failed: int = 0
    reason: str | None = None  # why the whole batch failed or expired
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Submitted:
    batch_id: str
    file_id: str | None = None


class BatchAPI(ABC):
    """One provider's batch endpoints. `client` is the online client (its URL, key, transport)."""

    provider = ""
    max_requests = 0
    max_bytes = 0

    def __init__(self, client: Any, *, max_requests: int | None = None, max_bytes: int | None = None) -> None:
        self.client = client
        if max_requests is not None:
            self.max_requests = max_requests
        if max_bytes is not None:
            self.max_bytes = max_bytes

    @abstractmethod
    def item(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request as the provider's batch takes it (a JSONL line, an element of `requests`)."""

    @abstractmethod
    async def submit(self, model: str, items: list[dict[str, Any]]) -> Submitted:
        """Create a batch of `items`; returns once the provider has accepted it."""

    @abstractmethod
    async def status(self, batch_id: str) -> BatchStatus:
        """Poll a batch once."""

    @abstractmethod
    async def results(self, status: BatchStatus, model: str) -> dict[str, LLMResponse | LLMError]:
        """The outcome of every answered request of an ended batch, by custom id."""

    @abstractmethod
    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel a batch (what is done so far is still billed)."""
