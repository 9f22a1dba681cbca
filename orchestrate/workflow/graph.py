"""The dependency graph of a workflow: cycles, order, and the critical path.

Every operation is linear in nodes plus edges, so a 100,000-agent workflow is
no harder to plan than a 10-agent one. Unknown dependencies are ignored here;
the loader reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrate.workflow.models import Agent

__all__ = ["DependencyGraph", "expected_seconds", "remaining_work"]


class DependencyGraph:
    """Nodes and their dependencies (edges point from a node to what it needs)."""

    def __init__(self, dependencies: Mapping[str, Sequence[str]]) -> None:
        self.nodes: list[str] = list(dependencies)
        known = set(self.nodes)
        self.dependencies: dict[str, list[str]] = {
            node: [d for d in deps if d in known] for node, deps in dependencies.items()
        }
        self.dependents: dict[str, list[str]] = {node: [] for node in self.nodes}
        for node, deps in self.dependencies.items():
            for dep in deps:
                self.dependents[dep].append(node)

    @classmethod
    def from_agents(cls, agents: Iterable[object]) -> DependencyGraph:
        return cls({a.name: list(a.dependencies) for a in agents})  # type: ignore[attr-defined]

    def find_cycle(self) -> list[str] | None:
        """One cycle as a closed path in dependency order (``[a, c, b, a]``), or None."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self.nodes, white)
        for root in self.nodes:
            if colour[root] != white:
                continue
            # Iterative DFS so deep chains do not hit the recursion limit.
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            colour[root] = grey
            while stack:
                node, index = stack[-1]
                deps = self.dependencies[node]
                if index < len(deps):
                    stack[-1] = (node, index + 1)
                    nxt = deps[index]
                    if colour[nxt] == grey:
                        start = path.index(nxt)
                        return path[start:] + [nxt]
                    if colour[nxt] == white:
                        colour[nxt] = grey
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    colour[node] = black
                    stack.pop()
                    path.pop()
        return None

    def topological_order(self) -> list[str]:
        """Nodes with every dependency before its dependents (Kahn); raises ValueError on a cycle."""
        missing = {node: len(deps) for node, deps in self.dependencies.items()}
        order = [node for node, count in missing.items() if count == 0]
        for node in order:  # `order` grows while we walk it
            for child in self.dependents[node]:
                missing[child] -= 1
                if missing[child] == 0:
                    order.append(child)
        if len(order) != len(self.nodes):
            cycle = self.find_cycle() or []
            raise ValueError("dependency cycle: " + " -> ".join(cycle))
        return order

    def remaining_path_lengths(self, weights: Mapping[str, float] | None = None) -> dict[str, float]:
        """For each node, the longest weighted chain from it to the end of the graph, itself included."""
        index = {node: i for i, node in enumerate(self.nodes)}
        dependents = [[index[c] for c in self.dependents[node]] for node in self.nodes]
        indegree = [len(self.dependencies[node]) for node in self.nodes]
        own = [1.0 if weights is None else float(weights.get(node, 1.0)) for node in self.nodes]
        lengths = remaining_work(dependents, indegree, own)
        if lengths is None:
            raise ValueError("dependency cycle: " + " -> ".join(self.find_cycle() or []))
        return dict(zip(self.nodes, lengths))

    def critical_path(self, weights: Mapping[str, float] | None = None) -> list[str]:
        """The heaviest chain of dependent nodes, first to last."""
        if not self.nodes:
            return []
        remaining = self.remaining_path_lengths(weights)
        roots = [n for n in self.nodes if not self.dependencies[n]]
        node = max(roots, key=lambda n: remaining[n])
        path = [node]
        while self.dependents[node]:
            node = max(self.dependents[node], key=lambda n: remaining[n])
            path.append(node)
        return path

    def descendants(self, name: str) -> set[str]:
        """Every node that depends on `name`, directly or not."""
        seen: set[str] = set()
        todo = list(self.dependents.get(name, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(self.dependents[node])
        return seen


def remaining_work(
    dependents: Sequence[Sequence[int]], indegree: list[int], weights: list[float]
) -> list[float] | None:
    """On integer node indexes: per node, the heaviest chain from it to the end, itself included.

    `dependents[i]` lists the nodes that need node i, `indegree[i]` how many
    nodes node i needs. None when the graph has a cycle. Linear in nodes and
    edges; the scheduler calls it at the start of every run.
    """
    missing = list(indegree)
    order = [i for i, count in enumerate(missing) if count == 0]
    for i in order:  # Kahn's algorithm; `order` grows while we walk it
        for j in dependents[i]:
            missing[j] -= 1
            if missing[j] == 0:
                order.append(j)
    if len(order) != len(indegree):
        return None
    remaining = list(weights)
    for i in reversed(order):
        children = dependents[i]
        if children:
            remaining[i] += max([remaining[j] for j in children])
    return remaining


def expected_seconds(agent: Agent) -> float:
    """How long an agent is expected to take, to weigh the critical path.

    A simulated latency is used when one is configured; otherwise the output
    budget, at an assumed 100 tokens a second.
    """
    if agent.function is not None:
        return 0.1  # a code step: a lookup or some arithmetic
    latency = agent.llm_config.get("latency")
    if isinstance(latency, (int, float)):
        return float(latency) or 1e-6
    if isinstance(latency, (list, tuple)) and len(latency) == 2:
        return (float(latency[0]) + float(latency[1])) / 2 or 1e-6
    return float(agent.llm_config.get("max_tokens", 1000)) / 100.0
