"""Budgets that hold under concurrency, prices, rate limits, cost.json and `orchestrate cost-report`."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrate import (
    Agent,
    CostConfig,
    CostTracker,
    EngineConfig,
    OrchestrationEngine,
    RateLimitConfig,
    SimulatedClient,
    Workflow,
)
from orchestrate.errors import BudgetExceededError, RateLimitError, UserInputError
from orchestrate.llm.prices import price_table
from orchestrate.money.costs import CallRecord, Reservation, _Account
from tests.cli import orchestrate
from tests.scripted import ScriptedClient, response

ROOT = Path(__file__).resolve().parents[1]
COST_SCHEMA = json.loads((ROOT / "schemas" / "cost.schema.json").read_text())


# -- prices ---------------------------------------------------------------------------------


def test_reference_prices_give_the_reference_results() -> None:
    tracker = CostTracker(CostConfig())
    assert tracker.calculate_cost("gpt-4", 1000, 500) == pytest.approx(0.06)
    assert tracker.calculate_cost("gpt-3.5-turbo", 1000, 500) == pytest.approx(0.00125)


def test_config_and_workflow_prices_override_the_table(tmp_path: Path) -> None:
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({"models": {"in-house-llm": {"input": 0.001, "output": 0.002}}}))
    tracker = CostTracker(CostConfig(model_costs={"gpt-4o": {"input": 1.0, "output": 2.0}}, price_file=str(price_file)))
    assert tracker.calculate_cost("gpt-4o", 1000, 1000) == pytest.approx(3.0)
    assert tracker.calculate_cost("gpt-4o-2024-08-06", 1000, 0) == pytest.approx(1.0)  # snapshot -> family
    assert tracker.calculate_cost("in-house-llm", 1000, 1000) == pytest.approx(0.003)
    unknown = tracker.calculate_cost("mystery", 1000, 1000)
    assert unknown == pytest.approx(0.01 + 0.03)  # the reference's default prices


def test_cached_and_cache_write_tokens_are_priced_apart() -> None:
    tracker = CostTracker(
        CostConfig(model_costs={"m": {"input": 1.0, "output": 4.0, "cached_input": 0.1, "cache_write": 1.25}})
    )
    cost = tracker.calculate_cost("m", 3000, 1000, cached_input_tokens=1000, cache_creation_input_tokens=1000)
    assert cost == pytest.approx(1.0 + 0.1 + 1.25 + 4.0)


def test_the_price_table_is_dated_and_covers_both_providers() -> None:
    from orchestrate.money.costs import price_table

    table = price_table()
    assert table["date"] >= "2026-01-01"
    providers = {entry.get("provider") for entry in table["models"].values()}
    assert {"openai", "anthropic"} <= providers
    for name, entry in table["models"].items():
        assert entry["input"] > 0 and entry["output"] >= entry["input"], name


async def test_worst_case_bounds_the_real_cost_for_any_text() -> None:
    """The reservation bounds what a call is then billed: here the usage the simulated provider
    reports for the same prompt (its own token count, not the reservation's byte formula)."""
    rng = random.Random(7)
    tracker = CostTracker(CostConfig())
    client = SimulatedClient(seed=3)
    for _ in range(200):
        text = "".join(rng.choice("abc €漢字🙂 \n{}") for _ in range(rng.randint(0, 400)))
        messages = [{"role": "user", "content": text}]
        worst = tracker.max_cost("gpt-4o", messages, 100)
        answer = await client.complete(text, "gpt-4o", max_tokens=100)
        real = tracker.calculate_cost("gpt-4o", answer.input_tokens, answer.output_tokens)
        assert 0 < real <= worst


# -- hard budgets ---------------------------------------------------------------------------


def test_a_reservation_that_would_pass_the_budget_is_refused() -> None:
    tracker = CostTracker(CostConfig())
    tracker.set_workflow_budget("w", 1.0)
    first = tracker.reserve("w", "w:a", 0.6)
    with pytest.raises(BudgetExceededError) as refused:
        tracker.reserve("w", "w:b", 0.5)
    assert refused.value.scope == "workflow" and refused.value.committed == pytest.approx(0.6)
    tracker.settle(first, 0.1)
    tracker.record_cost("w:a", "a", "w", "gpt-4o", 0, 0, cost=0.1)
    tracker.reserve("w", "w:b", 0.5)  # the unused part of the first reservation was freed
    assert tracker.check_workflow_budget("w") and tracker.spent("w") == pytest.approx(0.1)


def test_a_reservation_sets_aside_max_of_zero_and_the_amount() -> None:
    # reserve clamps without max(): the amount (its type, a zero's sign) must be max(0.0, amount)'s.
    tracker = CostTracker()
    for i, amount in enumerate([0.25, 0, 3, 0.0, -0.0, -1.5, -2, math.nan, math.inf, 1e-300, -1e-300]):
        reservation = tracker.reserve("w", f"w:a{i}", amount)
        assert repr(reservation.amount) == repr(max(0.0, amount)), amount
        tracker.release(reservation)
    # Made without Reservation's __init__: every field set, as the class makes it, in a dataset row too.
    tracker.set_workflow_budget("row", 1.0, parent="dataset")
    for workflow_id in ("w", "row"):
        reservation = tracker.reserve(workflow_id, f"{workflow_id}:b", 0.5)
        fields = {f.name: getattr(reservation, f.name) for f in dataclasses.fields(Reservation)}
        assert reservation == Reservation(**fields) and reservation.open and reservation.lease is None
        assert reservation.parent == (None if workflow_id == "w" else "dataset")
        assert reservation.accounts[-1] is tracker._agents[f"{workflow_id}:b"]


def test_an_agent_account_opened_by_its_limit_is_the_accounts_own_make() -> None:
    # set_agent_budget opens an account without _Account's __init__ (one an agent, at registration):
    # every field set, as the class makes it; setting the limit again keeps what was spent.
    tracker = CostTracker()
    for i, limit in enumerate([None, 0.5, 0, 2]):
        tracker.set_agent_budget(f"w:a{i}", limit)
        account = tracker._agents[f"w:a{i}"]
        assert account == _Account(limit) and type(account.spent) is type(account.reserved) is float
    tracker.record_cost("w:a1", "a1", "w", "gpt-4o", 0, 0, cost=0.25)
    tracker.set_agent_budget("w:a1", 1.0)
    assert tracker._agents["w:a1"] == _Account(1.0, spent=0.25)


def test_an_agent_limit_is_a_ceiling_too() -> None:
    tracker = CostTracker(CostConfig())
    tracker.set_agent_budget("w:a", 0.2)
    with pytest.raises(BudgetExceededError) as refused:
        tracker.reserve("w", "w:a", 0.3)
    assert refused.value.scope == "agent"
    assert tracker.check_agent_budget("w:a")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_spend_never_passes_the_budget_whatever_the_concurrency(seed: int) -> None:
    client = SimulatedClient(latency=(0.001, 0.02), seed=seed)
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None))
    agents = [
        Agent(
            f"a{i}",
            "Finance",
            "d",
            {"model": "gpt-4o", "max_tokens": 400},
            f"Check ledger {i} " + "x" * random.Random(i).randint(10, 2000),
        )
        for i in range(60)
    ]
    wf = Workflow("tight", "d", agents, max_parallel_agents=30, cost_budget=0.05)
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    statuses = {a.status.value for a in agents}
    assert "budget_exceeded" in statuses and "completed" in statuses
    assert wf.total_cost <= 0.05
    assert engine.cost_tracker.spent(wf.id) <= 0.05 + 1e-12
    for agent in agents:
        if agent.status.value == "budget_exceeded":
            assert agent.result is not None and agent.result.tokens_used == 0  # refused before calling


