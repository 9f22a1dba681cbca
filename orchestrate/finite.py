"""Numbers that money depends on must be finite: JSON read strictly, values walked for NaN/Infinity.

A NaN compares false with everything, so ``spent + cost > budget`` is never
true and a NaN budget or price switches the budget off; an Infinity turns
every total into Infinity. Python's `json` reads ``NaN``, ``Infinity`` and
``1e999`` without a word and writes them back as bare tokens strict parsers
refuse. Everything that enters from outside (workflow files, inputs, price
files, provider answers, run folders, cost reports) goes through here.
Standard library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "NonFiniteError",
    "first_non_finite",
    "is_finite_number",
    "loads_strict",
    "non_finite_paths",
    "scrub_non_finite",
]


class NonFiniteError(ValueError):
    """A JSON text holds NaN, Infinity or a number too large for a float.

    `lineno` and `colno` (1-based, as `json.JSONDecodeError` has them) say where, when known.
    """

    lineno: int | None = None
    colno: int | None = None


def _refuse_constant(name: str) -> Any:
    raise NonFiniteError(f"{name} is not a number JSON allows (numbers must be finite)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteError(f"{text[:40]} is too large for a number (numbers must be finite)")
    return value


def loads_strict(text: str | bytes) -> Any:
    """`json.loads`, refusing NaN, Infinity and overflowing numbers (a ValueError subclass)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_float)
    except NonFiniteError as exc:
        exc.lineno, exc.colno = _locate(text if isinstance(text, str) else text.decode("utf-8", "replace"))
        raise


# A JSON string (skipped) or a token that may be a number or a non-finite constant.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?(?:Infinity|NaN)|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')


def _locate(text: str) -> tuple[int | None, int | None]:
    """Line and column of the first NaN, Infinity or overflowing number in a JSON text."""
    for match in _TOKEN.finditer(text):
        token = match.group(1)
        if token is None:
            continue
        if token.lstrip("-")[0].isdigit() and math.isfinite(float(token)):
            continue
        start = match.start(1)
        line = text.count("\n", 0, start) + 1
        return line, start - (text.rfind("\n", 0, start) + 1) + 1
    return None, None


def is_finite_number(value: Any) -> bool:
    """True for an int or a finite float (bools are not numbers here)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def first_non_finite(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first NaN or Infinity inside `value` (dicts and lists walked), else None."""
    for where in non_finite_paths(value, path):
        return where
    return None


def non_finite_paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every NaN or Infinity inside `value`, in document order."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                yield where
        elif isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
    return None


def scrub_non_finite(value: Any) -> Any:
    """A copy of `value` with every NaN or Infinity replaced by None (the last guard of a report)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: scrub_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_non_finite(v) for v in value]
    return value
