"""The answer first: a run's inputs and outputs (or its last agents' answers) lead every view of it.

The closing lines, `orchestrate show` (text and JSON), the Markdown summary and
report.html, each checked through the real command, piped, at 80 columns.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrate.observe.answer import answer_lines, flatten, run_answer
from tests import cli
from tests.chromium import Browser, RecordingProxy, chromium_path

ROOT = Path(__file__).resolve().parents[1]

CLOSE = """\
name: month_close
description: Close one accounting period.
cost_budget: 1.0
inputs:
  period: {type: string, default: "2026-11"}
outputs:
  period: "{period}"
  adjustments_total: "{adjust.output.total}"
  memo: "{memo.output}"
  journal_id: "{post.output.journal_id}"
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 200}
agents:
  - name: adjust
    prompt_template: "Total the adjustments of {period}"
    output_schema:
      type: object
      required: [total]
      properties: {total: {type: number}}
  - name: memo
    dependencies: [adjust]
    prompt_template: "Write the close memo for {period}: adjustments of {adjust.output.total}, and then some more words"
  - name: post
    dependencies: [adjust]
    when: "inputs.period == 'never'"
    prompt_template: "Post {adjust.output.total}"
"""

NO_OUTPUTS = """\
name: vendor_screen
cost_budget: 1.0
defaults:
  module: Compliance
  llm_config: {model: gpt-4o-mini, max_tokens: 200}
agents:
  - name: lookup
    prompt_template: "Look up the vendor"
  - name: verdict
    dependencies: [lookup]
    prompt_template: "Give a verdict on {lookup.output}"
    output_schema:
      type: object
      required: [decision]
      properties: {decision: {type: string}}
  - name: notes
    dependencies: [lookup]
    prompt_template: "Write a long note about the vendor and everything we know of it, {lookup.output}"