async def test_retries_are_charged_and_count_against_the_agent_limit() -> None:
    calls = {"n": 0}

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        calls["n"] += 1
        return response("not json", model, input_tokens=1000, output_tokens=100)

    engine = OrchestrationEngine(ScriptedClient(answer), EngineConfig(rate_limit_config=None))
    agent = Agent(
        "a",
        "Finance",
        "d",
        {"model": "gpt-4o", "max_tokens": 100},
        "answer in JSON",
        output_schema={"type": "object"},
        cost_limit=1.0,
    )
    wf = Workflow("charged", "d", [agent])
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    per_call = engine.cost_tracker.calculate_cost("gpt-4o", 1000, 100)
    assert calls["n"] >= 2
    assert agent.result is not None and agent.result.cost == pytest.approx(per_call * calls["n"])


# -- rate limits ----------------------------------------------------------------------------


async def test_concurrent_requests_tier_bounds_calls_in_flight() -> None:
    client = ScriptedClient(delay=0.02)
    engine = OrchestrationEngine(
        client,
        EngineConfig(
            rate_limit_config=RateLimitConfig(
                requests_per_minute=100_000,
                requests_per_hour=10**7,
                requests_per_day=10**8,
                tokens_per_minute=10**9,
                concurrent_requests=3,
            )
        ),
    )
    wf = Workflow(
        "c",
        "d",
        [Agent(f"a{i}", "General", "d", {"model": "gpt-4o-mini"}, "x") for i in range(12)],
        max_parallel_agents=12,
    )
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert client.max_in_flight == 3 and wf.status.value == "completed"


