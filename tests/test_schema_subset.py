"""The schema closures against jsonschema: whenever they say "valid", jsonschema finds no error.

Random schemas built from the subset's keywords, and random instances (many of them
near the schema: the right keys, the wrong types), are checked both ways; schemas
with keywords outside the subset get no closure.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from orchestrate.workflow.expectations import Context, Expectation
from orchestrate.workflow.schema import _validator_for
from orchestrate.workflow.schema_subset import sure_check

TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]
VALUES: list[Any] = [
    0,
    1,
    -1,
    2.5,
    3.0,
    float("nan"),
    "",
    "a",
    "abc",
    "approve",
    True,
    False,
    None,
    [],
    {},
    [1],
    {"a": 1},
]


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if rng.random() < 0.7:
        schema["type"] = rng.choice(TYPES) if rng.random() < 0.8 else rng.sample(TYPES, 2)
    if rng.random() < 0.3:
        schema["description"] = "annotated"
    if depth < 2 and rng.random() < 0.5:
        keys = rng.sample(["a", "b", "c"], rng.randrange(1, 4))
        schema["properties"] = {k: random_schema(rng, depth + 1) for k in keys}
        if rng.random() < 0.5:
            schema["required"] = rng.sample(keys, rng.randrange(len(keys) + 1))
        if rng.random() < 0.3:
            schema["additionalProperties"] = False if rng.random() < 0.5 else random_schema(rng, depth + 1)
    if depth < 2 and rng.random() < 0.2:
        schema["items"] = random_schema(rng, depth + 1)
    for keyword, pool in (
        ("minimum", [0, 1, 2.5]),
        ("maximum", [0, 1, 2.5]),
        ("exclusiveMinimum", [0, 1]),
        ("exclusiveMaximum", [1, 3]),
        ("minLength", [0, 1, 2]),
        ("maxLength", [1, 3]),
        ("minItems", [0, 1]),
        ("maxItems", [0, 2]),
    ):
        if rng.random() < 0.1:
            schema[keyword] = rng.choice(pool)
    if rng.random() < 0.1:
        schema["enum"] = rng.sample(["a", "abc", "approve", "hold"], 2)
    if rng.random() < 0.05:
        schema["const"] = "a"
    return schema


def random_instance(rng: random.Random, schema: Any, depth: int = 0) -> Any:
    if isinstance(schema, dict) and "properties" in schema and rng.random() < 0.7:
        value = {
            k: random_instance(rng, sub, depth + 1) for k, sub in schema["properties"].items() if rng.random() < 0.8
        }
        if rng.random() < 0.2:
            value["extra"] = rng.choice(VALUES)
        return value
    if isinstance(schema, dict) and "items" in schema and rng.random() < 0.7:
        return [random_instance(rng, schema["items"], depth + 1) for _ in range(rng.randrange(4))]
    if isinstance(schema, dict) and "enum" in schema and rng.random() < 0.5:
        return rng.choice(schema["enum"])
    return rng.choice(VALUES)


def test_the_closures_say_valid_only_where_jsonschema_finds_no_error() -> None:
    rng = random.Random(26)
    said_valid = compiled = 0
    for _ in range(1500):
        schema = random_schema(rng)
        check = sure_check(schema)
        assert check is not None, schema
        compiled += 1
        validator = _validator_for(json.dumps(schema, sort_keys=True))
        for _ in range(8):
            instance = random_instance(rng, schema)
            if check(instance):
                said_valid += 1
                errors = list(validator.iter_errors(instance))
                assert not errors, f"{schema} on {instance!r}: closures valid, jsonschema {errors[0].message}"
    assert said_valid > 2000  # the closures answer most valid instances themselves


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"type": "string", "pattern": "^[A-Z]+$"},
        {"type": "string", "format": "email"},
        {"type": "object", "patternProperties": {"^x": {}}, "additionalProperties": False},
        {"enum": [1, "a"]},
        {"type": "array", "prefixItems": [{"type": "string"}]},
    ],
)
def test_schemas_outside_the_subset_get_no_closure(schema: dict[str, Any]) -> None:
    assert sure_check(schema) is None


def test_a_json_schema_expectation_words_the_problem_as_jsonschema_does() -> None:
    spec = {"type": "object", "required": ["gl_account"], "properties": {"total": {"type": "number", "minimum": 0}}}
    expectation = Expectation({"json_schema": spec})
    ok = expectation.check({"json": {"gl_account": "6100", "total": 12.5}}, Context())
    assert ok is not None and ok.status == "pass"
    bad = expectation.check({"json": {"gl_account": "6100", "total": -1}}, Context())
    assert bad is not None and bad.status == "fail" and bad.reason == "$.total: -1 is less than the minimum of 0"
    missing = expectation.check({"json": {"total": 1}}, Context())
    assert missing is not None and missing.reason == "the answer: 'gl_account' is a required property"
