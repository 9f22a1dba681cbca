"""`orchestrate` as a user runs it: a subprocess of this Python, in a folder, without a terminal."""

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
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrate ARGS`` in `cwd` (CI=true, no provider keys unless `env` gives them)."""
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env={**base, "CI": "true", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