def refuse_once(retry_after: float) -> tuple[dict[str, int], Any]:
    """A scripted answer: one 429 with `retry_after`, then "ok"; and the count of refusals."""
    refused = {"n": 0}

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        if refused["n"] < 1:
            refused["n"] += 1
            return RateLimitError("429", provider="scripted", status_code=429, retry_after=retry_after)
        return "ok"

    return refused, answer


async def test_a_429_storm_is_absorbed_by_pausing_not_hammering() -> None:
    refused, answer = refuse_once(retry_after=0.3)
    client = ScriptedClient(answer)
    engine = OrchestrationEngine(
        client,
        EngineConfig(
            rate_limit_config=RateLimitConfig(
                requests_per_minute=100_000,
                requests_per_hour=10**7,
                requests_per_day=10**8,
                tokens_per_minute=10**9,
                concurrent_requests=10,
            )
        ),
    )
    wf = Workflow(
        "storm",
        "d",
        [Agent(f"a{i}", "General", "d", {"model": "gpt-4o-mini"}, f"x{i}") for i in range(8)],
        max_parallel_agents=1,
    )
    started = time.monotonic()
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert wf.status.value == "completed" and refused["n"] == 1
    assert time.monotonic() - started >= 0.25
    assert len(client.calls) == 9  # one refusal, then every agent once: no storm of retries


async def test_a_429_pauses_the_provider_even_with_no_limits_configured() -> None:
    _, answer = refuse_once(retry_after=0.3)
    client = ScriptedClient(answer)
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None))
    refused_agent = Agent("first", "General", "d", {"model": "gpt-4o-mini"}, "x", max_retries=0, priority=9)
    others = [Agent(f"a{i}", "General", "d", {"model": "gpt-4o-mini"}, f"x{i}") for i in range(3)]
    wf = Workflow("paused", "d", [refused_agent, *others], max_parallel_agents=1)
    started = time.monotonic()
    await engine.execute_workflow(await engine.register_workflow(wf))
    await engine.shutdown()
    assert refused_agent.status.value == "failed" and all(a.status.value == "completed" for a in others)
    assert time.monotonic() - started >= 0.25  # the next caller waited out the 429's retry-after
    assert engine.get_system_status()["rate_limiting"]["enabled"] is True


