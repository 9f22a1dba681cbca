"""Prompt caching in runs: the stable prefix marked, send-one-then-fan, keys, TTLs and money.

Workflows run through the engine against the loopback server, which caches as the
providers do (`tests/fake_prompt_cache.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import AnthropicClient, OpenAIClient
from orchestrate.llm.base import LLMClient
from orchestrate.money.costs import CallRecord
from orchestrate.run.dataset_run import DatasetRunner
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.workflow.dataset import Dataset
from orchestrate.workflow.loader import load_workflow_text
from tests.fake_provider import FakeProvider

KEY = "sk-test-SECRET-0123456789abcdef"
POLICY = "".join(f"Clause {n}: an invoice above the PO by more than the tolerance is held. " for n in range(150))

WORKFLOW = """\
name: invoice_cache
max_parallel_agents: 8
inputs:
  invoice_id: {type: string}
  amount: {type: number}
  lines: {type: array, default: [a, b, c, d, e]}
defaults:
  module: Finance
  llm_config: {model: %(model)s, max_tokens: 40, system: %(system)s}
%(defaults)s
agents:
%(agents)s
"""
CHECK = """\
  - name: check
    prompt_template: "Check the invoice against the policy. Invoice {invoice_id}: {amount} EUR."
%(extra)s"""
SCREEN = """\
  - name: screen
    prompt_template: "Screen the invoice for fraud. Invoice {invoice_id}: {amount} EUR."
"""
EACH = """\
  - name: each_line
    foreach: "{lines}"
    max_items: 10
    prompt_template: "Check one line of the invoice against the policy. Line {item}."
