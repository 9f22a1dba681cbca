"""CEL conditions compiled into Python closures, once: the fast path of `expressions`.

cel-python evaluates a condition by walking its parse tree for every evaluation
(an interpreter, an activation and a CEL value made of every name it reads),
about 0.7 ms a time. A dataset of 10,000 rows evaluates each `when:` and `cel`
expectation 10,000 times, so the subset of CEL workflows use is compiled here,
when the workflow is loaded, into nested closures over plain Python values:
member and index access, literals, comparisons, arithmetic, ``&& || ! ?:``,
``in``, ``size() has() dyn()``, ``int() double() string()``, the string methods
``startsWith endsWith contains matches`` and the macros ``all exists exists_one
map filter``. Anything else (uint, bytes, timestamps, map literals, ...) is left
to cel-python: `compile_tree` returns None.

The closures give cel-python's answers, not the spec's where the two differ:
cel-python 0.5 is the reference the project's conditions were written against
(``2.0 > 1`` is true there, ``1 < 2.0`` an error; ``x == null`` is an error for a
double, false for a string). Where a case is not certain, a closure raises
`Unsure` and the caller asks the interpreter, which also words every error: a
closure only ever returns a value the interpreter would return. `CelError` is an
error cel-python also produces as a value, which ``&&``, ``||``, ``has()`` and
the ``all``/``exists`` macros may absorb as CEL says; every operand the
interpreter evaluates is evaluated here too, so that nothing it would raise is
skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from orchestrate.workflow.cel_functions import FUNCTIONS, METHODS, add, div, mod, mul, neg, sub
from orchestrate.workflow.cel_macros import MACROS, Env, Loc, Node
from orchestrate.workflow.cel_values import (
    ERR,
    CelError,
    Unsure,
    contained,
    eq,
    from_data,
    ge,
    gt,
    index,
    le,
    logical_and,
    logical_or,
    lt,
    ne,
)

__all__ = ["MAX_DEPTH", "compile_tree"]

MAX_DEPTH = 200  # parse-tree levels; the interpreter runs out of stack near 550, so deeper is left to it


class _NotCompiled(Exception):
    pass


_RELATIONS = {
    "relation_lt": lt,
    "relation_le": le,
    "relation_gt": gt,
    "relation_ge": ge,
    "relation_eq": eq,
    "relation_ne": ne,
    "relation_in": contained,
}
_ARITHMETIC = {
    "addition_add": add,
    "addition_sub": sub,
    "multiplication_mul": mul,
    "multiplication_div": div,
    "multiplication_mod": mod,
}
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


# -- the compiler --------------------------------------------------------------------------------------


def compile_tree(
    tree: Tree, *, literal: Callable[[Tree], Any], functions: frozenset[str]
) -> Callable[[Env], Any] | None:
    """A function of the variables giving the condition's value, or None when the tree is outside
    the subset (or too deep): cel-python evaluates it then.

    Args:
        tree: cel-python's parse tree of the expression.
        literal: The value of a `literal` node (bool, int, float, str or None; raises otherwise).
        functions: The names an unknown identifier resolves to in cel-python (its functions).
    """
    if _depth(tree) > MAX_DEPTH:
        return None
    try:
        root = _Compiler(literal, functions).node(tree)
    except (_NotCompiled, RecursionError):
        return None

    def run(variables: Env) -> Any:
        return root(variables, {})

    return run


def _depth(tree: Tree) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in node.children if isinstance(c, Tree))
    return deepest


def _constant(value: Any) -> Node:
    def node(env: Env, loc: Loc) -> Any:
        return value

    return node


def _all_of(parts: list[Node], env: Env, loc: Loc) -> list[Any]:
    """Every part evaluated (as the interpreter does) before the first error is raised."""
    values, failed = [], False
    for part in parts:
        try:
            values.append(part(env, loc))
        except CelError:
            failed = True
    if failed:
        raise CelError
    return values


def _call(function: Callable[..., Any], parts: list[Node]) -> Node:
    if len(parts) == 1:
        (only,) = parts

        def one(env: Env, loc: Loc) -> Any:
            return function(only(env, loc))

        return one
    if len(parts) == 2:
        return _binary(parts[0], parts[1], function)

    def many(env: Env, loc: Loc) -> Any:
        return function(*_all_of(parts, env, loc))

    return many


def _binary(left: Node, right: Node, op: Callable[[Any, Any], Any]) -> Node:
    def node(env: Env, loc: Loc) -> Any:
        try:
            a = left(env, loc)
        except CelError:
            right(env, loc)  # evaluated all the same: what it raises wins
            raise
        return op(a, right(env, loc))

    return node


def _settled(part: Node, env: Env, loc: Loc) -> Any:
    """A boolean operand: its value, or ERR for a CEL error."""
    try:
        return part(env, loc)
    except CelError:
        return ERR


class _Compiler:
    def __init__(self, literal: Callable[[Tree], Any], functions: frozenset[str]) -> None:
        self.literal = literal
        self.functions = functions
        self.bound: list[str] = []  # macro variables in scope, innermost last

    def node(self, tree: Tree) -> Node:
        rule = tree.data
        children = tree.children
        method = getattr(self, f"_{rule}", None)
        if method is not None:
            compiled: Node = method(children)
            return compiled
        if len(children) == 1 and isinstance(children[0], Tree):  # a level with one child: its value
            if rule in ("expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"):
                return self.node(children[0])
            if rule in ("member", "primary", "paren_expr"):
                return self.node(children[0])
        raise _NotCompiled(rule)

    def _expr(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        if len(children) != 3:
            raise _NotCompiled("expr")
        condition, when_true, when_false = (self.node(c) for c in children)

        def choose(env: Env, loc: Loc) -> Any:
            try:
                chosen = condition(env, loc)
            except CelError:
                raise Unsure from None  # the interpreter goes on into a branch
            if chosen is True:
                return when_true(env, loc)
            if chosen is False:
                return when_false(env, loc)
            raise Unsure

        return choose

    def _conditionalor(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        left, right = self.node(children[0]), self.node(children[1])

        def either(env: Env, loc: Loc) -> Any:
            value = logical_or(_settled(left, env, loc), _settled(right, env, loc))
            if value is ERR:
                raise CelError
            return value

        return either

    def _conditionaland(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        left, right = self.node(children[0]), self.node(children[1])

        def both(env: Env, loc: Loc) -> Any:
            value = logical_and(_settled(left, env, loc), _settled(right, env, loc))
            if value is ERR:
                raise CelError
            return value

        return both

    def _relation(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        operator, right = children
        return _binary(self.node(operator.children[0]), self.node(right), _RELATIONS[operator.data])

    def _addition(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        operator, right = children
        return _binary(self.node(operator.children[0]), self.node(right), _ARITHMETIC[operator.data])

    _multiplication = _addition

    def _unary(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        operator, operand = children
        inner = self.node(operand)
        if operator.data == "unary_neg":
            return _call(neg, [inner])

        def negation(env: Env, loc: Loc) -> Any:
            value = inner(env, loc)
            if value is True or value is False:
                return not value
            raise CelError  # cel-python: no overload of ! for a non-bool

        return negation

    def _member_dot(self, children: list[Any]) -> Node:
        holder, name = self.node(children[0]), str(children[1])

        def field(env: Env, loc: Loc) -> Any:
            value = holder(env, loc)
            if type(value) is dict:
                try:
                    return from_data(value[name])
                except KeyError:
                    raise CelError from None  # no such member
            raise CelError  # does not support field selection

        return field

    def _member_index(self, children: list[Any]) -> Node:
        return _binary(self.node(children[0]), self.node(children[1]), index)

    def _member_dot_arg(self, children: list[Any]) -> Node:
        name = str(children[1])
        args = list(children[2].children) if len(children) > 2 else []
        if name in _MACROS:
            return self._macro(name, children[0], args)
        if name not in METHODS or METHODS[name][0] != len(args) + 1:
            raise _NotCompiled(name)
        return _call(METHODS[name][1], [self.node(children[0]), *(self.node(a) for a in args)])

    def _macro(self, name: str, target: Tree, args: list[Any]) -> Node:
        if len(args) != 2:
            raise _NotCompiled(name)
        variable = _bare_ident(args[0])
        collection = self.node(target)
        self.bound.append(variable)
        try:
            body = self.node(args[1])
        finally:
            self.bound.pop()
        return MACROS[name](collection, variable, body)

    def _primary(self, children: list[Any]) -> Node:
        return self.node(children[0])

    def _paren_expr(self, children: list[Any]) -> Node:
        return self.node(children[0])

    def _literal(self, children: list[Any]) -> Node:
        try:
            value = self.literal(Tree("literal", children))
        except Exception:
            raise _NotCompiled("literal") from None
        if type(value) not in (bool, int, float, str, type(None)):
            raise _NotCompiled("literal")
        return _constant(value)

    def _list_lit(self, children: list[Any]) -> Node:
        parts = [self.node(c) for c in children[0].children] if children else []

        def built(env: Env, loc: Loc) -> Any:
            return tuple(_all_of(parts, env, loc))

        return built

    def _ident(self, children: list[Any]) -> Node:
        name = str(children[0])
        if name in self.bound:

            def bound(env: Env, loc: Loc) -> Any:
                return loc[name]

            return bound
        missing: type[Exception] = Unsure if name in self.functions else CelError

        def variable(env: Env, loc: Loc) -> Any:
            try:
                value = env[name]
            except KeyError:
                raise missing from None  # undeclared reference (or a function's name: the interpreter's)
            return from_data(value)

        return variable

    def _ident_arg(self, children: list[Any]) -> Node:
        name = str(children[0])
        args = [self.node(a) for a in children[1].children] if len(children) > 1 else []
        if name == "has" and len(args) == 1:
            (inner,) = args

            def has(env: Env, loc: Loc) -> bool:
                try:
                    inner(env, loc)
                except CelError:
                    return False
                return True

            return has
        if name == "dyn" and len(args) == 1:
            return args[0]
        if name not in FUNCTIONS or FUNCTIONS[name][0] != len(args):
            raise _NotCompiled(name)
        return _call(FUNCTIONS[name][1], args)


def _bare_ident(tree: Any) -> str:
    """A macro's variable: an expression that is one identifier, through its one-child levels."""
    node = tree
    while isinstance(node, Tree) and node.data != "ident" and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "ident" and isinstance(node.children[0], Token):
        return str(node.children[0])
    raise _NotCompiled("macro variable")
