"""Budgets shared by name (`budget_scope:`), held in a `SharedState` every process sees.

A scope is a ceiling in USD that any number of runs, on any number of
machines, reserve against. Each call's worst case is reserved in the scope
atomically (one Lua script in Redis) on top of the run's own budgets, as a
*lease* this process renews while it lives; after the call the real cost is
booked and the lease freed. A crashed process's reservations lapse after the
lease time, and the others go on. A scope nobody set refuses every call,
naming the command that sets it.

Each reservation carries an id derived from the run and its attempt
(`origin`: the run folder, the shard, the session or Ray attempt), the row's
workflow, the agent, and the agent's call number in that attempt. The state
applies an id once, so a reserve or settle retried after a lost reply is
counted once, and a row run again (a restarted index, a Ray task on another
worker) books under a new attempt only because it really calls again.

`CostTracker` is the seam: it calls `reserve` from `reserve_shared` and hands
settlements here from `settle` / `release`, which send them to the state in
the background (the worst case stays reserved until they land, so the
shared ledger never counts less than was spent). When the state is lost,
settlements that could not be booked are kept in `unsettled` (the local
cost.json has the calls either way).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate.errors import BudgetExceededError, StateUnavailableError
from orchestrate.state.base import LeaseKeeper, SharedState

if TYPE_CHECKING:
    from orchestrate.money.costs import Reservation

__all__ = [
    "UNSETTLED_FILE",
    "UNSETTLED_KIND",
    "ScopeLedger",
    "book_unsettled",
    "booking_id",
    "read_unsettled",
    "set_command",
    "write_unsettled",
]

UNSETTLED_FILE = "unsettled_scope.json"  # in a run folder: spend the shared scope has not booked yet
UNSETTLED_KIND = "unsettled_scope"
_MAX_UNSETTLED_BYTES = 256 << 20  # a call's entry is about 200 bytes


def set_command(scope: str, url: str) -> str:
    """The command that sets a scope's ceiling (for error messages)."""
    if url.startswith("memory:"):  # in-process: nothing outside this run could set it
        return f"orchestrate budget set {scope} USD --state redis://HOST:PORT/DB (then run with that --state)"
    return f"orchestrate budget set {scope} USD --state {url}"


