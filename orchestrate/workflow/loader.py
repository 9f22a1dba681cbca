"""Reading workflow files: safe YAML with positions, the schema, then the semantic checks.

The only module that imports yaml. A file goes through three gates, and every
problem found at a gate is reported at once, each at its line and column:

1. bytes: a size cap, UTF-8 (a BOM is fine);
2. YAML: parsed with the safe composer, then turned into plain values by our
   own walk, which refuses tags that construct objects, duplicate keys, merge
   keys, and alias expansions that grow far past the file (a "billion laughs"
   is refused in milliseconds, not expanded);
3. the JSON Schema `schemas/workflow.schema.json` (keys, types, ranges, enums),
   then the semantic checks of `orchestrate.workflow.checks` (duplicate agent names,
   unknown dependencies, cycles, template references, input defaults, models
   without a price, output schemas that are not JSON Schemas).

Only then is a `Workflow` built, with `defaults` merged into each agent
(an agent's own keys win; `llm_config` and `retry` are merged key by key).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from orchestrate.errors import Problem, UserInputError, WorkflowValidationError
from orchestrate.finite import first_non_finite, loads_strict
from orchestrate.fsutil import TooLargeError, read_bytes_capped
from orchestrate.redaction import CREDENTIAL_VARIABLE
from orchestrate.workflow.cache_checks import cache_warnings
from orchestrate.workflow.capability_checks import capability_problems
from orchestrate.workflow.checks import INPUT_TYPES, check_document
from orchestrate.workflow.language_checks import base_dir_of, read_prompt_file
from orchestrate.workflow.located import Key, Located, path_text
from orchestrate.workflow.models import Agent, Workflow

__all__ = [
    "MAX_FILE_BYTES",
    "bind_inputs",
    "check_document",
    "check_inputs",
    "find_workflow_files",
    "load_workflow",
    "load_workflow_text",
    "validate_file",
    "workflow_from_dict",
]

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
_ALIAS_GROWTH = 10  # expanded nodes may be at most this many times the distinct ones...
_ALIAS_ALLOWANCE = 10_000  # ...plus this many

_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}


# The C parser when libyaml is there (several times faster), the pure-Python one otherwise.
# Either is used only to compose nodes; objects are never constructed by it.
_SafeComposer = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YAMLProblem(Exception):
    def __init__(self, line: int, column: int, message: str) -> None:
        self.line, self.column, self.message = line, column, message
        super().__init__(message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns composed nodes into plain values, recording positions and refusing what is unsafe."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.scalars = yaml.constructor.SafeConstructor()
        self.expanded = 0
        self.distinct: set[int] = set()
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Key, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _YAMLProblem(*_mark(node), f"nesting deeper than {MAX_DEPTH} levels")
        self.expanded += 1
        self.distinct.add(id(node))
        if self.expanded > _ALIAS_ALLOWANCE and self.expanded > _ALIAS_GROWTH * len(self.distinct):
            raise _YAMLProblem(
                *_mark(node),
                "alias expansion is far larger than the file (a 'billion laughs' document?); refusing to expand it",
            )
        self.located.values.setdefault(path, _mark(node))
        if node.tag not in _PLAIN_TAGS:
            raise _YAMLProblem(
                *_mark(node), f"YAML tag {node.tag!r} is not allowed; workflow files hold plain data only"
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.tag.endswith(":timestamp"):
            return node.value  # dates stay the text the user wrote ("2026-10-31")
        return self.scalars.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: Key, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _YAMLProblem(
                    *_mark(key_node), "merge keys ('<<') are not supported; put shared settings under 'defaults:'"
                )
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                raise _YAMLProblem(*_mark(key_node), "mapping keys must be plain text")
            key = str(self.scalars.construct_object(key_node))
            child = (*path, key)
            if key in result:
                line, col = _mark(key_node)
                first = self.located.keys.get(child, (0, 0))[0]
                self.problems.append(
                    Problem(
                        self.located.file,
                        line,
                        col,
                        f"duplicate key {key!r} (first defined on line {first})",
                        path_text(child),
                    )
                )
                continue
            self.located.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result


def parse_yaml(
    text: str, file: str, *, what: str = "a workflow (a mapping with 'name' and 'agents')"
) -> tuple[Located | None, list[Problem]]:
    """Safe YAML to plain values with positions; problems instead of exceptions. The document
    must be a mapping: `what` says which, in the problem when it is not."""
    located = Located(None, file, lines=text.splitlines())
    try:
        node = yaml.compose(text, Loader=_SafeComposer)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # point at what was left open (a quote, a bracket), not at the end
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        return None, [Problem(file, line, col, f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 1, 1, f"invalid YAML: {exc}")]
    except RecursionError:
        return None, [Problem(file, 1, 1, "invalid YAML: nesting too deep")]
    if node is None:
        return None, [Problem(file, 1, 1, f"the file is empty; expected {what}")]
    builder = _Builder(located)
    try:
        located.value = builder.build(node, ())
    except _YAMLProblem as exc:
        return None, [Problem(file, exc.line, exc.column, exc.message)]
    except RecursionError:
        return None, [Problem(file, 1, 1, "invalid YAML: nesting too deep")]
    if not isinstance(located.value, dict):
        line, col = _mark(node)
        return None, [
            Problem(
                file,
                line,
                col,
                f"expected {what}, found {type(located.value).__name__}",
            )
        ]
    return located, builder.problems


def read_text(path: Path) -> tuple[str | None, list[Problem]]:
    """The file as text, or the problem with reading it (at most the size limit is ever read)."""
    file = str(path)
    try:
        if path.is_dir():
            return None, [Problem(file, 1, 1, "is a folder, not a workflow file")]
        data = read_bytes_capped(path, MAX_FILE_BYTES)
    except TooLargeError:
        return None, [Problem(file, 1, 1, f"file is over {MAX_FILE_BYTES:,} bytes; the limit is {MAX_FILE_BYTES:,}")]
    except OSError as exc:
        return None, [Problem(file, 1, 1, f"cannot read: {exc.strerror or exc}")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [Problem(file, line, col, f"not UTF-8 text (byte 0x{data[exc.start]:02x})")]


# -- building ----------------------------------------------------------------


_AGENT_DEFAULTS = ("module", "max_retries", "timeout", "cost_limit", "priority")


def _prompt_text(base_dir: Path | None, name: str) -> str:
    path, text, problem = read_prompt_file(base_dir, name)
    if text is None:  # checked at validation; the file changed since
        raise UserInputError(f"{path}: {problem}")
    return text


def _build(doc: dict[str, Any], source: str | None, folder: str | Path | None = None) -> Workflow:
    defaults = doc.get("defaults") or {}
    base_dir = Path(folder) if folder is not None else (base_dir_of(source) if source else None)
    tags = list(doc.get("tags") or [])
    agents = []
    for raw in doc["agents"]:
        values: dict[str, Any] = {
            k: raw[k] if k in raw else defaults[k] for k in _AGENT_DEFAULTS if k in raw or k in defaults
        }
        retry = {**(defaults.get("retry") or {}), **(raw.get("retry") or {})} or None
        language = {k: raw[k] for k in ("function", "when", "foreach", "max_items", "approval") if k in raw}
        if "function" in raw:  # a code step: no model, no prompt
            llm: dict[str, Any] = {}
            prompt = ""
        else:
            llm = {**(defaults.get("llm_config") or {}), **(raw.get("llm_config") or {})}
            llm.setdefault("temperature", None)  # in a file, no temperature means none is sent
            prompt = raw["prompt_template"] if "prompt_template" in raw else _prompt_text(base_dir, raw["prompt_file"])
            if "system_file" in raw:
                llm["system"] = _prompt_text(base_dir, raw["system_file"])
            cache = {**(defaults.get("cache") or {}), **(llm.get("cache") or {}), **(raw.get("cache") or {})}
            if cache:
                llm["cache"] = cache  # prompt caching travels with the model settings
        agents.append(
            Agent(
                name=raw["name"],
                description=raw.get("description", ""),
                llm_config=llm,
                prompt_template=prompt,
                tools=list(raw.get("tools") or []),
                dependencies=list(raw.get("dependencies") or []),
                output_schema=raw.get("output_schema"),
                retry=retry,
                arguments=dict(raw.get("arguments") or {}),
                tags=[*tags, *(t for t in raw.get("tags") or [] if t not in tags)],
                expect=list(raw.get("expect") or []),
                **language,
                **values,
            )
        )
    top = {
        k: doc[k]
        for k in ("max_parallel_agents", "cost_budget", "timeout", "allow_partial_completion", "budget_scope")
        if k in doc
    }
    workflow = Workflow(
        name=doc["name"],
        description=doc.get("description", ""),
        agents=agents,
        inputs=dict(doc.get("inputs") or {}),
        defaults=dict(defaults),
        rate_limits=dict(doc.get("rate_limits") or {}),
        prices=dict(doc.get("prices") or {}),
        capabilities=dict(doc.get("capabilities") or {}),
        outputs=dict(doc.get("outputs") or {}),
        tags=tags,
        residency=doc.get("residency") or defaults.get("residency"),
        expect=list(doc.get("expect") or []),
        data_protection=dict(doc.get("data_protection") or defaults.get("data_protection") or {}),
        audit=dict(doc.get("audit") or {}),
        **top,
    )
    workflow.source = source
    workflow.base_dir = str(base_dir) if base_dir is not None else None
    return workflow


def load_workflow_text(
    text: str, *, file: str = "<string>", inputs: dict[str, Any] | None = None, bind: bool = True
) -> Workflow:
    """A workflow from YAML text; raises WorkflowValidationError with every problem.

    With `bind` false the inputs are left unbound (a dataset binds them per row).
    """
    located, problems = parse_yaml(text, file)
    if located is not None:
        problems += check_document(located)
    if problems or located is None:
        raise WorkflowValidationError(sorted(problems, key=lambda p: (p.line, p.column)))
    workflow = _build(located.value, file)
    if bind:
        bind_inputs(workflow, inputs or {})
    return workflow


def load_workflow(path: str | Path, *, inputs: dict[str, Any] | None = None, bind: bool = True) -> Workflow:
    """Read, validate and build the workflow at `path`, binding `inputs` (name -> value).

    Raises:
        WorkflowValidationError: with every problem, each at its line and column.
        UserInputError: when an input is unknown, missing or of the wrong type.
    """
    path = Path(path)
    text, problems = read_text(path)
    if text is None:
        raise WorkflowValidationError(problems)
    return load_workflow_text(text, file=str(path), inputs=inputs, bind=bind)


def workflow_from_dict(
    data: dict[str, Any],
    *,
    inputs: dict[str, Any] | None = None,
    source: str = "<dict>",
    base_dir: str | Path | None = None,
) -> Workflow:
    """A workflow from an already-parsed mapping (e.g. JSON), checked like a file.

    `base_dir` is where the modules of code steps and tools and the prompt files it
    names are found first (a file's own folder when `source` is a file).
    """
    located = Located(data, source, base_dir=str(base_dir) if base_dir is not None else None)
    problems = check_document(located)
    if problems:
        raise WorkflowValidationError(problems)
    workflow = _build(data, source, base_dir)
    bind_inputs(workflow, inputs or {})
    return workflow


def validate_file(path: Path) -> list[Problem]:
    """Every problem of one workflow file, warnings included (severity ``warning``); the
    file is valid when none is an error."""
    text, problems = read_text(path)
    if text is None:
        return problems
    located, problems = parse_yaml(text, str(path))
    if located is not None:
        problems += check_document(located)
        problems += capability_problems(located)[1]  # warnings: reported, never fatal
        problems += cache_warnings(located)  # warnings too: a prefix the provider cannot cache
        from orchestrate.workflow.privacy_checks import personal_data_warnings

        problems += personal_data_warnings(located)
    return sorted(problems, key=lambda p: (p.line, p.column))


def find_workflow_files(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for *.yaml and *.yml."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(path)
    return found


# -- inputs ------------------------------------------------------------------


def _coerce(name: str, kind: str, value: Any) -> Any:
    # Only a float, or a float inside a list or object, can be NaN or Infinity (the common
    # values, strings and ints, skip the walk: a dataset binds every row this way).
    bad = first_non_finite(value) if isinstance(value, (float, dict, list, tuple)) else None
    if bad is not None:
        where = "".join(f"[{p!r}]" for p in bad)
        raise UserInputError(f"input {name!r}{where}: not a finite number (NaN and Infinity are refused)")
    if not isinstance(value, str) or kind == "string":
        expected = INPUT_TYPES.get(kind, object)
        ok = isinstance(value, expected) and not (kind in ("number", "integer") and isinstance(value, bool))
        if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise UserInputError(f"input {name!r}: expected {kind}, got {json.dumps(value)}")
        return value
    text = value.strip()
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            if not math.isfinite(number):
                raise UserInputError(f"input {name!r}: {value!r} is not a finite number (NaN and Infinity are refused)")
            return number
        if kind == "boolean":
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(text)
        parsed = loads_strict(text)
    except ValueError:
        raise UserInputError(f"input {name!r}: {value!r} is not a valid {kind}") from None
    if not isinstance(parsed, INPUT_TYPES[kind]):
        raise UserInputError(f"input {name!r}: {value!r} is not a JSON {kind}")
    return parsed


def bind_inputs(workflow: Workflow, values: dict[str, Any]) -> Workflow:
    """Check `values` against the declared inputs, convert them, fill in defaults."""
    workflow.input_values = check_inputs(workflow.name, workflow.inputs, values)
    return workflow


def check_inputs(name: str, declared: dict[str, dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The values of workflow `name`'s `declared` inputs: `values` converted, defaults filled in.

    Raises:
        UserInputError: For an unknown or missing input, or a value of the wrong type.
    """
    unknown = sorted(set(values) - set(declared))
    if unknown:
        names = ", ".join(sorted(declared)) or "none"
        raise UserInputError(f"unknown input {unknown[0]!r} for workflow {name!r} (declared inputs: {names})")
    bound: dict[str, Any] = {}
    for input_name, spec in declared.items():
        kind = spec.get("type", "string")
        variable = spec.get("env")
        if variable and CREDENTIAL_VARIABLE.search(str(variable)):
            raise UserInputError(
                f"workflow {name!r}, input {input_name!r}: env: {variable} names a credential; "
                "keys, tokens and passwords cannot be inputs (they would reach prompts, files and reports)"
            )
        if input_name in values:
            bound[input_name] = _coerce(input_name, kind, values[input_name])
        elif variable and variable in os.environ:
            try:
                bound[input_name] = _coerce(input_name, kind, os.environ[variable])
            except UserInputError as exc:
                raise UserInputError(f"{exc} (from the environment variable {variable})") from None
        elif "default" in spec:
            bound[input_name] = spec["default"]
        elif variable:
            raise UserInputError(
                f"workflow {name!r} needs input {input_name!r}: set the "
                f"environment variable {variable} or pass --input {input_name}=VALUE"
            )
        else:
            raise UserInputError(f"workflow {name!r} needs input {input_name!r}: pass --input {input_name}=VALUE")
    return bound
