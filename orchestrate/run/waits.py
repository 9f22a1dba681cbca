"""Rate-limit waits counted two ways: the wall-clock time they cover (what a run lost) and the
seconds summed over the calls that waited. The Monitor, the live table's pacing and result.json
count them with the same clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WaitClock", "wall_seconds"]


@dataclass
class WaitClock:
    """Rate-limit waits told one at a time as they end (`add`), counted two ways: `seconds`, the
    wall-clock time they cover (their union: what the run lost), and `call_seconds`, summed over
    the calls (ten calls waiting 6 s side by side: 6 s and 60 call-seconds)."""

    seconds: float = 0.0
    call_seconds: float = 0.0
    calls: int = 0  # the calls that waited
    _until: float = -math.inf  # the end of the waits counted so far

    def add(self, end: float, waited: float) -> None:
        """A wait of `waited` seconds that ended at `end` (waits are told in the order they end)."""
        if waited <= 0:
            return
        self.calls += 1
        self.call_seconds += waited
        if end > self._until:
            self.seconds += end - max(end - waited, self._until)
            self._until = end

    def as_dict(self) -> dict[str, float | int]:
        """result.json's ``rate_limit_waits``."""
        return {
            "wall_seconds": round(self.seconds, 6),
            "call_seconds": round(self.call_seconds, 6),
            "calls": self.calls,
        }


def wall_seconds(intervals: list[tuple[float, float]]) -> float:
    """The time covered by the union of `(start, end)` intervals, in any order."""
    total, until = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > until:
            total += end - max(start, until)
            until = end
    return total
