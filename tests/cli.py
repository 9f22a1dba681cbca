"""`orchestrate` as a user runs it: a subprocess of this Python, in a folder, written once for every test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["orchestrate"]


def orchestrate(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300,
    columns: int | None = None,
    ci: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrate ARGS`` in `cwd` with no terminal and no provider keys (unless `env` gives them).

    Args:
        env: Variables to add (or override) for this run.
        stdin: Text on standard input (else none: a run never waits on it).
        columns: The width the command is told to print for (``COLUMNS``).
        ci: Set ``CI=true`` (the default); False for what a person sees piped outside CI.
    """
    full = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full.pop("CI", None)
    if ci:
        full["CI"] = "true"
    if columns is not None:
        full["COLUMNS"] = str(columns)
    full["PYTHONDONTWRITEBYTECODE"] = "1"
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=full,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
