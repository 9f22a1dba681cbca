"""The dependency graph of a workflow: cycles, order, and the critical path.

Every operation is linear in nodes plus edges, so a 100,000-agent workflow is
no harder to plan than a 10-agent one. Unknown dependencies are ignored here;
the loader reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["DependencyGraph"]


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
        order = self.topological_order()
        remaining: dict[str, float] = {}
        for node in reversed(order):
            own = 1.0 if weights is None else float(weights.get(node, 1.0))
            tail = max((remaining[c] for c in self.dependents[node]), default=0.0)
            remaining[node] = own + tail
        return remaining

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
