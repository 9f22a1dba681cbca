"""The compiled CEL closures against cel-python's interpreter: the same value, or the interpreter decides.

Each expression is evaluated both ways on the same variables. Where the closures give
a value, the interpreter must give that value (of the matching CEL type); where they
raise, `Condition.evaluate` asks the interpreter, so its answer and its message are the
ones users saw before. The expressions: every operator on every pair of value types,
a seeded random set over varied data, and every `when:` and `cel` written in
workflows/, examples/, docs/ and the tests.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import re
from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy import celtypes

from orchestrate.workflow.cel_values import CelError, Plain, Unsure
from orchestrate.workflow.expressions import Condition, ExpressionError, _doubles, compile_condition

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quiet_celpy() -> Any:
    # cel-python logs an error for each Python exception inside a function it calls.
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def interpreted(condition: Condition, variables: dict[str, Any]) -> Any:
    """The interpreter's raw value, or the exception it raised."""
    activation = {n: celpy.json_to_cel(_doubles(v)) for n, v in variables.items() if n in condition.reads}
    try:
        return condition.program.evaluate(activation)
    except Exception as exc:
        return exc


def same(fast: Any, cel: Any) -> bool:
    """Whether the closures' value is the interpreter's (type by type)."""
    kind = type(fast)
    if kind is bool:
        return type(cel) is celtypes.BoolType and bool(cel) is fast
    if kind is int:
        return type(cel) is celtypes.IntType and int(cel) == fast
    if kind in (float, Plain):
        expected = celtypes.DoubleType if kind is float else float
        return type(cel) is expected and (float(cel) == fast or (math.isnan(cel) and math.isnan(fast)))
    if kind is str:
        return type(cel) is celtypes.StringType and str(cel) == fast
    if fast is None:
        return cel is None
    if kind in (list, tuple):
        items = [float(v) if type(v) is int and kind is list else v for v in fast]
        return (
            isinstance(cel, celtypes.ListType)
            and len(cel) == len(items)
            and all(same(a, b) for a, b in zip(items, cel, strict=True))
        )
    if kind is dict:
        return (
            isinstance(cel, celtypes.MapType)
            and set(cel) == set(fast)
            and all(same(float(v) if type(v) is int else v, cel[k]) for k, v in fast.items())
        )
    return False


class Tally:
    def __init__(self) -> None:
        self.answered = self.deferred = 0

    def check(self, text: str, variables: dict[str, Any]) -> None:
        condition = compile_condition(text)
        assert condition.fast is not None, f"{text!r} is not compiled"
        self.check_condition(condition, variables)

    def check_condition(self, condition: Condition, variables: dict[str, Any]) -> None:
        assert condition.fast is not None
        cel = interpreted(condition, variables)
        try:
            fast = condition.fast(variables)
        except CelError:  # an error value, which && || has() may absorb: the interpreter's too
            assert isinstance(cel, celpy.CELEvalError), (
                f"{condition.text!r} on {variables}: closures error, cel {cel!r}"
            )
            self.answered += 1
            return
        except Unsure:
            self.deferred += 1
            return
        self.answered += 1
        assert not isinstance(cel, Exception), f"{condition.text!r} on {variables}: closures {fast!r}, cel {cel!r}"
        assert same(fast, cel), f"{condition.text!r} on {variables}: closures {fast!r}, cel {cel!r}"
        if type(fast) is bool:  # the whole path: the same answer (or the same message)
            assert condition.evaluate(variables) is fast


DATA = {"d": 1.0, "z": 0.0, "neg": -2.5, "s": "a", "e": "", "l": [1, 2.5], "m": {"a": 1, "b": "x"}, "big": 1e300}
OPERANDS = {
    "int": "1",
    "zero": "0",
    "negint": "-3",
    "double": "d",
    "zerod": "z",
    "negd": "neg",
    "plain": "(d + 0.5)",
    "string": "s",
    "empty": "e",
    "bool": "true",
    "false": "false",
    "null": "null",
    "list": "l",
    "literal list": "[1, 'a']",
    "map": "m",
    "double literal": "2.0",
    "string literal": "'a'",
}
OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "in", "&&", "||"]


