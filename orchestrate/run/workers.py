"""The run's own threads for user code: sync tools and code steps, bounded, never holding the process.

A sync function (a tool, a code step) cannot be cancelled once it runs, so it
runs off the event loop in one of the run's worker threads; the agent's and
the workflow's timeouts end the *agent* at once, and the function goes on
until it returns (its answer is then dropped) or the process exits.

Why not `asyncio.to_thread` or a `concurrent.futures.ThreadPoolExecutor`:
their threads are not daemons, and both join them at exit (`asyncio.run`
waits on the loop's default executor, and `concurrent.futures` registers a
join with `threading`), so one function sleeping 20 s past its timeout held
the process 20 s after the reports were written. The default executor is
also where asyncio resolves host names: functions stuck there starve the
provider calls of the same run. So the pool here is the run's own, bounded
(`max_threads`), and made of daemon threads that are started when work
waits and none is idle; nothing joins them. Work still queued when its
caller gives up is dropped without being run.

A function that raises `SystemExit` or `KeyboardInterrupt` (`sys.exit()` in
a tool) fails the call like any exception (`AbruptExit`): user code never
ends orchestrate.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["AbruptExit", "WorkerPool", "abandoned_threads", "default_max_threads", "guard_exit", "stuck_line"]


def default_max_threads() -> int:
    """The pool's size when none is given: as many as `concurrent.futures` would, at least 8."""
    return max(8, min(32, (os.cpu_count() or 1) + 4))


class AbruptExit(Exception):  # noqa: N818 (it is what the user's code did, not an error of ours)
    """User code raised SystemExit or KeyboardInterrupt; the call fails, orchestrate goes on."""


def guard_exit(exc: BaseException) -> BaseException:
    """`exc`, with SystemExit and KeyboardInterrupt (which would end the process) made `AbruptExit`."""
    if isinstance(exc, SystemExit):
        return AbruptExit(f"called sys.exit({exc.code!r})")
    if isinstance(exc, KeyboardInterrupt):
        return AbruptExit("raised KeyboardInterrupt")
    return exc


class _Job:
    __slots__ = ("args", "context", "function", "future", "gone", "kwargs", "loop")

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.future = future
        self.context = contextvars.copy_context()
        self.gone = False  # the caller stopped waiting (timed out, cancelled)

    def cancelled(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.gone = True


class WorkerPool:
    """At most `max_threads` daemon threads running sync user code for one run.

    Args:
        max_threads: The bound (default `default_max_threads()`).
        name: Prefix of the threads' names.
    """

    def __init__(self, max_threads: int | None = None, *, name: str = "orchestrate-worker") -> None:
        self.max_threads = max(1, int(max_threads)) if max_threads is not None else default_max_threads()
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for work
        self._queued = 0  # work waiting for a thread
        self._running: set[_Job] = set()
        self._closed = False
        _pools.add(self)

    async def call(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` in a worker thread and return (or raise) what it does.

        Cancelling the caller returns at once; the function, if it started, runs
        on in its thread (counted by `stuck`), and its result is dropped.
        """
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(function, args, kwargs, loop, future)
        future.add_done_callback(job.cancelled)
        with self._lock:
            self._queued += 1
            start = self._queued > self._idle and self._threads < self.max_threads
            if start:
                self._threads += 1
        self._queue.put(job)
        if start:
            threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
        return await future

    @property
    def busy(self) -> int:
        """Threads running a function now."""
        with self._lock:
            return len(self._running)

    @property
    def stuck(self) -> int:
        """Threads still running a function whose caller gave up on it (a timeout, a cancel)."""
        with self._lock:
            return sum(1 for job in self._running if job.gone)

    def close(self) -> None:
        """Let idle threads end; busy ones end when their function returns. Nothing is joined."""
        self._closed = True
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads -= 1
                    return
                self._queued -= 1
                if job.gone:  # given up on while queued: never run it
                    continue
                self._running.add(job)
            try:
                value = job.context.run(job.function, *job.args, **job.kwargs)
            except BaseException as exc:  # noqa: BLE001 (delivered to the caller, not raised here)
                _deliver(job, None, guard_exit(exc))
            else:
                _deliver(job, value, None)
            finally:
                with self._lock:
                    self._running.discard(job)
                job.function = job.args = job.kwargs = None  # type: ignore[assignment]


def _deliver(job: _Job, value: Any, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits for this answer any more
        pass


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def abandoned_threads() -> int:
    """Worker threads of every pool of this process still running a function nobody waits for."""
    return sum(pool.stuck for pool in list(_pools))


def stuck_line(pool: WorkerPool) -> str | None:
    """The closing line that counts `pool`'s threads still running a function past its timeout."""
    stuck = pool.stuck
    if not stuck:
        return None
    threads = "thread" if stuck == 1 else "threads"
    return (
        f"warning: {stuck} worker {threads} still ran a function past its timeout; "
        "nothing waited for them, and they end as orchestrate exits"
    )
