"""Tools agents may call: Python callables named by import path.

A tool is written in a workflow as::

    tools:
      - function: erp_tools.finance:lookup_gl_balance
        description: Balance of a general-ledger account for a period
        parameters: {type: object, properties: {account: {type: string}}, required: [account]}

The module is looked up in the workflow file's folder first, then on the
Python path (`orchestrate.workflow.modules`). The callable receives the model's arguments as keyword arguments and may be a
coroutine function. What it returns is sent back to the model as JSON; what it
raises is sent back as an error message, so one bad tool call never ends a run.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrate.errors import ToolError
from orchestrate.jsonline import MAX_DEPTH, nests_too_deep
from orchestrate.redaction import redact
from orchestrate.run.workers import WorkerPool, guard_exit
from orchestrate.workflow.modules import import_module

__all__ = ["Tool", "load_tools", "resolve_callable"]

_cache: dict[tuple[str | None, str], Callable[..., Any]] = {}


def resolve_callable(path: str, base_dir: str | None = None) -> Callable[..., Any]:
    """Import `package.module:function` (from `base_dir` first) and return the callable."""
    cached = _cache.get((base_dir, path))
    if cached is not None:
        return cached
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ToolError(f"{path!r} is not of the form 'package.module:function'")
    try:
        module = import_module(module_name, base_dir)
    except ImportError as exc:
        raise ToolError(f"{path!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module's own code failed while importing
        raise ToolError(f"{path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ToolError(f"{path!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(target):
        raise ToolError(f"{path!r} is not callable")
    _cache[(base_dir, path)] = target
    return target


@dataclass(frozen=True)
class Tool:
    """A tool ready to offer to a model and to call."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    side_effects: bool = True  # changes something outside the run: no fallback to another model after it

    def spec(self) -> dict[str, Any]:
        """The provider-neutral description given to LLM clients."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    async def call(self, arguments: dict[str, Any], workers: WorkerPool | None = None) -> tuple[str, str | None]:
        """Run the tool; returns (content for the model, error or None).

        A sync function runs in one of the run's worker threads (`workers`), off the
        event loop: a slow tool then holds up neither the other agents nor the
        timeouts, which end the agent while the function goes on (see
        `orchestrate.run.workers`). The function gets a copy of the arguments.

        The model's arguments are untrusted: they are checked against the tool's declared
        `parameters` first, and arguments that do not match never reach the function; the
        mismatch goes back to the model as the tool's error, so it can try again.
        """
        from orchestrate.workflow.schema import check_instance

        if nests_too_deep(arguments):
            error = f"the arguments nest deeper than {MAX_DEPTH} levels"
            return json.dumps({"error": error}), error
        problem = check_instance(arguments, self.parameters)
        if problem is not None:
            error = "arguments do not match the tool's parameters: " + problem.replace("the answer", "the arguments", 1)
            return json.dumps({"error": error}), error
        given = copy.deepcopy(arguments)
        try:
            try:
                if inspect.iscoroutinefunction(self.function):
                    value = await self.function(**given)
                else:
                    value = await (workers or _fallback()).call(self.function, **given)
                    if inspect.isawaitable(value):
                        value = await value
            except asyncio.CancelledError:
                raise
            except BaseException as raw:  # sys.exit() in a tool fails the call, not orchestrate
                raise guard_exit(raw) from None
        except Exception as exc:  # the model gets the error instead of the run crashing
            error = redact(f"{type(exc).__name__}: {exc}")
            return json.dumps({"error": error}), error
        if nests_too_deep(value):
            error = f"the tool returned a value nested deeper than {MAX_DEPTH} levels"
            return json.dumps({"error": error}), error
        try:
            content = json.dumps(value, default=str)
        except (TypeError, ValueError, RecursionError):
            content = json.dumps(str(value))
        # What a tool returns goes to the provider, the journal, the reports and traces: never a key.
        return redact(content), None


_shared: list[WorkerPool] = []


def _fallback() -> WorkerPool:
    """A pool for tools called outside an engine (one per process, made when first needed)."""
    if not _shared:
        _shared.append(WorkerPool(name="orchestrate-tool"))
    return _shared[0]


def load_tools(specs: list[dict[str, Any]], base_dir: str | None = None) -> list[Tool]:
    """Resolve an agent's `tools` entries; raises ToolError naming the bad one."""
    tools = []
    for spec in specs:
        path = spec.get("function", "")
        function = resolve_callable(path, base_dir)
        name = spec.get("name") or path.rpartition(":")[2].rpartition(".")[2]
        description = spec.get("description") or (inspect.getdoc(function) or "").split("\n")[0]
        # No parameters declared: the tool takes none, and a call that passes some is refused.
        parameters = spec.get("parameters") or {"type": "object", "properties": {}, "additionalProperties": False}
        side_effects = spec.get("side_effects", True) is not False
        tools.append(Tool(name, description, parameters, function, side_effects))
    return tools
