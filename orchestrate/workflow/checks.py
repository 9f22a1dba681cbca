"""What a workflow document must satisfy beyond YAML: the schema, then the semantic checks.

The checks work on plain values with their positions (`Located`), wherever the
values came from (a YAML file, or a mapping given to the Python API), and
report every problem at once, each at the line and column of the offending
node: duplicate agent names, unknown dependencies, cycles, template references
to unknown inputs or to agents that are not upstream, input defaults of the
wrong type, models without a price, output schemas that are not JSON Schemas.
"""

from __future__ import annotations

import difflib
from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.graph import DependencyGraph
from orchestrate.workflow.located import Key, Located, path_text

__all__ = ["INPUT_TYPES", "Key", "Located", "check_document", "path_text"]


def check_document(located: Located) -> list[Problem]:
    """The schema, then the semantic checks; every problem, in file order.

    A misspelled key (`dependancies`) is one problem: it is reported with the
    key meant, and the rest of the checks read the file as if it were spelled
    right, so no follow-on errors are reported for it.
    """
    from orchestrate.workflow.schema import misspelled_keys, schema_errors

    fixes = misspelled_keys(located.value)
    problems = [
        located.at(
            (*parent, wrong),
            f"unknown key {wrong!r}" + (f" in {path_text(parent)}" if parent else ""),
            key=True,
            hint=f"did you mean {right!r}?",
        )
        for parent, wrong, right in fixes
    ]
    if fixes:
        located = located.renamed(fixes)
    problems += [
        located.at(
            path[:-1] if path and path[-1] == "<key>" else path,
            message,
            key=bool(path) and path[-1] == "<key>",
            hint=hint,
        )
        for path, message, hint in schema_errors(located.value)
    ]
    problems += _non_finite(located)
    problems += _semantic(located)
    from orchestrate.workflow.capability_checks import capability_problems

    problems += capability_problems(located)[0]
    from orchestrate.workflow.route_checks import route_problems

    problems += route_problems(located)
    return _one_per_value(problems)


def _one_per_value(problems: list[Problem]) -> list[Problem]:
    """A value the schema's pattern refuses (``does not match ^...$``) and a check of ours explains
    in words is reported once, with the words: never a contradictory pair for one value."""
    explained = {(p.line, p.column) for p in problems if " does not match " not in p.message}
    return [p for p in problems if " does not match " not in p.message or (p.line, p.column) not in explained]


def _non_finite(located: Located) -> list[Problem]:
    """NaN and Infinity (``.nan``, ``.inf``) validate against the schema but switch budgets,
    prices and limits off (NaN compares false with everything): refused wherever they are."""
    from orchestrate.finite import non_finite_paths

    return [
        located.at(
            path,
            f"{path_text(path) or 'value'}: {_yaml_spelling(located.value, path)} is "
            "not a finite number; numbers must be finite (no .nan or .inf)",
        )
        for path in non_finite_paths(located.value)
    ]


def _yaml_spelling(document: Any, path: Key) -> str:
    value: Any = document
    for part in path:
        value = value[part]
    if value != value:
        return ".nan"
    return ".inf" if value > 0 else "-.inf"


