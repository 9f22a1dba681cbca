"""The seam between the batch layer and one provider's batch endpoints.

`BatchAPI` is the small base each provider implements (`openai_batch`,
`anthropic_batch`): shape one request as the batch takes it, submit, poll,
read results, cancel. `CALL_TAG` carries who is calling (workflow, agent,
attempt) from the executor to the batch layer, which names requests by it.

`read_results` reads a results file line by line, so that one line that cannot
be read fails its own request alone: named by the ``custom_id`` it still shows
when there is one, else (under `UNREAD`) every request the file does not
answer. The provider answered it, so it may well be charged: the error is
``billed`` and the engine books the call's reserved worst case. A ``custom_id``
that appears twice fails that request the same way: which answer is its own
cannot be told, and neither is given to it.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from orchestrate.errors import LLMError, MalformedResponseError
from orchestrate.llm.base import LLMResponse
from orchestrate.redaction import scrub_error

__all__ = ["CALL_TAG", "UNREAD", "BatchAPI", "BatchStatus", "CallTag", "Submitted", "read_results"]

# The key, among a batch's results, of the error for requests the results file does not answer
# while some of its lines could not be read (one of them may be theirs).
UNREAD = "\x00unread"

_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([^"\\]{1,512})"')


def read_results(
    content: bytes,
    *,
    provider: str,
    what: str,
    batch_id: str,
    outcome: Callable[[dict[str, Any]], LLMResponse | LLMError],
    into: dict[str, LLMResponse | LLMError],
    secret: str | None = None,
) -> None:
    """Each line of a results file (JSONL) through `outcome`, into `into` by custom id.

    A line that is not a JSON result line, or whose answer `outcome` cannot read, fails its
    request alone (billed: answered, so probably charged); a custom id seen twice fails its
    request (neither answer is given to it). See the module docstring. Every error stored is
    scrubbed of `secret` and the environment's credentials: a line's own words may echo the key.
    """
    twice: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        custom_id = row.get("custom_id") if isinstance(row, dict) else None
        if not isinstance(custom_id, str):
            match = _CUSTOM_ID.search(line)
            named = match.group(1).decode("utf-8", "replace") if match else None
            error = _unreadable(provider, batch_id, what, number, "not a JSON result line")
            into[named if named is not None else UNREAD] = error
            if named is not None:
                first_line.setdefault(named, number)
            continue
        if custom_id in first_line:
            twice[custom_id] = number
            continue
        first_line[custom_id] = number
        try:
            into[custom_id] = outcome(row)
        except (LLMError, AttributeError, KeyError, TypeError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, LLMError) else "its answer is not in the documented shape"
            into[custom_id] = _unreadable(provider, batch_id, what, number, reason)
    for custom_id, number in twice.items():
        into[custom_id] = MalformedResponseError(
            f"{provider} batch {batch_id}: request {custom_id!r} is answered twice in the {what} "
            f"(lines {first_line[custom_id]} and {number}); neither answer is taken",
            provider=provider,
            billed=True,
        )
    for custom_id, value in into.items():
        if isinstance(value, LLMError):
            into[custom_id] = scrub_error(value, secret)


def _unreadable(provider: str, batch_id: str, what: str, number: int, reason: str) -> LLMError:
    return MalformedResponseError(
        f"{provider} batch {batch_id}: {what} line {number} cannot be read ({reason}); "
        "its request failed and is booked at its reserved worst case",
        provider=provider,
        billed=True,
    )


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
