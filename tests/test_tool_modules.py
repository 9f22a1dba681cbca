"""Modules named by workflows are loaded per workflow folder.

Two departments keep a ``tools.py`` beside their workflow. Run together (one
``orchestrate run`` of both files), each workflow's code steps and tools must run
its own folder's ``tools.py``, never the module of the same name the other loaded
first.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import orchestrate

TOOLS = """\
def which():
    return {{"folder": "{folder}"}}


def lookup(account):
    return {{"account": account, "folder": "{folder}"}}
"""

FLOW = """\
name: {folder}_close
cost_budget: 1.0
defaults:
  module: Finance
  llm_config: {{model: gpt-4o-mini, max_tokens: 80}}
agents:
  - name: step
    function: "tools:which"
  - name: ask
    prompt_template: "Which ledger?"
    tools:
      - function: "tools:lookup"
        description: look an account up
        parameters: {{type: object, properties: {{account: {{type: string}}}}}}
"""


def test_two_workflows_with_a_tools_py_each_run_their_own(tmp_path: Path) -> None:
    for folder in ("finance", "hr"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tools.py").write_text(TOOLS.format(folder=folder))
        (tmp_path / folder / "flow.yaml").write_text(FLOW.format(folder=folder))
    done = orchestrate("run", "finance/flow.yaml", "hr/flow.yaml", "--simulate", "--json", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for summary in json.loads(done.stdout)["runs"]:
        folder = summary["name"].removesuffix("_close")
        result = json.loads((tmp_path / summary["run_dir"] / "result.json").read_text())
        agents = {a["agent_id"]: a for a in result["agents"]}
        assert agents["step"]["output"]["json"] == {"folder": folder}  # the code step ran its folder's module
        assert f'"folder": "{folder}"' in agents["ask"]["output"]["text"]  # and so did the tool


async def test_the_same_module_name_in_two_folders_is_two_modules(tmp_path: Path) -> None:
    from orchestrate.run.tools import resolve_callable

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tools.py").write_text(TOOLS.format(folder=folder))
    first = resolve_callable("tools:which", str(tmp_path / "a"))
    second = resolve_callable("tools:which", str(tmp_path / "b"))
    assert first() == {"folder": "a"} and second() == {"folder": "b"}
    assert first.__module__ != second.__module__
