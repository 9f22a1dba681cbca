"""The workflow language through the CLI: approvals (exit 4, approve, resume), item resume, plan."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import jsonschema
import pytest

from tests import cli

REPO = Path(__file__).resolve().parent.parent

STEPS = """
import json
import os
from pathlib import Path

HERE = Path(__file__).parent

def check(item):
    with open(HERE / "calls.log", "a") as log:
        log.write(item + "\\n")
    if (HERE / f"break-{item}").exists():
        raise RuntimeError(f"{item} is broken")
    return {"item": item, "ok": True}
"""

WORKFLOW = """
name: ledger
allow_partial_completion: {partial}
defaults:
  module: Finance
  llm_config: {{model: gpt-4o-mini, max_tokens: 40}}
  retry: {{strategy: immediate}}
  max_retries: 0
inputs:
  lines: {{type: array, default: [a, b, c]}}
outputs:
  checked: "{{check_line.output}}"
agents:
  - name: check_line
    foreach: "{{lines}}"
    max_items: 5
    function: "steps_cli:check"
    arguments: {{item: "{{item}}"}}
  - name: adjustments
    dependencies: [check_line]
    prompt_template: "Adjust for {{check_line.output}}"
  - name: post_adjustments
    dependencies: [adjustments]
    approval: {{message: "Post {{adjustments.output}}?"}}
    prompt_template: post
  - name: notify
    dependencies: [post_adjustments]
    prompt_template: notify
  - name: independent
    prompt_template: independent
