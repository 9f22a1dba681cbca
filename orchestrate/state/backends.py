"""Which back-end a state URL names: ``memory://`` (in-process, the default) or ``redis://``.

Kept apart from `base` so that the protocol knows none of its back-ends, and each
back-end (whose optional library is imported only when chosen) knows only the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from orchestrate.errors import UserInputError
from orchestrate.state.base import DEFAULT_LEASE_SECONDS, DEFAULT_NAMESPACE, SharedState, scrub_url

__all__ = ["state_from_url"]


def state_from_url(
    url: str | None, *, namespace: str = DEFAULT_NAMESPACE, clock: Callable[[], float] | None = None
) -> SharedState:
    """The back-end a URL names: None or ``memory://`` in-process, ``redis://`` / ``rediss://`` Redis.

    ``?lease_seconds=N`` sets the lease time. A Redis password comes from the URL
    or, when it has none, from ``REDIS_PASSWORD``.

    Raises:
        UserInputError: For a URL naming no known back-end, or a bad option.
    """
    if not namespace or any(c.isspace() for c in namespace):
        raise UserInputError(f"state namespace {namespace!r} must be a non-empty word")
    text = url or "memory://"
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise UserInputError(f"state URL {scrub_url(text)!r}: {exc}") from exc
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    lease = options.pop("lease_seconds", None)
    try:
        lease_seconds = float(lease) if lease is not None else DEFAULT_LEASE_SECONDS
    except ValueError:
        lease_seconds = -1.0
    if not lease_seconds > 0:
        raise UserInputError(f"state URL {scrub_url(text)!r}: lease_seconds must be a number > 0")
    if parts.scheme == "memory":
        from orchestrate.state.memory import MemoryState

        return MemoryState(text, namespace=namespace, lease_seconds=lease_seconds, clock=clock)
    if parts.scheme in ("redis", "rediss"):
        from orchestrate.state.redis import RedisState

        password = None if parts.password is not None else os.environ.get("REDIS_PASSWORD") or None
        return RedisState(
            text, namespace=namespace, lease_seconds=lease_seconds, clock=clock, password=password, options=options
        )
    raise UserInputError(
        f"state URL {scrub_url(text)!r}: unknown scheme {parts.scheme!r}; "
        "use memory://, redis://HOST:PORT/DB or rediss://"
    )
