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

Values: a bool, an int (CEL int), a float (a double from the data or a literal),
`Plain` (a double computed by arithmetic: cel-python's are Python floats with
rules of their own), a str, None, a list (from the data; its ints are doubles,
as the interpreter's conversion makes them), a tuple (a list the expression
built) and a dict (a map from the data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lark import Token, Tree

__all__ = ["MAX_DEPTH", "CelError", "Plain", "Unsure", "compile_tree"]

MAX_DEPTH = 200  # parse-tree levels; the interpreter runs out of stack near 550, so deeper is left to it

Env = Mapping[str, Any]
Loc = dict[str, Any]
Node = Callable[[Env, Loc], Any]


class Unsure(Exception):
    """This evaluation is not one the closures are sure of: the interpreter decides."""


class CelError(Exception):
    """A CEL error value, as cel-python gives it (the interpreter words it)."""


class Plain(float):
    """A double made by arithmetic (cel-python's plain Python float)."""

    __slots__ = ()


class _NotCompiled(Exception):
    pass


_KEPT = frozenset({str, float, bool, type(None), list, dict})
_INT64 = 2**63
_ERR = object()  # an operand that was a CelError, inside && || all exists


def _d(value: Any) -> Any:
    """A value from the data as the interpreter sees it: ints are doubles."""
    kind = type(value)
    if kind in _KEPT:
        return value
    if kind is int:
        return float(value)
    raise Unsure


def _elements(container: Any) -> Iterable[Any]:
    """What a macro or `in` iterates: a list's elements, a map's keys."""
    kind = type(container)
    if kind is list:
        return [_d(v) for v in container]
    if kind is tuple:
        return container
    if kind is dict:
        keys = list(container)
        if any(type(k) is not str for k in keys):
            raise Unsure
        return keys
    raise Unsure


# -- comparisons: the outcome of Python's `a == b` (and friends) on cel-python's types -------------------
# Tags: B bool, I int, D double, P plain double, S string, N null, L list, M map.
_TAG = {bool: "B", int: "I", float: "D", Plain: "P", str: "S", type(None): "N", list: "L", tuple: "L", dict: "M"}
_NUMERIC = "IDPB"


def _table(rows: dict[str, str]) -> dict[str, str]:
    table = {}
    for left, row in rows.items():
        for right, rule in zip("BIDPSNLM", row, strict=True):
            table[left + right] = rule
    return table


# v: Python's own answer; t / f: true / false; e: an error; l: element by element; u: unsure.
_EQ = _table(
    {  # right: B I D P S N L M
        "B": "vvevffee",
        "I": "eveeeeee",
        "D": "eevveeee",
        "P": "vvvvffee",
        "S": "feefvfee",
        "N": "feeffvff",
        "L": "eeeeefle",
        "M": "eeeeefeu",
    }
)
_NE = _table(
    {  # right: B I D P S N L M
        "B": "vvevttee",
        "I": "eveeeeee",
        "D": "eevveeee",
        "P": "vvvvttee",
        "S": "teetvtee",
        "N": "teettvee",
        "L": "eeeeeele",
        "M": "eeeeeeeu",
    }
)


def _compare(rule: str | None, a: Any, b: Any, equal: bool) -> bool:
    if rule == "v":
        return bool(a == b) if equal else bool(a != b)
    if rule == "f":
        return False
    if rule == "t":
        return True
    if rule == "e":
        raise CelError
    if rule == "l":
        return _lists(a, b, equal)
    raise Unsure


def eq(a: Any, b: Any) -> bool:
    """`a == b` as cel-python answers it."""
    kind = type(a)
    if kind is type(b) and (kind is str or kind is float or kind is int or kind is bool):
        return a == b
    return _compare(_EQ.get(_TAG.get(kind, "?") + _TAG.get(type(b), "?")), a, b, True)


def ne(a: Any, b: Any) -> bool:
    """`a != b` as cel-python answers it."""
    kind = type(a)
    if kind is type(b) and (kind is str or kind is float or kind is int or kind is bool):
        return a != b
    return _compare(_NE.get(_TAG.get(kind, "?") + _TAG.get(type(b), "?")), a, b, False)


def _lists(a: Any, b: Any, equal: bool) -> bool:
    """ListType's == (a logical and over the pairs) or != (a logical or)."""
    left, right = list(_elements(a)), list(_elements(b))
    if len(left) != len(right):
        return not equal
    acc: Any = equal
    for x, y in zip(left, right, strict=True):
        try:
            r: Any = eq(x, y) if equal else ne(x, y)
        except CelError:
            r = _ERR
        acc = _and(acc, r) if equal else _or(acc, r)
    if acc is _ERR:
        raise CelError
    return bool(acc)


def _order(a: Any, b: Any) -> None:
    """Raise unless cel-python orders a and b (then Python's own comparison is its answer)."""
    ta, tb = _TAG.get(type(a)), _TAG.get(type(b))
    if ta is None or tb is None:
        raise Unsure
    if ta == "I":
        ok = tb == "I"
    elif ta in "DPB":
        ok = tb in _NUMERIC
    else:
        ok = ta == "S" and tb == "S"
    if not ok:
        raise CelError


def lt(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a < b)


def le(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a <= b)


def gt(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a > b)


def ge(a: Any, b: Any) -> bool:
    _order(a, b)
    return bool(a >= b)


def contained(item: Any, container: Any) -> bool:
    """`item in container`: cel-python compares each element (`c == item`), type errors aside."""
    if type(container) not in (list, tuple, dict):
        if type(container) in (bool, int, float, Plain, type(None)):
            raise CelError  # not iterable
        raise Unsure
    failed = False
    for c in _elements(container):
        try:
            if eq(c, item):
                return True
        except CelError:
            failed = True
    if failed:
        raise CelError
    return False


# -- arithmetic ----------------------------------------------------------------------------------------


def _int64(value: int) -> int:
    if -_INT64 <= value < _INT64:
        return value
    raise CelError  # cel-python: "return error for overflow"


def _doubles(a: Any, b: Any) -> bool:
    """Both operands give a plain double under + - * (a double or plain on the left, a number on the right)."""
    return type(a) in (float, Plain) and type(b) in (float, Plain, int)


def add(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a + b)
    if _doubles(a, b):
        return Plain(a + b)
    raise Unsure


def sub(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a - b)
    if _doubles(a, b):
        return Plain(a - b)
    raise Unsure


def mul(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int64(a * b)
    if _doubles(a, b):
        return Plain(a * b)
    raise Unsure


def div(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        if b == 0:
            raise CelError  # "modulus or divide by zero"
        sign = (-1 if a < 0 else 1) * (-1 if b < 0 else 1)
        return _int64(sign * (abs(a) // abs(b)))
    if (ta is float and tb in (float, Plain)) or (ta is Plain and tb is float):
        return math.inf if b == 0.0 else float(a / b)  # DoubleType's division: x / 0.0 is inf
    if ta is Plain and tb in (Plain, int):
        if b == 0:
            raise CelError
        return Plain(a / b)
    if ta is float and tb is int:
        raise CelError  # DoubleType compares the divisor with 0.0: no overload for an int
    raise Unsure


def mod(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CelError
        return _int64((-1 if a < 0 else 1) * (abs(a) % abs(b)))
    if type(a) is float:
        raise CelError  # no % for doubles
    raise Unsure


def neg(a: Any) -> Any:
    kind = type(a)
    if kind is int:
        return _int64(-a)
    if kind is float:
        return -a
    if kind is Plain:
        return Plain(-a)
    raise Unsure


def _and(x: Any, y: Any) -> Any:
    """cel-python's logical_and on bools and _ERR (anything else: unsure)."""
    if x is True or x is False:
        if y is True or y is False:
            return x and y
        if y is _ERR:
            return _ERR if x else False
    elif x is _ERR:
        if y is True or y is False:
            return _ERR if y else False
        if y is _ERR:
            return _ERR
    raise Unsure


def _or(x: Any, y: Any) -> Any:
    """cel-python's logical_or on bools and _ERR (anything else: unsure)."""
    if x is True or x is False:
        if y is True or y is False:
            return x or y
        if y is _ERR:
            return True if x else _ERR
    elif x is _ERR:
        if y is True or y is False:
            return True if y else _ERR
        if y is _ERR:
            return _ERR
    raise Unsure


# -- functions and methods -----------------------------------------------------------------------------


def size(value: Any) -> int:
    kind = type(value)
    if kind in (str, list, tuple, dict):
        return len(value)
    if value is None:
        return 0  # cel-python's size(null)
    if kind in (bool, int, float, Plain):
        raise CelError
    raise Unsure


def to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool:
        return int(value)
    if value is None:
        return 0
    if kind in (float, Plain):
        if math.isinf(value):
            raise Unsure  # an OverflowError the interpreter does not catch
        if math.isnan(value):
            raise CelError
        return _int64(math.trunc(value))
    if kind is str:
        try:
            if value[:2] in ("0x", "0X"):
                number = int(value[2:], 16)
            elif value[:3] in ("-0x", "-0X"):
                number = -int(value[3:], 16)
            else:
                number = int(value)
        except ValueError:
            raise CelError from None
        return _int64(number)
    raise Unsure


def to_double(value: Any) -> float:
    kind = type(value)
    if value is None:
        return 0.0
    if kind in (bool, int, float, Plain):
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            raise CelError from None
    if kind in (list, tuple, dict):
        raise CelError
    raise Unsure


def to_string(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "True" if value else "False"  # cel-python's string(true)
    if kind is int:
        return str(value)
    if kind in (float, Plain):
        return str(float(value))
    if value is None:
        return "None"
    raise Unsure


def _strings(a: Any, b: Any) -> None:
    if type(a) is not str or type(b) is not str:
        raise Unsure


def starts_with(a: Any, b: Any) -> bool:
    _strings(a, b)
    return a.startswith(b)


def ends_with(a: Any, b: Any) -> bool:
    _strings(a, b)
    return a.endswith(b)


def contains(a: Any, b: Any) -> bool:
    _strings(a, b)
    return b in a


def matches(text: Any, pattern: Any) -> bool:
    import re2  # type: ignore[import-untyped]  # cel-python's own regular expressions (RE2)

    _strings(text, pattern)
    try:
        return re2.search(pattern, text) is not None
    except re2.error:
        raise CelError from None  # "match error"


_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "size": (1, size),
    "int": (1, to_int),
    "double": (1, to_double),
    "string": (1, to_string),
    "startsWith": (2, starts_with),
    "endsWith": (2, ends_with),
    "contains": (2, contains),
    "matches": (2, matches),
}
_METHODS = {
    name: entry
    for name, entry in _FUNCTIONS.items()
    if name in ("size", "startsWith", "endsWith", "contains", "matches")
}
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
    """A boolean operand: its value, or _ERR for a CEL error."""
    try:
        return part(env, loc)
    except CelError:
        return _ERR


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
            value = _or(_settled(left, env, loc), _settled(right, env, loc))
            if value is _ERR:
                raise CelError
            return value

        return either

    def _conditionaland(self, children: list[Any]) -> Node:
        if len(children) == 1:
            return self.node(children[0])
        left, right = self.node(children[0]), self.node(children[1])

        def both(env: Env, loc: Loc) -> Any:
            value = _and(_settled(left, env, loc), _settled(right, env, loc))
            if value is _ERR:
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
                    return _d(value[name])
                except KeyError:
                    raise CelError from None  # no such member
            raise CelError  # does not support field selection

        return field

    def _member_index(self, children: list[Any]) -> Node:
        return _binary(self.node(children[0]), self.node(children[1]), _index)

    def _member_dot_arg(self, children: list[Any]) -> Node:
        name = str(children[1])
        args = list(children[2].children) if len(children) > 2 else []
        if name in _MACROS:
            return self._macro(name, children[0], args)
        if name not in _METHODS or _METHODS[name][0] != len(args) + 1:
            raise _NotCompiled(name)
        return _call(_METHODS[name][1], [self.node(children[0]), *(self.node(a) for a in args)])

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
        return _MACRO_BUILDERS[name](collection, variable, body)

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
            return _d(value)

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
        if name not in _FUNCTIONS or _FUNCTIONS[name][0] != len(args):
            raise _NotCompiled(name)
        return _call(_FUNCTIONS[name][1], args)


def _bare_ident(tree: Any) -> str:
    """A macro's variable: an expression that is one identifier, through its one-child levels."""
    node = tree
    while isinstance(node, Tree) and node.data != "ident" and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "ident" and isinstance(node.children[0], Token):
        return str(node.children[0])
    raise _NotCompiled("macro variable")


def _index(holder: Any, key: Any) -> Any:
    kind = type(holder)
    if kind is list or kind is tuple:
        if type(key) is int:
            try:
                value = holder[key]
            except IndexError:
                raise CelError from None  # invalid_argument
            return _d(value) if kind is list else value
        if type(key) in (float, Plain, str, type(None), list, tuple, dict):
            raise CelError
        raise Unsure
    if kind is dict:
        if type(key) is str:
            try:
                return _d(holder[key])
            except KeyError:
                raise CelError from None  # no such key
        if type(key) in (float, Plain, type(None), list, tuple, dict):
            raise CelError  # not a key type
        raise Unsure
    if kind in (bool, int, float, Plain, type(None)):
        raise CelError  # not subscriptable
    raise Unsure


# -- macros --------------------------------------------------------------------------------------------


def _each(collection: Node, variable: str, body: Node, env: Env, loc: Loc, *, errors: bool) -> list[tuple[Any, Any]]:
    """(element, body value) for each element; with `errors`, a CEL error is _ERR, else it is unsure
    (map, filter and exists_one raise it out of the interpreter)."""
    items = _elements(collection(env, loc))
    saved = loc.get(variable, _ERR)
    found = []
    try:
        for item in items:
            loc[variable] = item
            try:
                found.append((item, body(env, loc)))
            except CelError:
                if not errors:
                    raise Unsure from None
                found.append((item, _ERR))
    finally:
        if saved is _ERR:
            loc.pop(variable, None)
        else:
            loc[variable] = saved
    return found


def _macro_all(collection: Node, variable: str, body: Node) -> Node:
    def every(env: Env, loc: Loc) -> bool:
        values = [v for _, v in _each(collection, variable, body, env, loc, errors=True)]
        if any(v is not True and v is not False and v is not _ERR for v in values):
            raise Unsure
        if any(v is False for v in values):
            return False
        if any(v is _ERR for v in values):
            raise CelError
        return True

    return every


def _macro_exists(collection: Node, variable: str, body: Node) -> Node:
    def some(env: Env, loc: Loc) -> bool:
        values = [v for _, v in _each(collection, variable, body, env, loc, errors=True)]
        if any(v is not True and v is not False and v is not _ERR for v in values):
            raise Unsure
        if any(v is True for v in values):
            return True
        if any(v is _ERR for v in values):
            raise CelError
        return False

    return some


def _booleans(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if any(v is not True and v is not False for _, v in pairs):
        raise Unsure
    return pairs


def _macro_exists_one(collection: Node, variable: str, body: Node) -> Node:
    def one(env: Env, loc: Loc) -> bool:
        return sum(v for _, v in _booleans(_each(collection, variable, body, env, loc, errors=False))) == 1

    return one


def _macro_map(collection: Node, variable: str, body: Node) -> Node:
    def mapped(env: Env, loc: Loc) -> tuple[Any, ...]:
        return tuple(v for _, v in _each(collection, variable, body, env, loc, errors=False))

    return mapped


def _macro_filter(collection: Node, variable: str, body: Node) -> Node:
    def kept(env: Env, loc: Loc) -> tuple[Any, ...]:
        return tuple(item for item, v in _booleans(_each(collection, variable, body, env, loc, errors=False)) if v)

    return kept


_MACRO_BUILDERS: dict[str, Callable[[Node, str, Node], Node]] = {
    "all": _macro_all,
    "exists": _macro_exists,
    "exists_one": _macro_exists_one,
    "map": _macro_map,
    "filter": _macro_filter,
}
