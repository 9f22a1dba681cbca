"""JSON Schema checks: the workflow format, agents' output schemas, and their answers.

The only module that imports jsonschema. `schemas/workflow.schema.json` is the
single source of truth for the workflow format; the package ships the same
file (`orchestrate/data/workflow.schema.json`) so an installed wheel has it.
Errors come back as (JSON path, one-line message) pairs for the loader to
place at a line and column.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

# jsonschema ships no types; its stubs (types-jsonschema) type every error field as `X | Unset`, a
# sentinel never left after validation, so it stays untyped here.
import jsonschema  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]

from orchestrate.errors import UserInputError
from orchestrate.fsutil import package_text

__all__ = [
    "check_instance",
    "instance_checker",
    "check_schema",
    "report_problem",
    "misspelled_keys",
    "schema_errors",
    "schema_names",
    "schema_text",
    "workflow_schema",
    "workflow_schema_text",
]

Path = tuple[str | int, ...]


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """`pattern` as JSON Schema means it (ECMA-262): a final ``$`` matches only at the very end.

    Python's ``$`` also matches before a final newline, so ``^[a-z]+$`` let ``"x\\n"`` through and
    a name could split a table or a graph. The pattern is searched as written, then, if it ends
    in an unescaped ``$``, again with ``\\Z`` in its place.
    """
    if not isinstance(instance, str):
        return
    strict = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    try:
        found = re.search(strict, instance)
    except re.error:
        found = re.search(pattern, instance)
    if found is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def workflow_schema_text() -> str:
    """The workflow schema as shipped in the package."""
    return package_text("workflow.schema.json")


def schema_names() -> list[str]:
    """The names of the schemas the package ships: the workflow file's and one for each document a
    run folder holds (``result``, ``cost``, ``approvals``, ...), as in the repository's ``schemas/``."""
    folder = resources.files("orchestrate").joinpath("data")
    return sorted(e.name.removesuffix(".schema.json") for e in folder.iterdir() if e.name.endswith(".schema.json"))


def schema_text(name: str) -> str:
    """The shipped schema `name` (one of `schema_names`), as JSON text.

    Raises:
        UserInputError: No schema has that name (the message lists those there are).
    """
    names = schema_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserInputError(f"no schema named {name!r}; {hint}the schemas are: {', '.join(names)}")
    return package_text(f"{name}.schema.json")


@lru_cache(maxsize=1)
def workflow_schema() -> dict[str, Any]:
    return json.loads(workflow_schema_text())


@lru_cache(maxsize=1)
def _workflow_validator() -> Draft202012Validator:
    return _Validator(workflow_schema())


def schema_errors(document: Any) -> list[tuple[Path, str, str]]:
    """Every way `document` breaks the workflow schema, as (path, message, hint), in document order."""
    found = [(_where(error), *_message(error)) for error in _leaves(_workflow_validator().iter_errors(document))]
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda item: [str(p).zfill(8) if isinstance(p, int) else p for p in item[0]])


def misspelled_keys(document: Any) -> list[tuple[Path, str, str]]:
    """Unknown keys that are near a key allowed there: (path of the mapping, written, meant).

    Checking the rest of the file as if the key were spelled right keeps one
    misspelling from causing follow-on errors (a missing required key, an
    agent that seems to have no dependencies).
    """
    found = []
    for error in _workflow_validator().iter_errors(document):
        for leaf in [error] if not error.context else list(error.context):
            if leaf.validator != "additionalProperties" or not isinstance(leaf.instance, dict):
                continue
            allowed = sorted(leaf.schema.get("properties", {}))
            for key in _extra_keys(leaf):
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
                if close and close[0] not in leaf.instance:
                    found.append((tuple(leaf.absolute_path), key, close[0]))
    return list(dict.fromkeys(found))


def check_schema(schema: Any) -> tuple[str, tuple[str | int, ...]] | None:
    """None if `schema` is a usable JSON Schema (2020-12), else why not and where inside it."""
    if not isinstance(schema, dict):
        return "must be a JSON Schema object", ()
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = tuple(exc.path)
        where = "/".join(str(p) for p in path)
        return f"not a valid JSON Schema: {exc.message}" + (f" (at /{where})" if where else ""), path
    return None


def check_instance(instance: Any, schema: dict[str, Any]) -> str | None:
    """None if `instance` satisfies `schema`, else a one-line reason naming where."""
    return instance_checker(schema)(instance)


def instance_checker(schema: dict[str, Any]) -> Callable[[Any], str | None]:
    """`check_instance` for one schema, its validator made once (an expectation checks every row)."""
    validator = _validator_for(json.dumps(schema, sort_keys=True))

    def check(instance: Any) -> str | None:
        error = best_match(validator.iter_errors(instance))
        if error is None:
            return None
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return f"{'$' + where if where else 'the answer'}: {error.message}"

    return check


@lru_cache(maxsize=4)
def _report_validator(name: str) -> Draft202012Validator:
    return _Validator(json.loads(package_text(f"{name}.schema.json")))


