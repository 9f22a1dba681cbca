"""`--repeat K` and `--min-pass-rate`: each case tried K times against a loopback OpenAI server
whose answers alternate, its pass rate and pass^K, the response cache skipped by the repeats,
every try's money booked, a dataset budget admitting K tries of a row, and the reports."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrate.run.evaluation import EvaluationTotals, expectations_failed, repeated
from tests import cli
from tests.fake_provider import FakeProvider
from tests.test_run_folder_schemas import problems_in

KEY = "sk-test-SECRET-0123456789abcdef"
RESULT_SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "result.schema.json").read_text())


def alternating(*words: str) -> Any:
    """A server rewrite: the agents' answers cycle through `words`, one per request."""
    cycle = itertools.cycle(words)
    lock = threading.Lock()

    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        with lock:
            answer["choices"][0]["message"]["content"] = next(cycle)
        return answer

    return rewrite


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def workflow(server: FakeProvider, *, inputs: str = "", budget: float = 0.5) -> str:
    return (
        # a high rate limit: the default 60 a minute would pace the loopback server's calls a second apart
        f"name: coin\ncost_budget: {budget}\nrate_limits: {{openai: {{requests_per_minute: 100000}}}}\n{inputs}agents:\n  - name: decide\n    module: Finance\n"
        f"    llm_config: {{model: gpt-4o-mini, max_tokens: 20, base_url: '{server.url}/v1'}}\n"
        "    prompt_template: 'Approve or hold?'\n    expect:\n      - equals: approve\n        name: approves\n"
    )


def orchestrate(*args: str, cwd: Path) -> Any:
    return cli.orchestrate(*args, cwd=cwd, env={"OPENAI_API_KEY": KEY}, timeout=120)