def test_every_operator_on_every_pair_of_types_answers_as_the_interpreter() -> None:
    tally = Tally()
    for op, (a, b) in itertools.product(OPERATORS, itertools.product(OPERANDS.values(), repeat=2)):
        tally.check(f"{a} {op} {b}", DATA)
    for a in (f"({v})" for v in OPERANDS.values()):
        for text in (
            f"!{a}",
            f"-{a}",
            f"size({a})",
            f"{a}.size()",
            f"int({a})",
            f"double({a})",
            f"string({a})",
            f"has({a}.a)",
            f"{a}[0]",
            f"{a}['a']",
            f"{a}.a",
            f"{a} ? 1 : 2",
            f"{a}.startsWith('a')",
            f"{a}.contains({a})",
            f"{a}.matches('^a')",
            f"{a}.all(x, x > 0.0)",
            f"{a}.exists(x, x == 'a')",
            f"{a}.exists_one(x, x == 1.0)",
            f"{a}.map(x, x)",
            f"{a}.filter(x, x != 'a')",
        ):
            tally.check(text, DATA)
    assert tally.answered > tally.deferred  # deferred: mostly type errors, which the interpreter words


# -- generated expressions over varied data -------------------------------------------------------------

LEAVES = [0, 1, 2, -1, 2.5, 1e20, float("nan"), "", "a", "high", "approve", "0x1F", "12", True, False, None]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 2 and roll < 0.3:
        return {k: random_value(rng, depth + 1) for k in rng.sample(["a", "b", "qty", "level"], rng.randrange(4))}
    return rng.choice(LEAVES)


def random_variables(rng: random.Random) -> dict[str, Any]:
    lines = [{"qty": rng.choice([0, 1, 2, 2.5, "3", None]), "sku": rng.choice(["A-1", "B-2", ""])} for _ in range(3)]
    output = {
        "total": rng.choice([0, 10, 12.5, -1, "12", None]),
        "decision": rng.choice(["approve", "hold", "reject", "", None, 1]),
        "lines": rng.choice([lines, [], None, "x"]),
        "tags": rng.choice([["a", "b"], [], ["a", 1], None]),
        "x": random_value(rng),
    }
    if rng.random() < 0.2:
        del output["total"]
    return {
        "output": rng.choice([output, output, output, None, "text answer", 3]),
        "inputs": {"region": rng.choice(["EU", "test", None]), "amount": rng.choice([5000, 5000.5, 0, None])},
        "row": {"limit": rng.choice([5000, 100.0, "5000", None]), "expected": rng.choice(["6100", 6100])},
        "region": rng.choice(["EU", "test"]),
        "risk": {"output": {"level": rng.choice(["high", "low", 3, None])}, "status": "completed"},
    }


