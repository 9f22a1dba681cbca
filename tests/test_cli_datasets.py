"""`orchestrate run --data` as users and CI run it: real subprocesses, real files, real kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from orchestrate.observe.dataset_report import read_json_lines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "workflows" / "invoice_review.yaml"
INVOICES = ROOT / "workflows" / "data" / "invoices.jsonl"

WORKFLOW = """\
name: vendor_screen
description: screen vendors
max_parallel_agents: 2
cost_budget: 1.0
inputs:
  vendor: {type: string}
  spend: {type: number}
  region: {type: string, default: EU}
defaults:
  module: Compliance
  llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 100, latency: %(latency)s}
agents:
  - name: screen
    prompt_template: Screen {vendor} in {region} spending {spend}
  - name: decide
    dependencies: [screen]
    prompt_template: Decide on {vendor} in {region} from {screen.output}
"""


def env() -> dict[str, str]:
    environment = {**os.environ, "CI": "true"}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        environment.pop(key, None)
    return environment


def orchestrate(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, rows: list[dict[str, Any]], latency: float = 0.0) -> tuple[Path, Path]:
    workflow = tmp_path / "screen.yaml"
    workflow.write_text(WORKFLOW % {"latency": latency})
    data = tmp_path / "vendors.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return workflow, data


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def only_dir(folder: Path) -> Path:
    (found,) = [p for p in folder.iterdir() if p.is_dir()]
    return found


def test_the_example_dataset_runs_offline_with_keys_and_shared_inputs(tmp_path: Path) -> None:
    proc = orchestrate(
        "run",
        str(EXAMPLE),
        "--data",
        str(INVOICES),
        "--key",
        "invoice_id",
        "--input",
        "region=US",
        "--simulate",
        "--budget",
        "5",
        "-o",
        str(tmp_path / "runs"),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "completed" and summary["counts"] == {"completed": summary["rows"]}
    assert 20 <= summary["rows"] <= 50
    run_dir = Path(summary["run_dir"])
    results = lines(run_dir / "results.jsonl")
    source = lines(INVOICES)
    assert [r["key"] for r in results] != [] and {r["key"] for r in results} == {s["invoice_id"] for s in source}
    assert all(r["outputs"]["payment_decision"]["decision"] in ("approve", "hold", "reject") for r in results)
    rows = lines(run_dir / "rows.jsonl")
    assert all(r["inputs"]["region"] == "US" for r in rows)
    cost = json.loads((run_dir / "cost.json").read_text())
    assert {c["row"] for c in cost["calls"]} == {s["invoice_id"] for s in source}
    assert cost["totals"]["cost"] == pytest.approx(summary["total_cost"])
    assert "\x1b[" not in proc.stderr and "Traceback" not in proc.stderr


def test_bad_rows_are_listed_with_their_lines_and_nothing_runs(tmp_path: Path) -> None:
    workflow, data = write(
        tmp_path, [{"vendor": "Acme", "spend": 1}, {"vendor": "Bolt", "spend": "lots"}, {"vendor": "Cog"}]
    )
    proc = orchestrate("run", str(workflow), "--data", str(data), "-o", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2
    errors = proc.stderr.splitlines()
    assert errors[0].startswith(f"{data}:2:1: ") and "'lots' is not a valid number" in errors[0]
    assert errors[1].startswith(f"{data}:3:1: ") and "needs input 'spend'" in errors[1]
    assert "2 of 3 rows are invalid" in errors[2] and "--skip-invalid-rows" in errors[2]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()

    proc = orchestrate(
        "run", str(workflow), "--data", str(data), "--skip-invalid-rows", "-o", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    statuses = sorted((r["row"], r["status"]) for r in lines(only_dir(tmp_path / "runs") / "results.jsonl"))
    assert statuses == [(1, "completed"), (2, "invalid"), (3, "invalid")]


def test_csv_from_stdin_with_typed_values(tmp_path: Path) -> None:
    workflow, _ = write(tmp_path, [])
    csv_text = "vendor,spend,region\nAcme,12.5,US\nBolt,3,\n"
    proc = orchestrate(
        "run",
        str(workflow),
        "--data",
        "-",
        "--key",
        "vendor",
        "-o",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        stdin=csv_text,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in lines(only_dir(tmp_path / "runs") / "rows.jsonl")}
    assert rows["Acme"]["inputs"] == {"vendor": "Acme", "spend": 12.5, "region": "US"}
    assert rows["Bolt"]["inputs"]["region"] == "EU"


def test_options_of_datasets_need_data_and_shards_are_checked(tmp_path: Path) -> None:
    workflow, data = write(tmp_path, [{"vendor": "Acme", "spend": 1}])
    proc = orchestrate("run", str(workflow), "--key", "vendor", cwd=tmp_path)
    assert proc.returncode == 2 and "need --data" in proc.stderr
    proc = orchestrate("run", str(workflow), "--data", str(data), "--shard", "3/2", cwd=tmp_path)
    assert proc.returncode == 2 and "--shard '3/2'" in proc.stderr
    proc = orchestrate("run", str(workflow), "--data", str(tmp_path / "missing.jsonl"), cwd=tmp_path)
    assert proc.returncode == 2 and "missing.jsonl: no such dataset file" in proc.stderr


def test_plan_junit_summary_cost_report_and_shard(tmp_path: Path) -> None:
    rows = [{"vendor": f"V{i}", "spend": i} for i in range(6)]
    workflow, data = write(tmp_path, rows)
    plan = orchestrate("plan", str(workflow), "--data", str(data), "--budget", "0.5", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    bounds = json.loads(plan.stdout)
    assert bounds["rows"] == 6 and 0 < bounds["min_cost"] <= bounds["max_cost"] <= 0.5

    proc = orchestrate(
        "run",
        str(workflow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--shard",
        "2/3",
        "--junit",
        "junit.xml",
        "--summary",
        "summary.md",
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = only_dir(tmp_path / "runs")
    assert [r["key"] for r in lines(run_dir / "results.jsonl")] in (["V1", "V4"], ["V4", "V1"])
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and {c.get("name") for c in suite.iter("testcase")} == {"row V1", "row V4"}
    assert "| completed | 2 |" in (tmp_path / "summary.md").read_text()

    report = orchestrate(
        "cost-report", str(run_dir), "--by", "row", "--format", "json", "--include-simulated", cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    grouped = json.loads(report.stdout)
    assert {r["row"] for r in grouped["rows"]} == {"V1", "V4"}
    assert all(r["calls"] == 2 for r in grouped["rows"])


def test_sigkill_mid_batch_then_resume_redoes_only_unfinished_rows(tmp_path: Path) -> None:
    rows = [{"vendor": f"Vendor {i:02d}", "spend": i} for i in range(24)]
    workflow, data = write(tmp_path, rows, latency=0.05)
    args = [
        sys.executable,
        "-m",
        "orchestrate",
        "run",
        str(workflow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--max-rows-parallel",
        "2",
    ]
    proc = subprocess.Popen(
        [*args, "-o", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    results = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "runs").glob("*/results.jsonl")) if (tmp_path / "runs").exists() else []
        if found and len(found[0].read_text().splitlines()) >= 5:
            results = found[0]
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait(30)
    assert results is not None
    text = results.read_text()
    body = text.splitlines()
    if not text.endswith("\n"):
        body = body[:-1]  # a line torn by the kill is skipped by every reader
    first = [json.loads(line) for line in body]  # every whole line is valid JSON
    done = {r["key"] for r in first if r["status"] == "completed"}
    assert 5 <= len(done) < 24
    run_dir = results.parent

    resumed = subprocess.run(
        [*args, "--resume", str(run_dir)], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    latest: dict[str, str] = {}
    for line in lines(run_dir / "results.jsonl"):
        latest[line["key"]] = line["status"]
    assert latest == {r["vendor"]: "completed" for r in rows}
    calls = lines(run_dir / "calls.jsonl")
    per_row: dict[str, int] = {}
    for call in calls:
        per_row[call["row"]] = per_row.get(call["row"], 0) + 1
    # Every row's two calls are on the journal once: a finished row (or agent) was never called
    # again, and what a kill cut short was only ever a call in flight.
    assert per_row == {r["vendor"]: 2 for r in rows}
    result = json.loads((run_dir / "result.json").read_text())
    assert result["counts"] == {"completed": 24} and result["status"] == "completed"
    assert result["total_cost"] == pytest.approx(sum(c["cost"] for c in calls))
    cost = json.loads((run_dir / "cost.json").read_text())  # a line the kill tore is left out
    assert len(cost["calls"]) == cost["totals"]["calls"] == len(calls)
    assert cost["totals"]["cost"] == pytest.approx(result["total_cost"])


def test_show_a_batch_and_one_row_like_a_single_run(tmp_path: Path) -> None:
    workflow, data = write(
        tmp_path, [{"vendor": "Acme", "spend": 1}, {"vendor": "Bolt", "spend": 2}, {"vendor": "Cog"}]
    )
    proc = orchestrate(
        "run", str(workflow), "--data", str(data), "--key", "vendor", "--skip-invalid-rows", "-o", "runs", cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    run_dir = only_dir(tmp_path / "runs")
    overview = orchestrate("show", str(run_dir), cwd=tmp_path)
    assert overview.returncode == 0, overview.stderr
    assert "3 rows (2 completed, 1 invalid)" in overview.stdout
    assert "needs input 'spend'" in overview.stdout and "--row KEY" in overview.stdout
    one = orchestrate("show", str(run_dir), "--row", "Bolt", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "screen" in one.stdout and "decide" in one.stdout and "spend=2" in one.stdout
    agent = orchestrate("show", str(run_dir), "--row", "Bolt", "decide", "--format", "json", cwd=tmp_path)
    assert json.loads(agent.stdout)["name"] == "decide"
    missing = orchestrate("show", str(run_dir), "--row", "Zed", cwd=tmp_path)
    assert missing.returncode == 2 and "no row 'Zed'" in missing.stderr
    never = orchestrate("show", str(run_dir), "--row", "Cog", cwd=tmp_path)
    assert never.returncode == 2 and "never ran: invalid" in never.stderr


def test_sigterm_stops_starting_rows_writes_reports_and_resume_finishes(tmp_path: Path) -> None:
    import signal

    rows = [{"vendor": f"V{i:02d}", "spend": i} for i in range(30)]
    workflow, data = write(tmp_path, rows, latency=0.05)
    args = [
        sys.executable,
        "-m",
        "orchestrate",
        "run",
        str(workflow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--max-rows-parallel",
        "2",
    ]
    proc = subprocess.Popen(
        [*args, "-o", "runs"], cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((tmp_path / "runs").glob("*/results.jsonl")) if (tmp_path / "runs").exists() else []
        if found and len(found[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    run_dir = only_dir(tmp_path / "runs")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "cancelled" and result["error"] == "interrupted by SIGTERM"
    assert 3 <= result["rows"] < 30
    # The closing block counts the rows never reached and says how to go on.
    assert "/30 rows completed" in out and f"{30 - result['rows']} not started" in out
    assert all(len(line) <= 80 for line in out.splitlines()[:2]), out  # the counts fit a terminal's width
    assert f"orchestrate run --resume runs/{run_dir.name}" in out  # the folder knows the rest
    json.loads((run_dir / "cost.json").read_text())

    wrong_key = subprocess.run(
        [*args[:-4], "--key", "spend", "--resume", str(run_dir)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong_key.returncode == 2 and "--key spend (the run has vendor)" in wrong_key.stderr
    resumed = subprocess.run(
        [*args, "--resume", str(run_dir)], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((run_dir / "result.json").read_text())
    assert final["counts"] == {"completed": 30} and final["status"] == "completed"
    # cost.json adds up both sessions' calls (the first session's summed when it was resumed)
    calls = list(read_json_lines(run_dir / "calls.jsonl"))
    cost = json.loads((run_dir / "cost.json").read_text())
    assert len(cost["calls"]) == len(calls) == cost["totals"]["calls"]
    assert cost["totals"]["cost"] == pytest.approx(sum(c["cost"] for c in calls))
    assert sum(b["calls"] for b in cost["by_agent"].values()) == len(calls)
    assert {c["row"] for c in calls} == {f"V{i:02d}" for i in range(30)}


def test_an_empty_dataset_is_an_error(tmp_path: Path) -> None:
    workflow, data = write(tmp_path, [])
    proc = orchestrate("run", str(workflow), "--data", str(data), cwd=tmp_path)
    assert proc.returncode == 2 and "no rows to run" in proc.stderr


def test_a_row_carries_the_workflows_declared_outputs(tmp_path: Path) -> None:
    workflow, data = write(tmp_path, [{"vendor": "Acme", "spend": 10}, {"vendor": "Bolt", "spend": 20}])
    workflow.write_text(
        workflow.read_text().replace(
            "agents:\n", 'outputs:\n  vendor: "{inputs.vendor}"\n  verdict: "{decide.output}"\nagents:\n', 1
        )
    )
    proc = orchestrate(
        "run",
        str(workflow),
        "--data",
        str(data),
        "--key",
        "vendor",
        "--simulate",
        "-o",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    results = lines(only_dir(tmp_path / "runs") / "results.jsonl")
    assert sorted(r["outputs"]["vendor"] for r in results) == ["Acme", "Bolt"]
    assert all(set(r["outputs"]) == {"vendor", "verdict"} and r["outputs"]["verdict"] for r in results)


def test_a_long_closing_sentence_puts_the_other_counts_on_a_line_of_their_own(tmp_path: Path) -> None:
    # A long workflow name and rows that are not all completed would pass 80 columns on one line.
    workflow, data = write(tmp_path, [{"vendor": "Acme", "spend": 10}, {"vendor": "Bolt", "spend": "lots"}])
    workflow.write_text(workflow.read_text().replace("name: vendor_screen", "name: quarterly_vendor_screen"))
    proc = orchestrate(
        "run", str(workflow), "--data", str(data), "--simulate", "--skip-invalid-rows", "-o", "runs", cwd=tmp_path
    )
    head = proc.stdout.strip().splitlines()[:3]
    assert head[0].startswith("quarterly_vendor_screen: ") and head[0].endswith(" - 1/2 rows completed,"), head
    assert head[1] == "  1 invalid;" and head[2].startswith("  $"), head
    assert all(len(line) <= 80 for line in head), head


def test_the_closing_lines_put_figures_after_the_counts_and_the_folder_on_its_own_line(tmp_path: Path) -> None:
    workflow, data = write(tmp_path, [{"vendor": "Acme", "spend": 10}, {"vendor": "Bolt", "spend": 20}])
    proc = orchestrate(
        "run", str(workflow), "--data", str(data), "--simulate", "-o", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    tail = proc.stdout.strip().splitlines()[-3:]
    assert tail[0] == "vendor_screen: completed (simulated) - 2/2 rows completed;"
    assert tail[1].startswith("  $0.0") and tail[1].endswith("s") and " tokens, " in tail[1]
    assert tail[2] == f"run folder: {only_dir(tmp_path / 'runs')}"
