"""benchmarks/engine.py --without: the knock-outs that say what each piece of the engine's path costs.

They replace engine functions by name in the benchmark's own process; a name the engine no longer
has must be refused, not set beside it (the figure would then measure nothing taken out)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "engine.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_run_without_every_piece_completes_its_agents() -> None:
    done = _run(str(SCRIPT), "--one", "engine", "chain-20", "--without", "all")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agents"] == 20  # measure() asserts the run completed


def test_an_unknown_piece_is_refused_in_one_line() -> None:
    done = _run(str(SCRIPT), "--without", "limiter,monitors", "wide-10")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "--without: unknown piece 'monitors'; known: limiter, events, fingerprint, records, bound, "
        "cache-plan, stamps, all, each"
    ]


def test_a_name_the_engine_no_longer_has_is_refused() -> None:
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("bench", {str(SCRIPT)!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
import orchestrate.run.scheduler as scheduler
del scheduler._now
bench.knock_out(frozenset({{"stamps"}}))
"""
    done = _run("-c", code)
    assert done.returncode != 0
    assert "scheduler._now is gone" in done.stderr


def test_each_piece_has_a_knock_out() -> None:
    # Every piece listed is taken out by its own branch: the guard above refuses a name that is gone,
    # and this refuses a piece listed without one (its figure would be the whole path's).
    spec = importlib.util.spec_from_file_location("engine_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # defines the knock-outs; nothing is replaced until one is called
    assert list(bench.PIECES) == ["limiter", "events", "fingerprint", "records", "bound", "cache-plan", "stamps"]
    source = SCRIPT.read_text()
    for name in bench.PIECES:
        assert f'"{name}" in pieces' in source or f'"{name}" in without' in source, name
