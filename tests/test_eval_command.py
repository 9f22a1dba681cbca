"""`orchestrate eval` scores recorded outputs without calling a model; --baseline gates on pass -> fail."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fake_provider import FakeProvider
from tests.test_evaluation import KEY, orchestrate

WORKFLOW = """\
name: coded
inputs:
  vendor: {{type: string}}
agents:
  - name: code
    module: Finance
    llm_config: {{model: gpt-4o-mini, max_tokens: 30{base}}}
    prompt_template: "Code {{vendor}}"
    expect:
      - {check}
        name: answer
      - max_cost: 1
"""


def test_eval_scores_an_edited_expectation_with_zero_calls(tmp_path: Path) -> None:
    with FakeProvider() as server:
        base = f", base_url: '{server.url}/v1'"
        (tmp_path / "wf.yaml").write_text(WORKFLOW.format(base=base, check="contains: answer to"))
        (tmp_path / "rows.csv").write_text("vendor\nA\nB\n")
        run = orchestrate(
            "run", "wf.yaml", "--data", "rows.csv", "-o", "runs", cwd=tmp_path, env={"OPENAI_API_KEY": KEY}
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "expectations: 4/4 passed" in run.stdout
        calls = len(server.requests)
        (tmp_path / "edited.yaml").write_text(WORKFLOW.format(base=base, check="equals: nothing like it"))
        (run_dir,) = (tmp_path / "runs").iterdir()
        scored = orchestrate("eval", str(run_dir), "--workflow", "edited.yaml", cwd=tmp_path)
        assert len(server.requests) == calls  # nothing was asked again
    assert scored.returncode == 5, scored.stdout + scored.stderr
    assert "expectations: 2/4 passed, 2 failed" in scored.stdout
    (written,) = run_dir.glob("eval-*.json")
    document = json.loads(written.read_text())
    assert document["judged"] is False and document["totals"]["failed"] == 2
    assert {c["key"] for c in document["cases"]} == {
        json.loads(line)["key"] for line in (run_dir / "results.jsonl").read_text().splitlines()
    }
    same = orchestrate("eval", str(run_dir), cwd=tmp_path)  # the run's own workflow, as it was
    assert same.returncode == 0 and "expectations: 4/4 passed" in same.stdout


def test_a_pass_that_becomes_a_fail_against_the_baseline_exits_6(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        WORKFLOW.format(base="", check="equals: '{row.expected}'").replace("vendor}}\n", "vendor}}\n", 1)
    )
    (tmp_path / "rows.csv").write_text("vendor,expected\nA,approve\nB,hold\nC,hold\n")
    (tmp_path / "good.yaml").write_text("code: '{row.expected}'\n")
    (tmp_path / "worse.yaml").write_text("code: [hold]\n")
    common = ("run", "wf.yaml", "--simulate", "--data", "rows.csv")
    first = orchestrate(*common, "--answers", "good.yaml", "-o", "before", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    (baseline,) = (tmp_path / "before").iterdir()
    second = orchestrate(
        *common,
        "--answers",
        "worse.yaml",
        "-o",
        "after",
        "--baseline",
        str(baseline),
        "--no-fail-on-expect",
        cwd=tmp_path,
    )
    assert second.returncode == 6, second.stdout + second.stderr
    assert "baseline: 1 pass -> fail, 0 fail -> pass" in second.stdout
    (run_dir,) = (tmp_path / "after").iterdir()
    report = json.loads((run_dir / "baseline.json").read_text())
    assert report["regressed"] and report["regressions"][0]["name"] == "answer"
    rates = {r["name"]: r for r in report["pass_rates"]}
    assert rates["answer"]["before"] == 1.0 and abs(rates["answer"]["after"] - 2 / 3) < 1e-9
    # The same comparison offline, from the recorded outputs; the other way round nothing regressed.
    again = orchestrate("eval", str(run_dir), "--baseline", str(baseline), "--tolerance", "0.5", cwd=tmp_path)
    assert again.returncode == 6 and "1 pass -> fail" in again.stdout
    better = orchestrate("eval", str(baseline), "--baseline", str(run_dir), cwd=tmp_path)
    assert better.returncode == 0 and "0 pass -> fail, 1 fail -> pass" in better.stdout


def test_a_workflow_without_expectations_is_refused_in_one_line_not_scored_0_of_0(tmp_path: Path) -> None:
    plain = "name: plain\nagents:\n  - name: a\n    module: Finance\n    llm_config: {model: gpt-4o-mini}\n"
    (tmp_path / "wf.yaml").write_text(plain + "    prompt_template: go\n")
    run = orchestrate("run", "wf.yaml", "--simulate", "-o", "runs", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    scored = orchestrate("eval", str(run_dir), cwd=tmp_path)
    assert scored.returncode == 2, scored.stdout + scored.stderr
    assert scored.stderr.strip().splitlines() == [
        "error: wf.yaml: the workflow declares no expectations (expect:), so there is nothing to score"
    ]
    assert "0/0" not in scored.stdout + scored.stderr and not list(run_dir.glob("eval-*.json"))
