"""What the run folders keep of expectations: result.json's total_cost counts the judges (and
cost-report shows them on their own line), a resumed dataset run's evaluation.json counts every
session's rows, and `orchestrate eval` scores dataset folders written before rows.jsonl kept
the columns expectations read. Against a loopback OpenAI server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import cli
from tests.fake_provider import FakeProvider, Fault

KEY = "sk-test-SECRET-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def orchestrate(*args: str, cwd: Path) -> Any:
    return cli.orchestrate(*args, cwd=cwd, env={"OPENAI_API_KEY": KEY}, timeout=120)


def judge_answers(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    if "Rubric:" in json.dumps(request.get("messages", [])):
        answer["choices"][0]["message"]["content"] = json.dumps({"score": 0.9, "reason": "cites AP-7"})
    return answer


def test_result_total_cost_counts_the_judge_and_cost_report_shows_it_apart(
    tmp_path: Path, server: FakeProvider
) -> None:
    server.rewrite = judge_answers
    llm = f"{{model: gpt-4o-mini, max_tokens: 40, base_url: '{server.url}/v1'}}"
    (tmp_path / "wf.yaml").write_text(
        f"name: judged\nagents:\n  - name: hold_reason\n    module: Finance\n    llm_config: {llm}\n"
        "    prompt_template: Why hold INV-1?\n    expect:\n      - rubric: Cites the policy rule.\n"
        f"        judge: {llm}\n"
    )
    proc = orchestrate("run", "wf.yaml", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    calls = json.loads((run_dir / "cost.json").read_text())["calls"]
    assert sorted(c["agent"] for c in calls) == ["hold_reason", "hold_reason.judge"]
    judge = next(c["cost"] for c in calls if c["agent"] == "hold_reason.judge")
    assert judge > 0 and result["expectations"]["judge_cost"] == pytest.approx(judge)
    assert result["total_cost"] == pytest.approx(sum(c["cost"] for c in calls))
    assert result["total_cost"] == pytest.approx(result["agents"][0]["cost"] + judge)
    by_agent = cli.orchestrate("cost-report", "runs", "--by", "agent", "--include-simulated", cwd=tmp_path)
    assert "hold_reason.judge" in by_agent.stdout, by_agent.stdout + by_agent.stderr
    by_mode = cli.orchestrate("cost-report", "runs", "--by", "mode", "--format", "json", cwd=tmp_path)
    groups = {g["mode"]: g for g in json.loads(by_mode.stdout)["rows"]}
    assert groups["judge"]["cost"] == pytest.approx(judge)


def test_a_resumed_dataset_runs_evaluation_counts_every_session(tmp_path: Path, server: FakeProvider) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: coin\ninputs:\n  vendor: {type: string}\nagents:\n  - name: decide\n    module: Finance\n"
        f"    max_retries: 0\n    llm_config: {{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}\n"
        "    prompt_template: 'Approve {vendor}?'\n    expect:\n      - contains: answer\n        name: answers\n"
    )
    (tmp_path / "rows.csv").write_text("vendor\nV1\nV2\nV3\n")
    server.script(Fault(400, None))  # the first row's call fails: the row is left to a resume
    first = orchestrate(
        "run",
        "wf.yaml",
        "--data",
        "rows.csv",
        "--key",
        "vendor",
        "--max-rows-parallel",
        "1",
        "-o",
        "runs",
        cwd=tmp_path,
    )
    assert first.returncode == 3, first.stdout + first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    before = json.loads((run_dir / "evaluation.json").read_text())
    assert (before["rows"], before["passed"], before["errors"]) == (3, 2, 1)
    again = orchestrate("run", "--resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = json.loads((run_dir / "evaluation.json").read_text())
    # The two rows the first session completed are counted with the one this session ran.
    assert (after["rows"], after["passed"], after["errors"], after["rows_all_passed"]) == (3, 3, 0, 3)
    assert "expectations: 3/3 passed" in again.stdout


def _as_before_expectations(run_dir: Path) -> None:
    """Make a dataset folder look as one written before rows.jsonl kept the expectations' columns."""
    for name in ("rows.jsonl", "results.jsonl"):
        lines = [json.loads(line) for line in (run_dir / name).read_text().splitlines()]
        for line in lines:
            line.pop("columns", None)
            line.pop("expectations", None)
        (run_dir / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run_dir / "evaluation.json").unlink()
    (run_dir / "invocation.json").unlink()
    result = json.loads((run_dir / "result.json").read_text())
    result.pop("expectations", None)
    result["kind"] = "batch"
    (run_dir / "result.json").write_text(json.dumps(result))


def test_eval_of_a_dataset_folder_from_before_expectations_reads_its_data_file(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(ROOT / "workflows", work / "workflows", ignore=shutil.ignore_patterns("__pycache__"))
    proc = cli.orchestrate(
        "run",
        "workflows/finance_invoice_coding.yaml",
        "--data",
        "workflows/data/invoice_coding.csv",
        "--key",
        "invoice_id",
        "--simulate",
        "--answers",
        "workflows/data/invoice_coding_answers.json",
        "-o",
        "runs",
        cwd=work,
    )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (work / "runs").iterdir()
    _as_before_expectations(run_dir)
    # From where it ran, the data file its result.json names is found: scored as it was.
    scored = cli.orchestrate("eval", str(run_dir), cwd=work)
    assert scored.returncode == 5, scored.stdout + scored.stderr
    assert "expectations: 389/400 passed, 5 failed, 6 not judged" in scored.stdout
    assert "note:" not in scored.stderr
    # From elsewhere, it says which columns are missing and what to give.
    elsewhere = cli.orchestrate(
        "eval", str(run_dir), "--workflow", str(work / "workflows/finance_invoice_coding.yaml"), cwd=tmp_path
    )
    assert "does not hold the columns the expectations read (expected_account" in elsewhere.stderr
    assert "give --data FILE" in elsewhere.stderr
    assert "the row has no column 'expected_account'" in elsewhere.stdout
    given = cli.orchestrate(
        "eval",
        str(run_dir),
        "--workflow",
        str(work / "workflows/finance_invoice_coding.yaml"),
        "--data",
        str(work / "workflows/data/invoice_coding.csv"),
        cwd=tmp_path,
    )
    assert "expectations: 389/400 passed, 5 failed, 6 not judged" in given.stdout, given.stdout + given.stderr
    missing = cli.orchestrate("eval", str(run_dir), "--data", "nowhere.csv", cwd=work)
    assert missing.returncode == 2 and "nowhere.csv is not there" in missing.stderr
