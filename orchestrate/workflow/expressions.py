"""`when:` conditions: Common Expression Language (CEL), parsed by cel-python, run as closures.

The only module that imports celpy. CEL is a small, side-effect-free
expression language made for exactly this (Kubernetes admission rules, Envoy,
Google Cloud IAM conditions): no loops, no I/O, no attribute access on Python
objects, so a condition in a workflow file cannot reach anything but the
values we hand it. No Python `eval`: conditions are compiled into closures of
our own (`cel_compiler`), with cel-python's interpreter as the fallback.

A condition sees the names templates use::

    inputs.region                  a declared input (or just `region`)
    risk_rating.output.level       an upstream agent's output (its JSON, else its text)
    risk_rating.status             'completed' or 'skipped'

Numbers from inputs and outputs are doubles, as in CEL's own JSON mapping
(google.protobuf.Value), whether a model wrote 5000 or 5000.0: a condition's
type does not change with the answer. CEL does not mix int and double, so
compare them with double literals (``amount > 5000.0``); ``size()`` is an int.

Parse errors carry the line and column inside the expression, so the loader
can point at them in the file.

A condition is also compiled into Python closures (`cel_compiler`) when it is
loaded; they answer as cel-python does, in microseconds. An expression outside
their subset, an error, or a case they are not sure of is evaluated by
cel-python's interpreter as before, which words every message. Either way only
the names the expression reads are taken from the variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from orchestrate.errors import UserInputError

__all__ = ["Condition", "ExpressionError", "NameUse", "compile_condition"]

# Macros that bind a variable of their own: list.all(x, x > 0) uses `x`, not a workflow name.
_BINDING_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


class ExpressionError(UserInputError):
    """A condition does not parse, or could not be evaluated."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        self.line, self.column = line, column  # inside the expression, 1-based
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class NameUse:
    """A workflow name an expression reads: `risk_rating.output.level` -> ("risk_rating", ("output", "level"))."""

    name: str
    path: tuple[str, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Condition:
    """A compiled `when:` expression."""

    text: str
    program: Any
    names: tuple[NameUse, ...]
    fast: Callable[[Mapping[str, Any]], Any] | None = None  # the closures, when the expression is in their subset
    reads: frozenset[str] = frozenset()  # every identifier in the expression

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        """True or False for these values (plain JSON-like data); raises ExpressionError."""
        fast = self.fast
        if fast is not None:
            try:
                value = fast(variables)
            except Exception:  # an error, or a case the closures are not sure of: the interpreter's
                value = None
            if value is True or value is False:
                return value
        return self.interpret(variables)

    def interpret(self, variables: Mapping[str, Any]) -> bool:
        """`evaluate` by cel-python's interpreter alone."""
        import celpy

        reads = self.reads
        activation = {name: celpy.json_to_cel(_doubles(value)) for name, value in variables.items() if name in reads}
        try:
            value = self.program.evaluate(activation)
        except celpy.CELEvalError as exc:
            raise ExpressionError(f"when {self.text!r}: {_eval_message(exc)}") from None
        if isinstance(value, celpy.CELEvalError):
            raise ExpressionError(f"when {self.text!r}: {_eval_message(value)}")
        if not isinstance(value, celpy.celtypes.BoolType):
            raise ExpressionError(
                f"when {self.text!r}: gave {type(value).__name__.removesuffix('Type').lower()} "
                f"{value!r}, not true or false"
            )
        return bool(value)


def _doubles(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    return value


def _eval_message(exc: Exception) -> str:
    message = str(exc.args[0]) if exc.args else str(exc)
    message = message.split(" (in activation", 1)[0]
    if "no matching overload" in message and "DoubleType" in message and "IntType" in message:
        return (
            "an int is compared with a double; numbers from inputs and outputs are doubles, "
            "so write 5000.0 rather than 5000"
        )
    return message


@lru_cache(maxsize=1024)
def compile_condition(text: str) -> Condition:
    """Parse and compile `text`; raises ExpressionError at the line and column of a syntax error."""
    import celpy
    from celpy.celparser import CELParseError

    environment = celpy.Environment()
    try:
        tree = environment.compile(text)
    except CELParseError as exc:
        line = getattr(exc, "line", None) or 1
        column = getattr(exc, "column", None) or 1
        rows = text.splitlines() or [""]
        row = rows[min(line, len(rows)) - 1]
        found = row[column - 1 :].strip()[:20]
        what = f"unexpected {found!r}" if found else "unexpected end of the expression"
        raise ExpressionError(f"invalid condition {text!r}: syntax error, {what}", line=line, column=column) from None
    from orchestrate.workflow.cel_compiler import compile_tree

    fast = compile_tree(tree, literal=_literal, functions=frozenset(celpy.evaluation.base_functions))
    reads = frozenset(str(node.children[0]) for node in tree.find_data("ident"))
    return Condition(text, environment.program(tree), tuple(_names(tree)), fast, reads)


def _literal(tree: Any) -> Any:
    """A literal's value as the closures hold it (bool, int, float, str, None)."""
    import celpy
    from celpy import celtypes
    from celpy.evaluation import Activation, Evaluator

    value = Evaluator(tree, Activation()).evaluate()
    for cel_type, python in (
        (celtypes.BoolType, bool),
        (celtypes.IntType, int),
        (celtypes.DoubleType, float),
        (celtypes.StringType, str),
    ):
        if type(value) is cel_type:
            return python(value)
    if value is None:
        return None
    raise celpy.CELEvalError(f"not a literal the closures hold: {value!r}")


def _names(tree: Any) -> list[NameUse]:
    """The workflow names read by a parsed expression, with the fields selected below each."""
    from lark import Token, Tree

    parents: dict[int, Any] = {}
    bound: set[str] = set()
    roots: list[tuple[Any, Token]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, Tree):
                parents[id(child)] = node
                stack.append(child)
        if (
            node.data == "primary"
            and node.children
            and isinstance(node.children[0], Tree)
            and node.children[0].data == "ident"
        ):
            ident = node.children[0].children[0]
            if isinstance(ident, Token):  # always: an `ident` rule holds the IDENT terminal
                roots.append((node, ident))
        if node.data == "member_dot_arg" and len(node.children) >= 3 and str(node.children[1]) in _BINDING_MACROS:
            args = node.children[2]
            first = args.children[0] if isinstance(args, Tree) and args.children else None
            bound |= {str(t) for t in first.scan_values(lambda v: isinstance(v, Token))} if first else set()
    uses = []
    for primary, token in roots:
        name = str(token)
        if name in bound:
            continue
        path: list[str] = []
        node = parents.get(id(primary))  # the `member` holding the name
        while node is not None:
            parent = parents.get(id(node))
            if parent is None or parent.data != "member_dot" or parent.children[0] is not node:
                break
            path.append(str(parent.children[1]))
            node = parents.get(id(parent))
        # The lexer sets both on every token; 1 is compile_condition's fallback for a position it lacks.
        uses.append(NameUse(name, tuple(path), token.line or 1, token.column or 1))
    return sorted(uses, key=lambda u: (u.line, u.column))
