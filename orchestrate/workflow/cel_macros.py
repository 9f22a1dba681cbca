"""The CEL macros ``all exists exists_one map filter`` as closures, cel-python 0.5's way.

Every element is evaluated, as the interpreter does. ``all`` and ``exists`` absorb
CEL errors (false, resp. true, wins; else an error remains); an error inside
``map``, ``filter`` or ``exists_one`` escapes cel-python's evaluation as an
exception, so it is `Unsure` here, and a body that is not a bool too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrate.workflow.cel_values import ERR, CelError, Unsure, elements

__all__ = ["MACROS", "Env", "Loc", "Node"]

Env = Mapping[str, Any]
Loc = dict[str, Any]
Node = Callable[[Env, Loc], Any]


def _each(collection: Node, variable: str, body: Node, env: Env, loc: Loc, *, errors: bool) -> list[tuple[Any, Any]]:
    """(element, body value) for each element; with `errors`, a CEL error is ERR, else it is unsure
    (map, filter and exists_one raise it out of the interpreter)."""
    items = elements(collection(env, loc))
    saved = loc.get(variable, ERR)
    found = []
    try:
        for item in items:
            loc[variable] = item
            try:
                found.append((item, body(env, loc)))
            except CelError:
                if not errors:
                    raise Unsure from None
                found.append((item, ERR))
    finally:
        if saved is ERR:
            loc.pop(variable, None)
        else:
            loc[variable] = saved
    return found


def _macro_all(collection: Node, variable: str, body: Node) -> Node:
    def every(env: Env, loc: Loc) -> bool:
        values = [v for _, v in _each(collection, variable, body, env, loc, errors=True)]
        if any(v is not True and v is not False and v is not ERR for v in values):
            raise Unsure
        if any(v is False for v in values):
            return False
        if any(v is ERR for v in values):
            raise CelError
        return True

    return every


def _macro_exists(collection: Node, variable: str, body: Node) -> Node:
    def some(env: Env, loc: Loc) -> bool:
        values = [v for _, v in _each(collection, variable, body, env, loc, errors=True)]
        if any(v is not True and v is not False and v is not ERR for v in values):
            raise Unsure
        if any(v is True for v in values):
            return True
        if any(v is ERR for v in values):
            raise CelError
        return False

    return some


def _booleans(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if any(v is not True and v is not False for _, v in pairs):
        raise Unsure
    return pairs


def _macro_exists_one(collection: Node, variable: str, body: Node) -> Node:
    def one(env: Env, loc: Loc) -> bool:
        return sum(v for _, v in _booleans(_each(collection, variable, body, env, loc, errors=False))) == 1

    return one


def _macro_map(collection: Node, variable: str, body: Node) -> Node:
    def mapped(env: Env, loc: Loc) -> tuple[Any, ...]:
        return tuple(v for _, v in _each(collection, variable, body, env, loc, errors=False))

    return mapped


def _macro_filter(collection: Node, variable: str, body: Node) -> Node:
    def kept(env: Env, loc: Loc) -> tuple[Any, ...]:
        return tuple(item for item, v in _booleans(_each(collection, variable, body, env, loc, errors=False)) if v)

    return kept


MACROS: dict[str, Callable[[Node, str, Node], Node]] = {
    "all": _macro_all,
    "exists": _macro_exists,
    "exists_one": _macro_exists_one,
    "map": _macro_map,
    "filter": _macro_filter,
}
