"""Money promises through the Python API and the dataset runner: no silent price, simulated is
never spend in a shared scope, spend read back is validated, a dataset budget finishes whole rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrate import Agent, CostConfig, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.errors import UserInputError
from orchestrate.llm.openai import OpenAIClient
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.state.backends import state_from_url
from orchestrate.state.memory import MemoryState
from tests.fake_provider import FakeProvider
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from tests.scripted import ScriptedClient


def unpriced(model: str = "gpt-9-ultra", **llm: object) -> Workflow:
    return Workflow("w", "d", [Agent("post", "Finance", "d", {"model": model, **llm}, "go")])


async def test_an_agent_with_no_price_is_refused_at_registration_naming_the_model() -> None:
    engine = OrchestrationEngine(SimulatedClient())
    with pytest.raises(UserInputError, match=r"agent 'post': no price known for model 'gpt-9-ultra'; give it one"):
        await engine.register_workflow(unpriced())
    assert engine.workflows == {}
    await engine.shutdown()


async def test_a_price_given_or_unknown_models_allowed_or_a_local_server_register() -> None:
    engine = OrchestrationEngine(SimulatedClient())
    priced = unpriced()
    priced.prices = {"gpt-9-ultra": {"input": 0.5, "output": 1.5}}
    await engine.register_workflow(priced)
    await engine.register_workflow(unpriced("llama3.1", provider="ollama"))
    allowed = OrchestrationEngine(SimulatedClient(), EngineConfig(cost_config=CostConfig(price_unknown_models=True)))
    await allowed.register_workflow(unpriced())
    await engine.shutdown()
    await allowed.shutdown()


# -- shared budget scopes ----------------------------------------------------------------------


def scoped() -> Workflow:
    wf = Workflow("w", "d", [Agent(n, "Finance", "d", {"model": "gpt-4o-mini", "max_tokens": 50}, "go") for n in "ab"])
    wf.budget_scope = "finance-dept"
    return wf


async def test_a_simulated_run_never_reserves_or_books_in_a_shared_scope() -> None:
    state = MemoryState()
    await state.budget_set("finance-dept", 0.5)
    engine = OrchestrationEngine(SimulatedClient(), state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert done.status.value == "completed" and done.total_cost > 0  # priced, as simulated figures
    shown = await state.budget_get("finance-dept")
    assert (shown.spent, shown.reserved, shown.leases) == (0.0, 0.0, 0)


async def test_a_simulated_run_previews_the_refusal_of_a_scope_too_small() -> None:
    state = MemoryState()
    await state.budget_set("finance-dept", 0.0000001)
    engine = OrchestrationEngine(SimulatedClient(), state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert {a.status.value for a in done.agents} == {"budget_exceeded"}
    assert (await state.budget_get("finance-dept")).spent == 0.0


@pytest.mark.parametrize("field,value", [("spent", "nan"), ("spent", "-5"), ("limit", "nan"), ("spent", "inf")])
async def test_a_redis_scope_holding_nan_or_a_negative_spend_refuses_every_call(
    redis_server: RedisServer,  # noqa: F811
    field: str,
    value: str,
) -> None:
    import redis.asyncio as redis_asyncio

    namespace = f"t{uuid.uuid4().hex[:8]}"
    state = state_from_url(redis_server.url, namespace=namespace)
    await state.connect()
    await state.budget_set("finance-dept", 10.0)
    raw = redis_asyncio.from_url(redis_server.url)
    await raw.hset(f"{namespace}:budget:{{finance-dept}}", field, value)
    await raw.aclose()
    verdict, _, _ = await state.budget_reserve("finance-dept", "lease-1", 0.01)
    assert verdict == "corrupt"
    client = ScriptedClient()
    engine = OrchestrationEngine(client, state=state)
    done = await engine.execute_workflow(await engine.register_workflow(scoped()))
    await engine.shutdown()
    assert {a.status.value for a in done.agents} == {"budget_exceeded"}
    assert "not a finite, non-negative amount" in (done.agents[0].result.error or "")
    assert client.calls == []
    await state.aclose()


# -- what a call is booked at ----------------------------------------------------------------


async def test_an_over_size_successful_answer_is_booked_at_its_reserved_worst_case() -> None:
    def flood(request: dict[str, object], answer: dict[str, object]) -> dict[str, object]:
        answer["choices"][0]["message"]["content"] = "x" * 50_000  # type: ignore[index]
        return answer

    with FakeProvider(rewrite=flood) as server:
        client = OpenAIClient(api_key="sk-test-oversize", base_url=f"{server.url}/v1", max_response_bytes=4_000)
        engine = OrchestrationEngine(client)
        wf = Workflow("w", "d", [Agent("a", "Finance", "d", {"model": "gpt-4o-mini", "max_tokens": 100}, "go")])
        done = await engine.execute_workflow(await engine.register_workflow(wf))
        await engine.shutdown()
    agent = done.agents[0]
    assert agent.status.value == "failed" and "larger than the limit" in (agent.result.error or "")
    worst = engine.cost_tracker.max_cost("gpt-4o-mini", [{"role": "user", "content": "go"}], 100)
    assert agent.result.cost == pytest.approx(worst) and worst > 0  # not $0: the provider will charge it


# -- spend read back on resume -------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(CI="true", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


DATASET = """
name: inv
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 20}
inputs:
  n: {type: integer}