def test_a_single_run_repeated_reports_its_pass_rate_and_books_every_try(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server))
    proc = orchestrate("run", "wf.yaml", "--repeat", "4", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # every try must pass unless a bar is given
    assert len(server.requests) == 4
    assert "repeat 4: 2/4 tries passed every expectation (50%)" in proc.stdout
    assert "[2/4 tries passed]" in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    costs = json.loads((run_dir / "cost.json").read_text())
    assert result["expectations"]["tries"] == 4 and result["expectations"]["tries_passed"] == 2
    assert result["repeat"]["tries"] == 4
    # The agent shown is the first try's, and so are its own outcomes (not the last try's).
    (agent,) = result["agents"]
    assert agent["output"]["text"] == "approve" and agent["metadata"]["expectations"][0]["status"] == "pass"
    jsonschema.validate(result, RESULT_SCHEMA)
    assert problems_in(run_dir)[0] == []  # every file of the folder matches its shipped schema
    assert len(costs["calls"]) == 4  # every try's call, in the run's own cost.json
    assert result["total_cost"] == pytest.approx(sum(c["cost"] for c in costs["calls"]))
    assert result["total_cost"] > 3 * result["agents"][0]["cost"]
    assert KEY not in proc.stdout + proc.stderr
    # The bar: half of the tries is enough.
    server.rewrite = alternating("approve", "hold")
    ok = orchestrate("run", "wf.yaml", "--repeat", "4", "--min-pass-rate", "0.5", "-o", "ok", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "meets --min-pass-rate 0.5" in ok.stdout
    server.rewrite = alternating("approve", "hold", "hold", "hold")
    low = orchestrate("run", "wf.yaml", "--repeat", "4", "--min-pass-rate", "0.5", "-o", "low", cwd=tmp_path)
    assert low.returncode == 5 and "under --min-pass-rate 0.5" in low.stdout


def test_the_repeats_are_never_answered_from_the_response_cache(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server))
    first = orchestrate("run", "wf.yaml", "--repeat", "3", "--cache", "cache", "-o", "a", cwd=tmp_path)
    assert first.returncode == 5 and len(server.requests) == 3
    stored = list((tmp_path / "cache").rglob("*.json"))
    assert len(stored) == 1  # only the first try's answer is kept
    # Again: the first try is the cached answer ("approve"); both repeats ask the server.
    again = orchestrate("run", "wf.yaml", "--repeat", "3", "--cache", "cache", "-o", "b", cwd=tmp_path)
    assert len(server.requests) == 5, again.stdout + again.stderr
    (run_dir,) = (tmp_path / "b").iterdir()
    calls = json.loads((run_dir / "cost.json").read_text())["calls"]
    assert [c["cached"] for c in calls] == [True, False, False]


def test_a_dataset_repeated_reports_pass_k_per_case_and_expectation(tmp_path: Path, server: FakeProvider) -> None:
    # Three rows, three tries each, one after the other (one row at a time): row 1 passes every try,
    # row 2 one try in three, row 3 two in three.
    server.rewrite = alternating(
        "approve", "approve", "approve", "hold", "approve", "hold", "approve", "approve", "hold"
    )
    (tmp_path / "wf.yaml").write_text(workflow(server, inputs="inputs:\n  vendor: {type: string}\n"))
    (tmp_path / "rows.csv").write_text("vendor\nV1\nV2\nV3\n")
    common = ("run", "wf.yaml", "--data", "rows.csv", "--key", "vendor", "--max-rows-parallel", "1", "--repeat", "3")
    proc = orchestrate(
        *common, "--min-pass-rate", "0.6", "--junit", "junit.xml", "--summary", "sum.md", "-o", "runs", cwd=tmp_path
    )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert len(server.requests) == 9
    assert "repeat 3: pass^3 1/3 case(s), mean pass rate 67%; 1 case(s) under --min-pass-rate 0.6" in proc.stdout
    assert "under the bar: V2: 1/3 tries passed (33%)" in proc.stdout
    # A miss is told as its try ends, saying which try it was (the first says none): V2 missed its
    # first and third.
    misses = [line.split("row 'V2' ")[1] for line in proc.stderr.splitlines() if "row 'V2' " in line]
    assert [m.partition("decide expectations")[0] for m in misses] == ["", "(try 3) "], misses
    (run_dir,) = (tmp_path / "runs").iterdir()
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["repeat"] == 3 and evaluation["tries"] == 9 and evaluation["cases"] == 3
    assert evaluation["pass_k"] == pytest.approx(1 / 3) and evaluation["cases_below_min"] == 1
    (expectation,) = evaluation["by_expectation"]
    assert expectation["passed"] == 6 and expectation["failed"] == 3 and expectation["pass_k"] == pytest.approx(1 / 3)
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [line["key"] for line in lines] == ["V1", "V2", "V3"]  # one line per case
    assert [line["expectations"]["tries_passed"] for line in lines] == [3, 1, 2]
    costs = json.loads((run_dir / "cost.json").read_text())
    assert len(costs["calls"]) == 9
    result = json.loads((run_dir / "result.json").read_text())
    assert result["total_cost"] == pytest.approx(sum(line["cost"] for line in lines))
    junit = (tmp_path / "junit.xml").read_text()
    assert "V2" in junit and "1/3 tries passed" in junit
    summary = (tmp_path / "sum.md").read_text()
    assert "pass^3" in summary
    shown = cli.orchestrate("show", str(run_dir), cwd=tmp_path)
    assert "pass^3 1/3 case(s)" in shown.stdout, shown.stdout + shown.stderr
    assert "pass^3" in (run_dir / "report.html").read_text()
    assert problems_in(run_dir)[0] == []  # results.jsonl, rows.jsonl, evaluation.json with the tries
    lenient = orchestrate(*common, "--min-pass-rate", "0.3", "-o", "lenient", cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr


def test_a_dataset_budget_admits_a_row_only_for_all_its_tries(tmp_path: Path, server: FakeProvider) -> None:
    (tmp_path / "wf.yaml").write_text(workflow(server, inputs="inputs:\n  vendor: {type: string}\n"))
    (tmp_path / "rows.csv").write_text("vendor\nV1\n")
    plan = orchestrate("plan", "wf.yaml", "--data", "rows.csv", "--format", "json", cwd=tmp_path)
    row_worst = json.loads(plan.stdout)["row_max_cost"]
    repeated_plan = orchestrate(
        "plan", "wf.yaml", "--data", "rows.csv", "--repeat", "3", "--format", "json", cwd=tmp_path
    )
    assert json.loads(repeated_plan.stdout)["max_cost"] == pytest.approx(3 * row_worst, rel=0.02)
    budget = str(round(2.5 * row_worst, 8))
    common = ("run", "wf.yaml", "--data", "rows.csv", "--budget", budget)
    refused = orchestrate(*common, "--repeat", "3", "-o", "refused", cwd=tmp_path)
    assert refused.returncode != 0 and len(server.requests) == 0, refused.stdout + refused.stderr
    assert "not started" in (next((tmp_path / "refused").iterdir()) / "results.jsonl").read_text()
    admitted = orchestrate(*common, "--repeat", "2", "-o", "admitted", cwd=tmp_path)
    assert len(server.requests) == 2, admitted.stdout + admitted.stderr


def test_totals_of_repeated_cases_and_the_bar() -> None:
    def doc(status: str) -> dict[str, Any]:
        return {"outcomes": [{"agent": "a", "name": "n", "kind": "equals", "status": status}], "judge_cost": 0.0}

    case = repeated([doc("pass"), doc("fail"), doc("pass"), doc("error")])
    assert case["tries"] == 4 and case["tries_passed"] == 2
    (outcome,) = case["outcomes"]
    assert outcome["status"] == "fail" and (outcome["passed"], outcome["failed"], outcome["errors"]) == (2, 1, 1)
    assert expectations_failed(case)
    assert not expectations_failed({**case, "min_pass_rate": 0.5})
    totals = EvaluationTotals(repeat=4, min_pass_rate=0.75)
    totals.add(case, "K1")
    totals.add(repeated([doc("pass")] * 4), "K2")
    figures = totals.to_dict()
    assert figures["pass_k"] == 0.5 and figures["cases_below_min"] == 1 and figures["below_min"][0]["key"] == "K1"
    assert figures["by_expectation"][0]["pass_k"] == 0.5 and figures["passed"] == 6
    assert expectations_failed(figures)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_try_of_a_run_is_journaled_and_audited_with_its_try_number(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server))
    proc = orchestrate("run", "wf.yaml", "--repeat", "3", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = _lines(run_dir / "events.jsonl")
    finished = [e for e in events if e["type"] == "agent_finished"]
    assert [e["try"] for e in finished] == [1, 2, 3]
    assert [e["data"]["output"]["text"] for e in finished] == ["approve", "hold", "approve"]
    assert [e["try"] for e in events if e["type"] == "llm_call"] == [1, 2, 3]
    assert all("try" in e for e in events if e["workflow_id"] is not None)
    audit = _lines(run_dir / "audit.jsonl")
    assert [r["try"] for r in audit if r["type"] == "call"] == [1, 2, 3]
    verified = cli.orchestrate("audit", "verify", str(run_dir), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert problems_in(run_dir)[0] == []  # events.jsonl and audit.jsonl lines match their schemas
    # Resuming keeps the first try's answer (the run's), not a later try's.
    from orchestrate.run.resume import prior_results

    _name, found = prior_results(run_dir)
    assert found["decide"].output["text"] == "approve"


def test_every_try_of_a_dataset_row_is_journaled_and_audited(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server, inputs="inputs:\n  vendor: {type: string}\n"))
    (tmp_path / "rows.csv").write_text("vendor\nV1\nV2\n")
    proc = orchestrate(
        "run", "wf.yaml", "--data", "rows.csv", "--key", "vendor", "--repeat", "2", "-o", "runs", cwd=tmp_path
    )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = _lines(run_dir / "events.jsonl")
    finished = [e for e in events if e["type"] == "agent_finished"]
    assert sorted(e["try"] for e in finished) == [1, 1, 2, 2]
    assert all("try" not in e for e in events if e["type"] in ("row_started", "row_finished"))
    audit = _lines(run_dir / "audit.jsonl")
    assert sorted(r["try"] for r in audit if r["type"] == "call") == [1, 1, 2, 2]
    assert all("try" not in r for r in audit if r["type"] == "row_finished")
    verified = cli.orchestrate("audit", "verify", str(run_dir), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_eval_of_a_repeated_run_scores_every_try_and_holds_the_bar(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server))
    run = orchestrate("run", "wf.yaml", "--repeat", "4", "--min-pass-rate", "0.5", "-o", "runs", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert [r["try"] for r in result["repeat"]["runs"]] == [2, 3, 4]
    assert [r["agents"][0]["output"]["text"] for r in result["repeat"]["runs"]] == ["hold", "approve", "hold"]
    calls = len(server.requests)
    scored = orchestrate("eval", str(run_dir), "--junit", "eval.xml", cwd=tmp_path)  # the run's bar, 0.5
    assert len(server.requests) == calls  # nothing asked again
    assert scored.returncode == 0, scored.stdout + scored.stderr
    junit = (tmp_path / "eval.xml").read_text()
    assert "<failure" not in junit and "2/4 tries passed" in junit  # a miss in a case meeting the bar
    assert "expectations: 2/4 passed, 2 failed" in scored.stdout
    assert "repeat 4: 2/4 tries passed every expectation (50%); meets --min-pass-rate 0.5" in scored.stdout
    strict = orchestrate("eval", str(run_dir), "--min-pass-rate", "0.75", cwd=tmp_path)
    assert strict.returncode == 5 and "under --min-pass-rate 0.75" in strict.stdout
    # An edited expectation, scored on every try: "hold" is now right, in two tries of four.
    (tmp_path / "edited.yaml").write_text(workflow(server).replace("equals: approve", "equals: hold"))
    edited = orchestrate("eval", str(run_dir), "--workflow", "edited.yaml", "--json", cwd=tmp_path)
    document = json.loads(edited.stdout)
    (case,) = document["cases"]
    assert (case["tries"], case["tries_passed"]) == (4, 2)
    assert document["totals"]["pass_k"] == 0.0 and document["totals"]["case_pass_rate"] == 0.5


def test_eval_of_a_repeated_dataset_reports_pass_k_per_case(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "approve", "approve", "hold", "approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server, inputs="inputs:\n  vendor: {type: string}\n"))
    (tmp_path / "rows.csv").write_text("vendor\nV1\nV2\n")
    common = ("run", "wf.yaml", "--data", "rows.csv", "--key", "vendor", "--max-rows-parallel", "1")
    run = orchestrate(*common, "--repeat", "3", "-o", "runs", cwd=tmp_path)
    assert run.returncode == 5, run.stdout + run.stderr
    assert "repeat 3: pass^3 1/2 case(s), mean pass rate 67%" in run.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert problems_in(run_dir)[0] == []  # rows.jsonl with each row's later tries matches its schema
    scored = orchestrate("eval", str(run_dir), cwd=tmp_path)
    assert scored.returncode == 5, scored.stdout + scored.stderr
    assert "expectations: 4/6 passed, 2 failed" in scored.stdout
    assert "repeat 3: pass^3 1/2 case(s), mean pass rate 67%" in scored.stdout
    lenient = orchestrate("eval", str(run_dir), "--min-pass-rate", "0.3", "--json", cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    totals = json.loads(lenient.stdout)["totals"]
    assert totals["cases_below_min"] == 0 and totals["pass_k"] == 0.5
    assert {c["key"]: c["tries_passed"] for c in json.loads(lenient.stdout)["cases"]} == {"V1": 3, "V2": 1}


def test_without_content_the_later_tries_and_the_outcomes_are_withheld(tmp_path: Path, server: FakeProvider) -> None:
    server.rewrite = alternating("approve", "hold")
    (tmp_path / "wf.yaml").write_text(workflow(server) + "data_protection: {store_content: false}\n")
    proc = orchestrate("run", "wf.yaml", "--repeat", "2", "-o", "runs", cwd=tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    (later,) = result["repeat"]["runs"]
    assert later["agents"][0]["output"]["withheld"] is True
    assert "hold" not in json.dumps(later)
    checked = [e for e in _lines(run_dir / "events.jsonl") if e["type"] == "expectations_checked"]
    assert [e["try"] for e in checked] == [1, 2]
    (missed,) = checked[1]["data"]["outcomes"]
    assert missed["name"] == "approves" and "hold" not in json.dumps(missed)
