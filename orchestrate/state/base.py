"""The protocol every shared-state back-end speaks, and how a URL picks one.

A back-end holds, under one namespace:

- **rate windows** per limiter key (a provider or model): the sliding-window
  logs of `orchestrate.money.rate_limit`, the pacing schedule, a pause, and
  concurrency slots as *leases* that expire if their holder dies;
- **budget scopes**: a ceiling, what was spent, and reservations as leases.
  Every reservation and booking carries an id (`orchestrate.money.budget_scope`
  derives it from the run, the row, the agent, the attempt and the call): an
  id is applied once, so a reserve or settle sent again after a lost reply
  changes nothing and answers as the first time did;
- **cache entries** with a time to live.

Leases are renewed by their holder while it lives (`SharedState.renew_leases`,
driven by `LeaseKeeper`); a crashed process's leases lapse after
``lease_seconds``. Every operation of a back-end that cannot reach its store
raises `StateUnavailableError`, and from then on the back-end is *lost*: it
refuses every further operation at once, so no call starts without the shared
ledger (fail closed), even if the store comes back mid-run.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrate.errors import StateUnavailableError

__all__ = [
    "BudgetState",
    "LeaseKeeper",
    "RateAnswer",
    "SharedState",
    "TierLimits",
    "scrub_url",
    "DEFAULT_NAMESPACE",
    "DEFAULT_LEASE_SECONDS",
]

DEFAULT_NAMESPACE = "orchestrate"
DEFAULT_LEASE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class TierLimits:
    """What a shared limiter enforces for one key (see `orchestrate.money.rate_limit`).

    Attributes:
        windows: (tier name, limit, window seconds + skew margin) for every tier.
        interval: Least spacing of starts (pacing); 0 for none.
        slack: How much a late start may catch up on the pacing schedule.
        concurrent: Slots (leases) that may be held at once.
    """

    windows: tuple[tuple[str, float, float], ...]
    interval: float
    slack: float
    concurrent: int


@dataclass(frozen=True, slots=True)
class RateAnswer:
    """`acquire_rate`'s answer: granted, or how long to wait and for what."""

    granted: bool
    wait: float = 0.0
    tier: str = ""


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget scope as stored: ceiling (None while never set), spent, reserved, open leases."""

    scope: str
    limit: float | None
    spent: float
    reserved: float
    leases: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "limit": self.limit,
            "spent": round(self.spent, 10),
            "reserved": round(self.reserved, 10),
            "open_reservations": self.leases,
            "remaining": None if self.limit is None else round(self.limit - self.spent - self.reserved, 10),
        }


class SharedState(ABC):
    """Shared limits, budgets and cache behind one namespace.

    Args:
        url: Where the state lives (kept scrubbed of passwords in `url`).
        namespace: Prefix of every key; processes share state only within one.
        lease_seconds: How long a lease (a concurrency slot, a budget
            reservation) outlives its holder's last renewal.
        clock: Seconds to use as "now" instead of the store's own clock
            (tests drive time with it); None uses the store's clock.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = scrub_url(url)
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.lost: str | None = None  # why the state was lost; then every operation refuses

    def check(self) -> None:
        """Raise at once if the state was lost earlier in this run."""
        if self.lost is not None:
            raise StateUnavailableError(self.lost, url=self.url)

    def mark_lost(self, reason: str) -> StateUnavailableError:
        """Remember that the state is gone; returns the error to raise."""
        if self.lost is None:
            self.lost = f"shared state at {self.url} is unavailable: {reason}"
        return StateUnavailableError(self.lost, url=self.url)

    @property
    def shared(self) -> bool:
        """True when other processes can see this state."""
        return True

    async def connect(self) -> None:  # noqa: B027  (a no-op unless a back-end has a server)
        """Check that the store answers (raise `StateUnavailableError` if not)."""

    async def aclose(self) -> None:  # noqa: B027  (a no-op unless a back-end holds connections)
        """Close connections."""

    # -- rate limits ----------------------------------------------------------------------------

    @abstractmethod
    async def acquire_rate(self, key: str, limits: TierLimits, tokens: float, lease: str) -> RateAnswer:
        """Start one request of `tokens` under every tier of `key` and take slot `lease`, or say how long to wait."""

    @abstractmethod
    async def release_slot(self, key: str, lease: str) -> None:
        """Give back a concurrency slot."""

    @abstractmethod
    async def pause(self, key: str, seconds: float) -> None:
        """Hold back every caller of `key`, in every process, for `seconds`."""

    @abstractmethod
    async def paused_for(self, key: str) -> float:
        """Seconds left of a pause of `key` set by any process (0 when none)."""

    # -- budgets --------------------------------------------------------------------------------

    @abstractmethod
    async def budget_reserve(self, scope: str, lease: str, amount: float) -> tuple[str, float | None, float]:
        """Reserve `amount` in `scope` atomically: ("ok" | "refused" | "unset", limit, committed before).

        `lease` is the reservation's id: reserved once, a repeat returns the
        first answer and reserves nothing more (a refusal changed nothing and
        is decided afresh).
        """

    @abstractmethod
    async def budget_settle(self, scope: str, lease: str, cost: float) -> None:
        """Free the reservation `lease` and book `cost` as spent (also when the lease had lapsed), once per id."""

    @abstractmethod
    async def budget_get(self, scope: str) -> BudgetState:
        """The scope as stored, lapsed reservations dropped."""

    @abstractmethod
    async def budget_set(self, scope: str, limit: float) -> BudgetState:
        """Set (or change) the ceiling of `scope`."""

    @abstractmethod
    async def budget_reset(self, scope: str) -> BudgetState:
        """Forget what `scope` has spent (a new month); the ceiling stays."""

    @abstractmethod
    async def budget_correct(self, scope: str, spent: float) -> BudgetState:
        """Set what `scope` has spent to `spent` (`orchestrate budget reconcile --apply`); the rest stays."""

    # -- leases ---------------------------------------------------------------------------------

    @abstractmethod
    async def renew_leases(self, slots: dict[str, set[str]], reservations: dict[str, set[str]]) -> None:
        """Extend every lease still held (by limiter key and by budget scope)."""

    # -- cache ----------------------------------------------------------------------------------

    @abstractmethod
    async def cache_get(self, key: str) -> bytes | None:
        """A cached entry, or None."""

    @abstractmethod
    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        """Store an entry for `ttl` seconds."""


class LeaseKeeper:
    """Renews every lease this process holds, every third of the lease time, while it runs.

    Args:
        state: The back-end.
        sleep: Waits between renewals (injectable with the state's clock).
    """

    def __init__(self, state: SharedState, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.state = state
        self.sleep = sleep
        self.slots: dict[str, set[str]] = {}
        self.reservations: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, kind: dict[str, set[str]], key: str, lease: str) -> None:
        kind.setdefault(key, set()).add(lease)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew())

    def drop(self, kind: dict[str, set[str]], key: str, lease: str) -> None:
        held = kind.get(key)
        if held is not None:
            held.discard(lease)
            if not held:
                del kind[key]

    async def _renew(self) -> None:
        while self.slots or self.reservations:
            await self.sleep(self.state.lease_seconds / 3)
            if self.state.lost is not None:
                return
            try:
                await self.state.renew_leases(self.slots, self.reservations)
            except StateUnavailableError:
                return

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def scrub_url(url: str) -> str:
    """`url` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid state URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