def _agents(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    agents = doc.get("agents")
    if not isinstance(agents, list):
        return []
    return [(i, a) for i, a in enumerate(agents) if isinstance(a, dict) and isinstance(a.get("name"), str)]


def _semantic(located: Located) -> list[Problem]:
    doc = located.value
    problems: list[Problem] = []
    agents = _agents(doc)
    first_index: dict[str, int] = {}
    for i, agent in agents:
        name = agent["name"]
        if name in first_index:
            line = located.values.get(("agents", first_index[name], "name"), (0, 0))[0]
            problems.append(located.at(("agents", i, "name"), f"duplicate agent name {name!r} (first on line {line})"))
        else:
            first_index[name] = i
    names = set(first_index)
    deps_of: dict[str, list[str]] = {}
    for i, agent in agents:
        deps = agent.get("dependencies")
        if not isinstance(deps, list):
            deps = []
        known = []
        for j, dep in enumerate(deps):
            if not isinstance(dep, str):
                continue
            if dep == agent["name"]:
                problems.append(located.at(("agents", i, "dependencies", j), f"agent {dep!r} depends on itself"))
            elif dep not in names:
                close = difflib.get_close_matches(dep, sorted(names), n=1)
                problems.append(
                    located.at(
                        ("agents", i, "dependencies", j),
                        f"agent {agent['name']!r} depends on unknown agent {dep!r}",
                        hint=f"did you mean {close[0]!r}?" if close else "",
                    )
                )
            else:
                known.append(dep)
        if first_index.get(agent["name"]) == i:
            deps_of[agent["name"]] = known
    cycle = DependencyGraph(deps_of).find_cycle()
    if cycle:
        head = cycle[0]
        problems.append(
            located.at(("agents", first_index[head], "dependencies"), f"dependency cycle: {' -> '.join(cycle)}")
        )
    upstream = _upstream(deps_of) if not cycle else {n: set() for n in deps_of}
    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else {}
    problems += _check_inputs(located, inputs)
    defaults = doc.get("defaults") if isinstance(doc.get("defaults"), dict) else {}
    prices = doc.get("prices") if isinstance(doc.get("prices"), dict) else {}
    by_name = {name: doc["agents"][i] for name, i in first_index.items()}
    for i, agent in agents:
        # {item} and {item_index} are names like inputs inside an agent with foreach.
        own_inputs = {"item": {}, "item_index": {}, **inputs} if "foreach" in agent else inputs
        problems += _check_template(located, i, agent, own_inputs, by_name, upstream, cycle)
        if "function" not in agent:  # a code step has no model
            problems += _check_model(located, i, agent, defaults, prices)
        schema = agent.get("output_schema")
        if isinstance(schema, dict):
            from orchestrate.workflow.schema import check_schema

            found = check_schema(schema)
            if found:
                reason, inner = found
                problems.append(located.at(("agents", i, "output_schema", *inner), f"output_schema: {reason}"))
        if "module" not in agent and "module" not in defaults:
            problems.append(
                located.at(
                    ("agents", i), f"agent {agent['name']!r}: missing required key 'module' (or set defaults.module)"
                )
            )
    from orchestrate.workflow.language_checks import check_language

    problems += check_language(located, agents, inputs, by_name, upstream, bool(cycle))
    from orchestrate.workflow.expectation_checks import check_expectations

    problems += check_expectations(located, agents, inputs, by_name)
    return problems


def _upstream(deps_of: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every agent's transitive dependencies (the graph has no cycle)."""
    memo: dict[str, set[str]] = {}
    order: list[str] = []
    seen: set[str] = set()
    for root in deps_of:  # iterative post-order, so deep chains do not hit the recursion limit
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if ready:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((d, False) for d in deps_of.get(node, []) if d not in seen)
    for node in order:
        total: set[str] = set()
        for dep in deps_of.get(node, []):
            total.add(dep)
            total |= memo.get(dep, set())
        memo[node] = total
    return memo


INPUT_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _check_inputs(located: Located, inputs: dict[str, Any]) -> list[Problem]:
    problems = []
    for name, spec in inputs.items():
        if not isinstance(spec, dict) or "default" not in spec:
            continue
        kind = spec.get("type", "string")
        expected = INPUT_TYPES.get(kind)
        value = spec["default"]
        if expected is None:
            continue
        wrong = not isinstance(value, expected) or (kind in ("number", "integer") and isinstance(value, bool))
        if wrong:
            problems.append(
                located.at(("inputs", name, "default"), f"input {name!r}: default {value!r} is not of type {kind}")
            )
    return problems


def _check_template(
    located: Located,
    i: int,
    agent: dict[str, Any],
    inputs: dict[str, Any],
    by_name: dict[str, Any],
    upstream: dict[str, set[str]],
    cycle: list[str] | None,
) -> list[Problem]:
    from orchestrate.workflow.templates import TemplateError, references

    template = agent.get("prompt_template")
    if not isinstance(template, str):
        return []
    where = ("agents", i, "prompt_template")
    name = agent["name"]
    span = template.count("\n") + 3

    def at(needle: str, message: str, hint: str = "") -> Problem:
        return located.within(where, needle, message, span, hint=hint)

    try:
        refs = references(template)
    except TemplateError as exc:
        line = template[exc.offset :].split("\n", 1)[0]
        brace = line.find("}", 1)
        needle = line[: brace + 1] if brace > 0 else line[:40]
        return [at(needle, f"agent {name!r}: prompt_template: {exc}", _brace_hint(template, exc.offset))]
    problems = []
    ups = upstream.get(name, set())
    for ref in refs:
        shown = ref.describe()
        if ref.kind == "input" or (ref.kind == "name" and ref.name in inputs):
            if ref.name not in inputs:
                declared = ", ".join(sorted(inputs)) or "none"
                problems.append(
                    at(shown, f"agent {name!r}: {shown} names unknown input {ref.name!r} (declared inputs: {declared})")
                )
            continue
        if ref.name not in by_name:
            close = difflib.get_close_matches(ref.name, sorted([*inputs, *by_name]), n=1)
            problems.append(
                at(
                    shown,
                    f"agent {name!r}: {shown} names no input or agent",
                    f"did you mean {close[0]!r}?" if close else _brace_hint(template, ref.offset),
                )
            )
            continue
        if cycle:
            continue
        if ref.name not in ups:
            problems.append(
                at(
                    shown,
                    f"agent {name!r}: {shown} uses agent {ref.name!r}, which is not upstream",
                    f"add {ref.name!r} to its dependencies",
                )
            )
            continue
        target = by_name[ref.name]
        schema = target.get("output_schema")
        json_output = isinstance(schema, dict) or "function" in target or "foreach" in target
        if ref.path and ref.path[0] != "text" and not json_output:
            problems.append(
                at(
                    shown,
                    f"agent {name!r}: {shown}: agent {ref.name!r} has no output_schema, so its output has only 'text'",
                    f"write {{{ref.name}.output}} for its text, or give {ref.name!r} an output_schema",
                )
            )
        elif ref.path and ref.path[0] != "text" and isinstance(schema, dict):
            missing = _undeclared(schema, ref.path[1:] if ref.path[0] == "json" else ref.path)
            if missing is not None:
                field, known = missing
                close = difflib.get_close_matches(field, known, n=1)
                problems.append(
                    at(
                        shown,
                        f"agent {name!r}: {shown}: the output_schema of {ref.name!r} declares no field {field!r}",
                        f"did you mean {close[0]!r}?" if close else f"declared: {', '.join(known)}" if known else "",
                    )
                )
    return problems


def _undeclared(schema: dict[str, Any], path: tuple[str, ...]) -> tuple[str, list[str]] | None:
    """The first key of `path` that `schema` does not declare, with the keys it does; else None.

    Only what the schema pins down is checked: an object with `properties` (and
    no `additionalProperties` schema or `true`), an array's `items`. Anything
    looser (no properties, `$ref`, `anyOf`) is taken on trust.
    """
    node: Any = schema
    for key in path:
        if not isinstance(node, dict):
            return None
        if key.isdigit() and isinstance(node.get("items"), dict):
            node = node["items"]
            continue
        properties = node.get("properties")
        if not isinstance(properties, dict):
            return None
        if key in properties:
            node = properties[key]
            continue
        extra = node.get("additionalProperties")
        if extra is True or isinstance(extra, dict) or node.get("patternProperties"):
            return None
        return key, sorted(properties)
    return None


def _brace_hint(template: str, offset: int) -> str:
    """For text that looks like JSON in a prompt: how to write literal braces."""
    tail = template[offset : offset + 40].lstrip("{").lstrip()
    if tail.startswith(('"', "'", "}")) or ":" in tail.split("}", 1)[0] or template[offset : offset + 1] == "}":
        return "a prompt holding JSON must double its braces: write {{ and }} for { and }"
    return ""


def _check_model(
    located: Located, i: int, agent: dict[str, Any], defaults: dict[str, Any], prices: dict[str, Any]
) -> list[Problem]:
    from orchestrate.llm.prices import closest_model, find_price

    own: dict[str, Any] = agent["llm_config"] if isinstance(agent.get("llm_config"), dict) else {}
    inherited: dict[str, Any] = defaults["llm_config"] if isinstance(defaults.get("llm_config"), dict) else {}
    model = own.get("model", inherited.get("model"))
    if model is None:
        return [
            located.at(
                ("agents", i),
                f"agent {agent['name']!r} has no llm_config.model (set it on the agent or in defaults.llm_config)",
            )
        ]
    if not isinstance(model, str):
        return []
    from orchestrate.llm.presets import base_model
    from orchestrate.llm.providers import infer_provider

    valid_prices = {k: v for k, v in prices.items() if isinstance(v, dict)}
    provider = own.get("provider", inherited.get("provider")) or infer_provider(model)
    price_as = own.get("price_as", inherited.get("price_as"))
    key, priced = ("price_as", price_as) if isinstance(price_as, str) else ("model", model)
    if find_price(priced, valid_prices) is None and find_price(base_model(str(provider), priced), valid_prices) is None:
        where = ("agents", i, "llm_config", key) if key in own else ("defaults", "llm_config", key)
        close = closest_model(priced, valid_prices)
        hint = f" (unknown model; did you mean {close}?)" if close else ""
        return [
            located.at(
                where,
                f"no price known for model {priced!r}{hint}; add it under 'prices:' (USD per 1K tokens: input, output)",
            )
        ]
    return []
