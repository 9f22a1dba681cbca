"""The `orchestrate` command: one module per sub-command, registered here.

Only the CLI turns errors into exit codes. Exit codes (stable, documented in docs/commands.md):
0 success, 1 run failed, 2 invalid input (YAML, flags, inputs, missing key),
3 run partially completed, 4 run waiting for an approval, 5 expectations failed
(docs/checking-answers.md), 6 regressed against --baseline, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from orchestrate import __version__
from orchestrate.cli.common import is_interactive
from orchestrate.errors import OrchestrateError

__all__ = ["app", "main"]

# Built with no commands; `_register` adds them (all of them, or only the one invoked: see `main`).
_app = typer.Typer(
    name="orchestrate",
    help="Run YAML workflows of LLM agents for ERP departments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
    # Rich panels for help and usage errors in a terminal; plain click text in CI and pipes.
    rich_markup_mode="rich" if is_interactive(sys.stderr) else None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orchestrate {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Run YAML workflows of LLM agents for ERP departments."""


def _register(only: str | None = None) -> None:
    """Add the sub-commands to the app: every one, or only `only`.

    Each module defines one function named like its command. Loading one command, not all,
    took `orchestrate run --help` from 0.48 to 0.37 s of CPU (2026-12-03): the test suite
    starts the command about 1,500 times, and scripts in CI pipelines start it often too.
    """
    import importlib

    for command, module, func in _COMMANDS:
        if command in _registered or (only is not None and command != only):
            continue
        target = getattr(importlib.import_module(f"orchestrate.cli.{module}"), func)
        if isinstance(target, typer.Typer):  # a command with sub-commands
            _app.add_typer(target, name=command)
        else:
            _app.command(command)(target)
        _registered.add(command)


_registered: set[str] = set()


def _invoked(argv: list[str]) -> str | None:
    """The sub-command these arguments name, when only it need be loaded; None for all.

    All are loaded for the root's own options (`--help`, `--version`, completion scripts),
    for shell completion, and for a misspelt command (its error suggests the right one).
    """
    if not argv or "_ORCHESTRATE_COMPLETE" in os.environ:
        return None
    name = argv[0]
    return name if any(name == command for command, _, _ in _COMMANDS) else None


def __getattr__(name: str) -> Any:
    """`orchestrate.cli.app`: the app with every command (for embedding and testing)."""
    if name == "app":
        _register()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_COMMANDS = (
    ("run", "run", "run"),
    ("validate", "validate", "validate"),
    ("plan", "plan", "plan"),
    ("cost-report", "cost_report", "cost_report"),
    ("graph", "graph", "graph"),
    ("show", "show", "show"),
    ("runs", "runs", "runs"),
    ("models", "models", "models"),
    ("doctor", "doctor", "doctor"),
    ("init", "init", "init"),
    ("schema", "schema_cmd", "schema"),
    ("report", "report", "report"),
    ("merge", "merge", "merge"),
    ("budget", "budget", "app"),
    ("approve", "approve", "approve"),
    ("eval", "eval", "eval_command"),
    ("audit", "audit", "app"),
)


def _command(only: str | None = None) -> Any:
    """The click command behind `app`, its help showing what to write, never a Python type.

    Typer prints an argument's or option's Python type in help (`PATH <list[Path]>`,
    `--budget <float>`, `--json <bool>`). Arguments are shown by their name or
    metavar alone, options by their metavar (or their name in capitals), flags
    and -h/--help with nothing: a command added later gets the same for free.
    `only` loads just that sub-command (see `_register`).
    """
    from orchestrate.cli.usage import refuse_non_finite

    _register(only)
    command = typer.main.get_command(_app)
    pending = [command]
    while pending:  # the root, its commands, and the commands of groups (`budget show`)
        sub = pending.pop()
        pending += getattr(sub, "commands", {}).values()
        for param in sub.params:
            kind = getattr(param, "param_type_name", "")
            if kind == "argument" or (kind == "option" and getattr(param, "is_flag", False)):
                # typer's own Parameter subclasses define display_type_rich; click's base class does not
                param.display_type_rich = _nothing  # type: ignore[attr-defined]
            elif kind == "option" and param.metavar is None:
                param.display_type_rich = _capitals(param.name or "value")  # type: ignore[attr-defined]
            if kind in ("option", "argument"):
                refuse_non_finite(param)
        # click gives no hook for the help option's rendering: replace the method on this instance
        sub.get_help_option = _valueless(sub.get_help_option)  # type: ignore[method-assign]
    return command


