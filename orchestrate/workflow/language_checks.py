"""Semantic checks of the workflow language's constructs, each problem at its line and column.

Kept apart from `checks` (the format's original checks): code steps
(`function`, `arguments`, modules found without importing them), `when`
conditions (CEL: syntax, names), `foreach` / `max_items`, `approval`
messages, `prompt_file` / `system_file`, workflow `outputs`, and `tools`
modules.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from orchestrate.errors import Problem
from orchestrate.fsutil import TooLargeError, read_bytes_capped
from orchestrate.workflow.located import Located
from orchestrate.workflow.modules import locate
from orchestrate.workflow.templates import Reference, TemplateError, references

__all__ = ["ITEM_NAMES", "base_dir_of", "check_language", "read_prompt_file"]

ITEM_NAMES = ("item", "item_index")
MAX_PROMPT_FILE_BYTES = 1024 * 1024
_LLM_ONLY = ("prompt_template", "prompt_file", "system_file", "llm_config", "tools")


def base_dir_of(file: str) -> Path | None:
    """The folder of a workflow file, where its modules and prompt files are found first."""
    path = Path(file)
    return path.parent if path.name and path.suffix in (".yaml", ".yml") or path.is_file() else None


def read_prompt_file(base_dir: Path | None, name: str) -> tuple[Path, str | None, str | None]:
    """(path, text, problem) of a prompt file named relative to the workflow's folder.

    The file must stay inside that folder: an absolute path, a ``..`` step or a
    symlink that leads out is refused (a prompt is sent to the provider and kept in
    the reports: ``/proc/self/environ`` would send every key). Its size is checked
    before it is read, and it is read no further than the limit.
    """
    root = base_dir or Path.cwd()
    path = root / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        return path, None, f"{name!r} is outside the workflow's folder (give a path inside {str(root)!r})"
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        return path, None, f"{name!r} leads outside the workflow's folder {str(root)!r} (a symlink)"
    try:
        if not path.is_file():
            return path, None, f"no such file {str(path)!r}"
        size = path.stat().st_size
        if size > MAX_PROMPT_FILE_BYTES:
            return path, None, f"{str(path)!r} is {size:,} bytes; the limit is {MAX_PROMPT_FILE_BYTES:,}"
        data = read_bytes_capped(path, MAX_PROMPT_FILE_BYTES)
    except TooLargeError:
        return path, None, f"{str(path)!r} is over {MAX_PROMPT_FILE_BYTES:,} bytes, the limit"
    except OSError as exc:
        return path, None, f"cannot read {str(path)!r}: {exc.strerror or exc}"
    try:
        return path, data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return path, None, f"{str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x})"


class _Context:
    def __init__(
        self,
        located: Located,
        inputs: dict[str, Any],
        by_name: dict[str, Any],
        upstream: dict[str, set[str]],
        cycle: bool,
    ) -> None:
        self.located = located
        self.inputs = inputs
        self.by_name = by_name
        self.upstream = upstream
        self.cycle = cycle
        self.base_dir = Path(located.base_dir) if located.base_dir else base_dir_of(located.file)

    def ref_problem(self, ref: Reference, owner: str | None, *, foreach: bool, what: str) -> str | None:
        """Why `ref` cannot be used by agent `owner` (None: at workflow level), or None."""
        shown = ref.describe()
        who = f"agent {owner!r}: {what}" if owner else what
        if ref.kind == "name" and ref.name in ITEM_NAMES and ref.name not in self.inputs:
            return None if foreach else f"{who}: {shown} is only defined in an agent with foreach"
        if ref.kind == "input" or (ref.kind == "name" and ref.name in self.inputs):
            if ref.name not in self.inputs:
                declared = ", ".join(sorted(self.inputs)) or "none"
                return f"{who}: {shown} names unknown input {ref.name!r} (declared inputs: {declared})"
            return None
        if ref.name not in self.by_name:
            close = difflib.get_close_matches(ref.name, sorted([*self.inputs, *self.by_name]), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"{who}: {shown} names no input or agent{hint}"
        if owner is None or self.cycle:
            return None
        if ref.name not in self.upstream.get(owner, set()):
            return f"{who}: {shown} uses agent {ref.name!r}, which is not upstream; add it to dependencies"
        return None

    def template(
        self, where: tuple[Any, ...], text: str, owner: str | None, *, foreach: bool, what: str
    ) -> list[Problem]:
        span = text.count("\n") + 3
        try:
            refs = references(text)
        except TemplateError as exc:
            needle = text[exc.offset :].split("\n", 1)[0][:40]
            return [
                self.located.within(
                    where, needle, f"agent {owner!r}: {what}: {exc}" if owner else f"{what}: {exc}", span
                )
            ]
        problems = []
        for ref in refs:
            message = self.ref_problem(ref, owner, foreach=foreach, what=what)
            if message:
                problems.append(self.located.within(where, ref.describe(), message, span))
        return problems


def check_language(
    located: Located,
    agents: list[tuple[int, dict[str, Any]]],
    inputs: dict[str, Any],
    by_name: dict[str, Any],
    upstream: dict[str, set[str]],
    cycle: bool,
) -> list[Problem]:
    """Every problem with the workflow language's constructs in one document."""
    ctx = _Context(located, inputs, by_name, upstream, cycle)
    problems: list[Problem] = []
    for i, agent in agents:
        problems += _kind(ctx, i, agent)
        problems += _code_step(ctx, i, agent)
        problems += _tools(ctx, i, agent)
        problems += _prompt_files(ctx, i, agent)
        problems += _when(ctx, i, agent)
        problems += _foreach(ctx, i, agent)
        approval = agent.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("message"), str):
            problems += ctx.template(
                ("agents", i, "approval", "message"),
                approval["message"],
                agent["name"],
                foreach=False,
                what="approval.message",
            )
    outputs = located.value.get("outputs")
    if isinstance(outputs, dict):
        for key, text in outputs.items():
            if isinstance(text, str):
                problems += ctx.template(("outputs", key), text, None, foreach=False, what=f"outputs.{key}")
    return problems


