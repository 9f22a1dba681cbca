"""A bad flag value is one line: the flag, the value given and what is expected; exit 2, no traceback.

Every number option of every command is tried with ``abc`` (found by walking the
commands, so an option added later is covered), then the ranges, ``inf`` and
``nan``, and the flags each command checks itself (``--since``, ``--format``...),
through the real command, piped, at 80 columns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrate.cli import _command, main
from tests import cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "finance_month_end_close.yaml")


def _number_options() -> list[tuple[list[str], str]]:
    found: list[tuple[list[str], str]] = []
    pending: list[tuple[list[str], Any]] = [([], _command(None))]
    while pending:
        path, command = pending.pop()
        pending += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            if getattr(param, "param_type_name", "") == "option" and getattr(descriptor, "annotation", None) in (
                int,
                float,
            ):
                found.append((path, max(param.opts, key=len)))
    return sorted(found)


NUMBER_OPTIONS = _number_options()


def _main(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`orchestrate ARGS` in this process (the entry point itself): its exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["orchestrate", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return int(done.value.code or 0), capsys.readouterr().err


def test_the_walk_finds_the_number_options_of_every_command() -> None:
    commands = {" ".join(path) for path, _ in NUMBER_OPTIONS}
    assert {"run", "plan", "eval", "doctor"} <= commands
    assert (["run"], "--budget") in NUMBER_OPTIONS and (["run"], "--repeat") in NUMBER_OPTIONS


@pytest.mark.parametrize(("path", "option"), NUMBER_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_number_option_refuses_abc_in_one_line_with_the_value_and_what_is_expected(
    path: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _main([*path, option, "abc"], capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {option} 'abc': expected a"), err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--budget", "abc"], "--budget 'abc': expected an amount in USD, at least 0"),
        (["--budget", "-1"], "--budget '-1': expected an amount in USD, at least 0"),
        (["--budget", "inf"], "--budget 'inf': expected an amount in USD, at least 0"),
        (["--budget=nan"], "--budget 'nan': expected an amount in USD, at least 0"),
        (["--budget", "1e400"], "--budget '1e400': expected an amount in USD, at least 0"),
        (["--max-parallel", "0"], "--max-parallel '0': expected a whole number, at least 1"),
        (["--max-parallel", "2.5"], "--max-parallel '2.5': expected a whole number, at least 1"),
        (["--repeat", "1001"], "--repeat '1001': expected a whole number from 1 to 1000"),
        (["--min-pass-rate", "1.5"], "--min-pass-rate '1.5': expected a number from 0 to 1"),
        (["--tolerance", "two"], "--tolerance 'two': expected a number from 0 to 1"),
        (["--sim-latency", "inf"], "--sim-latency 'inf': expected a number of seconds, at least 0"),
        (["--cache-ttl", "0"], "--cache-ttl '0': expected a number of seconds, at least 1"),
    ],
)
def test_run_flags_out_of_range_or_not_finite_say_the_value_and_the_range(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _main(["run", WORKFLOW, "--simulate", *args], capsys, monkeypatch)
    assert (code, err) == (2, f"error: {line}\n")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["cost-report", "runs", "--since", "abc"],
            "--since 'abc': expected a month (2026-11), a day (2026-11-01) or an ISO datetime, in UTC",
        ),
        (
            ["cost-report", "runs", "--until", "2026-13"],
            "--until '2026-13': expected a month (2026-11), a day (2026-11-01) or an ISO datetime, in UTC",
        ),
        (["budget", "set", "finance", "abc"], "'abc': expected an amount in USD"),
        (["budget", "set", "finance", "inf"], "'inf': expected an amount in USD"),
        (["run", WORKFLOW, "--format", "xml"], "--format 'xml': choose text, json"),
    ],
)
def test_flags_a_command_checks_itself_name_the_flag_and_the_value(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(args, capsys, monkeypatch)
    assert (code, err) == (2, f"error: {line}\n")


def test_an_unknown_option_is_one_line_pointing_at_the_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _main(["run", WORKFLOW, "--budgt", "3"], capsys, monkeypatch)
    assert code == 2
    assert err == "error: No such option: --budgt (see 'orchestrate run -h')\n"


def test_a_group_called_with_nothing_still_shows_its_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _main(["budget"], capsys, monkeypatch)
    assert code == 2 and err.startswith("Usage: orchestrate budget") and "reconcile" in err


def test_help_and_version_still_exit_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["orchestrate", "--version"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and capsys.readouterr().out.startswith("orchestrate ")
    monkeypatch.setattr(sys, "argv", ["orchestrate", "run", "-h"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and "--budget USD" in capsys.readouterr().out


def test_piped_at_80_columns_the_real_command_prints_the_one_line(tmp_path: Path) -> None:
    done = cli.orchestrate("run", WORKFLOW, "--simulate", "--budget", "abc", cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --budget 'abc': expected an amount in USD, at least 0\n"
    assert not (tmp_path / "runs").exists()


def test_exit_codes_of_a_run_pass_through_the_entry_point(tmp_path: Path) -> None:
    done = cli.orchestrate("run", WORKFLOW, "--simulate", "-q", cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "bad.yaml").write_text("name: x\nagents: []\n")
    done = cli.orchestrate("validate", "bad.yaml", cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_a_run_waiting_for_an_approval_still_exits_4(tmp_path: Path) -> None:
    """The exit code a command raises (an ExitCode, an int enum) reaches the shell unchanged."""
    done = cli.orchestrate(
        "run", WORKFLOW, "--simulate", "-q", "--input", "post_to_ledger=true", cwd=tmp_path, columns=80, ci=False
    )
    assert done.returncode == 4, done.stderr


def test_a_missing_key_names_the_variable_and_suggests_simulate_in_one_line(tmp_path: Path) -> None:
    done = cli.orchestrate("run", WORKFLOW, cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 2
    line = "error: no API key for openai: set OPENAI_API_KEY, or try offline with --simulate"
    assert done.stderr == line + "\n" and len(line) <= 80
    assert "api_key=" not in done.stderr  # the Python API's argument, not the command line's


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["merge", "nothere"], "Missing option '--output' / '-o' (see 'orchestrate merge -h')"),
        (["approve", "runs/x"], "Missing argument 'AGENT' (see 'orchestrate approve -h')"),
        (["budget", "set"], "Missing argument 'SCOPE' (see 'orchestrate budget set -h')"),
    ],
)
def test_a_missing_option_or_argument_is_named_in_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _main(args, capsys, monkeypatch)
    assert (code, err) == (2, f"error: {line}\n")


def test_an_argument_that_is_not_utf8_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    undecodable = b"vendor=\xff".decode("utf-8", "surrogateescape")  # as Python hands over argv bytes
    code, err = _main(["run", WORKFLOW, "--simulate", "--input", undecodable], capsys, monkeypatch)
    assert (code, err) == (2, "error: argument 5 (vendor=\\xff) is not valid UTF-8 text\n")