"""


def setup(tmp_path: Path, partial: bool = False) -> Path:
    (tmp_path / "steps_cli.py").write_text(STEPS, encoding="utf-8")
    path = tmp_path / "ledger.yaml"
    path.write_text(textwrap.dedent(WORKFLOW.format(partial=str(partial).lower())), encoding="utf-8")
    return path


def orchestrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli.orchestrate(*args, cwd=cwd, columns=200)


def newest(output: Path) -> Path:
    return sorted(output.iterdir())[-1]


def result(run_dir: Path) -> dict[str, object]:
    document = json.loads((run_dir / "result.json").read_text("utf-8"))
    schema = json.loads((REPO / "schemas" / "result.schema.json").read_text("utf-8"))
    jsonschema.validate(document, schema)
    return document


def agents(document: dict[str, object]) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in document["agents"]}  # type: ignore[index,union-attr]


def test_without_a_terminal_the_run_waits_with_exit_4_then_approve_and_resume_finish_it(tmp_path: Path) -> None:
    workflow = setup(tmp_path)
    out = tmp_path / "runs"
    first = orchestrate("run", str(workflow), "--simulate", "-o", str(out), cwd=tmp_path)
    assert first.returncode == 4, first.stderr
    assert "Traceback" not in first.stderr
    run_dir = newest(out)
    doc = result(run_dir)
    assert doc["status"] == "waiting"
    rows = agents(doc)
    assert rows["post_adjustments"]["status"] == "waiting_approval"
    assert rows["notify"]["status"] == "pending" and rows["independent"]["status"] == "completed"

    approved = orchestrate(
        "approve", str(run_dir), "post_adjustments", "--by", "alice", "--note", "checked", cwd=tmp_path
    )
    assert approved.returncode == 0, approved.stderr
    again = orchestrate("approve", str(run_dir), "post_adjustments", cwd=tmp_path)
    assert again.returncode == 2 and "already approved by alice" in again.stderr
    unknown = orchestrate("approve", str(run_dir), "nobody", cwd=tmp_path)
    assert unknown.returncode == 2 and "no agent 'nobody'" in unknown.stderr
    decided = [
        json.loads(line)
        for line in (run_dir / "events.jsonl").read_text("utf-8").splitlines()
        if '"approval_decided"' in line
    ]
    assert decided[-1]["data"]["by"] == "alice" and decided[-1]["data"]["note"] == "checked"

    resumed = orchestrate(
        "run", str(workflow), "--simulate", "-o", str(out), "--resume", str(run_dir), "--json", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)["runs"][0]
    assert summary["status"] == "completed"
    assert summary["outputs"]["checked"] == [{"item": x, "ok": True} for x in "abc"]
    doc = result(Path(summary["run_dir"]))
    approval = agents(doc)["post_adjustments"]["metadata"]["approval"]
    assert approval["decision"] == "approved" and approval["by"] == "alice" and approval["note"] == "checked"
    assert agents(doc)["independent"]["metadata"].get("reused") is True
    events = (Path(summary["run_dir"]) / "events.jsonl").read_text("utf-8")
    assert '"approval_decided"' in events
    # The items were not run again.
    assert sorted((tmp_path / "calls.log").read_text().split()) == ["a", "b", "c"]  # items run in parallel


def test_a_rejection_cancels_the_dependents_and_fails_the_run(tmp_path: Path) -> None:
    workflow = setup(tmp_path)
    out = tmp_path / "runs"
    orchestrate("run", str(workflow), "--simulate", "-o", str(out), cwd=tmp_path)
    run_dir = newest(out)
    rejected = orchestrate(
        "approve", str(run_dir), "post_adjustments", "--reject", "--note", "wrong period", cwd=tmp_path
    )
    assert rejected.returncode == 0, rejected.stderr
    resumed = orchestrate("run", str(workflow), "--simulate", "-o", str(out), "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    rows = agents(result(newest(out)))
    assert rows["post_adjustments"]["status"] == "rejected"
    assert "wrong period" in str(rows["post_adjustments"]["error"])
    assert rows["notify"]["status"] == "cancelled"


def test_approve_up_front_for_unattended_runs(tmp_path: Path) -> None:
    workflow = setup(tmp_path)
    out = tmp_path / "runs"
    named = orchestrate(
        "run", str(workflow), "--simulate", "-o", str(out), "--approve", "post_adjustments", cwd=tmp_path
    )
    assert named.returncode == 0, named.stderr
    approval = agents(result(newest(out)))["post_adjustments"]["metadata"]["approval"]
    assert approval["source"] == "--approve" and approval["approved"] is True
    every = orchestrate("run", str(workflow), "--simulate", "-o", str(out), "--approve-all", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    wrong = orchestrate("run", str(workflow), "--simulate", "-o", str(out), "--approve", "notify", cwd=tmp_path)
    assert wrong.returncode == 2 and "has no agent 'notify' with an approval" in wrong.stderr


def test_resume_reruns_only_the_items_that_failed(tmp_path: Path) -> None:
    workflow = setup(tmp_path, partial=True)
    (tmp_path / "break-b").touch()
    out = tmp_path / "runs"
    first = orchestrate("run", str(workflow), "--simulate", "-o", str(out), "--approve-all", cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    run_dir = newest(out)
    row = agents(result(run_dir))["check_line"]
    assert row["metadata"]["failed_items"] == [1]
    assert row["output"]["json"] == [{"item": "a", "ok": True}, None, {"item": "c", "ok": True}]
    (tmp_path / "break-b").unlink()
    (tmp_path / "calls.log").unlink()
    second = orchestrate(
        "run", str(workflow), "--simulate", "-o", str(out), "--approve-all", "--resume", str(run_dir), cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "calls.log").read_text().split() == ["b"]
    row = agents(result(newest(out)))["check_line"]
    assert [item.get("reused", False) for item in row["metadata"]["items"]] == [True, False, True]


def test_plan_shows_conditional_agents_and_foreach_bounds(tmp_path: Path) -> None:
    workflow = setup(tmp_path)
    text = workflow.read_text("utf-8").replace(
        "    prompt_template: notify", '    when: "inputs.lines != []"\n    prompt_template: notify'
    )
    workflow.write_text(text, encoding="utf-8")
    planned = orchestrate("plan", str(workflow), "--json", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)["plans"][0]
    rows = {row["name"]: row for row in plan["agents"]}
    assert rows["check_line"]["code_step"] is True and rows["check_line"]["runs"] == "0-5"
    assert rows["check_line"]["max_cost"] == 0.0
    assert rows["notify"]["conditional"] is True and rows["notify"]["runs"] == "0-1"
    assert rows["notify"]["min_cost"] == 0.0 and rows["notify"]["max_cost"] > 0
    assert rows["adjustments"]["min_cost"] > 0
    table = orchestrate("plan", str(workflow), cwd=tmp_path)
    assert "notify (conditional)" in table.stdout and "check_line (foreach)" in table.stdout


def test_the_finance_close_posts_only_after_the_controller_approves(tmp_path: Path) -> None:
    workflow = REPO / "workflows" / "finance_month_end_close.yaml"
    out = tmp_path / "runs"
    default = orchestrate("run", str(workflow), "--simulate", "-o", str(out), "--json", cwd=tmp_path)
    assert default.returncode == 0, default.stderr  # not asked to post: the posting is skipped
    assert json.loads(default.stdout)["runs"][0]["agents"]["post_adjustments"] == "skipped"
    asked = orchestrate(
        "run", str(workflow), "--simulate", "-o", str(out), "--input", "post_to_ledger=true", "--json", cwd=tmp_path
    )
    assert asked.returncode == 4, asked.stderr
    run_dir = Path(json.loads(asked.stdout)["runs"][0]["run_dir"])
    message = agents(result(run_dir))["post_adjustments"]["metadata"]["approval"]["message"]
    assert message.startswith("Post ") and "to the ledger of ACME Holdings Ltd (acme-prod)?" in message
    assert orchestrate("approve", str(run_dir), "post_adjustments", "--by", "controller", cwd=tmp_path).returncode == 0
    resumed = orchestrate(
        "run",
        str(workflow),
        "--simulate",
        "-o",
        str(out),
        "--input",
        "post_to_ledger=true",
        "--resume",
        str(run_dir),
        "--json",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)["runs"][0]
    assert summary["outputs"]["journal_id"].startswith("JE-202610-")
    assert summary["agents"]["close_memo"] == "completed"


def test_tags_reach_cost_json_and_cost_report_groups_by_them(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for name in ("finance_month_end_close", "ap_three_way_match", "hr_onboarding"):
        proc = orchestrate(
            "run", str(REPO / "workflows" / f"{name}.yaml"), "--simulate", "-o", str(out), "-q", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
    finance = json.loads(next(out.glob("finance_month_end_close-*/cost.json")).read_text("utf-8"))
    jsonschema.validate(finance, json.loads((REPO / "schemas" / "cost.schema.json").read_text("utf-8")))
    assert finance["tags"] == ["finance", "month-end-close"]
    assert finance["agent_tags"]["post_adjustments"] == ["finance", "month-end-close", "ledger-posting"]
    report = orchestrate(
        "cost-report", str(out), "--by", "tag", "--format", "json", "--include-simulated", cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    payload = json.loads(report.stdout)
    rows = {row["tag"]: row for row in payload["rows"]}
    assert set(rows) == {"accounts-payable", "finance", "month-end-close", "untagged"}
    assert rows["finance"]["calls"] == rows["month-end-close"]["calls"] == finance["totals"]["calls"]
    # A call with two tags is in two rows, but in the total once.
    assert (
        payload["total"]["calls"]
        == rows["accounts-payable"]["calls"] + rows["finance"]["calls"] + rows["untagged"]["calls"]
    )


@pytest.mark.parametrize(
    "tampered", ["[]", "null", '{"agents": 5}', '{"agents": [{"name": null, "status": "waiting_approval"}]}']
)
def test_approve_on_a_tampered_result_is_one_line_and_exit_2(tmp_path: Path, tampered: str) -> None:
    workflow = setup(tmp_path)
    out = tmp_path / "runs"
    assert orchestrate("run", str(workflow), "--simulate", "-o", str(out), cwd=tmp_path).returncode == 4
    run_dir = newest(out)
    (run_dir / "result.json").write_text(tampered)
    done = orchestrate("approve", str(run_dir), "post_adjustments", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(run_dir) in done.stderr