def test_rate_limit_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimitConfig(requests_per_minute=0)
    with pytest.raises(UserInputError, match="unknown rate limit"):
        RateLimitConfig.from_mapping({"requests_per_minuet": 10})


# -- cost.json and cost-report --------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for name in ("finance_month_end_close", "compliance_vendor_due_diligence", "hr_onboarding"):
        proc = orchestrate(
            "run", str(ROOT / "workflows" / f"{name}.yaml"), "--simulate", "-o", str(out), "--quiet", cwd=out
        )
        assert proc.returncode == 0, proc.stderr
    return out


def test_cost_json_holds_totals_breakdowns_tokens_and_prices(runs: Path) -> None:
    for cost_file in runs.glob("*/cost.json"):
        cost = json.loads(cost_file.read_text())
        jsonschema.validate(cost, COST_SCHEMA)
        total = cost["totals"]["cost"]
        for key in ("by_agent", "by_model", "by_module", "by_provider"):
            assert sum(v["cost"] for v in cost[key].values()) == pytest.approx(total, abs=1e-9), key
        assert sum(c["cost"] for c in cost["calls"]) == pytest.approx(total, abs=1e-9)
        assert set(cost["prices_used"]) == set(cost["by_model"])
        assert cost["price_table_date"] == price_table()["date"]  # the table the run was priced from
        result = json.loads((cost_file.parent / "result.json").read_text())
        assert result["total_cost"] == pytest.approx(total, abs=1e-9)


