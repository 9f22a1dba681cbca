"""What trips users in everyday output: graph without inputs, and the like (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import orchestrate

ROOT = Path(__file__).resolve().parents[1]


def test_graph_needs_no_input_values(tmp_path: Path) -> None:
    (tmp_path / "req.yaml").write_text(
        "name: req\ninputs:\n  vendor: {type: string}\nagents:\n  - name: draft\n    module: Finance\n"
        "    prompt_template: Screen {vendor}.\n    llm_config: {model: gpt-4o-mini}\n",
        encoding="utf-8",
    )
    for fmt in ("tree", "mermaid", "json"):
        done = orchestrate("graph", "req.yaml", "--format", fmt, cwd=tmp_path)
        assert done.returncode == 0 and "--input" not in done.stderr, done.stderr
        assert "draft" in done.stdout
    assert "req (1 agent)" in orchestrate("graph", "req.yaml", cwd=tmp_path).stdout


def test_a_tool_module_leaves_no_pycache_in_the_workflows_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from orchestrate.workflow.modules import import_module

    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "pycache_probe_steps.py").write_text("import pycache_probe_helper\nVALUE = pycache_probe_helper.X\n")
    (folder / "pycache_probe_helper.py").write_text("X = 7\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delitem(sys.modules, "pycache_probe_steps", raising=False)
    monkeypatch.delitem(sys.modules, "pycache_probe_helper", raising=False)
    try:
        assert import_module("pycache_probe_steps", folder).VALUE == 7
    finally:
        sys.modules.pop("pycache_probe_steps", None)
        sys.modules.pop("pycache_probe_helper", None)
    assert not (folder / "__pycache__").exists()
    assert sys.dont_write_bytecode is False  # put back as it was


def test_a_run_with_code_steps_leaves_no_pycache_beside_the_workflow(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "workflows", tmp_path / "workflows", ignore=shutil.ignore_patterns("__pycache__", "runs"))
    done = orchestrate(
        "run",
        "workflows/finance_month_end_close.yaml",
        "--simulate",
        "-q",
        cwd=tmp_path,
        env={"PYTHONDONTWRITEBYTECODE": ""},
    )
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "workflows").rglob("__pycache__"))


BAD = """\
name: bad
timeout: 10m
agents:
  - name: summarize
    module: Finance
    prompt_template: Sum up.
    llm_config: {model: gpt-4o-mini}
  - name: notify
    module: Finance
    dependencies: [summarize]
    when: "{summarize.output.all_matched} == false"
    prompt_template: {summarize.output}
    llm_config: {model: gpt-4o-mini}
"""


def test_workflow_language_mistakes_get_their_fix(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    done = orchestrate("validate", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert "= help: timeout is a number of seconds, without a unit: timeout: 600" in out
    assert "= help: conditions are CEL without braces: summarize.output.all_matched == false" in out
    assert '= help: quote a value that starts with {: prompt_template: "{summarize.output}"' in out
    assert out.count("bad.yaml:11:") == 1  # one diagnostic for the condition, not a pair


def test_a_value_gets_one_diagnostic_not_a_pair(tmp_path: Path) -> None:
    (tmp_path / "fan.yaml").write_text(
        "name: fan\ninputs:\n  lines: {type: array, default: [1]}\nagents:\n  - name: check_line\n"
        "    module: Finance\n    foreach: inputs.lines\n    max_items: 3\n    prompt_template: Check {item}.\n"
        "    llm_config: {model: gpt-4o-mini}\n",
        encoding="utf-8",
    )
    done = orchestrate("validate", "fan.yaml", cwd=tmp_path)
    assert done.returncode == 2
    located = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("fan.yaml:7:")]
    assert len(located) == 1 and "foreach takes one placeholder" in located[0], located
    assert "does not match" not in done.stdout + done.stderr


def test_a_combined_report_is_sorted_by_start_and_marks_simulated_runs(tmp_path: Path) -> None:
    import json
    import re

    for name in ("hr_onboarding", "finance_invoice_coding"):
        done = orchestrate("run", str(ROOT / "workflows" / f"{name}.yaml"), "--simulate", "-q", cwd=tmp_path)
        assert done.returncode in (0, 5), done.stderr
    folders = sorted(
        (tmp_path / "runs").iterdir(), key=lambda p: json.loads((p / "result.json").read_text())["started_at"]
    )
    # Named newest first: the page still lists the oldest first.
    done = orchestrate("report", str(folders[1]), str(folders[0]), "-o", "all.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "all.html").read_text()
    overview = html.split("</section>", 1)[0]
    assert overview.index(folders[0].name) < overview.index(folders[1].name)
    assert overview.count('<span class="sim">simulated</span>') == 2
    assert "$0.00 spent" in overview and "simulated, not paid" in overview
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d</td>", overview)
    articles = html.split('<article class="run">')[1:]
    assert folders[0].name in articles[0] and folders[1].name in articles[1]