def report_problem(document: Any, name: str) -> str | None:
    """None if `document` satisfies the shipped report schema `name` ("result", "cost"), else the
    first way it does not, naming where (``agents[0].tokens_used: 'abc' is not of type 'integer'``)."""
    error = best_match(_report_validator(name).iter_errors(document))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    return f"{where or 'the document'}: {error.message}"


@lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> Draft202012Validator:
    return _Validator(json.loads(schema_json))


def _leaves(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """Replace oneOf/anyOf errors by their most telling sub-error."""
    for error in errors:
        if error.context:
            yield best_match(error.context)
        else:
            yield error


def _where(error: ValidationError) -> Path:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = _extra_keys(error)
        if extra:
            return (*path, extra[0], "<key>")
    return path


def _extra_keys(error: ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    return [key for key in error.instance if key not in allowed]


def _name(error: ValidationError) -> str:
    path = list(error.absolute_path)
    if not path:
        return "workflow"
    last = path[-1]
    if isinstance(last, int):
        parent = path[-2] if len(path) > 1 else "item"
        return f"{parent}[{last}]"
    return str(last)


def _message(error: ValidationError) -> tuple[str, str]:
    """What is wrong, and what to do about it (the hint may be empty)."""
    kind = error.validator
    value = error.instance
    name = _name(error)
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = _extra_keys(error)
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        where = "" if name == "workflow" else f" in {name}"
        return f"unknown key {key!r}{where}", hint
    if kind == "required":
        missing = [k for k in error.validator_value if not isinstance(value, dict) or k not in value]
        what = f"agent {value.get('name')!r}" if isinstance(value, dict) and "name" in value else name
        return (f"{what}: missing required key {missing[0]!r}" if missing else error.message), ""
    if kind == "dependentRequired" and isinstance(value, dict):  # foreach <-> max_items
        what = f"agent {value.get('name')!r}" if "name" in value else name
        for key, needed in error.validator_value.items():
            missing = [k for k in needed if key in value and k not in value]
            if missing:
                return f"{what}: {key!r} needs {missing[0]!r} too", "foreach runs at most max_items times; say how many"
        return error.message, ""
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        close = difflib.get_close_matches(str(value), [str(v) for v in error.validator_value], n=1, cutoff=0.6)
        close = close or [str(v) for v in error.validator_value if str(v).lower() == str(value).lower()]
        return f"{name}: {value!r} is not one of {options}", (f"did you mean {close[0]!r}?" if close else "")
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return (f"{name}: expected {expected}, got {_type_name(value)} {_short(value)}"), _type_hint(
            error, expected, value
        )
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "greater than",
            "exclusiveMaximum": "less than",
        }[kind]
        return (f"{name}: must be {words} {error.validator_value}, got {value!r}"), ""
    if kind == "pattern":
        if list(error.absolute_path) == ["name"]:
            return (
                f"name: {value!r} is not a valid workflow name (start with a letter or digit; then "
                "letters, digits, '_', '.', '-' or spaces; one line)"
            ), ""
        if name in ("name",) or name.startswith("agents["):
            return (
                f"{name}: {value!r} is not a valid name (start with a letter; then letters, digits, '_' or '-')"
            ), ""
        return (f"{name}: {value!r} does not match {error.validator_value}"), ""
    if kind == "minItems":
        return (f"{name}: needs at least {error.validator_value} item(s)"), ""
    if kind == "maxItems":
        return (f"{name}: at most {error.validator_value} item(s)"), ""
    if kind == "minLength":
        return (f"{name}: must not be empty"), ""
    if kind == "uniqueItems":
        return (f"{name}: has duplicate items"), ""
    return (f"{name}: {error.message}"), ""


_SECONDS = ("timeout", "request_timeout", "base_delay", "max_delay", "lease_seconds")


def _type_hint(error: ValidationError, expected: str, value: Any) -> str:
    """The usual cause of a wrong type, with the fix: an unquoted ``{...}`` that YAML read as a
    mapping, or a duration written with a unit where seconds are counted."""
    key = str(error.absolute_path[-1]) if error.absolute_path else ""
    if "string" in expected and isinstance(value, dict) and len(value) == 1 and next(iter(value.values())) is None:
        inner = next(iter(value))
        return f'quote a value that starts with {{: {key}: "{{{inner}}}"' if key else "quote a value that starts with {"
    if key in _SECONDS and isinstance(value, str):
        seconds = _as_seconds(value)
        shown = f"{key}: {seconds:g}" if seconds is not None else f"{key}: 600"
        return f"{key} is a number of seconds, without a unit: {shown}"
    return ""


def _as_seconds(text: str) -> float | None:
    """``'10m'`` -> 600, ``'90s'`` -> 90, ``'1h'`` -> 3600; None when it is not one of those."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*", text)
    if match is None:
        return None
    factor = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 1}[match[2]]
    return float(match[1]) * factor


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
