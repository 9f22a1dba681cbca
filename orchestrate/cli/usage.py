"""A usage error (a bad flag value, an unknown option) as one line: the value given and what is expected.

Click, under typer, prints four lines (usage, a hint, a blank, then ``Error:
Invalid value for '--budget': Input should be a valid number, unable to parse
string as a number``) that neither repeat the value nor say what would do. Here
the same error reads ``error: --budget 'abc': expected an amount in USD, at
least 0``, on stderr, exit 2. What is expected comes from the option itself (its
type, range, choices and metavar), so an option added later gets the same.

Typer may bring click as its own copy (``typer._click``) or use the click
package: the exception classes are found through `typer.BadParameter`'s bases,
not imported by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import typer

__all__ = ["describe", "is_help_for_no_arguments", "is_usage_error", "refuse_non_finite", "usage_line"]

_UNITS = {
    "USD": "an amount in USD",
    "SECONDS": "a number of seconds",
}
_BASES = {cls.__name__: cls for cls in typer.BadParameter.__mro__}


def is_usage_error(exc: BaseException) -> bool:
    """True for click's UsageError (a bad value, an unknown option, a missing argument)."""
    usage = _BASES.get("UsageError")
    return usage is not None and isinstance(exc, usage)


def is_help_for_no_arguments(exc: BaseException) -> bool:
    """True when a group was called with nothing: its help is the answer, not an error line."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation
    kind = getattr(getattr(param, "type", None), "name", "")  # click's own types (an older typer)
    return {"integer": int, "integer range": int, "float": float, "float range": float}.get(kind)


def _choices(param: Any) -> Sequence[Any] | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "choices", None):
        return [getattr(c, "value", c) for c in descriptor.choices]
    return getattr(getattr(param, "type", None), "choices", None)


def refuse_non_finite(param: Any) -> None:
    """Make a number option refuse ``inf`` and ``nan`` (which parse as numbers) as it refuses ``abc``."""
    if _annotation(param) is float and getattr(param, "callback", None) is None:
        param.callback = _finite


def _finite(ctx: Any, param: Any, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"'{value}' is not a finite number", ctx=ctx, param=param)
    return value


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(param: Any) -> str | None:
    """What an option takes, in words (``a whole number, at least 1``); None when we cannot tell."""
    choices = _choices(param)
    if choices:
        return "one of " + ", ".join(str(c) for c in choices)
    annotation = _annotation(param)
    if annotation not in (int, float):
        return None
    low = getattr(param, "min", None)
    high = getattr(param, "max", None)
    if low is None and high is None:  # click's ranges keep them on the type
        low = getattr(getattr(param, "type", None), "min", None)
        high = getattr(getattr(param, "type", None), "max", None)
    base = _UNITS.get(str(getattr(param, "metavar", "") or "")) or (
        "a whole number" if annotation is int else "a number"
    )
    if low is not None and high is not None:
        return f"{base} from {_number(low)} to {_number(high)}"
    if low is not None:
        return f"{base}, at least {_number(low)}"
    if high is not None:
        return f"{base}, at most {_number(high)}"
    return base


def _given(exc: BaseException, param: Any, argv: Sequence[str]) -> str | None:
    """The value the user gave: from the validation error, else the command line."""
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        try:
            found = errors()
        except Exception:  # a cause that is not pydantic's
            found = []
        if found and isinstance(found[0], dict) and isinstance(found[0].get("input"), str):
            return str(found[0]["input"])
    if getattr(param, "param_type_name", "") == "option":  # as typed (1e400, not the inf it became)
        for opt in getattr(param, "opts", []):
            for i, arg in enumerate(argv):
                if arg == opt and i + 1 < len(argv):
                    return argv[i + 1]
                if arg.startswith(opt + "="):
                    return arg[len(opt) + 1 :]
    message = str(getattr(exc, "message", ""))
    quoted = re.match(r"(?:Value )?'(.*)' is not", message)
    return quoted.group(1) if quoted else None


def usage_line(exc: BaseException, argv: Sequence[str]) -> str:
    """The one line to print (without ``error: ``) for a usage error."""
    param = getattr(exc, "param", None)
    message = " ".join(str(getattr(exc, "message", exc)).split())
    if param is not None and type(exc).__name__ == "BadParameter":
        value = _given(exc, param, argv)
        if getattr(param, "param_type_name", "") == "option":  # --budget 'abc'
            name = max(getattr(param, "opts", None) or ["value"], key=len)
            said = f"{name} {value!r}" if value is not None else name
        else:  # an argument: its value, or its metavar when the value is not known
            said = repr(value) if value is not None else str(getattr(param, "metavar", None) or param.name).upper()
        expected = describe(param)
        if expected is not None:
            return f"{said}: expected {expected}"
        return f"{said}: {message[:1].lower()}{message[1:]}"
    if type(exc).__name__ == "MissingParameter" or not message:  # its words are made by format_message
        formatted = getattr(exc, "format_message", None)
        message = " ".join(str(formatted() if callable(formatted) else exc).split())
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} -h')" if ctx is not None and getattr(ctx, "command_path", None) else ""
    return f"{message.rstrip('.') if where else message}{where}"