def test_cost_report_groups_and_formats(runs: Path) -> None:
    proc = orchestrate(
        "cost-report", str(runs), "--by", "model,module", "--format", "json", "--include-simulated", cwd=runs
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    everything = sum(json.loads(p.read_text())["totals"]["cost"] for p in runs.glob("*/cost.json"))
    assert report["total"]["cost"] == pytest.approx(everything, abs=1e-9)
    assert {(r["model"], r["module"]) for r in report["rows"]} >= {
        ("gpt-4o", "Finance"),
        ("claude-sonnet-4-5", "Compliance"),
    }
    proc = orchestrate(
        "cost-report",
        str(runs),
        "--by",
        "workflow",
        "--by",
        "provider",
        "--format",
        "csv",
        "--include-simulated",
        cwd=runs,
    )
    *rows, total = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert total["workflow"] == "total"  # the last line is the total
    assert {r["workflow"] for r in rows} == {
        "finance_month_end_close",
        "compliance_vendor_due_diligence",
        "hr_onboarding",
    }
    assert {r["provider"] for r in rows} == {"simulated"}
    proc = orchestrate(
        "cost-report", str(runs), "--by", "agent", "--format", "markdown", "--include-simulated", cwd=runs
    )
    assert proc.stdout.startswith("| agent | calls | cost |") and "| close_memo |" in proc.stdout
    proc = orchestrate("cost-report", str(runs), "--by", "day", "--include-simulated", cwd=runs)
    assert proc.returncode == 0 and "total" in proc.stdout and "\x1b[" not in proc.stdout


def test_cost_report_filters_by_time(runs: Path) -> None:
    proc = orchestrate("cost-report", str(runs), "--since", "2999-01-01", "--format", "json", cwd=runs)
    assert json.loads(proc.stdout)["rows"] == []
    proc = orchestrate(
        "cost-report", str(runs), "--until", "2999-01-01", "--format", "json", "--include-simulated", cwd=runs
    )
    assert len(json.loads(proc.stdout)["rows"]) == 3


def test_cost_report_bad_input_is_one_line_with_exit_2(tmp_path: Path, runs: Path) -> None:
    broken = tmp_path / "cost.json"
    broken.write_text("{not json")
    for args in (
        [str(broken)],
        [str(tmp_path / "nowhere")],
        [str(runs), "--by", "colour"],
        [str(runs), "--since", "last tuesday"],
        [str(runs), "--format", "xml"],
    ):
        proc = orchestrate("cost-report", *args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_call_without_cache_tokens_costs_to_the_last_bit_what_the_full_formula_gives() -> None:
    # calculate_cost skips the cache terms when a call read and wrote no cache: the float must be
    # the one the whole sum (zero terms included) gives, for every model and token count.
    tracker = CostTracker()
    rng = random.Random(24)
    models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "no-such-model"]
    for _ in range(2000):
        model = rng.choice(models)
        tokens_in, tokens_out = rng.randrange(0, 200_000), rng.randrange(0, 50_000)
        p = tracker.price_of(model)
        full = (
            tokens_in * p["input"]
            + 0 * p["cached_input"]
            + 0 * p["cache_write"]
            + 0 * p["cache_write_1h"]
            + tokens_out * p["output"]
        ) / 1000.0
        assert tracker.calculate_cost(model, tokens_in, tokens_out) == round(full, 10)


def _max_cost_by_the_formula(
    tracker: CostTracker,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    overrides: dict[str, dict[str, float]] | None,
    cache_ttl: str | None,
) -> float:
    """The worst case as the module docstring states it, written plainly (max_cost's code before
    its fast paths): every message's UTF-8 bytes, the dearest input rate, max_tokens of output."""
    bound = 16
    for message in messages:
        bound += 8 + len(str(message.get("content") or "").encode("utf-8"))
        calls = message.get("tool_calls")
        if calls:
            bound += len(json.dumps(calls, default=str).encode("utf-8"))
    p = tracker.price_of(model, overrides)
    dearest = max(p["input"], p["cache_write"], p["cached_input"])
    if cache_ttl == "1h":
        dearest = max(dearest, p["cache_write_1h"])
    return round((bound * dearest + max(0, max_tokens) * p["output"]) / 1000.0, 10)


def test_the_worst_case_is_to_the_last_bit_what_the_formula_gives() -> None:
    # max_cost counts an ASCII text's length as its bytes and picks the dearest rate without max():
    # the float (its sign too) must be the formula's for any text, prices (equal ones, -0.0, a
    # cache write dearer or cheaper than input) and max_tokens.
    tracker = CostTracker()
    rng = random.Random(25)
    models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "no-such-model", "custom"]
    alphabet = "abc XYZ{}\n\t\x7f\x80é€漢🙂"
    contents: list[Any] = [None, "", 0, 17, ["part", {"type": "text"}], {"text": "x"}, "Task a0"]
    for _ in range(4000):
        prices = [rng.choice([0.0, -0.0, 0.00015, 0.0025, 0.003, 0.01, rng.uniform(0, 0.1)]) for _ in range(5)]
        overrides = rng.choice(
            [
                None,
                {},
                {"custom": dict(zip(("input", "output", "cached_input", "cache_write", "cache_write_1h"), prices))},
            ]
        )
        model = rng.choice(models)
        messages = []
        for _ in range(rng.randint(0, 4)):
            if rng.random() < 0.3:
                content = rng.choice(contents)
            else:
                content = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
            message: dict[str, Any] = {"role": "user", "content": content}
            if rng.random() < 0.1:
                del message["content"]
            messages.append(message)
        max_tokens = rng.choice([-5, 0, 1, 64, 1000, rng.randrange(0, 100_000)])
        cache_ttl = rng.choice([None, "5m", "1h"])
        got = tracker.max_cost(model, messages, max_tokens, overrides=overrides, cache_ttl=cache_ttl)
        want = _max_cost_by_the_formula(tracker, model, messages, max_tokens, overrides, cache_ttl)
        assert repr(got) == repr(want), (model, messages, max_tokens, overrides, cache_ttl)
    # Every order of equal rates and signed zeros, where the first of equals decides the sign.
    fields = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
    for combo in itertools.product((0.0, -0.0, 0.001), repeat=5):
        overrides = {"custom": dict(zip(fields, combo))}
        for max_tokens, cache_ttl, messages in itertools.product((0, 64), (None, "1h"), ([], [{"content": "é"}])):
            got = tracker.max_cost("custom", messages, max_tokens, overrides=overrides, cache_ttl=cache_ttl)
            want = _max_cost_by_the_formula(tracker, "custom", messages, max_tokens, overrides, cache_ttl)
            assert repr(got) == repr(want), (combo, max_tokens, cache_ttl, messages)
        # The same prices as the tracker's own (kept by model once found): found, then kept, then
        # found again after add_prices changes them.
        tracker.add_prices(overrides)
        for max_tokens, cache_ttl, messages in itertools.product((0, 64), (None, "1h"), ([], [{"content": "é"}])):
            for _ in range(2):
                got = tracker.max_cost("custom", messages, max_tokens, cache_ttl=cache_ttl)
                want = _max_cost_by_the_formula(tracker, "custom", messages, max_tokens, None, cache_ttl)
                assert repr(got) == repr(want), (combo, max_tokens, cache_ttl, messages)