"""


def workflow(
    model: str = "claude-sonnet-4-5", *, agents: str | None = None, defaults: str = "", extra: str = ""
) -> Any:
    text = WORKFLOW % {
        "model": model,
        "system": json.dumps(POLICY),
        "defaults": defaults,
        "agents": agents if agents is not None else CHECK % {"extra": extra},
    }
    return load_workflow_text(text, bind=False)


class Records:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def row_finished(self, row: Any, workflow: Any, records: list[CallRecord], status: str) -> None:
        self.calls += records

    def row_invalid(self, bad: Any) -> None:
        return None

    def row_refused(self, row: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider(latency=0.05) as fake:
        yield fake


def client_for(server: FakeProvider, model: str) -> LLMClient:
    if model.startswith("claude"):
        return AnthropicClient(api_key=KEY, base_url=server.url)
    return OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1")


async def dataset_run(
    server: FakeProvider,
    tmp_path: Path,
    wf: Any,
    rows: int,
    *,
    parallel: int = 6,
    budget: float | None = None,
    **config: Any,
) -> tuple[list[CallRecord], OrchestrationEngine]:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"invoice_id": f"INV-{i}", "amount": 100 + i}) + "\n" for i in range(rows)))
    model = wf.agents[0].llm_config["model"]
    engine = OrchestrationEngine(
        client_for(server, model), EngineConfig(max_concurrent_workflows=parallel, rate_limit_config=None, **config)
    )
    sink = Records()
    data = Dataset(path, workflow_name=wf.name, declared=wf.inputs)
    await DatasetRunner(engine, wf, data, sinks=[sink], run_id="b", budget=budget, max_rows_parallel=parallel).run()
    await engine.shutdown()
    return sink.calls, engine


def _writes(calls: list[CallRecord]) -> int:
    return sum(1 for c in calls if c.cache_creation_input_tokens > 0)


def _reads(calls: list[CallRecord]) -> int:
    return sum(1 for c in calls if c.cached_input_tokens > 0)


async def test_send_one_then_fan_makes_the_first_wave_of_a_dataset_run_read(
    server: FakeProvider, tmp_path: Path
) -> None:
    calls, _ = await dataset_run(server, tmp_path, workflow(), 12)
    assert len(calls) == 12
    assert (_writes(calls), _reads(calls)) == (1, 11)
    first = next(c for c in calls if c.cache_creation_input_tokens)
    assert first.cache_creation_1h_input_tokens == first.cache_creation_input_tokens  # dataset runs: 1h
    body = server.requests[0]["body"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][0]["content"][0]["text"] == "Check the invoice against the policy. Invoice "
    saved = sum(c.cache_savings for c in calls)
    assert saved > 0 and all(c.cache_savings > 0 for c in calls if c.cached_input_tokens)


async def test_without_send_one_then_fan_the_first_wave_all_write(server: FakeProvider, tmp_path: Path) -> None:
    calls, _ = await dataset_run(server, tmp_path, workflow(), 12, prompt_cache_warm_up=False)
    assert _writes(calls) >= 3  # the concurrent first wave found nothing to read


async def test_send_one_then_fan_on_a_foreach(server: FakeProvider, tmp_path: Path) -> None:
    wf = workflow(agents=EACH)
    wf.input_values = {"invoice_id": "INV-1", "amount": 1, "lines": ["a", "b", "c", "d", "e"]}
    engine = OrchestrationEngine(client_for(server, "claude-sonnet-4-5"), EngineConfig(rate_limit_config=None))
    result = await engine.execute_workflow(await engine.register_workflow(wf))
    records = engine.cost_tracker.records()
    await engine.shutdown()
    assert result.status.value == "completed"
    assert (_writes(records), _reads(records)) == (1, 4)
    assert all(c.cache_creation_1h_input_tokens == 0 for c in records)  # a single run: 5 minutes
    times = sorted(r["time"] for r in server.requests)
    assert times[1] - times[0] >= 0.04  # the others waited for the first answer


async def test_prompt_cache_key_is_stable_across_rows_and_differs_across_agents(
    server: FakeProvider, tmp_path: Path
) -> None:
    wf = workflow("gpt-4o", agents=CHECK % {"extra": ""} + SCREEN)
    calls, _ = await dataset_run(server, tmp_path, wf, 6)
    keys: dict[str, set[str]] = {}
    for request in server.requests:
        body = request["body"]
        agent = "check" if "policy. Invoice" in json.dumps(body["messages"][-1]) else "screen"
        keys.setdefault(agent, set()).add(body["prompt_cache_key"])
    assert len(keys["check"]) == 1 and len(keys["screen"]) == 1 and keys["check"] != keys["screen"]
    assert _reads(calls) >= 10  # all but the first call of each agent


async def test_no_prompt_cache_and_prefix_off_send_nothing_cache_related(server: FakeProvider, tmp_path: Path) -> None:
    await dataset_run(server, tmp_path, workflow(), 3, prompt_cache=False)
    await dataset_run(server, tmp_path, workflow(extra="    cache: {prefix: 'off'}\n"), 3)
    await dataset_run(server, tmp_path, workflow("gpt-4o", defaults="  cache: {prefix: 'off'}"), 3)
    assert "cache_control" not in json.dumps([r["body"] for r in server.requests])
    assert "prompt_cache" not in json.dumps([r["body"] for r in server.requests])


async def test_an_agents_ttl_wins_over_the_dataset_runs_hour(server: FakeProvider, tmp_path: Path) -> None:
    calls, _ = await dataset_run(server, tmp_path, workflow(defaults="  cache: {ttl: 5m}"), 3)
    assert server.requests[0]["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert _writes(calls) == 1 and calls[0].cache_creation_1h_input_tokens == 0


async def test_hour_long_writes_are_reserved_so_the_budget_holds_under_concurrency(tmp_path: Path) -> None:
    def every_byte_written(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        # The worst a provider may bill: a token per byte of the prompt's text, all of it written for an hour.
        system = "".join(b["text"] for b in request["system"])
        user = "".join(b["text"] for b in request["messages"][0]["content"])
        size = len((system + user).encode())
        answer["usage"].update(
            input_tokens=0,
            cache_read_input_tokens=0,
            cache_creation_input_tokens=size,
            cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": size},
        )
        return answer

    wf = workflow()
    one_call = 2 * 0.003 * len(POLICY) / 1000  # an hour's write of the policy alone, at Sonnet's 2x input price
    budget = 3.5 * one_call  # room for three such writes, not four: a 1.25x reservation would let more start
    with FakeProvider(latency=0.05, rewrite=every_byte_written) as server:
        calls, engine = await dataset_run(
            server, tmp_path, wf, 12, parallel=12, budget=budget, prompt_cache_warm_up=False
        )
    spent = sum(c.cost for c in calls)
    assert 0 < spent <= budget
    assert all(c.usage_anomaly is None for c in calls)  # no call cost more than was reserved for it
    assert all(c.cache_creation_1h_input_tokens > 0 for c in calls)
    await asyncio.sleep(0)


def test_the_run_command_marks_the_prefix_unless_no_prompt_cache(server: FakeProvider, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "wf.yaml").write_text(
        WORKFLOW
        % {"model": "claude-sonnet-4-5", "system": json.dumps(POLICY), "defaults": "", "agents": CHECK % {"extra": ""}}
    )
    (tmp_path / "rows.jsonl").write_text('{"invoice_id": "A", "amount": 1}\n{"invoice_id": "B", "amount": 2}\n')
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url}
    seen = []
    for flag in ([], ["--no-prompt-cache"]):
        before = len(server.requests)
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrate", "run", "wf.yaml", "--data", "rows.jsonl", "--quiet", *flag],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        seen.append(json.dumps([r["body"] for r in server.requests[before:]]))
    assert '"cache_control": {"type": "ephemeral", "ttl": "1h"}' in seen[0]
    assert "cache_control" not in seen[1]


async def test_provider_batches_keep_caching_on_for_an_hour_and_price_it_at_the_batch_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrate import Agent, Workflow
    from orchestrate.llm.batch import BatchHub
    from orchestrate.llm.batch_clients import BatchClients
    from orchestrate.llm.providers import ClientPool
    from tests.fake_batch import FakeBatchProvider, FakeClock

    clock = FakeClock()
    with FakeBatchProvider(clock) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
        clients = BatchClients(ClientPool(), hub, everything=True)
        engine = OrchestrationEngine(None, EngineConfig(rate_limit_config=None), clients=clients, sleep=clock.sleep)
        llm = {"model": "claude-sonnet-4-5", "max_tokens": 40, "system": POLICY}
        agents = [
            Agent(
                name=f"check_{i}",
                module="Finance",
                description="",
                llm_config=dict(llm),
                prompt_template=f"Check the invoice against the policy. Invoice {i}.",
            )
            for i in range(4)
        ]
        workflow = Workflow(name="batch_cache", description="", agents=agents, max_parallel_agents=4)
        await engine.register_workflow(workflow)
        done = await engine.execute_workflow(workflow.id)
        records = engine.cost_tracker.records(workflow.id)
        await engine.shutdown()
    assert done.status.value == "completed"
    params = [item["params"] for item in server.submitted[0]["items"]]
    assert all(p["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"} for p in params)
    # Answered one after another: the first wrote the policy, the others read it and wrote only
    # their own whole prompt (each agent's template is all static text, marked as a prefix too).
    big = [r for r in records if r.cache_creation_input_tokens > 1000]
    assert len(big) == 1 and _reads(records) == 3
    assert all(r.cache_creation_input_tokens < 50 for r in records if r not in big)
    tracker = engine.cost_tracker
    for record in records:
        assert record.batch
        full = tracker.calculate_cost(
            record.model,
            record.input_tokens,
            record.output_tokens,
            cached_input_tokens=record.cached_input_tokens,
            cache_creation_input_tokens=record.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=record.cache_creation_1h_input_tokens,
        )
        assert record.cost == round(full * 0.5, 10)


@pytest.mark.parametrize(
    ("system", "prompt", "specs"),
    [
        (None, "Task a1", []),
        ('Ledger rules: "quoted", tab\t, newline\n, é, 😀, \x7f, \\', "Überprüfe {x}", []),
        ("s", "static \u2028 text", [{"name": "b", "parameters": {"z": 1, "a": [True, None]}}, {"name": "a"}]),
    ],
)
def test_prefix_digest_and_key_are_those_of_the_json_text_of_the_prefix(
    system: str | None, prompt: str, specs: list[dict[str, Any]]
) -> None:
    # The stable prefix's text is written out by hand for speed; the digest (the warm-up's key)
    # and the prompt_cache_key sent to OpenAI must stay those of json.dumps of the same parts.
    import hashlib

    from orchestrate.llm.capabilities import lookup
    from orchestrate.run.prompt_cache import PromptCaching
    from orchestrate.workflow.models import Agent, Workflow
    from orchestrate.workflow.templates import static_prefix

    llm: dict[str, Any] = {"model": "gpt-4o-mini"} | ({"system": system} if system else {})
    agent = Agent(name="a1", module="General", description="", llm_config=llm, prompt_template=prompt)
    workflow = Workflow(name="w", description="", agents=[agent])
    text = prompt.replace("{x}", "42")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    plan = PromptCaching().plan(workflow, agent, llm, messages, specs, lookup("gpt-4o-mini", "openai", None))
    assert plan is not None
    prefix = static_prefix(prompt)
    stable = json.dumps([json.dumps(specs, sort_keys=True), system or "", text[: len(prefix)]])
    digest = hashlib.sha256(f"gpt-4o-mini\x00{stable}".encode()).hexdigest()
    assert plan.digest == digest
    assert plan.plan.key == hashlib.sha256(f"w\x00a1\x00{digest}".encode()).hexdigest()[:32]
    assert plan.plan.user_prefix == len(prefix)


def test_a_plan_whose_key_is_worked_out_when_read_is_the_plan_with_that_key() -> None:
    # The executor's plans hash their key only when a client reads it; a custom client must not
    # be able to tell: same value, equality, text, copies, pickles and field values.
    import copy
    import dataclasses
    import pickle

    from orchestrate.llm.prompt_cache import CachePlan

    made: list[str] = []

    def key(workflow: str, agent: str) -> str:
        made.append(agent)
        return f"{workflow}:{agent}"

    later = CachePlan.keyed_later("1h", 12, key, "w", "a1")
    assert made == []
    plain = CachePlan(ttl="1h", key="w:a1", user_prefix=12)
    assert later.key == "w:a1" and later.key == "w:a1"
    assert made == ["a1"]  # worked out once
    assert later == plain and repr(later) == repr(plain)
    assert dataclasses.asdict(later) == dataclasses.asdict(plain)
    assert copy.copy(CachePlan.keyed_later("1h", 12, key, "w", "a2")) == CachePlan("1h", "w:a2", 12)
    assert pickle.loads(pickle.dumps(CachePlan.keyed_later("1h", 12, key, "w", "a3"))) == CachePlan("1h", "w:a3", 12)
    later.key = "set by hand"
    assert later.key == "set by hand" and CachePlan().key is None


def _reference_plan(
    workflow: str,
    agent: Any,
    llm: dict[str, Any],
    messages: list[dict[str, Any]],
    specs: list[dict[str, Any]],
    caps: Any,
    long_runs: bool,
    batched: bool,
) -> tuple[Any, ...] | None:
    """What a call's cache plan is, written plainly from its definition (no shortcut)."""
    import hashlib

    from orchestrate.workflow.templates import static_prefix

    own = agent.llm_config.get("cache") or {}
    if own.get("prefix") == "off":
        return None
    ttl = str(own.get("ttl") or ("1h" if long_runs or batched else "5m"))
    system = "".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    first = next((m for m in messages if m["role"] == "user"), None)
    text = str(first.get("content") or "") if first is not None else ""
    static = static_prefix(agent.prompt_template)
    user_prefix = len(static) if static and text.startswith(static) else 0
    stable = json.dumps([json.dumps(specs, sort_keys=True), system, text[:user_prefix]])
    digest = hashlib.sha256(f"{llm.get('model')}\x00{stable}".encode()).hexdigest()
    key = hashlib.sha256(f"{workflow}\x00{agent.name}\x00{digest}".encode()).hexdigest()[:32]
    cacheable = caps.prompt_cache != "none" and len(stable) // 4 >= caps.cache_min_tokens
    return ttl, user_prefix, key, digest, cacheable


