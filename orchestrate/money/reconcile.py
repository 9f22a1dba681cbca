"""What a budget scope should hold, recomputed from the run folders that spent in it.

`orchestrate budget reconcile SCOPE RUN_DIR...` reads each folder's cost.json
(every call a run paid for, a dataset run's shards and sessions included) and
compares their sum with the scope's ``spent`` in the shared state. The calls a
folder carried over from an earlier session (``reused``) were booked by that
session and are not counted again. With ``--apply`` the scope's spend is set to
the sum, and the folders' ``unsettled_scope.json`` files (spend a lost state
never booked, which the sum already holds) are removed so that no resume books
them a second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import MAX_RESULT_BYTES, read_bytes_capped
from orchestrate.money.budget_scope import UNSETTLED_FILE, read_unsettled
from orchestrate.state.base import BudgetState, SharedState

__all__ = ["Reconciliation", "reconcile_scope", "spend_of_run"]


@dataclass
class Reconciliation:
    """A scope's stored spend against the sum of its runs' calls."""

    scope: str
    stored: BudgetState
    runs: dict[str, float] = field(default_factory=dict)  # run folder -> USD its calls cost
    unsettled: dict[str, float] = field(default_factory=dict)  # run folder -> USD not booked yet
    applied: BudgetState | None = None

    @property
    def expected(self) -> float:
        return round(sum(self.runs.values()), 10)

    @property
    def drift(self) -> float:
        """Stored minus expected: > 0 the scope counts more than was spent, < 0 less."""
        return round(self.stored.spent - self.expected, 10)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "stored_spent": round(self.stored.spent, 10),
            "expected_spent": self.expected,
            "drift": self.drift,
            "runs": {k: round(v, 10) for k, v in self.runs.items()},
            "unsettled": {k: round(v, 10) for k, v in self.unsettled.items()},
            "open_reservations": self.stored.leases,
            "applied": self.applied is not None,
            "spent_now": round((self.applied or self.stored).spent, 10),
        }


def spend_of_run(run_dir: Path) -> float:
    """What the calls of a run folder cost (its own calls, not those carried over from a session before).

    Raises:
        UserInputError: When the folder has no readable cost.json.
    """
    path = run_dir / "cost.json"
    try:
        document = json.loads(read_bytes_capped(path, MAX_RESULT_BYTES, special=False).decode("utf-8"))
    except FileNotFoundError as exc:
        raise UserInputError(f"{run_dir}: not a run folder (no cost.json)") from exc
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: cannot read it: {exc}") from exc
    calls = document.get("calls") if isinstance(document, dict) else None
    if not isinstance(calls, list):
        raise UserInputError(f"{path}: no list of calls in it")
    return round(sum(float(c.get("cost") or 0.0) for c in calls if isinstance(c, dict) and not c.get("reused")), 10)


def _unsettled(run_dir: Path) -> float:
    try:
        document = read_unsettled(run_dir / UNSETTLED_FILE)
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{run_dir / UNSETTLED_FILE}: cannot read it: {exc}") from exc
    return float(document.get("total") or 0.0)


async def reconcile_scope(
    state: SharedState, scope: str, run_dirs: list[Path], *, apply: bool = False
) -> Reconciliation:
    """Compare (and with `apply`, correct) `scope`'s spend with the sum of `run_dirs`' calls.

    Raises:
        UserInputError: For a folder that is not a run folder, a folder named
            twice, or `apply` while reservations are open (a run is still
            spending: its later bookings would come on top of the sum).
    """
    found = Reconciliation(scope, await state.budget_get(scope))
    for run_dir in run_dirs:
        name = str(run_dir)
        if name in found.runs:
            raise UserInputError(f"{run_dir}: named twice; each run folder counts once")
        found.runs[name] = spend_of_run(run_dir)
        unsettled = _unsettled(run_dir)
        if unsettled:
            found.unsettled[name] = unsettled
    if apply:
        if found.stored.limit is None:
            raise UserInputError(f"budget scope {scope!r} has no ceiling in {state.url}: nothing to correct")
        if found.stored.leases:
            raise UserInputError(
                f"budget scope {scope!r} has {found.stored.leases} open reservation(s): a run is still "
                "spending in it; reconcile once it has finished"
            )
        found.applied = await state.budget_correct(scope, found.expected)
        for name in found.unsettled:
            (Path(name) / UNSETTLED_FILE).unlink(missing_ok=True)
    return found
