"""`orchestrate run --provider-batch` as a user runs it: a real subprocess, the loopback server.

The server's batches move on a clock the test holds: the first run's batch
stays `in_progress` until the test lets it finish, so Ctrl-C lands after the
submission and before any answer, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_batch import FakeBatchProvider, FakeClock

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(FakeClock(), validate_s=0.0, process_s=0.0, finalize_s=0.0) as fake:
        yield fake


def workflow_file(tmp_path: Path, server: FakeBatchProvider, width: int = 4) -> Path:
    lines = [
        "name: batch_invoices",
        "cost_budget: 5.0",
        "max_parallel_agents: 2",
        "defaults:",
        "  module: Finance",
        f"  llm_config: {{model: gpt-4o-mini, base_url: '{server.url}/v1', max_tokens: 40}}",
        "agents:",
    ]
    for i in range(width):
        lines += [f"  - name: extract_{i}", f"    prompt_template: 'Extract the total of invoice {i}.'"]
    for i in range(width):
        lines += [
            f"  - name: check_{i}",
            f"    dependencies: [extract_{i}]",
            f"    prompt_template: 'Check {{extract_{i}.output}}'",
        ]
    path = tmp_path / "batch_invoices.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrate", *args]


def environment() -> dict[str, str]:
    env = {**os.environ, "CI": "true", "OPENAI_API_KEY": KEY}
    env.pop("OPENAI_BASE_URL", None)
    return env


def only_run(folder: Path) -> Path:
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    return run_dir


def test_ctrl_c_after_submission_then_resume_collects_without_resubmitting(
    tmp_path: Path, server: FakeBatchProvider
) -> None:
    path = workflow_file(tmp_path, server)
    server.process_s = 10_000.0  # the first run's batch stays in progress
    first = subprocess.Popen(
        command(
            "run",
            str(path),
            "-o",
            str(tmp_path / "runs"),
            "--provider-batch",
            "--batch-window",
            "0.05",
            "--batch-poll-max",
            "0.2",
        ),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(server.polls.values()):
        time.sleep(0.02)
    assert server.submissions == 1 and any(server.polls.values())
    run_dir = only_run(tmp_path / "runs")
    ledger = json.loads((run_dir / "batches.json").read_text())["batches"]
    (record,) = ledger.values()
    assert record["batch_id"] == server.submitted[0]["batch_id"] and record["file_id"].startswith("file-in-")
    assert sorted(record["custom_ids"]) == sorted(i["custom_id"] for i in server.submitted[0]["items"])
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert "Traceback" not in stderr and KEY not in stderr
    assert "left running at the provider" in stderr and "--resume" in stderr
    assert server.batches[record["batch_id"]]["cancelled_at"] is None  # not cancelled without --cancel-batches
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "cancelled" and result["total_cost"] == 0
    assert json.loads((run_dir / "batches.json").read_text())["batches"][record["batch_id"]]["collected"] is False
    shown = subprocess.run(
        command("show", str(run_dir)), cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "open provider batches (1 of 1" in shown.stdout and "--resume" in shown.stdout
    assert f"batch {record['batch_id']} (openai/gpt-4o-mini) in_progress: 0/4 done" in shown.stdout
    shown = subprocess.run(
        command("show", str(run_dir), "--format", "json"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    (listed,) = json.loads(shown.stdout)["batches"]
    assert listed["open"] is True and listed["requests"] == 4 and "custom_ids" not in listed

    server.process_s = 0.0  # meanwhile the provider finished the batch
    resumed = subprocess.run(
        command(
            "run",
            str(path),
            "-o",
            str(tmp_path / "resumed"),
            "--provider-batch",
            "--batch-window",
            "0.05",
            "--batch-poll-max",
            "0.2",
            "--resume",
            str(run_dir),
        ),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    # The extract layer was collected from the open batch; only the check layer was submitted.
    assert server.submissions == 2
    assert {i["custom_id"].split("-a")[0] for i in server.submitted[1]["items"]} == {f"check_{i}" for i in range(4)}
    second = only_run(tmp_path / "resumed")
    cost = json.loads((second / "cost.json").read_text())
    assert len(cost["calls"]) == 8 and all(c["batch"] and c["batch_id"] for c in cost["calls"])
    assert {c["batch_id"] for c in cost["calls"] if c["agent"].startswith("extract")} == {record["batch_id"]}
    ledger = json.loads((second / "batches.json").read_text())["batches"]
    assert all(b["collected"] for b in ledger.values()) and set(ledger) == {s["batch_id"] for s in server.submitted}
    assert "batch " in resumed.stderr and "results collected" in resumed.stderr
    shown = subprocess.run(
        command("show", str(second)), cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert "provider batches: 2, all collected" in shown.stdout

    report = subprocess.run(
        command("cost-report", str(tmp_path / "resumed"), "--by", "mode", "--format", "json"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert [r["mode"] for r in rows] == ["batch"] and rows[0]["calls"] == 8


def test_cancel_batches_cancels_them_at_the_provider_on_ctrl_c(tmp_path: Path, server: FakeBatchProvider) -> None:
    path = workflow_file(tmp_path, server, width=2)
    server.process_s = 10_000.0
    proc = subprocess.Popen(
        command(
            "run",
            str(path),
            "-o",
            str(tmp_path / "runs"),
            "--provider-batch",
            "--batch-window",
            "0.05",
            "--batch-poll-max",
            "0.2",
            "--cancel-batches",
        ),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(server.polls.values()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    (batch,) = server.batches.values()
    assert batch["cancelled_at"] is not None
    assert "cancel requested" in stderr


def test_bad_batch_flags_are_one_line_errors(tmp_path: Path, server: FakeBatchProvider) -> None:
    path = workflow_file(tmp_path, server, width=1)
    proc = subprocess.run(
        command("run", str(path), "--provider-batch", "--batch-fallback", "sometimes"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--batch-fallback 'sometimes'" in proc.stderr
    assert server.submissions == 0


def test_a_damaged_batch_record_is_a_one_line_error_before_anything_is_sent(
    tmp_path: Path, server: FakeBatchProvider
) -> None:
    path = workflow_file(tmp_path, server, width=1)
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "events.jsonl").write_text(
        json.dumps(
            {
                "timestamp": 1764000000.0,
                "type": "workflow_started",
                "workflow_id": "w1",
                "agent": None,
                "workflow_name": "batch_invoices",
                "data": {"name": "batch_invoices", "agents": []},
            }
        )
        + "\n"
    )
    for damage, message in (
        ("{not json", ":1:2: not valid JSON"),
        ('{"batches": {"b1": {"batch_id": "b1"}}}', "not a batch record"),
    ):
        (old / "batches.json").write_text(damage)
        proc = subprocess.run(
            command("run", str(path), "-o", str(tmp_path / "runs"), "--provider-batch", "--resume", str(old)),
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert f"{old / 'batches.json'}" in line and message in line
    assert server.submissions == 0 and not server.requests


DATASET_WORKFLOW = """\
name: invoice_batch
max_parallel_agents: 2
cost_budget: 0.5
inputs:
  invoice_id: {type: string}
  amount: {type: number}
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, base_url: '%(url)s/v1', max_tokens: 40, temperature: 0}
agents:
  - name: extract
    prompt_template: Extract the lines of invoice {invoice_id} for {amount} EUR.
  - name: check
    dependencies: [extract]
    prompt_template: Check the extraction {extract.output} against the PO.
  - name: decide
    dependencies: [check]
    prompt_template: Approve or hold given {check.output}.