items:
  lines: {type: array, default: [1, 2, 3]}
agents:
  - name: check
    prompt_template: "Check {n}"
"""


def test_a_negative_cost_in_calls_jsonl_refuses_the_resume(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text(DATASET.replace("items:\n  lines: {type: array, default: [1, 2, 3]}\n", ""))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(4)))
    first = cli("run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "-o", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run,) = (tmp_path / "out").iterdir()
    calls = (run / "calls.jsonl").read_text().splitlines()
    record = json.loads(calls[1])
    record["cost"] = -5.0
    calls[1] = json.dumps(record)
    (run / "calls.jsonl").write_text("\n".join(calls) + "\n")
    again = cli("run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "--resume", str(run), cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert f"{run / 'calls.jsonl'}:2: cost '-5.0' is not a finite, non-negative amount" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_negative_foreach_item_cost_refuses_the_resume(tmp_path: Path) -> None:
    (tmp_path / "fan.yaml").write_text(
        "name: fan\nallow_partial_completion: true\n"
        "defaults:\n  module: Finance\n  llm_config: {model: gpt-4o-mini, max_tokens: 20}\n"
        "inputs:\n  lines: {type: array, default: [1, 2, 3]}\n"
        "agents:\n  - name: each\n    foreach: '{lines}'\n    max_items: 5\n    prompt_template: 'Check {item}'\n"
    )
    first = cli("run", "fan.yaml", "--simulate", "-o", "out", cwd=tmp_path)
    (run,) = (tmp_path / "out").iterdir()
    result = json.loads((run / "result.json").read_text())
    each = next(a for a in result["agents"] if a["name"] == "each")
    assert each["status"] == "completed", first.stderr
    each["metadata"]["items"][0]["cost"] = -1.0
    (run / "result.json").write_text(json.dumps(result))
    again = cli("run", "fan.yaml", "--simulate", "--resume", str(run), cwd=tmp_path)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "items[0]" in again.stderr and "not a finite, non-negative amount" in again.stderr


# -- a dataset budget pays for whole rows ----------------------------------------------------

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


@pytest.mark.parametrize("budget", ["0.0005", "0.012"])
def test_a_tight_dataset_budget_starts_only_rows_whose_worst_case_fits(tmp_path: Path, budget: str) -> None:
    done = cli(
        "run", str(WORKFLOWS / "invoice_review.yaml"), "--simulate", "--data", str(WORKFLOWS / "data" / "invoices.csv"),
        "--budget", budget, "-o", "out", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (1, 3), done.stderr
    (run,) = (tmp_path / "out").iterdir()
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 25
    completed = [r for r in rows if r["status"] == "completed"]
    refused = [r for r in rows if r["status"] != "completed"]
    assert all(r["status"] == "budget_exceeded" for r in refused)
    # Never half a row: a row not completed was never started, and spent nothing.
    assert all(r["error"].startswith("not started: its worst case $") and r["cost"] == 0 for r in refused)
    assert all("does not fit in the $" in r["error"] for r in refused)
    total = json.loads((run / "cost.json").read_text())["totals"]["cost"]
    assert total <= float(budget) + 1e-9
    assert total == pytest.approx(sum(r["cost"] for r in completed))
    if budget == "0.0005":  # every row's worst case is over $0.011: none fits, nothing is paid for
        assert not completed and total == 0
    else:
        assert len(completed) >= 2


def test_budget_show_prints_a_small_real_spend_and_set_refuses_absurd_ceilings(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "from orchestrate.cli.budget import _print\nfrom orchestrate.state.base import BudgetState\n"
         "_print(BudgetState('fin', 5.0, 0.00002055, 0.0, 0), 'text', False)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "spent $0.000021" in shown.stdout and "$0.0000," not in shown.stdout
    refused = cli("budget", "set", "fin", "1e308", "--state", "memory://", cwd=tmp_path)
    assert refused.returncode == 2 and "from 0 to 1,000,000,000" in refused.stderr