"""


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, piped (no terminal, not CI), at 80 columns."""
    return cli.orchestrate(*args, cwd=cwd, columns=80, ci=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run with declared outputs, one without; their folders and closing lines."""
    folder = tmp_path_factory.mktemp("answer")
    (folder / "close.yaml").write_text(CLOSE)
    (folder / "screen.yaml").write_text(NO_OUTPUTS)
    found: dict[str, Any] = {"folder": folder}
    for name in ("close", "screen"):
        done = orchestrate("run", f"{name}.yaml", "--simulate", "--no-progress", cwd=folder)
        assert done.returncode == 0, done.stderr
        (run_dir,) = (folder / "runs").glob(f"{'month_close' if name == 'close' else 'vendor_screen'}-*")
        found[name] = {"closing": done.stdout + done.stderr, "dir": run_dir}
    return found


def _closing_block(text: str, workflow: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{workflow}: "))
    return lines[start:]


def test_closing_lines_print_the_declared_outputs_before_the_run_folder(runs: dict[str, Any]) -> None:
    block = _closing_block(runs["close"]["closing"], "month_close")
    assert block[1:3] == ["skipped:", "  post  when \"inputs.period == 'never'\" was false"]
    block = block[2:]
    assert block[1] == "outputs:"
    assert block[2] == "  period: 2026-11"
    result = json.loads((runs["close"]["dir"] / "result.json").read_text())
    assert block[3] == f"  adjustments_total: {json.dumps(result['outputs']['adjustments_total'])}"
    assert block[4].startswith("  memo: [simulated gpt-4o-mini] Response to: Write the close memo")
    assert block[4].endswith("…") and len(block[4]) <= 80
    assert block[5] == "  journal_id: null"  # its agent was skipped
    assert (
        block[6]
        == f"  (trimmed; in full: orchestrate show {runs['close']['dir'].relative_to(runs['folder'])} --format json)"
    )
    assert block[7].startswith("run folder: ")
    assert all(len(line) <= 80 for line in block[1:6])


def test_a_workflow_without_outputs_shows_its_last_agents_answers(runs: dict[str, Any]) -> None:
    block = _closing_block(runs["screen"]["closing"], "vendor_screen")
    run_dir = runs["screen"]["dir"].relative_to(runs["folder"])
    assert block[1] == "answers:"
    assert block[2].startswith('  verdict: {"decision": "')  # JSON, on one line
    assert block[3].startswith("  notes: [simulated gpt-4o-mini] Response to: Write a long note")
    assert block[3].endswith("…") and len(block[3]) <= 80
    assert f"  (notes trimmed; in full: orchestrate show {run_dir} notes)" in block
    assert not any(line.startswith("  lookup:") for line in block)  # others depend on it


def test_show_starts_with_the_inputs_and_the_outputs(runs: dict[str, Any]) -> None:
    run_dir = runs["close"]["dir"]
    done = orchestrate("show", str(run_dir), cwd=runs["folder"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("month_close: completed (simulated)")
    assert lines[2] == "Close one accounting period."
    assert lines[3:5] == ["inputs:", "  period=2026-11"]
    assert lines[5] == "outputs:"
    assert lines.index("outputs:") < next(i for i, line in enumerate(lines) if "agent" in line and "status" in line)
    assert all(len(line) <= 80 for line in lines[2 : lines.index("outputs:") + 5])  # tables print whole when piped


def test_show_as_json_carries_outputs_or_answers(runs: dict[str, Any]) -> None:
    close = json.loads(orchestrate("show", str(runs["close"]["dir"]), "--format", "json", cwd=runs["folder"]).stdout)
    result = json.loads((runs["close"]["dir"] / "result.json").read_text())
    assert close["outputs"] == result["outputs"] and close["answers"] is None
    assert close["inputs"] == {"period": "2026-11"}
    screen = json.loads(orchestrate("show", str(runs["screen"]["dir"]), "--json", cwd=runs["folder"]).stdout)
    assert screen["outputs"] is None
    assert set(screen["answers"]) == {"verdict", "notes"}
    assert isinstance(screen["answers"]["verdict"], dict)


def test_the_markdown_summary_leads_with_inputs_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(CLOSE)
    done = orchestrate("run", "close.yaml", "--simulate", "--quiet", "--summary", "summary.md", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "summary.md").read_text()
    assert "Close one accounting period." in text
    assert "| period | 2026-11 |" in text
    assert "| journal_id | null |" in text
    assert text.index("| output | value |") < text.index("| agent | module |")


def test_a_last_agent_without_an_answer_says_why() -> None:
    document = {
        "agents": [
            {"name": "a", "status": "completed", "output": {"text": "fine"}, "dependencies": []},
            {"name": "b", "status": "failed", "output": None, "dependencies": ["a"]},
        ]
    }
    assert run_answer(document)[0] == "answers"
    assert answer_lines(document, "orchestrate show runs/x") == ["answer:", "  b: (failed)"]


def test_flatten_names_nested_fields_with_dots() -> None:
    assert flatten({"payment_decision": {"decision": "hold", "why": {"code": 3}}, "n": [1, 2]}) == {
        "payment_decision.decision": "hold",
        "payment_decision.why.code": 3,
        "n": [1, 2],
    }


# --- report.html, in a real browser ------------------------------------------------------------


def page_in_chromium(url: str) -> tuple[str, list[str]]:
    """The visible text of `url` in headless Chromium, and every console error and exception."""
    proxy = RecordingProxy()
    try:
        with Browser(proxy.port) as browser:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session=session)
            browser.events.clear()
            browser.send("Page.navigate", {"url": url}, session=session)
            browser.wait_for("Page.loadEventFired")
            text = browser.send(
                "Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True}, session=session
            )["result"]["value"]
            errors = [
                json.dumps(event.get("params"))
                for event in browser.events
                if event.get("method") == "Runtime.exceptionThrown"
                or (event.get("method") == "Log.entryAdded" and event["params"]["entry"].get("level") == "error")
                or (event.get("method") == "Runtime.consoleAPICalled" and event["params"].get("type") == "error")
            ]
    finally:
        proxy.close()
    return text, errors


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_header_shows_description_inputs_and_outputs_first(runs: dict[str, Any]) -> None:
    text, errors = page_in_chromium((runs["close"]["dir"] / "report.html").resolve().as_uri())
    assert errors == []
    assert "Close one accounting period." in text
    for heading in ("Inputs", "Outputs"):
        assert heading in text
    assert text.index("Outputs") < text.index("Status") < text.index("Timeline")
    assert "adjustments_total" in text and "2026-11" in text
    text, errors = page_in_chromium((runs["screen"]["dir"] / "report.html").resolve().as_uri())
    assert errors == []
    assert "Answers" in text and "declares no outputs:" in text
    assert text.index("verdict") < text.index("Status")