def _nothing(ctx: Any) -> None:
    return None


def _capitals(name: str) -> Any:
    label = name.upper()
    return lambda ctx: label


def _valueless(get_help_option: Any) -> Any:
    """Wrap a command's `get_help_option` so that -h/--help is listed without a `<bool>`."""

    def wrapped(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None:
            option.display_type_rich = _nothing
        return option

    return wrapped


def main() -> None:
    """Entry point of the console script and of `python -m orchestrate`."""
    from orchestrate.cli.common import print_error
    from orchestrate.fsutil import NotRegularFileError, TooLargeError

    argv = sys.argv[1:]
    try:
        _refuse_undecodable(argv)
        try:
            # not standalone: a usage error comes back here, to be said in one line (cli/usage.py)
            code = _command(_invoked(argv))(args=argv, prog_name="orchestrate", standalone_mode=False)
        except OrchestrateError as exc:
            print_error(_for_the_command_line(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C is the person's own doing: news, not an `error:` line
            sys.stderr.write("interrupted (Ctrl-C)\n")
            sys.exit(130)
        except (NotRegularFileError, TooLargeError) as exc:  # a pipe, a device or a giant where a file we wrote belongs
            print_error(str(exc))
            sys.exit(2)
        except OSError as exc:  # the disk, not the user: full, read-only, gone
            where = f"{exc.filename}: " if exc.filename else ""
            print_error(f"{where}{exc.strerror or exc}")
            sys.exit(1)
        except Exception as exc:
            _usage_exit(exc, argv)
            raise
        sys.exit(int(code) if isinstance(code, int) and not isinstance(code, bool) else 0)  # ExitCode too
    except SystemExit as done:
        _leave(done)
        raise


def _refuse_undecodable(argv: list[str]) -> None:
    """Refuse an argument that is not UTF-8 (`--input name=$'\\xff'`) before it reaches a file.

    Python hands such bytes over as lone surrogates, which no journal, report or request body can
    hold. A file name in another encoding is refused too: everything the tool writes is UTF-8.
    """
    from orchestrate.cli.common import print_error

    for position, arg in enumerate(argv, 1):
        try:
            arg.encode()
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            print_error(f"argument {position} ({shown}) is not valid UTF-8 text")
            sys.exit(2)


def _for_the_command_line(exc: OrchestrateError) -> str:
    """An error's message as a command-line user reads it (a missing key: the variable, and --simulate)."""
    from orchestrate.errors import MissingAPIKeyError

    if isinstance(exc, MissingAPIKeyError):  # `api_key=` is the Python API's; offline, --simulate needs none
        return f"no API key for {exc.provider}: set {exc.env_var}, or try offline with --simulate"
    return str(exc)


def _usage_exit(exc: Exception, argv: list[str]) -> None:
    """Leave as click would for its own exceptions, a usage error said in one line (exit 2)."""
    from orchestrate.cli.common import print_error
    from orchestrate.cli.usage import is_help_for_no_arguments, is_usage_error, usage_line

    if is_help_for_no_arguments(exc):  # `orchestrate budget`: its help, as click shows it
        exc.show()  # type: ignore[attr-defined]
        sys.exit(int(getattr(exc, "exit_code", 2)))
    if is_usage_error(exc):
        print_error(usage_line(exc, argv))
        sys.exit(2)
    if type(exc).__name__ == "Abort":  # a prompt answered with Ctrl-D
        sys.stderr.write("aborted\n")
        sys.exit(1)
    if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # click's other errors
        exc.show()
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]


def _leave(done: SystemExit) -> None:
    """Exit at once when worker threads still run a function past its timeout.

    Their reports are written; nothing of the run waits for them (see
    `orchestrate.run.workers`), and the interpreter's shutdown must not either.
    """
    from orchestrate.run.workers import abandoned_threads

    if not abandoned_threads():
        return
    import os

    code = done.code
    if code is not None and not isinstance(code, int):
        print_error_text = str(code)
        sys.stderr.write(print_error_text + "\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)
