"""Checking the `expect:` lists of a workflow document, each problem at its line and column.

Kinds (exactly one per expectation), options that belong to another kind,
paths (field paths, checked against the agent's output_schema, or the
workflow's declared outputs), placeholders (row columns, inputs, agents),
regular expressions, JSON Schemas (inline or a file), CEL syntax and names,
and the judge's model (it must be priced, like an agent's).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.expectations import _OPTION_OF, _PERCENT, KINDS, _path_parts
from orchestrate.workflow.located import Key, Located
from orchestrate.workflow.templates import TemplateError, references

__all__ = ["check_expectations"]


class _Checker:
    def __init__(
        self,
        located: Located,
        inputs: Mapping[str, Any],
        by_name: Mapping[str, Any],
        defaults: Mapping[str, Any],
    ) -> None:
        self.located = located
        self.inputs = inputs
        self.by_name = by_name
        self.defaults = defaults
        self.prices = {k: v for k, v in (located.value.get("prices") or {}).items() if isinstance(v, dict)}
        self.base_dir = Path(located.base_dir) if located.base_dir else _folder(located.file)
        self.problems: list[Problem] = []

    def at(self, where: Key, message: str, *, key: bool = False, hint: str = "") -> None:
        self.problems.append(self.located.at(where, message, key=key, hint=hint))

    def check_list(self, where: Key, items: Any, owner: dict[str, Any] | None, who: str) -> None:
        if not isinstance(items, list):
            return
        for j, item in enumerate(items):
            if isinstance(item, dict):
                self.check_one((*where, j), item, owner, who)

    def check_one(self, where: Key, item: dict[str, Any], owner: dict[str, Any] | None, who: str) -> None:
        kinds = [k for k in KINDS if k in item]
        if not kinds:
            self.at(where, f"{who}: expectation has no kind; give one of {', '.join(KINDS)}")
            return
        if len(kinds) > 1:
            self.at(
                (*where, kinds[1]),
                f"{who}: one kind per expectation, found {kinds[0]!r} and {kinds[1]!r}",
                key=True,
                hint="write them as two items of the expect list",
            )
            return
        kind = kinds[0]
        for option, belongs in _OPTION_OF.items():
            if option in item and kind != belongs:
                self.at((*where, option), f"{who}: {option!r} belongs to {belongs}, not {kind}", key=True)
        if "path" in item and isinstance(item["path"], str):
            self.check_path((*where, "path"), item["path"], owner, who)
        spec = item.get(kind)
        texts: list[tuple[Key, str]] = []
        if kind in ("equals", "approx") and isinstance(spec, str):
            texts.append(((*where, kind), spec))
        elif kind == "one_of" and isinstance(spec, list):
            texts += [((*where, kind, j), v) for j, v in enumerate(spec) if isinstance(v, str)]
        elif kind in ("contains", "icontains", "not_contains"):
            values = [spec] if isinstance(spec, str) else spec if isinstance(spec, list) else []
            texts += [((*where, kind) if isinstance(spec, str) else (*where, kind, j), v) for j, v in enumerate(values)]
        for text_where, text in texts:
            self.check_template(text_where, text, who)
        if kind == "regex" and isinstance(spec, str):
            try:
                re.compile(spec)
            except re.error as exc:
                self.at((*where, kind), f"{who}: regex {spec!r}: {exc.msg} at position {exc.pos}")
        elif kind == "json_schema":
            self.check_json_schema((*where, kind), spec, who)
        elif kind == "approx" and not isinstance(spec, str) and isinstance(spec, (int, float)):
            pass
        elif kind == "cel" and isinstance(spec, str):
            self.check_cel((*where, kind), spec, who)
        elif kind == "rubric":
            self.check_judge(where, item, owner, who)
        elif kind in ("any", "all"):
            self.check_list((*where, kind), spec, owner, who)
        tolerance = item.get("tolerance")
        if isinstance(tolerance, str) and _PERCENT.fullmatch(tolerance) is None:
            self.at(
                (*where, "tolerance"), f"{who}: tolerance {tolerance!r}: give a number (0.01) or a percentage ('1%')"
            )
        elif isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and tolerance < 0:
            self.at((*where, "tolerance"), f"{who}: tolerance must be at least 0")

    def check_path(self, where: Key, path: str, owner: dict[str, Any] | None, who: str) -> None:
        try:
            parts = _path_parts(path)
        except ValueError:
            self.at(
                where,
                f"{who}: path {path!r} is not a field path",
                hint="write output.FIELD or output.list[0].FIELD; use cel: for anything else",
            )
            return
        if owner is None:  # the workflow's outputs
            declared = self.located.value.get("outputs")
            names = sorted(declared) if isinstance(declared, dict) else []
            if parts and isinstance(parts[0], str) and parts[0] not in names:
                close = difflib.get_close_matches(parts[0], names, n=1)
                self.at(
                    where,
                    f"{who}: path {path!r}: the workflow declares no output {parts[0]!r}",
                    hint=f"did you mean {close[0]!r}?" if close else f"declared: {', '.join(names) or 'none'}",
                )
            return
        schema = owner.get("output_schema")
        if not isinstance(schema, dict) or not parts:
            return
        missing = _undeclared_field(schema, parts)
        if missing is not None:
            field_name, known = missing
            close = difflib.get_close_matches(field_name, known, n=1)
            self.at(
                where,
                f"{who}: path {path!r}: the output_schema declares no field {field_name!r}",
                hint=f"did you mean {close[0]!r}?" if close else f"declared: {', '.join(known)}" if known else "",
            )

    def check_template(self, where: Key, text: str, who: str) -> None:
        span = text.count("\n") + 3
        try:
            refs = references(text)
        except TemplateError as exc:
            self.problems.append(self.located.within(where, text[exc.offset :][:40], f"{who}: {exc}", span))
            return
        for ref in refs:
            message = None
            if ref.kind == "name" and ref.name == "row" and "row" not in self.inputs:
                if not ref.path:
                    message = f"{who}: {ref.describe()}: say which column, e.g. {{row.expected_account}}"
            elif ref.kind == "input" or (ref.kind == "name" and ref.name in self.inputs):
                if ref.name not in self.inputs:
                    declared = ", ".join(sorted(self.inputs)) or "none"
                    message = f"{who}: {ref.describe()} names unknown input {ref.name!r} (declared inputs: {declared})"
            elif ref.name not in self.by_name:
                close = difflib.get_close_matches(ref.name, sorted([*self.inputs, *self.by_name, "row"]), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                message = f"{who}: {ref.describe()} names no input, agent or row column{hint}"
            if message:
                self.problems.append(self.located.within(where, ref.describe(), message, span))

    def check_json_schema(self, where: Key, spec: Any, who: str) -> None:
        from orchestrate.workflow.schema import check_schema

        if isinstance(spec, str):
            path = (self.base_dir or Path.cwd()) / spec
            try:
                schema = json.loads(path.read_text("utf-8"))
            except OSError as exc:
                self.at(where, f"{who}: json_schema: cannot read {str(path)!r}: {exc.strerror or exc}")
                return
            except ValueError as exc:
                self.at(where, f"{who}: json_schema: {str(path)!r} is not JSON: {exc}")
                return
        else:
            schema = spec
        found = check_schema(schema)
        if found:
            self.at(where, f"{who}: json_schema: {found[0]}")

    def check_cel(self, where: Key, text: str, who: str) -> None:
        from orchestrate.workflow.expressions import ExpressionError, compile_condition

        try:
            condition = compile_condition(text)
        except ExpressionError as exc:
            self.at(where, f"{who}: cel: {exc}")
            return
        for use in condition.names:
            if use.name in ("output", "row", "inputs") or use.name in self.inputs or use.name in self.by_name:
                if use.name == "inputs" and use.path and use.path[0] not in self.inputs:
                    self.at(where, f"{who}: cel: inputs.{use.path[0]} names unknown input {use.path[0]!r}")
                continue
            close = difflib.get_close_matches(use.name, sorted([*self.inputs, *self.by_name, "output", "row"]), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "cel sees output, row, inputs and agents"
            self.at(where, f"{who}: cel: {use.name!r} names nothing an expectation can read", hint=hint)

    def check_judge(self, where: Key, item: dict[str, Any], owner: dict[str, Any] | None, who: str) -> None:
        judge: dict[str, Any] = item["judge"] if isinstance(item.get("judge"), dict) else {}
        model = judge.get("model")
        where_model: Key = (*where, "judge", "model")
        if model is None and owner is not None and "function" not in owner:
            own: dict[str, Any] = owner["llm_config"] if isinstance(owner.get("llm_config"), dict) else {}
            inherited: dict[str, Any] = (
                self.defaults["llm_config"] if isinstance(self.defaults.get("llm_config"), dict) else {}
            )
            model = judge.get("price_as") or own.get("model", inherited.get("model"))
            where_model = (*where, "rubric")
        if model is None:
            self.at(
                (*where, "rubric"), f"{who}: rubric has no judge model", hint="give judge: {model: claude-haiku-4-5}"
            )
            return
        if not isinstance(model, str):
            return
        self.check_judge_residency(where_model, judge, owner, who)
        from orchestrate.llm.presets import base_model
        from orchestrate.llm.prices import closest_model, find_price
        from orchestrate.llm.providers import infer_provider

        priced: str = judge["price_as"] if isinstance(judge.get("price_as"), str) else model
        provider = str(self.judge_route(judge, owner).get("provider") or infer_provider(priced))
        # A Bedrock profile (eu.anthropic.claude-...) is priced as the model it names, as an agent's is.
        if find_price(priced, self.prices) is None and find_price(base_model(provider, priced), self.prices) is None:
            close = closest_model(priced, self.prices)
            hint = f" (unknown model; did you mean {close}?)" if close else ""
            self.at(
                where_model,
                f"{who}: no price known for judge model {priced!r}{hint}; add it under 'prices:'",
            )

    def judge_route(self, judge: dict[str, Any], owner: dict[str, Any] | None) -> dict[str, Any]:
        """The judge's llm_config as the run builds it (its own, or the owner's with `judge:` over it)."""
        from orchestrate.workflow.expectations import judge_llm

        inherited = self.defaults["llm_config"] if isinstance(self.defaults.get("llm_config"), dict) else {}
        own = owner["llm_config"] if owner is not None and isinstance(owner.get("llm_config"), dict) else {}
        return judge_llm(judge, {**inherited, **own})

    def check_judge_residency(self, where: Key, judge: dict[str, Any], owner: dict[str, Any] | None, who: str) -> None:
        """A judge (and its fallbacks) outside the workflow's residency is an error, like an agent's route."""
        from orchestrate.llm.fallbacks import chain_of
        from orchestrate.llm.providers import PROVIDERS, infer_provider
        from orchestrate.llm.residency import RESIDENCIES, outside

        doc = self.located.value
        residency = doc.get("residency") or self.defaults.get("residency")
        if residency not in RESIDENCIES:
            return
        for route in chain_of(self.judge_route(judge, owner)):
            provider = route.get("provider") or infer_provider(str(route.get("model") or ""))
            if provider in PROVIDERS and provider != "simulated":
                why = outside(str(residency), str(provider), route)
                if why is not None:
                    self.at(where, f"{who}: judge {why}")
                    return


def _undeclared_field(schema: dict[str, Any], parts: tuple[str | int, ...]) -> tuple[str, list[str]] | None:
    """The first field of a path that an output_schema pins down as absent, with the fields it has.

    Only closed objects (``properties`` and no ``additionalProperties``/``patternProperties``) and
    arrays' ``items`` are followed; anything looser is taken on trust.
    """
    node: Any = schema
    for part in parts:
        if not isinstance(node, dict):
            return None
        if isinstance(part, int):
            node = node.get("items")
            continue
        properties = node.get("properties")
        if not isinstance(properties, dict):
            return None
        if part in properties:
            node = properties[part]
        elif node.get("additionalProperties") is not None or node.get("patternProperties"):
            return None if node.get("additionalProperties") is not False else (part, sorted(properties))
        else:
            return part, sorted(properties)
    return None


def _folder(file: str) -> Path | None:
    path = Path(file)
    return path.parent if path.suffix in (".yaml", ".yml") else None


def check_expectations(
    located: Located,
    agents: list[tuple[int, dict[str, Any]]],
    inputs: Mapping[str, Any],
    by_name: Mapping[str, Any],
) -> list[Problem]:
    """Every problem with the `expect:` lists of a document, each at its line and column."""
    doc = located.value
    defaults = doc.get("defaults") if isinstance(doc.get("defaults"), dict) else {}
    checker = _Checker(located, inputs, by_name, defaults)
    for i, agent in agents:
        checker.check_list(("agents", i, "expect"), agent.get("expect"), agent, f"agent {agent['name']!r}: expect")
    checker.check_list(("expect",), doc.get("expect"), None, "expect")
    if isinstance(doc.get("expect"), list) and doc["expect"]:
        for i, agent in agents:  # the workflow's outcomes and judge are reported as "outputs"
            if agent.get("name") == "outputs":
                checker.at(
                    ("agents", i, "name"),
                    "agent name 'outputs' is taken when the workflow has expect: its outcomes are "
                    "reported, and its judge's calls booked, as 'outputs' ('outputs.judge')",
                    hint="rename the agent",
                )
    return checker.problems
