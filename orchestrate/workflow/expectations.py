"""Expectations: what a right answer looks like, written next to the agent that gives it.

An agent (or the workflow, on its declared `outputs`) may carry ``expect:``, a
list of checks, each of exactly one kind::

    equals / one_of               the value (at `path`) is this, or one of these
    contains / icontains          the text holds this (every one of a list), case ignored or not
    not_contains                  the text holds none of these
    regex                         a Python regular expression is found in the text
    json_schema                   the value satisfies a JSON Schema (inline, or a file)
    approx                        a number equal within `tolerance` (absolute, or "1%")
    cel                           a CEL condition (the `when:` language) is true
    max_cost / max_latency        USD spent, seconds taken, at most
    rubric                        a judge model scores the answer 0-1; `threshold` passes it
    any / all                     nested expectations: one of them, or every one, passes

`path` is a CEL field path into the answer (``output.gl_account``,
``output.lines[0].qty``); without it the whole output is checked. Expected
values may name dataset columns (``{row.expected_account}``), inputs
(``{inputs.region}``) and agents' outputs (``{extract.output.total}``); a value
that is exactly one placeholder keeps its type.

This module compiles expectations and evaluates the deterministic kinds (their
checks, for validate, are in `expectation_checks`); a rubric needs a model,
so `orchestrate.run.evaluation` asks the judge through the engine. Evaluation
is plain dictionary walks and comparisons, compiled once per expectation, so a
dataset of 10,000 rows pays a few microseconds per expectation a row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.workflow.expressions import ExpressionError, compile_condition
from orchestrate.workflow.templates import Reference, TemplateError, lookup, references, single_placeholder

__all__ = [
    "DETERMINISTIC_KINDS",
    "JUDGE_SCHEMA",
    "JUDGE_SYSTEM",
    "KINDS",
    "Context",
    "Expectation",
    "Outcome",
    "compile_expectations",
    "judge_llm",
    "rubrics",
    "row_columns",
]

KINDS = (
    "equals",
    "one_of",
    "contains",
    "icontains",
    "not_contains",
    "regex",
    "json_schema",
    "approx",
    "cel",
    "max_cost",
    "max_latency",
    "rubric",
    "any",
    "all",
)
DETERMINISTIC_KINDS = frozenset(KINDS) - {"rubric"}
_OPTION_OF = {"tolerance": "approx", "threshold": "rubric", "judge": "rubric"}
DEFAULT_THRESHOLD = 0.5
TRIM = 200  # characters of expected and got kept in reports

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}

JUDGE_SYSTEM = (
    "You grade an answer against a rubric. Score from 0 (the answer does not meet the rubric at all) "
    "to 1 (it meets it fully), and give the reason in one or two sentences. Judge only what the rubric asks."
)
JUDGE_MAX_TOKENS = 400  # the judge's answer, unless its `judge:` says otherwise


def judge_llm(judge: Mapping[str, Any], owner_llm: Mapping[str, Any] | None) -> dict[str, Any]:
    """A judge's llm_config: its own `judge:` when it names a model, else the agent's with `judge:` over it."""
    if "model" in judge or not owner_llm:
        llm = dict(judge)
    else:
        llm = {k: v for k, v in owner_llm.items() if k not in ("system", "response_format")}
        llm.update(judge)
    llm.setdefault("temperature", None)
    llm.setdefault("max_tokens", JUDGE_MAX_TOKENS)
    llm["system"] = JUDGE_SYSTEM
    return llm


def rubrics(items: Any) -> list[dict[str, Any]]:
    """Every rubric expectation in an `expect:` list, those inside any/all included."""
    found, stack = [], list(items or [])
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "rubric" in item:
                found.append(item)
            for nested in ("any", "all"):
                stack.extend(item.get(nested) or [])
    return found


_PATH = re.compile(r"(?:output|outputs)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


_ABSENT = object()


class _Missing(Exception):
    """The value an expectation reads is not there."""


@dataclass(slots=True)
class Outcome:
    """What one expectation came to: ``pass``, ``fail`` or ``error`` (could not be evaluated)."""

    name: str
    kind: str
    status: str
    expected: Any = None
    got: Any = None
    reason: str = ""
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As reports keep it; a pass keeps `got` only when it is a plain value (a whole answer
        is in the agent's output already, and trimming it for every row of a dataset costs)."""
        return self._filled({})

    def listed(self, owner: str) -> dict[str, Any]:
        """`to_dict()` with ``agent: owner`` first: the evaluation document's outcome (one dict,
        made once, as a literal: a dataset run makes one for every expectation of every row)."""
        got, expected = self._shown()
        out = {
            "agent": owner,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "expected": expected,
            "got": got,
            "reason": self.reason,
        }
        if self.score is not None:
            out["score"] = self.score
        return out

    def entries(self, owner: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """`to_dict()`, and the same with ``agent: owner`` first (the evaluation document's outcome)."""
        entry = self.to_dict()
        return entry, {"agent": owner, **entry}

    def _filled(self, out: dict[str, Any]) -> dict[str, Any]:
        got, expected = self._shown()
        out["name"] = self.name
        out["kind"] = self.kind
        out["status"] = self.status
        out["expected"] = expected
        out["got"] = got
        out["reason"] = self.reason
        if self.score is not None:
            out["score"] = self.score
        return out

    def _shown(self) -> tuple[Any, Any]:
        """`got` and `expected` as reports keep them (see `to_dict`)."""
        got, expected = self.got, self.expected
        kind = type(got)
        if got is not None and kind not in _PLAIN and not (kind is str and len(got) <= TRIM):
            got = None if self.status == "pass" and not isinstance(got, (str, int, float, bool)) else _trim(got)
        kind = type(expected)
        if expected is not None and kind not in _KEPT and not (kind is str and len(expected) <= TRIM):
            expected = _trim(expected)
        return got, expected


_PLAIN = frozenset({int, float, bool})  # kept as they are in reports


class _Shown(list[str]):
    """A list already as reports show it (one_of's constant choices, trimmed when the workflow
    is loaded): kept as it is, not trimmed again for every row."""

    __slots__ = ()


_KEPT = _PLAIN | {_Shown}


def _trim(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and len(value) <= TRIM:
        return value
    if isinstance(value, list) and len(value) <= 10:
        for v in value:
            if not isinstance(v, str) or len(v) > 16:
                break
        else:
            return value  # a short list of choices: kept as it is
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) <= TRIM:
        return value
    return text[: TRIM - 1] + "…"


@dataclass(slots=True)
class Context:
    """What an expectation may read besides the answer: the row, inputs, every agent's output,
    and what the checked agent (or run) cost and took."""

    row: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)  # agent name -> output dict (None: skipped)
    cost: float = 0.0
    seconds: float = 0.0