def _kind(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    name = agent["name"]
    if "function" in agent:
        return [
            ctx.located.at(
                ("agents", i, key), f"agent {name!r} is a code step (function); {key!r} belongs to LLM agents", key=True
            )
            for key in _LLM_ONLY
            if key in agent
        ]
    problems = []
    if "prompt_template" in agent and "prompt_file" in agent:
        problems.append(
            ctx.located.at(
                ("agents", i, "prompt_file"), f"agent {name!r}: give prompt_template or prompt_file, not both", key=True
            )
        )
    if "system_file" in agent and isinstance(agent.get("llm_config"), dict) and "system" in agent["llm_config"]:
        problems.append(
            ctx.located.at(
                ("agents", i, "system_file"),
                f"agent {name!r}: give llm_config.system or system_file, not both",
                key=True,
            )
        )
    if "prompt_template" not in agent and "prompt_file" not in agent:
        problems.append(
            ctx.located.at(
                ("agents", i),
                f"agent {name!r}: missing required key 'prompt_template' (or prompt_file; or function for a code step)",
            )
        )
    if "arguments" in agent:
        problems.append(
            ctx.located.at(
                ("agents", i, "arguments"), f"agent {name!r}: arguments belong to a code step (function)", key=True
            )
        )
    return problems


def _module_problem(ctx: _Context, path: str) -> str | None:
    module = path.partition(":")[0]
    if not module or locate(module, ctx.base_dir) is not None:
        return None
    where = f"next to {ctx.located.file} or " if ctx.base_dir is not None else ""
    return f"cannot find module {module!r} for {path!r} ({where}on the Python path)"


def _code_step(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    function = agent.get("function")
    if not isinstance(function, str) or ":" not in function:
        return []
    problems = []
    missing = _module_problem(ctx, function)
    if missing:
        problems.append(ctx.located.at(("agents", i, "function"), f"agent {agent['name']!r}: {missing}"))
    arguments = agent.get("arguments")
    if isinstance(arguments, dict):
        foreach = "foreach" in agent
        stack: list[tuple[tuple[Any, ...], Any]] = [(("agents", i, "arguments", k), v) for k, v in arguments.items()]
        while stack:
            where, value = stack.pop()
            if isinstance(value, str):
                problems += ctx.template(where, value, agent["name"], foreach=foreach, what=f"arguments.{where[3]}")
            elif isinstance(value, dict):
                stack += [((*where, k), v) for k, v in value.items()]
            elif isinstance(value, list):
                stack += [((*where, j), v) for j, v in enumerate(value)]
    return problems


def _tools(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    tools = agent.get("tools")
    if not isinstance(tools, list):
        return []
    problems = []
    for j, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, str) and ":" in function:
            missing = _module_problem(ctx, function)
            if missing:
                problems.append(
                    ctx.located.at(("agents", i, "tools", j, "function"), f"agent {agent['name']!r}: tool {missing}")
                )
    return problems


def _prompt_files(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    problems = []
    for key in ("prompt_file", "system_file"):
        name = agent.get(key)
        if not isinstance(name, str) or not name:
            continue
        path, text, problem = read_prompt_file(ctx.base_dir, name)
        if problem is not None:
            problems.append(ctx.located.at(("agents", i, key), f"agent {agent['name']!r}: {key}: {problem}"))
            continue
        if key == "system_file" or text is None:
            continue
        # Problems inside the prompt file are reported in that file, at their line and column.
        inner = Located(text, str(path), lines=text.splitlines())
        inner.values[("prompt",)] = (1, 1)
        sub = _Context(inner, ctx.inputs, ctx.by_name, ctx.upstream, ctx.cycle)
        problems += sub.template(("prompt",), text, agent["name"], foreach="foreach" in agent, what="prompt_file")
    return problems


def _expression_position(ctx: _Context, where: tuple[Any, ...], text: str, line: int, column: int) -> tuple[int, int]:
    """The file position of (line, column) inside the expression at `where`."""
    start = ctx.located.values.get(where)
    if start is None:
        return ctx.located.values.get((), (1, 1))
    rows = text.splitlines() or [""]
    row = rows[min(line, len(rows)) - 1]
    first, col = start
    for index in range(first - 1, min(len(ctx.located.lines), first - 1 + len(rows) + 2)):
        found = ctx.located.lines[index].find(row, col - 1 if index == first - 1 else 0) if row else -1
        if found >= 0:
            return index + 1, found + column
    return start


def _when(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    from orchestrate.workflow.expressions import ExpressionError, compile_condition

    text = agent.get("when")
    if not isinstance(text, str) or not text.strip():
        return []
    where = ("agents", i, "when")
    name = agent["name"]
    try:
        condition = compile_condition(text)
    except ExpressionError as exc:
        line, col = _expression_position(ctx, where, text, exc.line, exc.column)
        hint = ""
        if "{" in text:  # a template's braces: a condition is CEL, written bare
            hint = f"conditions are CEL without braces: {text.replace('{', '').replace('}', '').strip()}"
        return [Problem(ctx.located.file, line, col, f"agent {name!r}: when: {exc}", f"agents[{i}].when", hint=hint)]
    problems = []
    ups = ctx.upstream.get(name, set())
    for use in condition.names:
        message = None
        if use.name == "inputs":
            if not use.path:
                message = "say which input, e.g. inputs.region"
            elif use.path[0] not in ctx.inputs:
                declared = ", ".join(sorted(ctx.inputs)) or "none"
                message = f"inputs.{use.path[0]} names unknown input {use.path[0]!r} (declared inputs: {declared})"
        elif use.name in ctx.inputs:
            continue
        elif use.name in ctx.by_name:
            if not ctx.cycle and use.name not in ups:
                message = f"{use.name!r} is an agent that is not upstream; add it to dependencies"
            elif not use.path or use.path[0] not in ("output", "status"):
                message = f"use {use.name}.output or {use.name}.status, not {'.'.join((use.name, *use.path))}"
        else:
            close = difflib.get_close_matches(use.name, sorted([*ctx.inputs, *ctx.by_name, "inputs"]), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"{use.name!r} names no input or agent{hint}"
        if message:
            line, col = _expression_position(ctx, where, text, use.line, use.column)
            problems.append(
                Problem(ctx.located.file, line, col, f"agent {name!r}: when: {message}", f"agents[{i}].when")
            )
    return problems


def _foreach(ctx: _Context, i: int, agent: dict[str, Any]) -> list[Problem]:
    text = agent.get("foreach")
    if not isinstance(text, str):
        return []
    where = ("agents", i, "foreach")
    name = agent["name"]
    try:
        refs = references(text)
    except TemplateError as exc:
        return [ctx.located.at(where, f"agent {name!r}: foreach: {exc}")]
    if len(refs) != 1:
        return [
            ctx.located.at(
                where,
                f'agent {name!r}: foreach takes one placeholder naming a list, e.g. "{{extract_lines.output.lines}}"',
            )
        ]
    ref = refs[0]
    if ref.kind == "name" and ref.name in ITEM_NAMES and ref.name not in ctx.inputs:
        return [ctx.located.at(where, f"agent {name!r}: foreach cannot iterate over {ref.describe()}")]
    message = ctx.ref_problem(ref, name, foreach=False, what="foreach")
    if message:
        return [ctx.located.at(where, message)]
    spec = ctx.inputs.get(ref.name) if ref.kind != "agent" else None
    if isinstance(spec, dict) and not ref.path and spec.get("type", "string") != "array":
        return [
            ctx.located.at(
                where,
                f"agent {name!r}: foreach {ref.describe()} names input "
                f"{ref.name!r} of type {spec.get('type', 'string')}, not array",
            )
        ]
    return []
