"""`orchestrate show`: a run and one agent in full, from the run folder alone."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from orchestrate.errors import UserInputError
from orchestrate.observe.run_view import agent_renderables, find_agent, load_result, run_renderables
from tests.cli import orchestrate

ROOT = Path(__file__).resolve().parents[1]
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text())

WORKFLOW = """\
name: supplier_check
cost_budget: 1.0
inputs:
  supplier: {type: string, default: "Globex GmbH"}
defaults:
  module: Procurement
agents:
  - name: fetch_terms
    module: Finance
    description: payment terms
    llm_config: {model: gpt-4o-mini, max_tokens: 60, system: "You are terse."}
    prompt_template: "Payment terms of {supplier}?"
    output_schema:
      type: object
      required: [days]
      properties: {days: {type: integer}}
  - name: sanctions
    module: Compliance
    description: always down
    max_retries: 1
    retry: {strategy: immediate}
    llm_config: {model: gpt-4o-mini, max_tokens: 60, failure_rate: 1.0}
    prompt_template: "Is {supplier} sanctioned?"
  - name: memo
    module: Finance
    description: needs both
    dependencies: [fetch_terms, sanctions]
    llm_config: {model: gpt-4o-mini, max_tokens: 60}
    prompt_template: "Terms {fetch_terms.output.days} days; write a memo."
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("show")
    (root / "wf.yaml").write_text(WORKFLOW.replace("defaults:\n  module: Procurement\n", ""))
    proc = orchestrate("run", "wf.yaml", "--simulate", "-o", "runs", cwd=root)
    assert proc.returncode in (1, 3), proc.stderr
    # The closing block names every reason, the run folder on a line of its own, and what to do next.
    assert "sanctions  failed: simulated" in proc.stdout and "(after 2 attempts)" in proc.stdout
    assert "memo  cancelled: dependency 'sanctions' failed" in proc.stdout
    (folder,) = (root / "runs").iterdir()
    assert f"run folder: runs/{folder.name}\n" in proc.stdout or f"run folder: {folder}\n" in proc.stdout
    assert "--resume" in proc.stdout and "orchestrate show" in proc.stdout
    return folder


def test_result_json_keeps_each_agents_rendered_prompts(run_dir: Path) -> None:
    document = json.loads((run_dir / "result.json").read_text())
    jsonschema.validate(document, RESULT_SCHEMA)
    terms = find_agent(document, "fetch_terms")["metadata"]
    assert terms["prompt"] == "Payment terms of Globex GmbH?"  # rendered, not the template
    assert terms["system_prompt"] == "You are terse."
    sanctions = find_agent(document, "sanctions")["metadata"]
    assert len(sanctions["errors"]) == 2 and all("simulated" in e for e in sanctions["errors"])


