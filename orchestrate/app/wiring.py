"""The parts every run is assembled from: clients, shared state, the response cache, provider
batches and traces; and the checks made before the first call is paid for."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrate.app.invocation import Invocation
from orchestrate.errors import UserInputError
from orchestrate.workflow.models import Workflow

__all__ = [
    "Clients",
    "check_output_paths",
    "check_shared_state",
    "close_states",
    "notice",
    "open_state",
    "start_tracing",
    "tracing_requested",
    "without_content",
]

_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def notice(message: str) -> None:
    """A line for a person on stderr (the Python API's default; the CLI passes its own)."""
    from orchestrate.printable import printable

    for line in printable(message).splitlines() or [""]:
        sys.stderr.write(f"orchestrate: {line}\n")
    sys.stderr.flush()


class Clients:
    """The clients of one run: the pool of providers (or the simulated one), behind provider
    batches and the response cache when asked for.

    Args:
        invocation: What the run was asked for.
        carried: Provider batches of the run being resumed, to collect from.
        per_workflow_events: One batch event per workflow (each has its own run folder), or one
            for all (a dataset run's rows share one folder).
    """

    def __init__(self, invocation: Invocation, *, carried: list[dict[str, Any]], per_workflow_events: bool) -> None:
        self.invocation = invocation
        self.carried = carried
        self.per_workflow_events = per_workflow_events
        self.hub: Any = None  # the provider batch queues, when calls are batched
        self.cache_store: Any = None
        self.simulated: Any = None

    def build(self, workflows: list[Workflow], state: Any) -> Any:
        """The client pool for `workflows`; refuses (before any call) a missing key or bad limit."""
        from orchestrate.llm.providers import ClientPool
        from orchestrate.llm.simulated import SimulatedClient
        from orchestrate.run.fixed_answers import with_answers

        inv = self.invocation
        self.simulated = simulated = with_answers(
            SimulatedClient(latency=inv.sim_latency, failure_rate=inv.sim_failure_rate, seed=inv.seed),
            inv.answers,
            workflows[0],
        )
        clients: Any = ClientPool(simulated=simulated, force_simulated=inv.simulate)
        if not inv.simulate:
            from orchestrate.llm.http import transport_limits

            transport_limits()  # a bad ORCHESTRATE_MAX_* is the user's input: refused before any call
            clients.check_keys(
                [agent.llm_config for wf in workflows for agent in wf.agents if not agent.is_code_step]
            )  # a code step calls no provider
            clients = self._batching(clients, workflows)
        if inv.cache is not None:
            from orchestrate.run.cache import CachingClients, cache_store

            self.cache_store = cache_store(inv.cache, state, namespace=inv.state_namespace, ttl=inv.cache_ttl)
            clients = CachingClients(self.cache_store, clients)
        return clients

    def _batching(self, clients: Any, workflows: list[Workflow]) -> Any:
        """The pool behind batching clients when the run or an agent asks for batches."""
        inv = self.invocation
        wanted = (
            inv.provider_batch
            or self.carried
            or any(agent.llm_config.get("batch") for wf in workflows for agent in wf.agents)
        )
        if not wanted:
            return clients
        from orchestrate.llm.batch import BatchHub
        from orchestrate.llm.batch_clients import BatchClients

        self.hub = BatchHub(
            window=inv.batch_window,
            poll_max=inv.batch_poll_max,
            poll_min=min(5.0, inv.batch_poll_max),
            fallback=inv.batch_fallback,
            cancel_on_close=inv.cancel_batches,
            adopt=self.carried,
            per_workflow_events=self.per_workflow_events,
        )
        return BatchClients(clients, self.hub, everything=inv.provider_batch)

    def attach(self, engine: Any) -> None:
        """Let fixed answers and the provider batch queues reach `engine` (its sinks, its runs)."""
        from orchestrate.run.fixed_answers import bind_engine

        bind_engine(self.simulated, engine)
        if self.hub is not None:
            from orchestrate.run.events import batch_events

            self.hub.emit = batch_events(engine.emit)


def open_state(invocation: Invocation) -> Any:
    """The shared state the invocation names, or None for an in-process run."""
    if not invocation.state:
        return None
    from orchestrate.state.backends import state_from_url

    return state_from_url(invocation.state, namespace=invocation.state_namespace)


async def close_states(*states: Any) -> None:
    """Close each distinct state once (the cache may share the run's)."""
    for state in {id(s): s for s in states if s is not None}.values():
        await state.aclose()


def start_tracing(invocation: Invocation, notify: Any = notice) -> Any:
    """OpenTelemetry for this run when `--otel` or the standard variables ask for it, else None."""
    if not tracing_requested(invocation.otel, os.environ):
        return None
    try:
        from orchestrate.observe.otel import Tracing
    except ImportError:
        message = "OpenTelemetry is not installed: pip install 'orchestrate[otel]'"
        if invocation.otel:
            raise UserInputError(f"--otel: {message}") from None
        _warn(f"OTEL_EXPORTER_OTLP_ENDPOINT is set but {message}; running without traces")
        return None
    return Tracing(content=invocation.otel_content, warn=_warn)


def tracing_requested(flag: bool, env: Any) -> bool:
    """Traces are on with `--otel` or an OTLP endpoint in the environment, and off whenever
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` says so (the SDK's own switches)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return flag or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def without_content(invocation: Invocation) -> None:
    """store_content: false: traces without content, and no response cache (it keeps answers)."""
    if invocation.otel_content:
        _warn("--otel-content ignored: the workflow's data_protection says store_content: false")
        invocation.otel_content = False
    if invocation.cache is not None:
        _warn("--cache ignored: the response cache keeps answers, and store_content is false")
        invocation.cache = None


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def check_output_paths(invocation: Invocation) -> None:
    """Refuse, before the first call is paid for, a report path or cache folder that cannot be used.

    Raises:
        UserInputError: naming the flag and the user's path (exit 2).
    """
    from orchestrate.fsutil import check_writable

    for flag, path in (("--junit", invocation.junit), ("--summary", invocation.summary)):
        if path is not None:
            problem = check_writable(path)
            if problem:
                raise UserInputError(f"{flag} {path}: {problem}")
    if invocation.cache is not None and "://" not in str(invocation.cache):  # a state URL is checked when opened
        cache = Path(invocation.cache)
        if cache.exists() and not cache.is_dir():
            raise UserInputError(f"--cache {cache}: is a file, not a folder")
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"--cache {cache}: cannot create the folder: {exc.strerror or exc}") from None
        if not os.access(cache, os.W_OK | os.X_OK):
            raise UserInputError(f"--cache {cache}: the folder is not writable")


async def check_shared_state(state: Any, cache_store: Any, workflows: Iterable[Workflow]) -> None:
    """The shared state (and a Redis cache) answers, and every budget scope the workflows name is set.

    Raises:
        StateUnavailableError: When the state or cache cannot be reached (exit 1).
        UserInputError: For a scope never set, naming the command that sets it (exit 2).
    """
    from orchestrate.money.budget_scope import set_command

    cache_state = getattr(cache_store, "state", None)
    if cache_state is not None and cache_state is not state:
        await cache_state.connect()
    if state is not None:
        await state.connect()
    for scope in sorted({wf.budget_scope for wf in workflows if wf.budget_scope}):
        if not _SCOPE.fullmatch(scope):
            raise UserInputError(f"budget scope {scope!r}: use letters, digits, '.', '_', ':' and '-' (at most 128)")
        if state is None:
            raise UserInputError(
                f"budget scope {scope!r} is not set in this process (no --state); set it with: "
                f"{set_command(scope, 'memory://')}"
            )
        found = await state.budget_get(scope)
        if found.limit is None:
            raise UserInputError(
                f"budget scope {scope!r} is not set in {state.url}; set it with: {set_command(scope, state.url)}"
            )