def output_value(output: Any) -> Any:
    """An agent's answer as expectations see it: its JSON when it has one, else its text."""
    if isinstance(output, dict) and ("json" in output or "text" in output):
        return output["json"] if "json" in output else output.get("text", "")
    return output


class _Value:
    """An expected value: a constant, or a template over the row, inputs and outputs."""

    __slots__ = ("constant", "pieces", "single", "text")

    def __init__(self, raw: Any) -> None:
        self.constant = raw
        self.single: Reference | None = None
        self.pieces: list[tuple[str, Reference]] | None = None
        self.text = ""
        if isinstance(raw, str) and ("{" in raw or "}" in raw):
            self.single = single_placeholder(raw)
            if self.single is None:
                refs = references(raw)
                if refs:
                    pieces, last = [], 0
                    for ref in refs:
                        literal = raw[last : ref.offset].replace("{{", "{").replace("}}", "}")
                        pieces.append((literal, ref))
                        last = ref.offset + len(ref.text) + 2
                    self.pieces = pieces
                    self.text = raw[last:].replace("{{", "{").replace("}}", "}")
                else:
                    self.constant = raw.replace("{{", "{").replace("}}", "}")

    def get(self, ctx: Context) -> Any:
        if self.single is not None:
            return _lookup(self.single, ctx)
        if self.pieces is None:
            return self.constant
        parts = []
        for literal, ref in self.pieces:
            parts.append(literal)
            parts.append(_text(_lookup(ref, ctx)))
        parts.append(self.text)
        return "".join(parts)


