"""The package's floors are one-way, and no two modules import each other.

Bottom to top: the leaf modules < state < llm < workflow < money < run < observe < app < cli.
A module imports only from its own room or rooms below, at import time and inside functions
alike (imports under ``if TYPE_CHECKING:`` are for the type checker and are not counted). The
package root re-exports the public API and ``__main__`` starts the CLI, so both may import anything;
any module may read the root's ``__version__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrate"
FLOORS = ["leaf", "state", "llm", "workflow", "money", "run", "observe", "app", "cli"]
LEAVES = {"cells", "errors", "finite", "fsutil", "jsonline", "printable", "redaction", "slots"}
TOP = {"orchestrate", "orchestrate.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "root"
    if parts[1] in LEAVES:
        return "leaf"
    assert parts[1] in FLOORS, f"{module}: a new room or leaf module: give it a floor in this test"
    return parts[1]


def _imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """The package modules `module` imports (line numbers), TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    origin = ".".join(base + ([child.module] if child.module else []))
                else:
                    origin = child.module or ""
                for alias in child.names:
                    if origin == "orchestrate" and alias.name == "__version__":
                        continue  # the package root's version: allowed from anywhere
                    submodule = f"{origin}.{alias.name}"
                    names.append(submodule if submodule in known else origin)
            for name in names:
                if name.startswith("orchestrate"):
                    target = resolve(name)
                    if target is not None and target != module:
                        found.append((target, child.lineno))
            visit(child)

    visit(tree)
    return found


def test_no_module_imports_a_room_above_its_own() -> None:
    known = _modules()
    upward = []
    for module, path in sorted(known.items()):
        if module in TOP:
            continue
        mine = FLOORS.index(_floor(module))
        for target, line in _imports(module, path, known):
            if target in TOP:
                upward.append(f"{path.name}:{line}: {module} imports the package root {target}")
            elif FLOORS.index(_floor(target)) > mine:
                upward.append(f"{module}:{line} imports {target} ({_floor(module)} < {_floor(target)})")
    assert upward == []


def test_no_two_modules_import_each_other_in_a_circle() -> None:
    known = _modules()
    graph = {m: {t for t, _ in _imports(m, p, known)} - TOP for m, p in known.items() if m not in TOP}
    circles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    assert circles == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk finds imports inside functions and ignores TYPE_CHECKING blocks."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from orchestrate.cli import app\n"
        "def f():\n"
        "    from orchestrate.observe import html_report\n"
    )
    known = {"orchestrate.state.mod": source, "orchestrate.cli": source, "orchestrate.observe.html_report": source}
    assert _imports("orchestrate.state.mod", source, known) == [("orchestrate.observe.html_report", 5)]