def booking_id(origin: str, workflow_id: str, agent_key: str, call: int) -> str:
    """The id of one call's reservation and booking in a scope (the same for both, and for every retry)."""
    text = f"{origin}\x1f{workflow_id}\x1f{agent_key}\x1f{call}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ScopeLedger:
    """Reservations of an engine's workflows in their budget scopes.

    Args:
        state: Where the scopes live.
        keeper: Renews the reservations held.
        origin: The run and attempt the bookings belong to (a fresh one per
            process unless the runner names it: run folder, shard, session).
    """

    def __init__(self, state: SharedState, keeper: LeaseKeeper, origin: str | None = None) -> None:
        self.state = state
        self.keeper = keeper
        self.origin = origin or uuid.uuid4().hex
        self.scopes: dict[str, str] = {}  # workflow id -> scope
        self.unsettled: list[dict[str, Any]] = []
        self._calls: dict[str, int] = {}  # agent key -> calls reserved so far in this attempt
        self._tasks: set[asyncio.Task[None]] = set()

    def scope_of(self, workflow_id: str) -> str | None:
        return self.scopes.get(workflow_id)

    def forget(self, workflow_id: str, agent_keys: list[str]) -> None:
        """Drop a finished workflow (a dataset run's row) so memory stays flat."""
        self.scopes.pop(workflow_id, None)
        for key in agent_keys:
            self._calls.pop(key, None)

    async def reserve(self, reservation: Reservation, *, simulated: bool = False) -> None:
        """Reserve `reservation.amount` in its workflow's scope, or refuse.

        A `simulated` call pays nothing, so it never reserves or books in the scope: the
        scope is only read, to refuse the call as a real one would be refused (a preview).

        Raises:
            BudgetExceededError: When the scope's ceiling would be passed, or it was never set.
            StateUnavailableError: When the state cannot be reached.
        """
        scope = self.scopes.get(reservation.workflow_id)
        if scope is None:
            return
        if simulated:
            state = await self.state.budget_get(scope)
            committed = state.spent + state.reserved
            figures = (
                (state.spent, state.reserved) if state.limit is None else (state.spent, state.reserved, state.limit)
            )
            verdict = (
                "corrupt"
                if not all(math.isfinite(x) for x in figures) or state.spent < 0 or (state.limit or 0) < 0
                else "unset"
                if state.limit is None
                else "ok"
                if committed + reservation.amount <= state.limit + 1e-12
                else "over"
            )
            limit: float | None = state.limit
        else:
            call = self._calls[reservation.agent_key] = self._calls.get(reservation.agent_key, 0) + 1
            lease = booking_id(self.origin, reservation.workflow_id, reservation.agent_key, call)
            verdict, limit, committed = await self.state.budget_reserve(scope, lease, reservation.amount)
        if verdict == "corrupt":
            raise BudgetExceededError(
                f"budget scope {scope!r} in {self.state.url} holds a figure that is not a finite, "
                "non-negative amount; no call is made against it until it is corrected "
                f"(orchestrate budget show {scope} --state URL)",
                scope=f"budget_scope {scope}",
                limit=0.0,
                requested=reservation.amount,
                committed=0.0,
            )
        if verdict == "unset":
            raise BudgetExceededError(
                f"budget scope {scope!r} has no ceiling in {self.state.url}; set it with: "
                f"{set_command(scope, self.state.url)}",
                scope=f"budget_scope {scope}",
                limit=0.0,
                requested=reservation.amount,
                committed=committed,
            )
        if verdict != "ok":
            raise BudgetExceededError(
                f"budget scope {scope!r} of ${limit or 0:.4f} would be passed: ${committed:.4f} spent or "
                f"reserved by every run sharing it, and this call may cost up to ${reservation.amount:.4f}",
                scope=f"budget_scope {scope}",
                limit=limit or 0.0,
                requested=reservation.amount,
                committed=committed,
            )
        if simulated:
            return
        reservation.lease = lease
        self.keeper.hold(self.keeper.reservations, scope, lease)

    def settle_later(self, reservation: Reservation, cost: float) -> None:
        """Book `cost` in the scope and free the lease, in the background."""
        scope, lease = self.scopes.get(reservation.workflow_id), reservation.lease
        if scope is None or lease is None:
            return
        reservation.lease = None
        self.keeper.drop(self.keeper.reservations, scope, lease)

        async def settle() -> None:
            try:
                await self.state.budget_settle(scope, lease, cost)
            except StateUnavailableError:
                if cost > 0:
                    self.unsettled.append(
                        {
                            "scope": scope,
                            "workflow_id": reservation.workflow_id,
                            "agent_id": reservation.agent_key,
                            "cost": cost,
                            "booking": lease,  # booked under the same id on resume: once, even if it did land
                        }
                    )

        task = asyncio.get_running_loop().create_task(settle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every settlement has reached the state (or failed to)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def write_unsettled(run_dir: Path, state_url: str, entries: list[dict[str, Any]]) -> float:
    """Keep a run's settlements the state never received, for `--resume` to book; returns their sum."""
    from orchestrate.fsutil import atomic_write_text

    total = round(sum(float(e["cost"]) for e in entries), 10)
    atomic_write_text(
        run_dir / UNSETTLED_FILE,
        json.dumps(
            {"kind": UNSETTLED_KIND, "schema_version": 1, "state": state_url, "total": total, "calls": entries},
            indent=2,
            sort_keys=True,
        ),
    )
    return total


def read_unsettled(path: Path) -> dict[str, Any]:
    """An ``unsettled_scope.json``, read as a regular file within a limit (a pipe or device put in
    its place is refused, never waited on).

    Raises:
        OSError: It cannot be read (FileNotFoundError: there is none), or is not a regular file.
        ValueError: It is not JSON, too large, not an object, or another kind of document.
    """
    from orchestrate.fsutil import read_bytes_capped

    document = json.loads(read_bytes_capped(path, _MAX_UNSETTLED_BYTES, special=False).decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    # `kind` is written since 2026-12; a file from before has none and is read as it always was.
    if document.get("kind", UNSETTLED_KIND) != UNSETTLED_KIND:
        raise ValueError(f"a document of kind {document.get('kind')!r}, not {UNSETTLED_KIND!r}")
    return document


async def book_unsettled(state: SharedState, run_dir: Path) -> list[tuple[str, float]]:
    """Book into their scopes what a run folder spent while the state was lost; the file is then removed.

    Returns (scope, USD) per scope booked. Each call is booked under the id its
    settlement was first sent with: a settlement the state applied although its
    reply never came (the state went away just after) is not booked twice, and
    a crash before the file is removed and a second resume book nothing more.
    (A file written before the ids were kept books each scope's sum under an
    id derived from the file's content.)
    """
    path = run_dir / UNSETTLED_FILE
    try:
        document = read_unsettled(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        from orchestrate.errors import UserInputError

        raise UserInputError(f"{path}: cannot read the unsettled spend: {exc}") from exc
    by_scope: dict[str, float] = {}
    without_id: dict[str, float] = {}
    for entry in document.get("calls") or []:
        scope, cost = str(entry["scope"]), float(entry["cost"])
        by_scope[scope] = by_scope.get(scope, 0.0) + cost
        if entry.get("booking"):
            await state.budget_settle(scope, str(entry["booking"]), cost)
        else:
            without_id[scope] = without_id.get(scope, 0.0) + cost
    content = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    for scope, cost in sorted(without_id.items()):
        await state.budget_settle(scope, booking_id(f"unsettled:{run_dir.resolve()}", content, scope, 0), cost)
    path.unlink()
    return sorted(by_scope.items())
