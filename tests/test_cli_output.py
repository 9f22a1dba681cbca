"""Command output for people and machines: never cut, simulated spend apart, help that helps."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import cli

ROOT = Path(__file__).resolve().parents[1]
LONG_MODEL = "claude-sonnet-4-5-20250929-with-a-very-long-deployment-name"
LONG_MODULE = "Finance-and-Controlling-Shared-Services-EMEA"


def orchestrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, env=env, columns=80)


def _cost_json(folder: Path, *, simulated: bool, calls: list[dict[str, object]], run_id: str) -> None:
    folder.mkdir(parents=True)
    (folder / "cost.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "workflow": "invoice_matching",
                "run_id": run_id,
                "simulated": simulated,
                "calls": calls,
            }
        )
    )


def _call(cost: float, when: str, model: str = LONG_MODEL, provider: str = "anthropic") -> dict[str, object]:
    return {
        "agent": "match_invoices",
        "model": model,
        "module": LONG_MODULE,
        "provider": provider,
        "cost": cost,
        "timestamp": when,
        "input_tokens": 1234567,
        "output_tokens": 89,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
    }


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _cost_json(
        root / "real-october",
        simulated=False,
        run_id="real-october",
        calls=[_call(0.00002055, "2026-10-30T10:00:00+00:00")],
    )
    _cost_json(
        root / "real-november",
        simulated=False,
        run_id="real-november",
        calls=[_call(1.25, "2026-11-02T10:00:00+00:00"), _call(0.5, "2026-11-03T10:00:00+00:00")],
    )
    _cost_json(
        root / "preview",
        simulated=True,
        run_id="preview",
        calls=[_call(0.75, "2026-11-04T10:00:00+00:00", provider="simulated")],
    )
    return root


def test_cost_report_piped_to_a_file_holds_whole_rows(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    with out.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrate", "cost-report", str(runs), "--by", "module,model"],
            cwd=tmp_path,
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "CI": "true", "COLUMNS": "80"},
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "…" not in text and "\x1b[" not in text
    assert LONG_MODEL in text and LONG_MODULE in text
    assert "$1.7500" in text and "3,703,701" in text
    assert max(len(line) for line in text.splitlines()) > 80  # wider than the terminal it pretends to be


def test_simulated_spend_is_left_out_by_default_and_said_so(runs: Path, tmp_path: Path) -> None:
    proc = orchestrate("cost-report", str(runs), "--format", "json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report["total"]["cost"] == pytest.approx(1.75002055)
    assert report["simulated_left_out"] == {"calls": 1, "cost": 0.75}
    proc = orchestrate("cost-report", str(runs), cwd=tmp_path)
    assert "1 simulated call ($0.7500 at real prices) left out" in proc.stderr
    assert "--include-simulated" in proc.stderr
    proc = orchestrate("cost-report", str(runs), "--format", "json", "--include-simulated", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report["total"]["cost"] == pytest.approx(2.50002055)
    assert report["simulated_left_out"] == {"calls": 0, "cost": 0.0}


def test_cost_report_by_run_and_by_month(runs: Path, tmp_path: Path) -> None:
    proc = orchestrate("cost-report", str(runs), "--by", "run", "--json", cwd=tmp_path)
    rows = {r["run"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {"real-october", "real-november"}
    assert rows["real-november"]["calls"] == 2
    proc = orchestrate("cost-report", str(runs), "--by", "month", "--include-simulated", "--json", cwd=tmp_path)
    rows = {r["month"]: r for r in json.loads(proc.stdout)["rows"]}
    assert rows["2026-10"]["cost"] == pytest.approx(0.00002055)
    assert rows["2026-11"]["cost"] == pytest.approx(2.5)


def test_csv_and_markdown_hold_plain_decimals(runs: Path, tmp_path: Path) -> None:
    proc = orchestrate("cost-report", str(runs), "--by", "run", "--format", "csv", cwd=tmp_path)
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert rows["real-october"]["cost"] == "0.00002055"
    assert "e-" not in proc.stdout
    proc = orchestrate("cost-report", str(runs), "--by", "run", "--format", "markdown", cwd=tmp_path)
    assert "| 0.00002055 |" in proc.stdout


def test_plan_and_graph_take_folders_and_print_whole_names_when_piped(tmp_path: Path) -> None:
    proc = orchestrate("plan", str(ROOT / "workflows"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert proc.stdout.count(": plan") == len(list((ROOT / "workflows").glob("*.yaml")))
    assert "claude-sonnet-4-5" in proc.stdout and "$0.0000 " not in proc.stdout
    plans = json.loads(orchestrate("plan", str(ROOT / "workflows"), "--format", "json", cwd=tmp_path).stdout)["plans"]
    assert len(plans) == len(list((ROOT / "workflows").glob("*.yaml")))
    proc = orchestrate("graph", str(ROOT / "workflows"), cwd=tmp_path)
    assert proc.returncode == 0 and "coo_briefing" in proc.stdout and "…" not in proc.stdout
    graph = json.loads(
        orchestrate(
            "graph", str(ROOT / "workflows" / "general_weekly_ops_briefing.yaml"), "--json", cwd=tmp_path
        ).stdout
    )["graphs"][0]
    assert {a["name"] for a in graph["agents"]} >= {"coo_briefing", "hr_summary"}


def _commands() -> list[str]:
    """Every command a user can run, `budget show` included (groups by their sub-commands)."""
    from orchestrate.cli import _command

    found: list[str] = []
    pending = [("", _command())]
    while pending:
        prefix, group = pending.pop(0)
        for name, sub in sorted(getattr(group, "commands", {}).items()):
            path = f"{prefix} {name}".strip()
            (pending.append((path, sub)) if getattr(sub, "commands", None) else found.append(path))
    return found


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_examples_and_no_python_types(command: str, tmp_path: Path) -> None:
    proc = orchestrate(*command.split(), "-h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Examples:" in proc.stdout and f"orchestrate {command}" in proc.stdout
    assert not re.search(r"<[a-z]+(\[|>)", proc.stdout, re.IGNORECASE), proc.stdout  # <list[Path]>, <float>, <bool>


def test_format_choices_are_shown_and_json_is_accepted_everywhere(tmp_path: Path) -> None:
    assert "[table|json|csv|markdown]" in orchestrate("cost-report", "-h", cwd=tmp_path).stdout
    for command in ("run", "validate", "plan", "graph", "cost-report", "show"):
        text = orchestrate(command, "--help", cwd=tmp_path).stdout
        option = next(line for line in text.splitlines() if line.strip().startswith("-f, --format"))
        assert "--json" in text and "json" in option, command
    assert "--install-completion" in orchestrate("--help", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    "words, cword, expected",
    [
        ("orchestrate cost-report --format ", 3, ["table", "json", "csv", "markdown"]),
        ("orchestrate init x --module Fin", 4, ["Finance"]),
        ("orchestrate sh", 1, ["show"]),
    ],
)
def test_shell_completion_completes_commands_and_choices(
    words: str, cword: int, expected: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "_ORCHESTRATE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == expected, proc.stderr
    # Typer finds the shell among the command's parents: started from bash, as a person does (a test run
    # started in the background, its shell gone, has none, and the script came out empty).
    shown = subprocess.run(
        ["bash", "-c", '"$0" -m orchestrate --show-completion; exit $?', sys.executable],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    script = shown.stdout
    assert "_ORCHESTRATE_COMPLETE=complete_bash" in script and "complete " in script