def test_show_run_lists_agents_with_reasons(run_dir: Path) -> None:
    proc = orchestrate("show", str(run_dir), cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1 completed, 1 failed, 1 cancelled" in out
    for name in ("fetch_terms", "sanctions", "memo"):
        assert f"│ {name} " in out
    assert "dependency 'sanctions' failed" in out and "why:" in out
    assert "…" not in out


def test_show_agent_prints_prompts_answer_and_attempts(run_dir: Path) -> None:
    out = orchestrate("show", str(run_dir), "fetch_terms", cwd=run_dir.parent).stdout
    assert "system prompt\n  You are terse." in out
    assert "prompt\n  Payment terms of Globex GmbH?" in out
    assert '"days":' in out and "answer\n  {" in out  # the JSON answer, pretty-printed
    out = orchestrate("show", str(run_dir), "sanctions", cwd=run_dir.parent).stdout
    assert "failed attempts\n  1. simulated" in out and "\n  2. simulated" in out


def test_show_json_for_machines(run_dir: Path) -> None:
    run = json.loads(orchestrate("show", str(run_dir), "--format", "json", cwd=run_dir.parent).stdout)
    assert run["status"] in ("failed", "partially_completed")
    assert {a["name"]: a["status"] for a in run["agents"]} == {
        "fetch_terms": "completed",
        "sanctions": "failed",
        "memo": "cancelled",
    }
    agent = json.loads(orchestrate("show", str(run_dir), "fetch_terms", "--json", cwd=run_dir.parent).stdout)
    assert agent["prompt"] == "Payment terms of Globex GmbH?" and agent["output"]["json"]["days"] >= 0


def test_show_bad_input_is_one_line_with_exit_2(run_dir: Path, tmp_path: Path) -> None:
    proc = orchestrate("show", str(run_dir), "fetch_term", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean 'fetch_terms'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = orchestrate("show", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2 and "no such run folder" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "result.json").write_text("{torn")
    proc = orchestrate("show", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def _text(parts: list[Any], width: int = 100) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    for part in parts:
        console.print(part)
    return buffer.getvalue()


def test_agent_view_lists_tool_calls_and_reads_older_runs() -> None:
    document = {
        "name": "wf",
        "run_id": "r1",
        "status": "completed",
        "agents": [
            {
                "name": "lookup",
                "status": "completed",
                "module": "Finance",
                "model": "m",
                "provider": "p",
                "tokens_used": 5,
                "cost": 0.0,
                "execution_time": 0.1,
                "dependencies": [],
                "output": {"text": "plain answer"},
                "metadata": {
                    "attempts": 1,
                    "tool_log": [
                        {"tool": "erp_lookup", "arguments": {"invoice": "INV-1"}, "error": None},
                        {"tool": "erp_lookup", "arguments": {"invoice": "INV-2"}, "error": "KeyError: 'INV-2'"},
                    ],
                },
            }
        ],
    }
    text = _text(agent_renderables(document, "lookup"))
    assert 'erp_lookup({"invoice": "INV-1"}) -> ok' in text
    assert 'erp_lookup({"invoice": "INV-2"}) -> error: KeyError: \'INV-2\'' in text
    assert "answer\n  plain answer" in text
    assert "not recorded" in text  # a run from before prompts were kept says so
    assert "lookup" in _text(run_renderables(document, width=80))
    with pytest.raises(UserInputError, match="did you mean 'lookup'"):
        find_agent(document, "lokup")


def test_load_result_accepts_the_file_itself(run_dir: Path) -> None:
    assert load_result(run_dir / "result.json")["name"] == "supplier_check"


def test_quiet_prints_only_the_reasons_with_cancelled_agents_grouped(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        WORKFLOW.replace("defaults:\n  module: Procurement\n", "").replace(
            "  - name: memo\n",
            "  - name: audit_note\n    module: Finance\n    description: x\n"
            "    dependencies: [sanctions]\n    llm_config: {model: gpt-4o-mini, max_tokens: 60}\n"
            "    prompt_template: note\n  - name: memo\n",
        )
    )
    proc = orchestrate("run", "wf.yaml", "--simulate", "-o", "runs", "--quiet", cwd=tmp_path)
    assert proc.returncode in (1, 3) and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: supplier_check: sanctions failed: simulated")
    assert lines[1] == ("error: supplier_check: 2 agents (audit_note, memo) cancelled: dependency 'sanctions' failed")


def _in_a_terminal(args: list[str], cwd: Path, columns: int) -> str:
    """What `orchestrate ARGS` draws in a terminal `columns` wide (a pty), escape sequences removed."""
    from tests.terminal import Terminal, plain

    with Terminal(args, cwd, columns=columns, lines=40) as terminal:
        terminal.finish()
        return plain(terminal.screen).replace("\r", "")


def test_show_in_an_80_column_terminal_keeps_its_hint_on_one_line_and_times_readable(tmp_path: Path) -> None:
    workflow = ROOT / "workflows" / "finance_month_end_close.yaml"
    done = orchestrate("run", str(workflow), "--simulate", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    shown = _in_a_terminal(["show", str(folder.relative_to(tmp_path))], tmp_path, columns=80)
    hint = f"one agent in full: orchestrate show runs/{folder.name} AGENT"
    assert (
        hint in shown.splitlines()
        or any(  # the terminal's own wrap, not a newline of ours
            line.startswith(hint[:80]) for line in shown.splitlines()
        )
    ), shown
    assert f"runs/{folder.name} AGENT" not in [line.strip() for line in shown.splitlines()], shown
    started = next(line for line in shown.splitlines() if line.startswith("started "))
    assert re.match(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00 ", started), started