def _lookup(ref: Reference, ctx: Context) -> Any:
    kind, name, path = ref.kind, ref.name, ref.path
    if kind == "name" and name == "row" and "row" not in ctx.inputs:
        column = path[0] if path else ""
        if column not in ctx.row:
            raise _Missing(f"the row has no column {column!r}")
        return ctx.row[column] if len(path) == 1 else _walk(ctx.row[column], path[1:])
    if not path and (kind == "input" or kind == "name") and name in ctx.inputs:  # an input's value
        return ctx.inputs[name]
    try:
        return lookup(ref, inputs=_plain_dict(ctx.inputs), outputs=_plain_dict(ctx.outputs))
    except TemplateError as exc:
        raise _Missing(str(exc)) from None


def _walk(value: Any, path: tuple[str | int, ...] | tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and (isinstance(key, int) or str(key).isdigit()) and int(key) < len(value):
            value = value[int(key)]
        else:
            raise _Missing(f"no {key!r} in the answer")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _equal(got: Any, expected: Any) -> bool:
    if got == expected and type(got) is not bool and type(expected) is not bool:
        return True
    if isinstance(got, bool) or isinstance(expected, bool):
        return _text(got).strip().lower() == _text(expected).strip().lower()
    if isinstance(got, str) and isinstance(expected, str):
        return got.strip() == expected.strip()
    if isinstance(got, (int, float)) or isinstance(expected, (int, float)):
        a, b = _number(got), _number(expected)
        return a is not None and b is not None and a == b
    return got == expected


class Expectation:
    """One compiled expectation; `check` evaluates it (a rubric is left to the judge)."""

    __slots__ = (
        "checker",
        "children",
        "choices",
        "compare",
        "condition",
        "field",
        "judge",
        "kind",
        "limit",
        "name",
        "needles",
        "parts",
        "path",
        "pattern",
        "raw",
        "reads",
        "relative",
        "schema",
        "shown",
        "threshold",
        "tolerance",
        "value",
        "values",
    )

    def __init__(self, raw: dict[str, Any], *, base_dir: Path | None = None, position: str = "") -> None:
        kind = next(k for k in KINDS if k in raw)
        self.raw = raw
        self.kind = kind
        self.path = raw.get("path")
        self.parts: tuple[str | int, ...] = _path_parts(self.path) if self.path else ()
        # What `check` does most: compare a field of the JSON answer (`path: output.NAME`).
        self.field: str | None = self.parts[0] if len(self.parts) == 1 and type(self.parts[0]) is str else None
        self.name = str(raw.get("name") or _default_name(kind, raw, position))
        spec = raw[kind]
        self.value = _Value(spec) if kind in ("equals", "approx") else None
        self.values: list[_Value] = []
        self.choices: dict[str, None] | None = None  # one_of's choices when all are constant text
        self.shown: list[str] = []  # ... as a passing outcome shows them
        self.needles: list[str] | None = None  # the texts a contains kind looks for, when constant
        if kind == "one_of":
            self.values = [_Value(v) for v in spec]
            constants = [v.constant for v in self.values if v.single is None and v.pieces is None]
            if len(constants) == len(self.values) and all(type(c) is str for c in constants):
                self.choices = dict.fromkeys(c.strip() for c in constants)
                choices = list(self.choices)
                # As reports show them, once: a short list of short choices is kept as it is.
                self.shown = _Shown(choices) if _trim(choices) is choices else choices
        elif kind in ("contains", "icontains", "not_contains"):
            self.values = [_Value(v) for v in ([spec] if isinstance(spec, str) else spec)]
            if all(v.single is None and v.pieces is None for v in self.values):
                self.needles = [_text(v.constant) for v in self.values]
        self.pattern = re.compile(spec) if kind == "regex" else None
        self.schema: dict[str, Any] | None = None
        self.checker: Any = None  # json_schema: the schema's check, made once
        if kind == "json_schema":
            self.schema = spec if isinstance(spec, dict) else json.loads(((base_dir or Path.cwd()) / spec).read_text())
        self.condition: Any = None
        if kind == "cel":
            self.condition = compile_condition(spec)
        # The root names a cel condition reads (output, inputs, row, an input, an agent).
        self.reads: tuple[str, ...] = (
            tuple(sorted({use.name for use in self.condition.names})) if self.condition is not None else ()
        )
        self.limit: float | None = None  # max_cost's or max_latency's, as a number
        if kind in ("max_cost", "max_latency") and isinstance(spec, (int, float)) and not isinstance(spec, bool):
            self.limit = float(spec)
        self.tolerance, self.relative = _tolerance(raw.get("tolerance"))
        self.threshold = float(raw.get("threshold", DEFAULT_THRESHOLD))
        self.judge: dict[str, Any] = dict(raw.get("judge") or {})
        self.children = (
            [Expectation(child, base_dir=base_dir, position=f"{position}.{kind}[{j}]") for j, child in enumerate(spec)]
            if kind in ("any", "all")
            else []
        )
        self.compare: Any = _COMPARE.get(kind)  # the kinds that read the answer and compare

    @property
    def needs_judge(self) -> bool:
        return self.kind == "rubric" or any(child.needs_judge for child in self.children)

    def target(self, output: Any, value: Any = _ABSENT) -> Any:
        """The value at `path` in `output` (an agent's output dict, or the workflow's outputs);
        `value` is `output_value(output)` when the caller has it already."""
        if value is _ABSENT:
            value = output_value(output)
        parts = self.parts
        if not parts:
            return value
        if len(parts) == 1 and type(value) is dict:  # the common case: a field of the JSON answer
            found = value.get(parts[0], _ABSENT)
            if found is not _ABSENT:
                return found
        if self.parts[0] == "text" and isinstance(output, dict) and "text" in output:
            if not (isinstance(value, dict) and "text" in value):
                return _walk(output["text"], self.parts[1:])
        try:
            return _walk(value, self.parts)
        except _Missing:
            raise _Missing(f"{self.path}: not in the answer") from None

    def check(self, output: Any, ctx: Context, value: Any = _ABSENT) -> Outcome | None:
        """The outcome, or None for a rubric (the judge decides it). `value`: as `target`'s."""
        compare = self.compare
        try:
            if compare is not None:  # most kinds: read the answer, compare
                field = self.field
                if field is not None and type(value) is dict:  # `target`'s common case, inline
                    got = value.get(field, _ABSENT)
                    if got is not _ABSENT:
                        return compare(self, got, ctx)
                return compare(self, self.target(output, value), ctx)
            kind = self.kind
            if kind == "max_cost":
                limit = float(self.raw[kind]) if self.limit is None else self.limit
                if ctx.cost <= limit + 1e-12:
                    return Outcome(self.name, kind, "pass", limit, round(ctx.cost, 8))
                return Outcome(self.name, kind, "fail", limit, round(ctx.cost, 8), f"cost ${ctx.cost:.6f} > ${limit:g}")
            if kind == "max_latency":
                limit = float(self.raw[kind]) if self.limit is None else self.limit
                ok = ctx.seconds <= limit
                return self._done(
                    ok, limit, round(ctx.seconds, 3), "" if ok else f"took {ctx.seconds:.2f}s > {limit:g}s"
                )
            if kind == "rubric":
                return None
            return self._combine([child.check(output, ctx) for child in self.children])  # any, all
        except _Missing as exc:
            return Outcome(self.name, self.kind, "error", reason=str(exc))

    def _done(self, ok: bool, expected: Any, got: Any, reason: str = "") -> Outcome:
        return Outcome(self.name, self.kind, "pass" if ok else "fail", expected, got, reason)

    def _compare(self, got: Any, ctx: Context) -> Outcome:
        """The outcome of a kind that reads the answer, on `got` (the value at `path`)."""
        return _COMPARE[self.kind](self, got, ctx)

    def _equals(self, got: Any, ctx: Context) -> Outcome:
        assert self.value is not None
        expected = self.value.get(ctx)
        if _equal(got, expected):
            return Outcome(self.name, "equals", "pass", expected, got)
        return Outcome(self.name, "equals", "fail", expected, got, "not equal")

    def _one_of(self, got: Any, ctx: Context) -> Outcome:
        fixed = self.choices
        if fixed is not None and type(got) is str and got.strip() in fixed:  # constant text choices
            return Outcome(self.name, "one_of", "pass", self.shown, got)
        choices = [v.get(ctx) for v in self.values]
        ok = any(_equal(got, c) for c in choices)
        return self._done(ok, choices, got, "" if ok else "not one of the choices")

    def _contains(self, got: Any, ctx: Context) -> Outcome:
        kind = self.kind
        text = _text(got)
        needles = self.needles if self.needles is not None else [_text(v.get(ctx)) for v in self.values]
        if kind == "icontains":
            folded = text.casefold()
            wrong = [n for n in needles if n.casefold() not in folded]
            reason = "does not contain (ignoring case) "
        elif kind == "contains":
            wrong = [n for n in needles if n not in text]
            reason = "does not contain "
        else:
            wrong = [n for n in needles if n in text]
            reason = "contains "
        shown = needles[0] if len(needles) == 1 else needles
        if not wrong:
            return Outcome(self.name, kind, "pass", shown, got)
        return Outcome(self.name, kind, "fail", shown, got, reason + ", ".join(repr(n) for n in wrong))

    def _regex(self, got: Any, ctx: Context) -> Outcome:
        assert self.pattern is not None
        if self.pattern.search(got if type(got) is str else _text(got)) is not None:
            return Outcome(self.name, "regex", "pass", self.pattern.pattern, got)
        return Outcome(self.name, "regex", "fail", self.pattern.pattern, got, "no match")

    def _json_schema(self, got: Any, ctx: Context) -> Outcome:
        value = got
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return self._done(False, "JSON", got, "not JSON")
        if self.checker is None:  # made on first use, then kept: a dataset checks it every row
            self.checker = _schema_checker(self.schema)
        problem = self.checker(value)
        return self._done(problem is None, "matches the schema", got, problem or "")

    def _approx(self, got: Any, ctx: Context) -> Outcome:
        assert self.value is not None
        raw = self.value.get(ctx)
        expected, number = _number(raw), _number(got)
        if expected is None:
            # The value itself is the outcome's `expected`: the reason does not quote it (content).
            return Outcome(self.name, "approx", "error", raw, got, "the expected value is not a number")
        if number is None:
            return self._done(False, expected, got, "not a number")
        allowed = self.tolerance + self.relative * abs(expected)
        ok = abs(number - expected) <= allowed + 1e-9
        return self._done(ok, expected, number, "" if ok else f"off by {abs(number - expected):g} (> {allowed:g})")

    def _cel(self, got: Any, ctx: Context) -> Outcome:
        # Only the names the condition reads are handed to it (the interpreter converts each to a
        # CEL value; the compiled closures read them as they are).
        variables: dict[str, Any] = {}
        for name in self.reads:
            if name == "output":
                variables[name] = got
            elif name == "inputs":
                variables[name] = _plain_dict(ctx.inputs)
            elif name == "row":
                variables[name] = _plain_dict(ctx.row)
            elif name in ctx.inputs:
                variables[name] = ctx.inputs[name]
            elif name in ctx.outputs:
                output = ctx.outputs[name]
                variables[name] = {"output": None if output is None else output_value(output)}
        try:
            ok = self.condition.evaluate(variables)
        except ExpressionError as exc:
            return Outcome(self.name, "cel", "error", self.raw["cel"], got, str(exc))
        if ok:
            return Outcome(self.name, "cel", "pass", self.raw["cel"], got)
        return Outcome(self.name, "cel", "fail", self.raw["cel"], got, "false")

    def _combine(self, outcomes: list[Outcome | None]) -> Outcome | None:
        if any(o is None for o in outcomes):
            return None  # a rubric inside: decided with the judge's answers
        done = [o for o in outcomes if o is not None]
        return combine(self, done)


_COMPARE: dict[str, Any] = {
    "equals": Expectation._equals,
    "one_of": Expectation._one_of,
    "contains": Expectation._contains,
    "icontains": Expectation._contains,
    "not_contains": Expectation._contains,
    "regex": Expectation._regex,
    "json_schema": Expectation._json_schema,
    "approx": Expectation._approx,
    "cel": Expectation._cel,
}


def _schema_checker(schema: Any) -> Any:
    """The problem an instance has with `schema`, or None: the closures of `schema_subset` say
    "valid" when they are sure, jsonschema decides (and words the problem) otherwise."""
    from orchestrate.workflow.schema import instance_checker
    from orchestrate.workflow.schema_subset import sure_check

    full = instance_checker(schema)
    sure = sure_check(schema)
    if sure is None:
        return full

    def check(instance: Any) -> str | None:
        return None if sure(instance) else full(instance)

    return check


def _plain_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return values if type(values) is dict else dict(values)


def combine(expectation: Expectation, outcomes: list[Outcome]) -> Outcome:
    """The outcome of an any/all from its children's."""
    statuses = [o.status for o in outcomes]
    failing = [o for o in outcomes if o.status != "pass"]
    reasons = "; ".join(f"{o.name}: {o.reason or o.status}" for o in failing)
    if expectation.kind == "any":  # one pass decides it; else a branch not judged leaves it open
        order = ("pass", "skipped", "error", "fail")
    else:  # every one must pass: a failure decides it
        order = ("fail", "error", "skipped", "pass")
    status = next((s for s in order if s in statuses), "pass")
    return Outcome(expectation.name, expectation.kind, status, None, None, "" if status == "pass" else reasons)


def _tolerance(raw: Any) -> tuple[float, float]:
    if raw is None:
        return 0.0, 0.0
    if isinstance(raw, str):
        match = _PERCENT.fullmatch(raw)
        if match:
            return 0.0, float(match.group(1)) / 100
        return float(raw), 0.0
    return float(raw), 0.0


def _path_parts(path: str) -> tuple[str | int, ...]:
    match = _PATH.fullmatch(path.strip())
    if match is None:
        raise ValueError(path)
    return tuple(name if name else int(index) for name, index in _SEGMENT.findall(match.group(1)))


def _default_name(kind: str, raw: dict[str, Any], position: str) -> str:
    where = f" {raw['path']}" if raw.get("path") else ""
    return f"{position}{' ' if position else ''}{kind}{where}".strip()


def compile_expectations(
    raw: list[dict[str, Any]] | None, *, base_dir: str | Path | None = None, owner: str = ""
) -> list[Expectation]:
    """The expectations of one agent (or the workflow), compiled; the file was validated already."""
    folder = Path(base_dir) if base_dir else None
    return [Expectation(item, base_dir=folder, position=f"{owner}[{i}]") for i, item in enumerate(raw or [])]


def row_columns(document: Any) -> set[str]:
    """The dataset columns (``{row.COLUMN}``, ``row.COLUMN`` in cel) a workflow's expectations read;
    `document` is a workflow file's mapping or a `Workflow`."""
    if not isinstance(document, Mapping):
        document = {"expect": document.expect, "agents": [{"expect": a.expect} for a in document.agents]}
    found: set[str] = set()
    lists = [document.get("expect")]
    lists += [a.get("expect") for a in document.get("agents") or [] if isinstance(a, dict)]
    stack: list[Any] = [item for items in lists if isinstance(items, list) for item in items]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.update(re.findall(r"\brow\.([A-Za-z_][A-Za-z0-9_-]*)", item))
    return found
