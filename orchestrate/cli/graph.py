"""`orchestrate graph`: a workflow's dependency graph as a tree, Mermaid text or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import check_format, format_option, is_interactive, json_alias, print_json

__all__ = ["graph"]

FORMATS = ("tree", "mermaid", "json")


def graph(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", show_default=False, help="Workflow files, or folders of them.")
    ],
    fmt: format_option(FORMATS) = "tree",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """Print each workflow's graph: a tree from the roots (default), a Mermaid flowchart, or JSON.

    \b
    Examples:
      orchestrate graph workflows/finance_month_end_close.yaml
      orchestrate graph close.yaml --format mermaid > close.mmd
      orchestrate graph workflows/ --format json
    """
    from orchestrate.cli.plan import workflow_files
    from orchestrate.workflow.loader import load_workflow

    fmt = check_format(fmt, FORMATS, as_json=as_json)
    workflows = [load_workflow(path, bind=False) for path in workflow_files(paths)]  # the shape needs no inputs
    if fmt == "json":
        docs = [_document(wf) for wf in workflows]
        print_json("graph", {"graphs": docs})
        return
    if fmt == "mermaid":
        from orchestrate.observe.ci_reports import mermaid

        sys.stdout.write("\n".join(mermaid(_document(wf)) for wf in workflows) + "\n")
        return
    from orchestrate.observe.tables import plain_console

    console = plain_console(sys.stdout, interactive=is_interactive(sys.stdout))
    for workflow in workflows:
        console.print(_tree(workflow))


def _document(workflow: Any) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "agents": [
            {
                "name": a.name,
                "module": a.module,
                "model": a.llm_config.get("model"),
                "priority": a.priority,
                "dependencies": list(a.dependencies),
            }
            for a in workflow.agents
        ],
    }


def _tree(workflow: Any) -> Any:
    from rich.text import Text
    from rich.tree import Tree

    from orchestrate.printable import printable
    from orchestrate.workflow.graph import DependencyGraph

    deps = DependencyGraph.from_agents(workflow.agents)
    by_name = {a.name: a for a in workflow.agents}
    from orchestrate.observe.summary import plural

    root = Tree(Text(f"{workflow.name} ({plural(len(workflow.agents), 'agent')})", style="bold"))
    shown: set[str] = set()

    def add(parent: Any, name: str) -> None:
        agent = by_name[name]
        if name in shown:  # a fan-in node appears once in full, then as a reference
            parent.add(Text.assemble(name, (" (see above)", "dim")))
            return
        shown.add(name)
        kind = f"code {agent.function}" if agent.function else printable(agent.llm_config.get("model"))
        marks = "".join(
            f" · {mark}"
            for mark, on in (("when", agent.when), ("foreach", agent.foreach), ("approval", agent.approval))
            if on
        )
        label = Text.assemble(name, (f" {agent.module} · {kind} · p{agent.priority}{marks}", "dim"))
        branch = parent.add(label)
        for child in deps.dependents[name]:
            add(branch, child)

    for name in deps.nodes:
        if not deps.dependencies[name]:
            add(root, name)
    return root