def test_a_record_reads_cached_reused_and_batch_from_its_metadata_whatever_it_holds() -> None:
    # record_cost reads the four flags only when the metadata names one of them (most calls' say
    # only where they were served): each record must hold what bool(metadata.get(...)) gives.
    tracker = CostTracker()
    keys = ("cached", "reused", "batch", "batch_id", "region", "price_as")
    values: list[Any] = [None, 0, 1, True, False, "", "b-1", "eu"]
    rng = random.Random(26)
    metadatas: list[dict[str, Any] | None] = [None, {}, {"region": "global"}]
    for _ in range(500):
        metadatas.append({key: rng.choice(values) for key in rng.sample(keys, rng.randint(1, len(keys)))})
    for i, metadata in enumerate(metadatas):
        tracker.record_cost(f"w:a{i}", f"a{i}", "w", "gpt-4o", 3, 4, metadata, provider="openai", cost=0.5)
    for record, metadata in zip(tracker.records("w"), metadatas, strict=True):
        get = (metadata or {}).get
        assert (record.cached, record.reused, record.batch, record.batch_id) == (
            bool(get("cached")),
            bool(get("reused")),
            bool(get("batch")),
            get("batch_id"),
        ), metadata
        assert type(record.cached) is type(record.reused) is type(record.batch) is bool
        assert record.metadata is metadata and record.cost == 0.5 and record.provider == "openai"
        # Every field set (record_cost sets them without CallRecord's __init__), as the class makes it.
        assert record == CallRecord(**{f.name: getattr(record, f.name) for f in dataclasses.fields(CallRecord)})
    assert tracker.total_calls == sum(1 for m in metadatas if not (m or {}).get("reused"))


def test_round10_is_round_to_ten_places_float_for_float() -> None:
    """Costs are rounded to ten places twice a call by a quicker path than round(); it must give
    the same float (its text too: the sign of a zero) everywhere, near halves above all."""

    from orchestrate.money.amounts import round10

    rng = random.Random(10)
    values = [10 ** rng.uniform(-14, 4) for _ in range(100_000)]  # magnitudes from 1e-14 to 1e4
    for _ in range(50_000):  # on and next to a half of the tenth decimal
        half = (rng.randrange(0, 10**12) + 0.5) / 1e10
        values += [half, half * (1 + rng.uniform(-1e-12, 1e-12)), math.nextafter(half, 0), math.nextafter(half, 1)]
    values += [tokens * price / 1000.0 for tokens in range(1, 3000) for price in (0.00015, 0.0006, 0.0025, 0.01)]
    values += [0.0, -0.0, -1e-11, -0.00012345678915, 2.0**40 / 1e10, 1e12, math.inf, -math.inf, 5e-11, 1.5e-10]
    for x in values:
        assert repr(round10(x)) == repr(round(x, 10)), x
    assert math.isnan(round10(math.nan))
