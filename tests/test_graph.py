"""The dependency graph: cycles, order, critical path."""

from __future__ import annotations

import pytest

from orchestrate.run.scheduler import RunShape
from orchestrate.workflow.graph import DependencyGraph
from orchestrate.workflow.models import Agent, Workflow


def test_cycle_is_reported_as_a_closed_path() -> None:
    graph = DependencyGraph({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    cycle = graph.find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert len(cycle) == 4


def test_self_dependency_is_a_cycle() -> None:
    assert DependencyGraph({"a": ["a"]}).find_cycle() == ["a", "a"]


def test_topological_order_puts_dependencies_first() -> None:
    graph = DependencyGraph({"report": ["x", "y"], "x": ["load"], "y": ["load"], "load": []})
    order = graph.topological_order()
    assert order.index("load") < order.index("x") < order.index("report")
    with pytest.raises(ValueError, match="a -> b -> a|b -> a -> b"):
        DependencyGraph({"a": ["b"], "b": ["a"]}).topological_order()


def test_critical_path_follows_the_heaviest_chain() -> None:
    graph = DependencyGraph({"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": []})
    assert graph.critical_path() == ["a", "b", "c"]
    assert graph.critical_path({"a": 1, "b": 1, "c": 1, "d": 10, "e": 1}) == ["a", "d"]
    assert graph.remaining_path_lengths()["a"] == 3


def test_deep_chains_do_not_hit_the_recursion_limit() -> None:
    n = 20_000
    graph = DependencyGraph({f"n{i}": [f"n{i - 1}"] if i else [] for i in range(n)})
    assert graph.find_cycle() is None
    assert len(graph.critical_path()) == n
    assert graph.descendants("n19990") == {f"n{i}" for i in range(19991, n)}


def _agents(edges: dict[str, list[str]]) -> list[Agent]:
    return [
        Agent(
            name=n,
            module="General",
            description="",
            llm_config={"model": "gpt-4o-mini"},
            prompt_template="x",
            dependencies=deps,
        )
        for n, deps in edges.items()
    ]


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ({"a": [], "b": ["a"], "a2": [], "b2": ["a"]}, None),
        ({"a": [], "a ": ["a"], "b": ["a", "zz", "yy"], "c": ["qq"]}, "agent 'b' depends on unknown agent 'zz'"),
        ({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["nope"]}, "agent 'd' depends on unknown agent 'nope'"),
        ({"x": [], "a": ["c"], "b": ["a"], "c": ["b"]}, "workflow 'w' has a dependency cycle: a -> c -> b -> a"),
        ({"a": ["a"]}, "workflow 'w' has a dependency cycle: a -> a"),
    ],
)
def test_a_runs_shape_checks_its_graph_as_registration_words_it(
    edges: dict[str, list[str]], message: str | None
) -> None:
    # The shape's own pass over the edges does the checks (the cycle search runs only to name one):
    # unknown names first, in the file's order, then cycles, each worded as before.
    workflow = Workflow(name="w", description="", agents=_agents(edges))
    if message is None:
        shape = RunShape.of(workflow)
        assert shape.waiting_on == [0, 1, 0, 1] and list(shape.dependents[0]) == [1, 3]
        return
    with pytest.raises(ValueError) as caught:
        RunShape.of(workflow)
    assert str(caught.value) == message


def test_a_run_made_without_a_checked_shape_words_an_unknown_name() -> None:
    workflow = Workflow(name="w", description="", agents=_agents({"a": ["ghost"]}))
    with pytest.raises(ValueError, match="agent 'a' depends on unknown agent 'ghost'"):
        RunShape(workflow.agents)