ATOMS = [
    "output.total",
    "output.decision",
    "output.lines",
    "output.tags",
    "output.x",
    "output.lines[0].qty",
    "output.lines[-1]",
    "output['decision']",
    "inputs.region",
    "inputs.amount",
    "row.limit",
    "row.expected",
    "region",
    "risk.output.level",
    "risk.status",
    "nobody.output",
    "output",
    "0",
    "1",
    "5000",
    "0.0",
    "2.5",
    "5000.0",
    "'approve'",
    "'high'",
    "'a'",
    "''",
    "true",
    "false",
    "null",
    "[]",
    "['approve', 'hold']",
    "[1, 2]",
]
BINARY = ["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "in", "&&", "||"]


def random_expression(rng: random.Random, depth: int = 0) -> str:
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(ATOMS)
    sub = lambda: random_expression(rng, depth + 1)  # noqa: E731
    roll = rng.randrange(14)
    if roll < 5:
        return f"{sub()} {rng.choice(BINARY)} {sub()}"
    if roll == 5:
        return f"!({sub()})"
    if roll == 6:
        return f"({sub()} ? {sub()} : {sub()})"
    if roll == 7:
        return f"{rng.choice(['size', 'int', 'double', 'string', 'has', 'dyn'])}({sub()})"
    if roll == 8:
        macro = rng.choice(["all", "exists", "exists_one", "map", "filter"])
        body = rng.choice(["l.qty > 0.0", "l.qty == 2", "l == 'a'", "has(l.sku)", "l.sku.startsWith('A')", "l"])
        return f"{sub()}.{macro}(l, {body})"
    if roll == 9:
        method = rng.choice(["startsWith", "endsWith", "contains", "matches"])
        return f"{sub()}.{method}({rng.choice(['a', 'hi', '^a.*', '(', '1'])!r})"
    if roll == 10:
        return f"-{sub()}"
    if roll == 11:
        index = rng.choice(["0", "1", "-1", "'a'", "'qty'", "0.0"])
        return f"{sub()}[{index}]"
    if roll == 12:
        return f"{sub()}.{rng.choice(['a', 'qty', 'level', 'total'])}"
    return f"({sub()})"


def test_generated_expressions_on_varied_data_answer_as_the_interpreter() -> None:
    rng = random.Random(26)
    tally = Tally()
    for _ in range(1500):
        text = random_expression(rng)
        try:
            condition = compile_condition(text)
        except ExpressionError:  # e.g. `0.total`: a number's member does not parse
            continue
        if condition.fast is None:
            continue
        for _ in range(3):
            tally.check_condition(condition, random_variables(rng))
    assert tally.answered > 1500


# -- the conditions written in the project ------------------------------------------------------------------

_WRITTEN = re.compile(r"""\b(?:when|cel)["']?\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def written_conditions() -> list[str]:
    found = set()
    for folder in ("workflows", "examples", "docs", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".yaml", ".yml", ".md", ".py") or path.name == Path(__file__).name:
                continue
            for double, single in _WRITTEN.findall(path.read_text(errors="replace")):
                text = (double or single).replace('\\"', '"').replace("\\'", "'")
                try:
                    compile_condition(text)
                except ExpressionError:
                    continue  # a condition a test shows failing to parse
                found.add(text)
    return sorted(found)


def variables_for(condition: Condition, rng: random.Random) -> dict[str, Any]:
    """Values at the paths the condition reads, each leaf drawn from the pool (sometimes left out)."""
    variables: dict[str, Any] = {}
    for use in condition.names:
        if rng.random() < 0.05:
            continue
        if not use.path:
            variables[use.name] = random_value(rng)
            continue
        holder = variables.setdefault(use.name, {})
        for part in use.path[:-1]:
            if not isinstance(holder, dict):
                break
            holder = holder.setdefault(part, {})
        if isinstance(holder, dict) and rng.random() > 0.05:
            holder[use.path[-1]] = random_value(rng)
    return variables


def test_every_written_condition_is_compiled_and_answers_as_the_interpreter() -> None:
    written = written_conditions()
    assert len(written) >= 15
    rng = random.Random(2026)
    tally = Tally()
    for text in written:
        condition = compile_condition(text)
        if text.count("(") > 100:
            assert condition.fast is None  # too deep for the interpreter: left to it, and to its message
            continue
        assert condition.fast is not None, text
        for _ in range(40):
            tally.check_condition(condition, variables_for(condition, rng))
    assert tally.answered > 10 * len(written)


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("risk.output.level == 'high'", {"risk": {"output": {"level": 3}}}),
        ("inputs.amount > 5000", {"inputs": {"amount": "a lot"}}),
        ("output.total > 0.0", {"output": {}}),
        ("nobody.output.total > 0.0", {}),
        ("output.total", {"output": {"total": 3}}),
        ("output.lines.all(l, l.qty > 0.0)", {"output": {"lines": [{"qty": 1}, {}]}}),
        ("1 / 0 == 0", {}),
    ],
)
def test_errors_keep_the_interpreters_message(text: str, variables: dict[str, Any]) -> None:
    condition = compile_condition(text)
    assert condition.fast is not None
    with pytest.raises(ExpressionError) as fast:
        condition.evaluate(variables)
    with pytest.raises(ExpressionError) as interpreted:
        condition.interpret(variables)
    assert str(fast.value) == str(interpreted.value)


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("has(output.x) && output.x > 1.0", {"output": {}}, False),  # && absorbs the missing field
        ("output.x > 1.0 || true", {"output": {}}, True),
        ("output.lines.exists(l, l.qty > 1.0)", {"output": {"lines": [{}, {"qty": 2}]}}, True),
        ("output.decision in ['approve', 'hold']", {"output": {"decision": "hold"}}, True),
        ("size(output.lines) == 2 && output.lines[1].qty == 2.0", {"output": {"lines": [{}, {"qty": 2}]}}, True),
        ("inputs.amount > 5000", {"inputs": {"amount": 5000.5}}, True),  # a double over an int, as cel-python allows
        ("output.sku.matches('^[A-Z]-[0-9]$')", {"output": {"sku": "A-1"}}, True),
    ],
)
def test_common_conditions_are_answered_by_the_closures(text: str, variables: dict[str, Any], expected: bool) -> None:
    condition = compile_condition(text)
    assert condition.fast is not None
    assert condition.fast(variables) is expected
    assert condition.interpret(variables) is expected


def test_conditions_outside_the_subset_are_left_to_the_interpreter() -> None:
    for text in (
        "1u == 1u",
        "{'a': 1}['a'] == 1",
        "timestamp('2024-01-01T00:00:00Z') > timestamp('2023-01-01T00:00:00Z')",
    ):
        condition = compile_condition(text)
        assert condition.fast is None
        assert condition.evaluate({}) is True


def test_names_the_condition_does_not_read_are_not_converted() -> None:
    # An agent named with a hyphen (a valid workflow identifier, not a CEL one) made the
    # interpreter refuse every condition downstream of it; and a value it cannot convert, too.
    condition = compile_condition("inputs.region == 'EU'")
    variables = {"inputs": {"region": "EU"}, "risk-rating": {"output": None}, "tool": {"output": {1, 2}}}
    assert condition.evaluate(variables) is True
    assert condition.interpret(variables) is True


async def test_a_when_downstream_of_a_hyphenated_agent_is_evaluated(tmp_path: Path) -> None:
    # Every upstream agent is a variable of a when: condition; cel-python refused the whole
    # activation for a name that is not a CEL identifier, so the agent failed.
    from orchestrate import EngineConfig, OrchestrationEngine, RetryPolicy
    from orchestrate.workflow.loader import load_workflow_text
    from tests.scripted import FakeSleep, ScriptedClient

    module = f"steps_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text("def echo(**kwargs):\n    return kwargs\n")
    text = f"""
name: hyphen
defaults: {{module: Finance}}
inputs:
  region: {{type: string, default: EU}}
agents:
  - name: risk-rating
    function: "{module}:echo"
    arguments: {{level: high}}
  - name: notify
    dependencies: [risk-rating]
    when: "inputs.region == 'EU'"
    function: "{module}:echo"
    arguments: {{sent: true}}
"""
    workflow = load_workflow_text(text, file=str(tmp_path / "wf.yaml"))
    config = EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False))
    engine = OrchestrationEngine(ScriptedClient(), config, sleep=FakeSleep())
    done = await engine.execute_workflow(await engine.register_workflow(workflow))
    await engine.shutdown()
    notify = done.get_agent_by_name("notify")
    assert notify.status.value == "completed", notify.result.error if notify.result else None


def test_the_language_reference_says_conditions_run_as_closures_with_the_interpreter_behind() -> None:
    text = (ROOT / "docs" / "workflow-language.md").read_text(encoding="utf-8")
    section = " ".join(text.split("## Conditions (`when`)", 1)[1].split("\n## ", 1)[0].split())
    assert "evaluated by `cel-python`:" not in section  # the interpreter alone: true before the closures
    assert "compiled, when the workflow is loaded, into Python closures" in section
    assert "evaluated by cel-python's interpreter" in section
