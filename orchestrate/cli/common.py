"""What every command shares: the stderr console, error printing, common options."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = [
    "parse_inputs",
    "FormatOption",
    "NamespaceOption",
    "StateOption",
    "check_format",
    "envelope",
    "fail",
    "format_option",
    "format_option_info",
    "is_interactive",
    "json_alias",
    "json_option_info",
    "print_error",
    "print_json",
]

JSON_SCHEMA_VERSION = 1

FormatOption = Annotated[str, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="URL",
        envvar="ORCHESTRATE_STATE_URL",
        show_envvar=True,
        help="Share rate limits, budget scopes and pauses with every process using this state: "
        "redis://[:PASSWORD@]HOST:PORT/DB or rediss:// (password also from REDIS_PASSWORD). "
        "Default: this process only.",
    ),
]
NamespaceOption = Annotated[
    str,
    typer.Option(
        "--state-namespace",
        metavar="NAME",
        envvar="ORCHESTRATE_STATE_NAMESPACE",
        show_envvar=True,
        help="Prefix of every shared key; runs share state only within one namespace.",
    ),
]


def format_option(choices: tuple[str, ...]) -> Any:
    """`--format/-f` with its choices in the help (`[table|json]`) and in shell completion.

    A plain string checked by `check_format`, so a wrong value is one line on
    stderr with exit 2, like every other usage error of ours.
    """
    return Annotated[str, format_option_info(choices)]


def format_option_info(choices: tuple[str, ...]) -> Any:
    """The typer.Option of `format_option`, for a module-level alias mypy reads as a type:
    `FormatChoice = Annotated[str, format_option_info(FORMATS)]`."""

    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete.lower())]

    return typer.Option(
        "--format",
        "-f",
        metavar="[" + "|".join(choices) + "]",
        autocompletion=complete,
        help=f"Output format: {', '.join(choices)}.",
        show_default=True,
    )


def json_alias() -> Any:
    """`--json`: the same as `--format json`, kept for scripts written before --format."""
    return Annotated[bool, json_option_info()]


def json_option_info() -> Any:
    """The typer.Option of `json_alias`, for a module-level alias: `Annotated[bool, json_option_info()]`."""
    return typer.Option("--json", help="Same as --format json.")


def check_format(fmt: str, choices: tuple[str, ...], *, as_json: bool = False) -> str:
    """The chosen format, lower-cased; `--json` wins; anything else is a usage error."""
    chosen = "json" if as_json else fmt.lower()
    if chosen not in choices:
        fail(f"--format {fmt!r}: choose {', '.join(choices)}")
    return chosen


def envelope(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The one outer shape of every command's JSON: ``kind`` (what it is), ``schema_version``, then the body.

    A command's own fields keep their names; a command over several files puts
    one document a file in a list, whatever the number of files.
    """
    rest = {key: value for key, value in body.items() if key not in ("kind", "schema_version")}
    return {"kind": kind, "schema_version": JSON_SCHEMA_VERSION, **rest}


def print_json(kind: str, body: dict[str, Any], **options: Any) -> None:
    """Print `body` in the envelope (`envelope`) on stdout, indented."""
    import json

    if options.pop("sort_keys", False):  # sorted inside, the envelope's two fields still first
        body = json.loads(json.dumps(body, sort_keys=True, default=options.get("default")))
    sys.stdout.write(json.dumps(envelope(kind, body), indent=2, **options) + "\n")


def is_interactive(stream: object = None) -> bool:
    """True for a real terminal that is not CI."""
    stream = stream if stream is not None else sys.stderr
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def stdout_for_json(on: bool) -> Iterator[None]:
    """While a run with ``--json`` goes on, what anything else writes to stdout goes to stderr.

    A code step's or a tool's ``print()`` (or a subprocess it starts) would
    otherwise land before the JSON document and break every reader of it. The
    redirection is of file descriptor 1 itself, so C extensions and child
    processes follow it too; the JSON is written after it ends.
    """
    if not on:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (tests, embedding): Python level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            os.dup2(saved, sys.stdout.fileno())
            os.close(saved)


def print_error(message: str) -> None:
    """One plain line on stderr, prefixed so it is found in a CI log; control characters escaped."""
    from orchestrate.printable import printable

    for line in printable(message).splitlines() or [""]:
        sys.stderr.write(f"error: {line}\n" if not _has_location(line) else f"{line}\n")
    sys.stderr.flush()


def _has_location(line: str) -> bool:
    # "file.yaml:12:3: message" lines already say where; keep them as compilers print them.
    head = line.split(": ", 1)[0]
    parts = head.rsplit(":", 2)
    return len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as an error and exit with `code`."""
    print_error(message)
    raise typer.Exit(code)


MAX_INPUTS_BYTES = 5 * 1024 * 1024


def parse_inputs(pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    """Inputs from `--inputs FILE.json` overlaid with `--input KEY=VALUE` pairs (strings)."""
    values: dict[str, Any] = {}
    if inputs_file is not None:
        from orchestrate.finite import loads_strict
        from orchestrate.fsutil import TooLargeError, read_bytes_capped

        try:
            loaded = loads_strict(read_bytes_capped(inputs_file, MAX_INPUTS_BYTES).decode("utf-8"))
        except TooLargeError:
            fail(f"{inputs_file}: inputs file is over {MAX_INPUTS_BYTES:,} bytes; the limit is {MAX_INPUTS_BYTES:,}")
        except OSError as exc:
            fail(f"{inputs_file}: cannot read inputs file: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            fail(f"{inputs_file}: not UTF-8 text (byte {exc.start})")
        except RecursionError:
            fail(f"{inputs_file}: nests deeper than Python can read")
        except ValueError as exc:
            line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            where = f"{inputs_file}:{line}:{col}" if line is not None else f"{inputs_file}"
            fail(f"{where}: not valid JSON: {getattr(exc, 'msg', None) or exc}")
        from orchestrate.jsonline import MAX_DEPTH, nests_too_deep

        if nests_too_deep(loaded):
            fail(f"{inputs_file}: nests deeper than {MAX_DEPTH} levels")
        if not isinstance(loaded, dict):
            fail(f"{inputs_file}: inputs file must hold a JSON object of input names to values")
        values.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--input {pair!r}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


LATEST = ("latest", "@latest")


def latest_run_dir(value: Any) -> Any:
    """A typer callback: ``latest`` (or ``@latest``) as a RUN_DIR names the newest folder in ./runs.

    Takes a path, a list of paths or None; a real file or folder called ``latest`` wins.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [latest_run_dir(item) for item in value]
    if str(value) in LATEST and not Path(str(value)).exists():
        from orchestrate.observe.run_list import newest_run

        newest = newest_run(Path("runs"))
        if newest is None:
            fail(f"{value}: no run folder in ./runs yet")
        return newest
    return value
