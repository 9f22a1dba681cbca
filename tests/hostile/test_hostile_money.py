"""Money under hostile input: non-finite numbers, mistyped models, and providers that lie about usage.

Every case checks the exit code, the one-line message and that no traceback was printed. Usage
cases run the real OpenAI and Anthropic clients against the loopback server in tests/fake_provider.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Agent, CostConfig, CostTracker, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import UserInputError
from orchestrate.llm.anthropic import AnthropicClient
from orchestrate.llm.openai import OpenAIClient
from tests.fake_provider import FakeProvider
from tests.hostile.helpers import KEY, assert_clean_failure, orchestrate, workflow_file

# -- non-finite numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "line", "where"),
    [
        ("cost_budget: .nan", 2, "cost_budget: .nan is not a finite number"),
        ("cost_budget: .inf", 2, "cost_budget: .inf is not a finite number"),
        ("timeout: -.inf", 2, "timeout: -.inf is not a finite number"),
        ("rate_limits: {openai: {requests_per_minute: .nan}}", 2, "requests_per_minute: .nan"),
        ("prices: {gpt-4o-mini: {input: .nan, output: 0.1}}", 2, "prices.gpt-4o-mini.input: .nan"),
    ],
)
def test_non_finite_numbers_in_yaml_are_refused_at_their_line(
    tmp_path: Path, snippet: str, line: int, where: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"name: t\n{snippet}\nagents:\n  - name: a\n    module: Finance\n"
        "    llm_config: {model: gpt-4o-mini, cost_limit: 1}\n    prompt_template: hi\n"
    )
    done = orchestrate("validate", str(path), cwd=tmp_path)
    assert_clean_failure(done, 2, f"{path}:{line}:", where)


def test_non_finite_cost_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: t\nagents:\n  - name: a\n    module: Finance\n    cost_limit: .nan\n"
        "    llm_config: {model: gpt-4o-mini}\n    prompt_template: hi\n"
    )
    done = orchestrate("run", str(path), "--simulate", "-o", str(tmp_path / "runs"), cwd=tmp_path)
    assert_clean_failure(done, 2, f"{path}:5:17: agents[0].cost_limit: .nan is not a finite number")
    assert not (tmp_path / "runs").exists()  # refused before anything ran


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_non_finite_input_values_are_refused(tmp_path: Path, value: str) -> None:
    path = workflow_file(tmp_path, inputs={"n": {"type": "number", "default": 1}})
    done = orchestrate("run", str(path), "--simulate", "--input", f"n={value}", "-o", str(tmp_path / "r"), cwd=tmp_path)
    assert_clean_failure(done, 2, "error: input 'n':", "not a finite number")


@pytest.mark.parametrize("text", ['{"n": NaN}', '{"n": Infinity}', '{"n": 1e999}', '{"n": {"x": [-Infinity]}}'])
def test_non_finite_numbers_in_an_inputs_file_are_refused(tmp_path: Path, text: str) -> None:
    path = workflow_file(tmp_path, inputs={"n": {"type": "object", "default": {}}})
    (tmp_path / "in.json").write_text(text)
    done = orchestrate("run", str(path), "--simulate", "--inputs", "in.json", "-o", "r", cwd=tmp_path)
    # Named by file:line:col, like every other bad input (issue 25).
    assert_clean_failure(done, 2, "in.json:1:", ": not valid JSON:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_object_input_holding_nan_is_refused(tmp_path: Path) -> None:
    path = workflow_file(tmp_path, inputs={"n": {"type": "object", "default": {}}})
    done = orchestrate("run", str(path), "--simulate", "--input", 'n={"x": NaN}', "-o", "r", cwd=tmp_path)
    assert_clean_failure(done, 2, "input 'n'")


def test_nan_prices_are_refused_in_price_files_and_the_api(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"m": {"input": NaN, "output": 1}}}')
    with pytest.raises(UserInputError, match="price file is not valid JSON"):
        CostTracker(CostConfig(price_file=str(prices)))
    prices.write_text('{"models": {"m": {"input": -1, "output": 1}}}')
    with pytest.raises(UserInputError, match="m.input must be a finite number at least 0"):
        CostTracker(CostConfig(price_file=str(prices)))
    with pytest.raises(UserInputError, match="finite number"):
        CostTracker(CostConfig(model_costs={"m": {"input": math.inf, "output": 1.0}}))
    with pytest.raises(UserInputError, match="finite number"):
        CostTracker().add_prices({"m": {"input": 0.1, "output": math.nan}})


# -- model names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "hint"),
    [("gpt-4o-mnii", "gpt-4o-mini"), ("gpt-4o-mini-foo", "gpt-4o-mini"), ("claude-sonet-4-5", "claude-sonnet-4-5")],
)
def test_a_mistyped_model_is_unknown_with_a_suggestion(tmp_path: Path, model: str, hint: str) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"name: t\nagents:\n  - name: a\n    module: Finance\n    llm_config: {{model: {model}}}\n"
        "    prompt_template: hi\n"
    )
    done = orchestrate("validate", str(path), cwd=tmp_path)
    assert_clean_failure(done, 2, f"{path}:5:", f"no price known for model {model!r}", f"did you mean {hint}?")


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ],
)
def test_documented_snapshots_are_priced_as_their_family(model: str, family: str) -> None:
    tracker = CostTracker()
    assert tracker.price_of(model) == tracker.price_of(family)


def test_other_suffixes_are_not_priced_as_a_prefix() -> None:
    from orchestrate.money.costs import find_price

    assert find_price("gpt-4o-mnii") is None
    assert find_price("gpt-4o-mini-evil") is None
    assert find_price("gpt-4-0613") is None  # not a documented snapshot form


# -- providers that lie about usage -----------------------------------------------------------


def _usage_rewriter(kind: str, usage: dict[str, Any] | None) -> Any:
    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if usage is None:
            answer.pop("usage", None)
        else:
            answer["usage"] = usage
        return answer

    return rewrite


def _workflow(n: int, model: str, budget: float, max_tokens: int = 200) -> Workflow:
    agents = [
        Agent(
            name=f"a{i}",
            description="",
            module="Finance",
            prompt_template=f"Reconcile ledger {i} " + "x" * 200,
            llm_config={"model": model, "max_tokens": max_tokens},
            max_retries=0,
        )
        for i in range(n)
    ]
    return Workflow(
        name="lying",
        description="",
        agents=agents,
        cost_budget=budget,
        max_parallel_agents=1,
        allow_partial_completion=True,
    )


async def _run(server: FakeProvider, workflow: Workflow, provider: str) -> tuple[Workflow, CostTracker]:
    client: Any = (
        OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1")
        if provider == "openai"
        else AnthropicClient(api_key=KEY, base_url=server.url)
    )
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None))
    workflow_id = await engine.register_workflow(workflow)
    await engine.execute_workflow(workflow_id)
    await engine.shutdown()
    return workflow, engine.cost_tracker


OPENAI_LIES = {
    "negative": {"prompt_tokens": -10_000_000, "completion_tokens": 5},
    "fraction": {"prompt_tokens": 10.5, "completion_tokens": 5},
    "string": {"prompt_tokens": "abc", "completion_tokens": 5},
    "huge": {"prompt_tokens": 10, "completion_tokens": 10**30},
    "missing-count": {"completion_tokens": 5},
    "missing": None,
    "not-an-object": [1, 2],
}
ANTHROPIC_LIES = {
    "negative": {"input_tokens": 10, "output_tokens": -5},
    "fraction": {"input_tokens": 10, "output_tokens": 0.25},
    "bool": {"input_tokens": True, "output_tokens": 5},
    "missing": None,
    "bad-cache": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": -1000000},
}


@pytest.mark.parametrize(
    ("provider", "lie"), [*(("openai", k) for k in OPENAI_LIES), *(("anthropic", k) for k in ANTHROPIC_LIES)]
)
async def test_untrustworthy_usage_books_the_reserved_worst_case(provider: str, lie: str) -> None:
    usage = (OPENAI_LIES if provider == "openai" else ANTHROPIC_LIES)[lie]
    model = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    with FakeProvider(rewrite=_usage_rewriter(provider, usage)) as server:
        workflow, tracker = await _run(server, _workflow(3, model, budget=0.0075), provider)
    records = tracker.records(workflow.id)
    assert records, "no call was booked"
    for record in records:
        assert record.usage_anomaly and "booked the reserved worst case" in record.usage_anomaly
        assert record.cost > 0  # never a refund, never free
    assert tracker.spent(workflow.id) <= workflow.cost_budget + 1e-12
    assert len(server.requests) == len(records)
    refused = [a for a in workflow.agents if a.status.value == "budget_exceeded"]
    assert len(records) + len(refused) == 3
    assert any(a.result is not None and a.result.metadata.get("usage_anomalies") for a in workflow.agents)


def _honest_maximum(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Honest at the limit: every byte of the prompt a token, every allowed output token used."""
    prompt = sum(len(str(m.get("content", "")).encode()) for m in request.get("messages", []))
    prompt += len(str(request.get("system", "")).encode())
    out = int(request.get("max_tokens") or request.get("max_completion_tokens") or 0)
    if "choices" in answer:
        answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}
    else:
        answer["usage"] = {"input_tokens": prompt, "output_tokens": out}
    return answer


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("budget", [0.0009, 0.004, 0.02])
async def test_spend_stays_within_the_budget_for_every_honest_server(provider: str, budget: float) -> None:
    model = "gpt-4o" if provider == "openai" else "claude-sonnet-4-5"
    with FakeProvider(rewrite=_honest_maximum) as server:
        workflow, tracker = await _run(server, _workflow(6, model, budget=budget, max_tokens=100), provider)
    records = tracker.records(workflow.id)
    assert all(r.usage_anomaly is None for r in records)
    assert tracker.spent(workflow.id) <= budget + 1e-12
    assert len(records) == len(server.requests)


