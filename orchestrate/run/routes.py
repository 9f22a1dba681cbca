"""Which model an agent's next call goes to: its own, or the next of its fallbacks.

An agent with ``llm_config.fallbacks`` walks its chain (`orchestrate.llm.fallbacks`)
within one attempt: a call that fails with a class of ``fallback_on`` goes to the
next model at once, without spending the retry budget first (a 429 or a 529 on
the primary says nothing about the fallback); a provider already paused by a 429
(by this process, or by any process through the shared state) is skipped the
same way instead of waited for. The chain is walked at most once per attempt;
once a tool with side effects has run in the attempt, no call of that attempt
falls back (the conversation has changed the world; another vendor must not
replay it). Each new attempt starts again from the agent's own model.

Every fallback taken is kept (`taken`) for the agent's result, cost records and
events: the model asked for, the model that served, and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrate.errors import LLMError
from orchestrate.llm.base import LLMClient
from orchestrate.llm.fallbacks import chain_of, failure_class, falls_back_on

__all__ = ["Routes"]


class Routes:
    """An agent's chain of models for one execution, and where in it the current attempt is.

    Args:
        llm_config: The agent's llm_config (with its ``fallbacks``).
        client_for: The engine's client source (one client per provider route).
    """

    __slots__ = ("_client_for", "_clients", "chain", "index", "on", "side_effects", "taken")

    def __init__(self, llm_config: dict[str, Any], client_for: Callable[[dict[str, Any]], LLMClient]) -> None:
        self.chain = chain_of(llm_config)
        self.on = falls_back_on(llm_config)
        self._client_for = client_for
        self._clients: dict[int, LLMClient] = {}
        self.index = 0
        self.side_effects = False
        self.taken: list[dict[str, Any]] = []

    @property
    def llm(self) -> dict[str, Any]:
        """The llm_config of the model the next call goes to."""
        return self.chain[self.index]

    @property
    def client(self) -> LLMClient:
        client = self._clients.get(self.index)
        if client is None:
            client = self._clients[self.index] = self._client_for(self.chain[self.index])
        return client

    @property
    def requested(self) -> str:
        """The agent's own model."""
        return str(self.chain[0]["model"])

    def restart(self) -> None:
        """A new attempt: back to the agent's own model, no tool run yet."""
        self.index = 0
        self.side_effects = False

    def can_fall_back(self) -> bool:
        """Whether a next model remains for this attempt (and no side-effecting tool has run)."""
        return self.index + 1 < len(self.chain) and not self.side_effects

    def reason_to_fall_back(self, exc: LLMError) -> str | None:
        """The failure class that sends this call to the next model, or None (the error stands)."""
        if not self.can_fall_back():
            return None
        kind = failure_class(exc)
        return kind if kind in self.on else None

    def advance(self, reason: str, error: str) -> dict[str, Any]:
        """Move to the next model; returns the record of the move."""
        here = self.llm
        self.index += 1
        there = self.llm
        record = {
            "from_model": here["model"],
            "from_provider": self._clients[self.index - 1].provider if self.index - 1 in self._clients else None,
            "to_model": there["model"],
            "to_provider": self.client.provider,
            "reason": reason,
            "error": error[:300],
        }
        self.taken.append(record)
        return record

    def fallback_reason(self) -> str | None:
        """Why the current model serves instead of the agent's own (None: it is the agent's own)."""
        return self.taken[-1]["reason"] if self.index and self.taken else None
