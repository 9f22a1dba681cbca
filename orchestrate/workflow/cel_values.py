"""CEL values as cel-python 0.5 treats them, on plain Python values: the comparisons and logic
of the compiled conditions (`cel_compiler`).

Values: a bool, an int (CEL int), a float (a double from the data or a literal),
`Plain` (a double computed by arithmetic: cel-python's are Python floats with
rules of their own), a str, None, a list (from the data; its ints are doubles,
as the interpreter's conversion makes them), a tuple (a list the expression
built) and a dict (a map from the data).

Each operation answers as cel-python does, quirks included (``2.0 > 1`` is true
there, ``1 < 2.0`` an error; ``x == null`` is an error for a double, false for
a string), or raises: `CelError` where cel-python gives an error value (which
``&&``, ``||``, ``has()``, ``all`` and ``exists`` may absorb), `Unsure` where the
case is not one these functions are certain of (the interpreter decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ERR",
    "CelError",
    "Plain",
    "Unsure",
    "contained",
    "elements",
    "eq",
    "from_data",
    "ge",
    "gt",
    "le",
    "logical_and",
    "logical_or",
    "lt",
    "ne",
]


class Unsure(Exception):
    """This evaluation is not one the closures are sure of: the interpreter decides."""


class CelError(Exception):
    """A CEL error value, as cel-python gives it (the interpreter words it)."""


class Plain(float):
    """A double made by arithmetic (cel-python's plain Python float)."""

    __slots__ = ()


_KEPT = frozenset({str, float, bool, type(None), list, dict})
_INT64 = 2**63
ERR = object()  # an operand that was a CelError, inside && || all exists


def from_data(value: Any) -> Any:
    """A value from the data as the interpreter sees it: ints are doubles."""
    kind = type(value)
    if kind in _KEPT:
        return value
    if kind is int:
        return float(value)
    raise Unsure


def elements(container: Any) -> Iterable[Any]:
    """What a macro or `in` iterates: a list's elements, a map's keys."""
    kind = type(container)
    if kind is list:
        return [from_data(v) for v in container]
    if kind is tuple:
        return container
    if kind is dict:
        keys = list(container)
        if any(type(k) is not str for k in keys):
            raise Unsure
        return keys
    raise Unsure


# -- comparisons: the outcome of Python's `a == b` (and friends) on cel-python's types -------------------
# Tags: B bool, I int, D double, P plain double, S string, N null, L list, M map.
_TAG = {bool: "B", int: "I", float: "D", Plain: "P", str: "S", type(None): "N", list: "L", tuple: "L", dict: "M"}
_NUMERIC = "IDPB"


def _table(rows: dict[str, str]) -> dict[str, str]:
    table = {}
    for left, row in rows.items():
        for right, rule in zip("BIDPSNLM", row, strict=True):
            table[left + right] = rule
    return table


# v: Python's own answer; t / f: true / false; e: an error; l: element by element; u: unsure.
_EQ = _table(
    {  # right: B I D P S N L M
        "B": "vvevffee",
        "I": "eveeeeee",
        "D": "eevveeee",
        "P": "vvvvffee",
        "S": "feefvfee",
        "N": "feeffvff",
        "L": "eeeeefle",
        "M": "eeeeefeu",
    }
)
_NE = _table(
    {  # right: B I D P S N L M
        "B": "vvevttee",
        "I": "eveeeeee",
        "D": "eevveeee",
        "P": "vvvvttee",
        "S": "teetvtee",
        "N": "teettvee",
        "L": "eeeeeele",
        "M": "eeeeeeeu",
    }
)


def _compare(rule: str | None, a: Any, b: Any, equal: bool) -> bool:
    if rule == "v":
        return bool(a == b) if equal else bool(a != b)
    if rule == "f":
        return False
    if rule == "t":
        return True
    if rule == "e":
        raise CelError
    if rule == "l":
        return _lists(a, b, equal)
    raise Unsure


def eq(a: Any, b: Any) -> bool:
    """`a == b` as cel-python answers it."""
    kind = type(a)
    if kind is type(b) and (kind is str or kind is float or kind is int or kind is bool):
        return a == b
    return _compare(_EQ.get(_TAG.get(kind, "?") + _TAG.get(type(b), "?")), a, b, True)


def ne(a: Any, b: Any) -> bool:
    """`a != b` as cel-python answers it."""
    kind = type(a)
    if kind is type(b) and (kind is str or kind is float or kind is int or kind is bool):
        return a != b
    return _compare(_NE.get(_TAG.get(kind, "?") + _TAG.get(type(b), "?")), a, b, False)


def _lists(a: Any, b: Any, equal: bool) -> bool:
    """ListType's == (a logical and over the pairs) or != (a logical or)."""
    left, right = list(elements(a)), list(elements(b))
    if len(left) != len(right):
        return not equal
    acc: Any = equal
    for x, y in zip(left, right, strict=True):
        try:
            r: Any = eq(x, y) if equal else ne(x, y)
        except CelError:
            r = ERR
        acc = logical_and(acc, r) if equal else logical_or(acc, r)
    if acc is ERR:
        raise CelError
    return bool(acc)


def _order(a: Any, b: Any) -> None:
    """Raise unless cel-python orders a and b (then Python's own comparison is its answer)."""
    ta, tb = _TAG.get(type(a)), _TAG.get(type(b))
    if ta is None or tb is None:
        raise Unsure
    if ta == "I":
        ok = tb == "I"
    elif ta in "DPB":
        ok = tb in _NUMERIC
    else:
        ok = ta == "S" and tb == "S"
    if not ok:
        raise CelError


def lt(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a < b)


def le(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a <= b)


def gt(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a > b)


def ge(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a >= b)


def contained(item: Any, container: Any) -> bool:
    """`item in container`: cel-python compares each element (`c == item`), type errors aside."""
    if type(container) not in (list, tuple, dict):
        if type(container) in (bool, int, float, Plain, type(None)):
            raise CelError  # not iterable
        raise Unsure
    failed = False
    for c in elements(container):
        try:
            if eq(c, item):
                return True
        except CelError:
            failed = True
    if failed:
        raise CelError
    return False


def logical_and(x: Any, y: Any) -> Any:
    """cel-python's logical_and on bools and ERR (anything else: unsure)."""
    if x is True or x is False:
        if y is True or y is False:
            return x and y
        if y is ERR:
            return ERR if x else False
    elif x is ERR:
        if y is True or y is False:
            return ERR if y else False
        if y is ERR:
            return ERR
    raise Unsure


def logical_or(x: Any, y: Any) -> Any:
    """cel-python's logical_or on bools and ERR (anything else: unsure)."""
    if x is True or x is False:
        if y is True or y is False:
            return x or y
        if y is ERR:
            return True if x else ERR
    elif x is ERR:
        if y is True or y is False:
            return True if y else ERR
        if y is ERR:
            return ERR
    raise Unsure


def index(holder: Any, key: Any) -> Any:
    kind = type(holder)
    if kind is list or kind is tuple:
        if type(key) is int:
            try:
                value = holder[key]
            except IndexError:
                raise CelError from None  # invalid_argument
            return from_data(value) if kind is list else value
        if type(key) in (float, Plain, str, type(None), list, tuple, dict):
            raise CelError
        raise Unsure
    if kind is dict:
        if type(key) is str:
            try:
                return from_data(holder[key])
            except KeyError:
                raise CelError from None  # no such key
        if type(key) in (float, Plain, type(None), list, tuple, dict):
            raise CelError  # not a key type
        raise Unsure
    if kind in (bool, int, float, Plain, type(None)):
        raise CelError  # not subscriptable
    raise Unsure