async def test_an_answer_holding_infinity_is_refused_as_malformed() -> None:
    def overflow(request: dict[str, Any], answer: dict[str, Any]) -> Any:
        return json.dumps(answer).replace('"completion_tokens": ', '"completion_tokens": 1e999, "x": ').encode()

    with FakeProvider(rewrite=overflow) as server:
        workflow, tracker = await _run(server, _workflow(1, "gpt-4o-mini", budget=1.0), "openai")
    result = workflow.agents[0].result
    assert result is not None and "the body is not JSON" in str(result.error)
    assert math.isfinite(tracker.spent(workflow.id))


@pytest.fixture
def inflating_server() -> Iterator[FakeProvider]:
    def inflate(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        answer["usage"] = {"prompt_tokens": 10_000_000, "completion_tokens": 5, "total_tokens": 10_000_005}
        return answer

    with FakeProvider(rewrite=inflate) as server:
        yield server


def test_an_overrun_by_a_lying_server_is_reported_and_stops_later_calls(
    tmp_path: Path, inflating_server: FakeProvider
) -> None:
    agents = [
        {
            "name": f"a{i}",
            "module": "Finance",
            "prompt_template": f"Task {i}",
            "max_retries": 0,
            "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
        }
        for i in range(3)
    ]
    path = workflow_file(
        tmp_path,
        agents=agents,
        cost_budget=1.0,
        max_parallel_agents=1,
        allow_partial_completion=True,
        rate_limits={"openai": {"requests_per_minute": 100000}},
    )
    done = orchestrate(
        "run",
        str(path),
        "-o",
        "runs",
        "--json",
        cwd=tmp_path,
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{inflating_server.url}/v1"},
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 3, done.stderr
    assert len(inflating_server.requests) == 1  # every later call refused once spend passed the budget
    assert "usage anomaly" in done.stderr and "budget of $1.0000 passed: $1.5000 spent" in done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    cost = json.loads((run / "cost.json").read_text())
    assert result["budget_overrun"]["spent"] == pytest.approx(1.5, abs=1e-4)
    assert "more usage than the call's reserved worst case" in result["budget_overrun"]["cause"]
    assert [a["agent"] for a in result["usage_anomalies"]] == ["a0"]
    assert cost["usage_anomalies"] == 1 and cost["budget_overrun"] == result["budget_overrun"]
    assert "above the" in cost["calls"][0]["usage_anomaly"]
    statuses = sorted(a["status"] for a in result["agents"])
    assert statuses == ["budget_exceeded", "budget_exceeded", "completed"]
    refused = [a for a in result["agents"] if a["status"] == "budget_exceeded"]
    assert all("already passed" in a["error"] for a in refused)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("answer", [b"<html>502 Bad Gateway</html>", b'{"unexpected": true}'])
async def test_a_success_whose_answer_cannot_be_read_books_its_worst_case(provider: str, answer: bytes) -> None:
    """A 200 the client cannot read was probably billed: it is booked at its reservation, and the
    budget still holds however many such answers come."""
    model = "gpt-4o" if provider == "openai" else "claude-sonnet-4-5"
    with FakeProvider(rewrite=lambda request, _answer: answer) as server:
        workflow, tracker = await _run(server, _workflow(6, model, budget=0.004, max_tokens=100), provider)
    records = tracker.records(workflow.id)
    assert records and len(records) == len(server.requests)  # every call answered is on the books
    assert all(r.cost > 0 and r.usage_anomaly and "could not be read" in r.usage_anomaly for r in records)
    assert 0 < tracker.spent(workflow.id) <= 0.004 + 1e-12
    statuses = {a.result.status.value for a in workflow.agents if a.result is not None}
    assert statuses <= {"failed", "budget_exceeded"} and "budget_exceeded" in statuses
    failed = next(a for a in workflow.agents if a.result is not None and a.result.status.value == "failed")
    assert failed.result is not None and failed.result.cost > 0
    assert failed.result.metadata.get("usage_anomalies")