"""


def test_a_three_layer_workflow_over_200_rows_goes_out_as_three_batches_at_half_price(
    tmp_path: Path, server: FakeBatchProvider
) -> None:
    from orchestrate.money.costs import CostTracker

    path = tmp_path / "invoice_batch.yaml"
    path.write_text(DATASET_WORKFLOW % {"url": server.url})
    rows = tmp_path / "invoices.jsonl"
    rows.write_text("".join(json.dumps({"invoice_id": f"INV-{i:04d}", "amount": 100 + i}) + "\n" for i in range(200)))
    proc = subprocess.run(
        command(
            "run",
            str(path),
            "--data",
            str(rows),
            "--key",
            "invoice_id",
            "-o",
            str(tmp_path / "runs"),
            "--provider-batch",
            "--batch-window",
            "0.5",
            "--batch-poll-max",
            "0.2",
        ),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Layers go out in order, each the whole dataset in one submission: a row's check is only
    # submitted once its extraction has come back.
    layers = [{i["custom_id"].split("-a")[0] for i in s["items"]} for s in server.submitted]
    assert layers == [{"extract"}, {"check"}, {"decide"}]
    assert [len(s["items"]) for s in server.submitted] == [200, 200, 200]
    checks = [i["body"]["messages"][-1]["content"] for i in server.submitted[1]["items"]]
    assert all(c.startswith("Check the extraction answer to ") for c in checks)  # outputs flowed down
    run_dir = only_run(tmp_path / "runs")
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 600 and all(c["batch"] and c["batch_id"] for c in calls)
    tracker = CostTracker()
    for call in calls:
        online = tracker.calculate_cost("gpt-4o-mini", call["input_tokens"], call["output_tokens"])
        assert call["cost"] == pytest.approx(online * 0.5)
    ledger = json.loads((run_dir / "batches.json").read_text())["batches"]
    assert len(ledger) == 3 and all(b["collected"] for b in ledger.values())
    assert sum(len(b["custom_ids"]) for b in ledger.values()) == 600
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == 200 and {r["status"] for r in results} == {"completed"}
    report = subprocess.run(
        command("cost-report", str(run_dir), "--by", "mode", "--format", "json"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    (row,) = json.loads(report.stdout)["rows"]
    assert row["mode"] == "batch" and row["calls"] == 600
    assert row["cost"] == pytest.approx(sum(c["cost"] for c in calls))


def test_a_dataset_stopped_after_submission_resumes_in_place_without_resubmitting(
    tmp_path: Path, server: FakeBatchProvider
) -> None:
    path = tmp_path / "invoice_batch.yaml"
    path.write_text(DATASET_WORKFLOW % {"url": server.url})
    rows = tmp_path / "invoices.jsonl"
    rows.write_text("".join(json.dumps({"invoice_id": f"INV-{i:04d}", "amount": 100 + i}) + "\n" for i in range(20)))
    args = (
        "run",
        str(path),
        "--data",
        str(rows),
        "--key",
        "invoice_id",
        "--provider-batch",
        "--batch-window",
        "0.2",
        "--batch-poll-max",
        "0.2",
    )
    server.process_s = 10_000.0
    first = subprocess.Popen(
        command(*args, "-o", str(tmp_path / "runs")),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(server.polls.values()):
        time.sleep(0.02)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert server.submissions == 1 and len(server.submitted[0]["items"]) == 20
    assert "left running at the provider" in stderr and "--resume" in stderr
    run_dir = only_run(tmp_path / "runs")
    shown = subprocess.run(
        command("show", str(run_dir)), cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert (
        "open provider batches (1 of 1" in shown.stdout
        and f"orchestrate run --resume {run_dir}" in shown.stdout.replace("\n", "")
    ), shown.stderr

    server.process_s = 0.0
    resumed = subprocess.run(
        command(*args, "--resume", str(run_dir)),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [len(s["items"]) for s in server.submitted] == [20, 20, 20]  # the extractions were not resubmitted
    assert [s["items"][0]["custom_id"].split("-a")[0] for s in server.submitted] == ["extract", "check", "decide"]
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 60 and {c["batch_id"] for c in calls} == {s["batch_id"] for s in server.submitted}
    ledger = json.loads((run_dir / "batches.json").read_text())["batches"]
    assert len(ledger) == 3 and all(b["collected"] for b in ledger.values())
