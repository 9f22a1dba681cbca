"""An agent skipped by its `when` is a decision of the workflow, not a problem: every view shows it
beside the statuses with its reason (the condition and the value it had), never under Problems.

One real run of a workflow where one agent is skipped by its condition, a second because that one
was skipped, and a third fails; then the closing lines, `show` (text and JSON), JUnit, the Markdown
summary and report.html (also in headless Chromium), through the real command, piped, at 80 columns.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests import cli
from tests.chromium import chromium_path
from tests.test_answer import page_in_chromium

WORKFLOW = """\
name: month_close
cost_budget: 1.0
inputs:
  post_to_ledger: {type: boolean, default: false}
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 100}
agents:
  - name: totals
    prompt_template: "Total the adjustments"
  - name: post
    dependencies: [totals]
    when: "inputs.post_to_ledger"
    prompt_template: "Post them"
  - name: confirm
    dependencies: [post]
    prompt_template: "Confirm the posting"
  - name: memo
    dependencies: [totals]
    function: "memo_tools:write_memo"
    max_retries: 0
"""
TOOLS = """\
def write_memo():
    raise RuntimeError("the memo service is down")
"""
CONDITION = "when 'inputs.post_to_ledger' was false"
CASCADE = "dependency 'post' was skipped"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("skipped")
    (folder / "close.yaml").write_text(WORKFLOW)
    (folder / "memo_tools.py").write_text(TOOLS)
    done = cli.orchestrate(
        "run",
        "close.yaml",
        "--simulate",
        "--no-progress",
        "--junit",
        "junit.xml",
        "--summary",
        "summary.md",
        cwd=folder,
        columns=80,
        ci=False,
    )
    (run_dir,) = (folder / "runs").glob("month_close-*")
    return {"folder": folder, "done": done, "dir": run_dir}


def test_the_run_failed_only_because_of_the_failing_agent(run: dict[str, Any]) -> None:
    result = json.loads((run["dir"] / "result.json").read_text())
    statuses = {a["name"]: a["status"] for a in result["agents"]}
    assert statuses == {"totals": "completed", "post": "skipped", "confirm": "skipped", "memo": "failed"}, run[
        "done"
    ].stderr


def test_closing_lines_list_the_skips_apart_from_why_it_failed(run: dict[str, Any]) -> None:
    out = run["done"].stdout
    why = out.split("why:", 1)[1].split("skipped:", 1)[0]
    assert "memo" in why and "post" not in why
    skipped = out.split("skipped:", 1)[1]
    assert f"post  {CONDITION}" in skipped and f"confirm  {CASCADE}" in skipped


def test_show_gives_each_skip_its_reason_in_text_and_json(run: dict[str, Any]) -> None:
    text = cli.orchestrate("show", str(run["dir"]), cwd=run["folder"], columns=80, ci=False)
    assert text.returncode == 0, text.stderr
    (post,) = [line for line in text.stdout.splitlines() if "│ post " in line]
    assert "skipped" in post and CONDITION in post
    shown = cli.orchestrate("show", str(run["dir"]), "--format", "json", cwd=run["folder"], columns=80, ci=False)
    agents = {a["name"]: a for a in json.loads(shown.stdout)["agents"]}
    assert agents["post"]["why"] == f"skipped: {CONDITION}"
    assert agents["confirm"]["why"] == f"skipped: {CASCADE}"
    assert agents["memo"]["why"] and "memo service is down" in agents["memo"]["why"]
    assert agents["totals"]["why"] is None


def test_junit_marks_the_skips_skipped_with_their_reason_and_only_the_failure_failed(run: dict[str, Any]) -> None:
    root = ET.parse(run["folder"] / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    for name, why in (("post", CONDITION), ("confirm", CASCADE)):
        skipped = cases[name].find("skipped")
        assert skipped is not None and why in str(skipped.get("message"))
        assert cases[name].find("failure") is None
    assert cases["memo"].find("failure") is not None
    assert root.get("failures") == "1" and root.get("skipped") == "2"


def test_markdown_summary_counts_the_skips_and_gives_their_reason_as_why_not_error(run: dict[str, Any]) -> None:
    text = (run["folder"] / "summary.md").read_text()
    assert "1/4 agents completed, 2 skipped by a condition" in text
    assert "| agent | module | status | model | tokens | cost | why |" in text
    (post,) = [line for line in text.splitlines() if line.startswith("| post |")]
    assert "| skipped |" in post and CONDITION in post


def _section(html: str, heading: str) -> str:
    return html.split(f"<h3>{heading}</h3>", 1)[1].split("</section>", 1)[0]


def test_report_lists_skips_under_skipped_with_their_reason_not_under_problems(run: dict[str, Any]) -> None:
    html = (run["dir"] / "report.html").read_text()
    problems = _section(html, "Problems")
    assert ">memo</a>" in problems
    assert ">post</a>" not in problems and ">confirm</a>" not in problems
    skipped = _section(html, "Skipped")
    assert ">post</a>" in skipped and CONDITION.replace("'", "&#x27;") in skipped
    assert ">confirm</a>" in skipped and CASCADE.replace("'", "&#x27;") in skipped
    assert ">memo</a>" not in skipped
    post = html.split('id="' + run["dir"].name + '--post"', 1)[1].split("</details>", 1)[0]
    assert '<p class="note">skipped: ' in post and '<p class="error">' not in post


def test_report_of_a_run_whose_only_other_status_is_skipped_says_nothing_went_wrong(tmp_path: Path) -> None:
    (tmp_path / "close.yaml").write_text(
        WORKFLOW.replace('function: "memo_tools:write_memo"', 'prompt_template: "memo"')
    )
    done = cli.orchestrate("run", "close.yaml", "--simulate", "--no-progress", cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 0, done.stderr
    (report,) = tmp_path.glob("runs/*/report.html")
    problems = _section(report.read_text(), "Problems")
    assert "Every agent completed or was skipped by a condition." in problems


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_in_chromium_shows_the_skipped_section_with_no_console_error(run: dict[str, Any]) -> None:
    text, errors = page_in_chromium((run["dir"] / "report.html").resolve().as_uri())
    assert errors == []
    assert text.index("Problems") < text.index("Skipped")
    skipped = text[text.index("Skipped") :]
    assert CONDITION in skipped and CASCADE in skipped


def test_show_of_one_skipped_agent_gives_its_reason_and_no_none_for_a_model_it_never_had(
    run: dict[str, Any],
) -> None:
    shown = cli.orchestrate("show", str(run["dir"]), "post", cwd=run["folder"], columns=80, ci=False)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1].startswith("skipped - ")
    assert lines[2] == "Finance | gpt-4o-mini | after totals"
    assert f"skipped: {CONDITION}" in shown.stdout and "None" not in shown.stdout
