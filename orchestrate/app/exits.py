"""The one table of exit codes: what a finished run, dataset run or signal ends the process with.

| code | meaning |
|---|---|
| 0 | completed (every agent, or every row) |
| 1 | failed (or cancelled; or the shared state was lost) |
| 2 | invalid input (`UserInputError`: a file, a flag, a value) |
| 3 | partially completed |
| 4 | waiting for an approval |
| 5 | completed, but expectations failed (unless `--no-fail-on-expect`) |
| 6 | regressed against `--baseline`: a case went pass -> fail, or a pass rate fell past `--tolerance` |
| 130 | interrupted (SIGINT, Ctrl-C) |
| 143 | terminated (SIGTERM) |
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

from orchestrate.errors import ExitCode

__all__ = ["ExitCode", "for_signal", "for_status", "worst"]


_BY_STATUS = {
    "completed": ExitCode.COMPLETED,
    "failed": ExitCode.FAILED,
    "partially_completed": ExitCode.PARTIAL,
    "cancelled": ExitCode.FAILED,
    "waiting": ExitCode.WAITING,
}
# With several workflows the worst code wins: failed, then waiting, then partial, then completed.
_SEVERITY = {ExitCode.COMPLETED: 0, ExitCode.PARTIAL: 1, ExitCode.WAITING: 2, ExitCode.FAILED: 3}


def for_status(status: str) -> ExitCode:
    """The code of a workflow's or a dataset run's final status (an unknown one is a failure)."""
    return _BY_STATUS.get(status, ExitCode.FAILED)


def for_signal(signum: int) -> ExitCode:
    """130 for SIGINT, 143 for SIGTERM (any other stop reads as an interruption)."""
    return ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED


def worst(codes: Iterable[int]) -> int:
    """The most severe of several runs' codes; 0 when there are none."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=0)  # type: ignore[call-overload]
