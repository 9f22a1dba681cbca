"""Strict checks of request bodies against the official SDKs' request types (TypedDicts).

The `openai` and `anthropic` packages are test-only dependencies, used as
oracles for the wire format: `problems(body, CompletionCreateParamsNonStreaming)`
lists every key the SDK does not declare, every required key missing, and
every value of the wrong type or outside a Literal, recursively. An empty
list means the body is exactly what the SDK itself could have sent.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

import typing_extensions

__all__ = ["problems"]

_WRAPPERS = {
    typing_extensions.Required,
    typing_extensions.NotRequired,
    typing_extensions.ReadOnly,
    typing.Required,
    typing.NotRequired,
}
_SEQUENCES = {list, collections.abc.Iterable, collections.abc.Sequence, typing.Iterable, typing.Sequence, list}
_MAPPINGS = {dict, collections.abc.Mapping, dict, typing.Mapping}


def problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Every way `value` departs from the type `tp` (an SDK TypedDict, or any type within one)."""
    if tp is Any or tp is object:
        return []
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin is typing_extensions.Annotated or origin is typing.Annotated:
        return problems(value, args[0], path)
    if origin in _WRAPPERS:
        return problems(value, args[0], path)
    if origin is typing.Union or origin is types.UnionType:
        best: list[str] | None = None
        for option in args:
            found = problems(value, option, path)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        return best or [f"{path}: matches no member of {tp}"]
    if origin is typing.Literal or origin is typing_extensions.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if tp is type(None):
        return [] if value is None else [f"{path}: expected null, got {value!r}"]
    if typing_extensions.is_typeddict(tp):
        return _typed_dict(value, tp, path)
    if origin in _SEQUENCES or getattr(origin, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in problems(item, args[0] if args else Any, f"{path}[{i}]")]
    if origin in _MAPPINGS:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in problems(v, args[1] if args else Any, f"{path}.{k}")]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if tp is int:
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{path}: expected an integer, got {value!r}"]
        )
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    raise TypeError(f"{path}: the checker does not know the type {tp!r}")  # fail loudly, never pass


def _typed_dict(value: Any, tp: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({tp.__name__}), got {type(value).__name__}"]
    hints = typing_extensions.get_type_hints(tp, include_extras=True)
    found = [f"{path}: {key!r} is not declared by {tp.__name__}" for key in value if key not in hints]
    found += [f"{path}: required {key!r} missing ({tp.__name__})" for key in _required(tp, hints) if key not in value]
    for key, item in value.items():
        if key in hints:
            found += problems(item, hints[key], f"{path}.{key}")
    return found


def _required(tp: Any, hints: dict[str, Any]) -> set[str]:
    """The required keys, read from the resolved hints: the SDKs write their annotations as
    strings, so the class's own `__required_keys__` cannot see `Required[...]` in them."""
    required = set()
    for key, hint in hints.items():
        origin = typing_extensions.get_origin(hint)
        if origin in (typing_extensions.Required, typing.Required):
            required.add(key)
        elif origin not in (typing_extensions.NotRequired, typing.NotRequired) and key in tp.__required_keys__:
            required.add(key)
    return required
