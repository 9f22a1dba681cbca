"""SIGINT and SIGTERM during a run: the first stops it cleanly, the second leaves at once.

The first signal stops the live display (so that nothing printed is drawn over), says
what happens now, and asks the run to stop: calls in flight are cancelled and every
report is written. A second one exits at once: the reports on disk are whole, since
every file is replaced atomically, and the resume command is printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

from orchestrate.app.exits import for_signal

__all__ = ["Interrupts"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Installs the run's signal handlers on the running loop (`install`, then `remove`).

    Args:
        stop: Called once, with the reason, at the first signal; returns what stops the run.
        notify: Prints a line for a person (stderr).
        doing: What the first signal starts, for its message.
        before_message: Run first at every signal (stops a live display).
        before_exit: Run at the second signal, before leaving (prints how to resume).
    """

    def __init__(
        self,
        stop: Callable[[str], Awaitable[object]],
        *,
        notify: Callable[[str], None],
        doing: str,
        before_message: Callable[[], None] = lambda: None,
        before_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self.stop = stop
        self.notify = notify
        self.doing = doing
        self.before_message = before_message
        self.before_exit = before_exit
        self.received: int | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum, loop)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int, loop: asyncio.AbstractEventLoop) -> None:
        name = signal.Signals(signum).name
        self.before_message()
        if self.received is not None:
            self.notify(f"received {name} again: exiting at once")
            self.before_exit()
            os._exit(for_signal(signum))
        self.received = signum
        again = "press Ctrl-C again" if signum == signal.SIGINT else f"send {name} again"
        self.notify(f"received {name}: {self.doing}\n  {again} to exit at once")
        loop.create_task(self.stop(f"interrupted by {name}"))  # type: ignore[arg-type]
