"""Tests that need a package of a test extra (`orchestrate[test]`, `orchestrate[llama]`): skipped, with
the command that installs it, in an environment made before the package joined the extra; failed
under ``CI=true``, where `.ci/run` installs every extra, so they never go quietly missing there."""

from __future__ import annotations

import importlib.util
import os

import pytest

__all__ = ["need"]


def need(*modules: str, extra: str = "test") -> None:
    """Skip (fail in CI) unless every one of `modules` can be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        why = f"{' and '.join(missing)} not installed: pip install -c .ci/constraints.txt -e '.[{extra}]'"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
