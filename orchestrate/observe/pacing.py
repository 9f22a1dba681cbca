"""What holds a run back on its rate limits, folded from events for the live displays.

`Pacing` keeps, per limit that calls of the run wait on now, the phrase `plan` uses for it
(``openai 60/min (rate_limits.openai)``) and how many calls wait on it, and the time the run
lost waiting, **wall-clock**: ten calls queued together for 6 s cost the run 6 s, not 60 s
(each ``agent_rate_limited`` is a wait that ended at its timestamp; their union is counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrate.observe.summary import plural
from orchestrate.run.events import Event, EventType
from orchestrate.run.waits import WaitClock

__all__ = ["Pacing", "paced_line"]


def paced_line(text: str, queued: int) -> str:
    """``paced by openai 60/min (rate_limits.openai): 27 calls queued``."""
    return f"paced by {text}: {plural(queued, 'call')} queued"


@dataclass
class _Queue:
    text: str
    queued: int  # the limiter's count when last told (every workflow's calls)
    ours: int = 0  # calls of the watched run waiting on it
    agents: dict[str, int] = field(default_factory=dict)  # ... by agent


@dataclass
class Pacing:
    """Limits holding calls back now, and the wall-clock time lost to waits so far."""

    queues: dict[str, _Queue] = field(default_factory=dict)
    waits: WaitClock = field(default_factory=WaitClock)

    event_types = frozenset({EventType.RATE_LIMIT_WAITING, EventType.AGENT_RATE_LIMITED})

    def apply(self, event: Event) -> bool:
        """Fold `event` in; False when it is not one of `event_types`."""
        data = event.data
        if event.type is EventType.RATE_LIMIT_WAITING:
            key = str(data.get("limit"))
            queue = self.queues.get(key)
            if queue is None:
                queue = self.queues[key] = _Queue(str(data.get("text") or key), 0)
            queue.text = str(data.get("text") or key)
            queue.queued = int(data.get("queued") or 0)
            queue.ours += 1
            who = str(event.agent)
            queue.agents[who] = queue.agents.get(who, 0) + 1
            return True
        if event.type is not EventType.AGENT_RATE_LIMITED:
            return False
        self.waits.add(event.timestamp, float(data.get("waited") or 0.0))
        limit = data.get("limit")
        queue = self.queues.get(str(limit)) if limit is not None else None
        if queue is not None:
            queue.ours -= 1
            who = str(event.agent)
            if queue.agents.get(who, 0) > 1:
                queue.agents[who] -= 1
            else:
                queue.agents.pop(who, None)
            queue.queued = int(data.get("queued") or 0)
            if queue.ours <= 0:
                del self.queues[str(limit)]
        return True

    @property
    def waited(self) -> float:
        """Wall-clock seconds lost to rate-limit waits so far."""
        return self.waits.seconds

    def finished(self, agent: str) -> None:
        """`agent` ended: a wait of its that was cut short (its timeout, a stop) is over too."""
        for limit, queue in list(self.queues.items()):
            left = queue.agents.pop(agent, 0)
            if left:
                queue.ours -= left
                queue.queued = max(0, queue.queued - left)
                if queue.ours <= 0:
                    del self.queues[limit]

    def clear(self) -> None:
        """The run ended: nothing of it waits any more (a wait cut short by Ctrl-C has no end event)."""
        self.queues.clear()

    def lines(self) -> list[str]:
        """A line per limit calls wait on, the longest queue first."""
        ranked = sorted(self.queues.values(), key=lambda q: -q.queued)
        return [paced_line(q.text, max(q.queued, q.ours)) for q in ranked]