def test_every_plan_is_the_one_its_definition_gives() -> None:
    # The plan takes shortcuts for the calls that cannot be cached (no `cache:` read twice, the
    # rendered prompt that is its template taken as its own prefix, the length bound in quarters,
    # the plan objects made without their __init__): each case against the plain definition,
    # on both sides of the shortest cacheable prefix, for a client that reads the key or not.
    import itertools

    from orchestrate.llm.capabilities import lookup
    from orchestrate.llm.prompt_cache import CachePlan
    from orchestrate.run.prompt_cache import PromptCaching
    from orchestrate.workflow.models import Agent, Workflow

    models = [("gpt-4o-mini", "instant"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic")]
    minimum = lookup("gpt-4o-mini", "openai", None).cache_min_tokens
    # The stable text's JSON is '["[]", "", "' + prefix + '"]': 14 characters around the prefix's
    # own, 12 a character for a surrogate pair (the most a character can take).
    edge = 4 * minimum - 14
    templates = ["Task a17", "x" * (edge - 1), "x" * edge, "é" * 400, "Look at {x} then", "{x}", "{{literal}} only"]
    templates += ["\U0001f600" * n for n in (339, 340, 341)]
    caches: list[dict[str, Any] | None] = [None, {}, {"ttl": "1h"}, {"prefix": "auto"}, {"prefix": "off"}]
    systems = [None, "rules " * 3, "s" * (4 * minimum)]
    tools = [[], [{"name": "b", "parameters": {"z": 1}}, {"name": "a"}]]
    count = 0
    seen: set[tuple[str, bool]] = set()
    for (model, provider), template, cache, system, specs, same, long_runs, batched, read_key in itertools.product(
        models,
        templates,
        caches,
        systems,
        tools,
        ["same", "copy", "other"],
        [False, True],
        [False, True],
        [True, False],
    ):
        if (long_runs or batched) and (system or specs or cache):  # enough of the ttl's cases
            continue
        llm: dict[str, Any] = {"model": model} | ({"cache": cache} if cache is not None else {})
        agent = Agent(name="a1", module="General", description="", llm_config=llm, prompt_template=template)
        workflow = Workflow(name="w", description="", agents=[agent])
        text = template.replace("{x}", "42").replace("{{", "{").replace("}}", "}")
        if same == "copy":  # an equal text that is not the template object itself
            text = "".join(list(text))
        elif same == "other":  # a text the template's static part does not begin
            text = "Other " + text
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        caps = lookup(model, provider, None)
        caching = PromptCaching()
        caching.long_runs = long_runs
        plan = caching.plan(workflow, agent, llm, messages, specs, caps, batched=batched)
        expected = _reference_plan("w", agent, llm, messages, specs, caps, long_runs, batched)
        if expected is None:
            assert plan is None
            continue
        ttl, user_prefix, key, digest, cacheable = expected
        assert plan is not None
        assert (plan.plan.ttl, plan.plan.user_prefix, plan.cacheable) == (ttl, user_prefix, cacheable), (
            template,
            cache,
        )
        if read_key:
            assert plan.plan.key == key and plan.digest == digest
            assert plan.plan == CachePlan(ttl, key, user_prefix) and type(plan.plan) is CachePlan
        else:
            assert plan.digest == digest and plan.plan == CachePlan(ttl, key, user_prefix)
        assert (
            repr(plan)
            == f"PrefixPlan(plan={CachePlan(ttl, key, user_prefix)!r}, digest={digest!r}, cacheable={cacheable!r})"
        )
        count += 1
        if not system and not specs:
            seen.add((template[:3], cacheable))
    assert count > 300
    # Both sides of the shortest cacheable prefix were met, in plain and in the widest characters.
    assert {("xxx", False), ("xxx", True), ("\U0001f600" * 3, False), ("\U0001f600" * 3, True)} <= seen
    assert PromptCaching(enabled=False).plan(workflow, agent, llm, messages, [], caps) is None


def test_a_subclass_of_the_plan_keyed_later_is_made_by_its_own_init() -> None:
    from orchestrate.llm.prompt_cache import CachePlan

    made: list[str] = []

    class Noted(CachePlan):
        def __init__(self, ttl: str = "5m", key: str | None = None, user_prefix: int = 0) -> None:
            made.append(ttl)
            super().__init__(ttl, key, user_prefix)

    plan = Noted.keyed_later("1h", 3, lambda a: f"k{a}", 7)
    assert made == ["1h"] and type(plan) is Noted
    assert (plan.ttl, plan.key, plan.user_prefix) == ("1h", "k7", 3)
