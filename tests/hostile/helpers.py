"""What the hostile-input tests share: the CLI as a subprocess, workflow files, and the checks
every case makes (the exit code, a one-line message, never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

KEY = "sk-hostile-SECRET-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-hostile-SECRET-fedcba9876543210"


def orchestrate(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrate ARGS` without a terminal (CI=true), no provider keys unless given."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
    }
    environment.update({"CI": "true", **(env or {})})
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=environment,
        input=data,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    )


def assert_clean_failure(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit `code`, no traceback, and the stderr line(s) naming each of `needles`."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)


def workflow_file(folder: Path, name: str = "wf.yaml", *, agents: list[dict] | None = None, **top: object) -> Path:
    """A small valid workflow (one agent unless `agents` is given), with `top` keys over it."""
    document: dict = {
        "name": "hostile",
        "cost_budget": 1.0,
        "agents": agents
        or [
            {
                "name": "a",
                "module": "Finance",
                "prompt_template": "Say hi",
                "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
            }
        ],
    }
    document.update(top)
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def every_file(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]
