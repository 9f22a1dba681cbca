"""`orchestrate graph`: a workflow's dependency graph as a tree or as Mermaid text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import FormatOption, fail

__all__ = ["graph"]


def graph(
    file: Annotated[Path, typer.Argument(help="The workflow file.", show_default=False)],
    fmt: FormatOption = "tree",
) -> None:
    """Print the workflow's graph: a tree from the roots (default) or a Mermaid flowchart."""
    from orchestrate.workflow.loader import load_workflow

    fmt = fmt.lower()
    if fmt not in ("tree", "mermaid"):
        fail(f"--format {fmt!r}: choose tree or mermaid")
    workflow = load_workflow(file)
    if fmt == "mermaid":
        from orchestrate.observe.ci_reports import mermaid

        doc = {"agents": [{"name": a.name, "module": a.module, "dependencies": a.dependencies}
                          for a in workflow.agents]}
        sys.stdout.write(mermaid(doc) + "\n")
        return
    from rich.console import Console
    from rich.tree import Tree

    from orchestrate.workflow.graph import DependencyGraph

    deps = DependencyGraph.from_agents(workflow.agents)
    by_name = {a.name: a for a in workflow.agents}
    root = Tree(f"[bold]{workflow.name}[/] ({len(workflow.agents)} agents)")
    shown: set[str] = set()

    def add(parent: Tree, name: str) -> None:
        agent = by_name[name]
        label = f"{name} [dim]{agent.module} · {agent.llm_config.get('model')} · p{agent.priority}[/]"
        if name in shown:  # a fan-in node appears once in full, then as a reference
            parent.add(f"{name} [dim](see above)[/]")
            return
        shown.add(name)
        branch = parent.add(label)
        for child in deps.dependents[name]:
            add(branch, child)

    for name in deps.nodes:
        if not deps.dependencies[name]:
            add(root, name)
    Console(highlight=False).print(root)
