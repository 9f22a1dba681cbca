"""CEL arithmetic and functions as cel-python 0.5 computes them, on the values of `cel_values`.

int arithmetic is int64 (an overflow is an error), division truncates and ``%``
takes the dividend's sign; a double divided by 0.0 is infinite; the functions are
``size int double string`` and the string methods ``startsWith endsWith contains
matches`` (RE2, as cel-python's). What is not certain raises `Unsure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import re2  # type: ignore[import-untyped]  # cel-python's regular expressions (RE2), installed with it

from orchestrate.workflow.cel_values import CelError, Plain, Unsure

__all__ = ["FUNCTIONS", "METHODS", "add", "div", "mod", "mul", "neg", "sub"]

_INT64 = 2**63


# -- arithmetic ----------------------------------------------------------------------------------------


def _int64(value: int) -> int:
    if -_INT64 <= value < _INT64:
        return value
    raise CelError  # cel-python: "return error for overflow"


def _doubles(a: Any, b: Any) -> bool:
    """Both operands give a plain double under + - * (a double or plain on the left, a number on the right)."""
    return type(a) in (float, Plain) and type(b) in (float, Plain, int)


def add(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a + b)
    if _doubles(a, b):
        return Plain(a + b)
    raise Unsure


def sub(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a - b)
    if _doubles(a, b):
        return Plain(a - b)
    raise Unsure


def mul(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a * b)
    if _doubles(a, b):
        return Plain(a * b)
    raise Unsure


def div(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        if b == 0:
            raise CelError  # "modulus or divide by zero"
        sign = (-1 if a < 0 else 1) * (-1 if b < 0 else 1)
        return _int64(sign * (abs(a) // abs(b)))
    if (ta is float and tb in (float, Plain)) or (ta is Plain and tb is float):
        return math.inf if b == 0.0 else float(a / b)  # DoubleType's division: x / 0.0 is inf
    if ta is Plain and tb in (Plain, int):
        if b == 0:
            raise CelError
        return Plain(a / b)
    if ta is float and tb is int:
        raise CelError  # DoubleType compares the divisor with 0.0: no overload for an int
    raise Unsure


def mod(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CelError
        return _int64((-1 if a < 0 else 1) * (abs(a) % abs(b)))
    if type(a) is float:
        raise CelError  # no % for doubles
    raise Unsure


def neg(a: Any) -> Any:
    kind = type(a)
    if kind is int:
        return _int64(-a)
    if kind is float:
        return -a
    if kind is Plain:
        return Plain(-a)
    raise Unsure


# -- functions and methods -----------------------------------------------------------------------------


def size(value: Any) -> int:
    kind = type(value)
    if kind in (str, list, tuple, dict):
        return len(value)
    if value is None:
        return 0  # cel-python's size(null)
    if kind in (bool, int, float, Plain):
        raise CelError
    raise Unsure


def to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool:
        return int(value)
    if value is None:
        return 0
    if kind in (float, Plain):
        if math.isinf(value):
            raise Unsure  # an OverflowError the interpreter does not catch
        if math.isnan(value):
            raise CelError
        return _int64(math.trunc(value))
    if kind is str:
        try:
            if value[:2] in ("0x", "0X"):
                number = int(value[2:], 16)
            elif value[:3] in ("-0x", "-0X"):
                number = -int(value[3:], 16)
            else:
                number = int(value)
        except ValueError:
            raise CelError from None
        return _int64(number)
    raise Unsure


def to_double(value: Any) -> float:
    kind = type(value)
    if value is None:
        return 0.0
    if kind in (bool, int, float, Plain):
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            raise CelError from None
    if kind in (list, tuple, dict):
        raise CelError
    raise Unsure


def to_string(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "True" if value else "False"  # cel-python's string(true)
    if kind is int:
        return str(value)
    if kind in (float, Plain):
        return str(float(value))
    if value is None:
        return "None"
    raise Unsure


def _strings(a: Any, b: Any) -> None:
    if type(a) is not str or type(b) is not str:
        raise Unsure


def starts_with(a: Any, b: Any) -> bool:
    _strings(a, b)
    return a.startswith(b)


def ends_with(a: Any, b: Any) -> bool:
    _strings(a, b)
    return a.endswith(b)


def contains(a: Any, b: Any) -> bool:
    _strings(a, b)
    return b in a


def matches(text: Any, pattern: Any) -> bool:
    _strings(text, pattern)
    try:
        return re2.search(pattern, text) is not None
    except re2.error:
        raise CelError from None  # "match error"


FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "size": (1, size),
    "int": (1, to_int),
    "double": (1, to_double),
    "string": (1, to_string),
    "startsWith": (2, starts_with),
    "endsWith": (2, ends_with),
    "contains": (2, contains),
    "matches": (2, matches),
}
METHODS = {
    name: entry
    for name, entry in FUNCTIONS.items()
    if name in ("size", "startsWith", "endsWith", "contains", "matches")
}
