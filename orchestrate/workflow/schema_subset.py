"""The common keywords of a JSON Schema as one Python check, made once: the fast "valid" of a
`json_schema` expectation.

jsonschema walks its validators for every instance (about as long as all the other
kinds of expectation together, row after row). Most expectation schemas use a few
keywords: `type`, `required`, `properties`, `additionalProperties`, `items`, string
`enum`/`const`, and the numeric, length and size bounds. `sure_check` turns such a
schema into nested closures that answer True only when the instance is valid as
jsonschema (Draft 2020-12) would find it; False means "ask jsonschema", which
decides and words the problem. A schema with any other keyword (`$ref`, `anyOf`,
`pattern`, `format`, ...) gets no closure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["sure_check"]

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"title", "description", "$comment", "default", "examples", "deprecated", "$schema"})
_NUMBER_TYPES = (int, float)


class _Outside(Exception):
    """A keyword (or a value of one) outside the subset."""


def sure_check(schema: Any) -> Check | None:
    """True only for instances `schema` surely accepts; None when the schema is outside the subset."""
    try:
        return _compile(schema)
    except (_Outside, RecursionError):
        return None


def _is_type(name: str, value: Any) -> bool | None:
    """jsonschema's type test on plain JSON values; None for a value it may see otherwise."""
    kind = type(value)
    if kind not in (dict, list, str, int, float, bool, type(None)):
        return None
    if name == "object":
        return kind is dict
    if name == "array":
        return kind is list
    if name == "string":
        return kind is str
    if name == "boolean":
        return kind is bool
    if name == "null":
        return value is None
    if name == "number":
        return kind in _NUMBER_TYPES
    if name == "integer":
        return kind is int or (kind is float and value.is_integer())
    raise _Outside(name)


def _compile(schema: Any) -> Check:
    if schema is True or schema == {}:
        return lambda value: True
    if not isinstance(schema, dict):
        raise _Outside("schema")
    checks: list[Check] = []
    for keyword, spec in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        maker = _KEYWORDS.get(keyword)
        if maker is None:
            raise _Outside(keyword)
        checks.append(maker(spec, schema))
    if len(checks) == 1:
        return checks[0]

    def every(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return every


def _type(spec: Any, schema: dict[str, Any]) -> Check:
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _Outside("type")
    for name in names:
        _is_type(name, None)  # an unknown type name is outside
    if len(names) == 1 and names[0] in _ONE_TYPE:
        return _ONE_TYPE[names[0]]

    def typed(value: Any) -> bool:
        return any(_is_type(name, value) for name in names)

    return typed


_ONE_TYPE: dict[str, Check] = {  # `_is_type` for one name, False for anything but plain JSON values
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "string": lambda value: type(value) is str,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
    "number": lambda value: type(value) in _NUMBER_TYPES,
    "integer": lambda value: type(value) is int or (type(value) is float and value.is_integer()),
}


def _required(spec: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(spec, list) or not all(isinstance(k, str) for k in spec):
        raise _Outside("required")

    def present(value: Any) -> bool:
        if type(value) is not dict:
            return _plain(value)
        for key in spec:
            if key not in value:
                return False
        return True

    return present


def _properties(spec: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(spec, dict):
        raise _Outside("properties")
    fields = [(key, _compile(sub)) for key, sub in spec.items()]

    def each(value: Any) -> bool:
        if type(value) is not dict:
            return _plain(value)
        for key, check in fields:
            if key in value and not check(value[key]):
                return False
        return True

    return each


def _additional(spec: Any, schema: dict[str, Any]) -> Check:
    if "patternProperties" in schema:
        raise _Outside("patternProperties")
    known = frozenset(schema.get("properties") or {})
    if spec is False:

        def closed(value: Any) -> bool:
            if type(value) is not dict:
                return _plain(value)
            return all(key in known for key in value)

        return closed
    check = _compile(spec)

    def extras(value: Any) -> bool:
        if type(value) is not dict:
            return _plain(value)
        return all(check(item) for key, item in value.items() if key not in known)

    return extras


def _items(spec: Any, schema: dict[str, Any]) -> Check:
    if "prefixItems" in schema or isinstance(spec, list) or spec is False:
        raise _Outside("items")
    check = _compile(spec)

    def each(value: Any) -> bool:
        if type(value) is not list:
            return _plain(value)
        return all(check(item) for item in value)

    return each


def _enum(spec: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(spec, list) or not spec or not all(isinstance(c, str) for c in spec):
        raise _Outside("enum")
    return _strings(frozenset(spec))


def _const(spec: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(spec, str):
        raise _Outside("const")
    return _strings(frozenset([spec]))


def _strings(allowed: frozenset[str]) -> Check:
    """Text equal to one of `allowed` (jsonschema compares a string with ==)."""

    def one_of(value: Any) -> bool:
        return type(value) is str and value in allowed

    return one_of


def _bound(kind: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, dict[str, Any]], Check]:
    """A numeric (`number`), length (`string`) or size (`array`) bound."""

    def make(spec: Any, schema: dict[str, Any]) -> Check:
        if isinstance(spec, bool) or not isinstance(spec, _NUMBER_TYPES):
            raise _Outside("bound")
        if kind != "number" and (not isinstance(spec, int) or spec < 0):
            raise _Outside("bound")

        def within(value: Any) -> bool:
            applies = _is_type(kind, value)
            if applies is None:
                return False
            if not applies:
                return True  # the keyword is about other types
            return compare(value if kind == "number" else len(value), spec)

        return within

    return make


def _plain(value: Any) -> bool:
    """A keyword about another type holds for any plain JSON value (others: ask jsonschema)."""
    return type(value) in (dict, list, str, int, float, bool, type(None))


_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], Check]] = {
    "type": _type,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _bound("number", lambda v, b: not v < b),
    "maximum": _bound("number", lambda v, b: not v > b),
    "exclusiveMinimum": _bound("number", lambda v, b: v > b),
    "exclusiveMaximum": _bound("number", lambda v, b: v < b),
    "minLength": _bound("string", lambda v, b: not v < b),
    "maxLength": _bound("string", lambda v, b: not v > b),
    "minItems": _bound("array", lambda v, b: not v < b),
    "maxItems": _bound("array", lambda v, b: not v > b),
}
