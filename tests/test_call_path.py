"""What the executor's call path keeps while it works out less per call: events, records, requests."""

from __future__ import annotations

from typing import Any

from orchestrate import EngineConfig, OrchestrationEngine
from orchestrate.errors import LLMError
from orchestrate.run.events import Event, EventType
from tests.scripted import FakeSleep, ScriptedClient, response
from tests.test_engine import agent, run, workflow

# The llm_call event's data, in the order it has always been written (events.jsonl keeps it).
LLM_CALL_KEYS = [
    "model",
    "provider",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_savings",
    "cost",
    "cached",
    "batch_id",
    "duration",
    "finish_reason",
    "response_model",
    "request_id",
    "max_tokens",
    "temperature",
    "tool_calls",
    "usage_anomaly",
]


def _calls_of(engine: OrchestrationEngine) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}

    def keep(event: Event) -> None:
        if event.type is EventType.LLM_CALL and event.agent is not None:
            seen[event.agent] = event.data

    engine.add_sink(keep)
    return seen


async def test_an_llm_call_events_data_has_its_keys_in_their_order_each_its_own_dict() -> None:
    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        if "noted" in messages[-1]["content"]:
            return response("ok", model, metadata={"notice": "the schema went as a prompt"})
        return "ok"

    engine = OrchestrationEngine(ScriptedClient(answer), EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    seen = _calls_of(engine)
    wf = workflow(agent("plain"), agent("warm", llm={"temperature": 1}), agent("noted"), name="keys")
    assert (await run(engine, wf)).status.value == "completed"
    assert list(seen["plain"]) == [*LLM_CALL_KEYS, "region"]
    assert list(seen["noted"]) == [*LLM_CALL_KEYS, "notice", "region"]
    assert seen["noted"]["notice"] == "the schema went as a prompt"
    assert seen["plain"]["model"] == "gpt-4o-mini" and seen["plain"]["max_tokens"] == 50
    assert seen["plain"]["temperature"] is None and seen["warm"]["temperature"] == 1
    assert type(seen["warm"]["temperature"]) is int  # as the config gave it
    assert seen["plain"]["input_tokens"] == 10 and seen["plain"]["output_tokens"] == 5
    assert seen["plain"] is not seen["warm"]


class _Recording(ScriptedClient):
    """Keeps what each call was sent, its temperature too; answers as the provider it is told."""

    def __init__(self, provider: str) -> None:
        super().__init__(self._answer)
        self.provider = provider
        self.sent: list[tuple[Any, ...]] = []

    def _answer(self, messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        if model == "gpt-4.1-mini":  # the primary of the agents with a fallback
            return LLMError("overloaded", provider=self.provider, status_code=529)
        return response("ok", "anthropic/claude-3.5-haiku")

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        plan = kwargs.get("prompt_cache")
        options = {k: v for k, v in kwargs.items() if k != "prompt_cache"}
        key = None if plan is None else (plan.ttl, plan.key, plan.user_prefix)
        self.sent.append(
            (prompt, model, temperature, type(temperature), max_tokens, tools, list(options), options, key)
        )
        return await super().complete(prompt, model, temperature, max_tokens, tools, **kwargs)


# Configs an agent may have, some equal with values of other types (64 and 64.0, 0 and 0.0).
_CONFIGS: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "max_tokens": 64},
    {"max_tokens": 64, "model": "gpt-4o-mini"},
    {"model": "gpt-4o-mini", "max_tokens": 64.0},
    {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0},
    {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0.0},
    {"model": "gpt-4o-mini", "temperature": None},
    {"model": "gpt-4o-mini", "top_p": 1, "stop": ["\n"]},
    {"model": "gpt-4o-mini", "top_p": 1.0, "stop": ["\n"]},
    {"model": "gpt-4o-mini", "latency": 0, "failure_rate": 0, "request_timeout": 30},
    {"model": "gpt-4o", "price_as": "gpt-4o-mini", "max_tokens": 64},
    {"model": "anthropic/claude-3.5-haiku", "provider": "openrouter", "max_tokens": 64},
    {"model": "gpt-4o-mini", "max_tokens": "64.5"},  # int() refuses it: the agent fails
    {"model": "gpt-4o-mini", "system": "Be brief.", "max_tokens": 64},
    {"model": "gpt-4.1-mini", "max_tokens": 64, "fallbacks": [{"model": "gpt-4o-mini"}]},
]


async def _run_configs(provider: str, order: list[int], *, general: bool) -> dict[str, Any]:
    client = _Recording(provider)
    engine = OrchestrationEngine(client, EngineConfig(rate_limit_config=None), sleep=FakeSleep())
    if general:
        # Every call's route worked out afresh, the call before forgotten, and what the route would
        # spare a call done by the call: int(max_tokens) and served_price_name.
        executor = engine.executor
        worked_out = executor._route

        def afresh(provider: str, llm: dict[str, Any]) -> Any:
            executor._last_route = (None, None, executor._last_route[2])
            return worked_out(provider, llm)._replace(max_tokens=None, served=True)

        executor._route = afresh  # type: ignore[method-assign]
    seen = _calls_of(engine)
    agents = [agent(f"a{n}", llm=dict(_CONFIGS[i])) for n, i in enumerate(order)]
    done = await run(engine, workflow(*agents, name="configs", max_parallel_agents=1))
    records = [
        (r.to_dict() | {"timestamp": None, "workflow_id": None, "agent_id": None}, r.metadata)
        for r in engine.cost_tracker.records(done.id)
    ]
    events = {name: {**data, "duration": None} for name, data in seen.items()}
    results = {a.name: (a.status, a.result.error if a.result else None) for a in done.agents}
    return {"sent": client.sent, "records": records, "events": events, "results": results}


async def test_a_calls_route_config_and_answers_are_those_worked_out_afresh_in_any_order() -> None:
    """The route kept from the call before (with its max_tokens, options sent as they are and cost
    metadata) serves only an equal config through the same provider: in any order of agents, the
    requests, events, cost records and results are those of every call worked out on its own."""
    import random

    rng = random.Random(5)
    for provider in ("openai", "openrouter", "simulated", "scripted"):
        # (an OpenRouter name is priced only by OpenRouter)
        known = [i for i, llm in enumerate(_CONFIGS) if provider == "openrouter" or "/" not in llm["model"]]
        order = [rng.choice(known) for _ in range(60)]
        fast = await _run_configs(provider, order, general=False)
        plain = await _run_configs(provider, order, general=True)
        assert fast == plain, provider
        assert any(status.value == "failed" for status, _ in fast["results"].values())  # max_tokens "64.5"
        assert any(metadata and "requested_model" in metadata for _, metadata in fast["records"])  # a fallback


def test_a_calls_options_reach_the_client_as_keywords_in_their_order_on_either_path() -> None:
    """`_send` writes the common call's keywords out (no dict unpacked): every combination of
    options, system prompt and tools reaches the client as the general rule says, in its order."""
    import itertools

    from orchestrate.llm.capabilities import lookup
    from orchestrate.llm.prompt_cache import CachePlan
    from orchestrate.run.executor import AgentExecutor

    class Keeping:
        provider = "openai"

        def __init__(self) -> None:
            self.got: list[tuple[Any, ...]] = []

        def complete(self, *args: Any, **kwargs: Any) -> None:
            self.got.append(("complete", args, list(kwargs.items())))

        def complete_with_tools(self, *args: Any, **kwargs: Any) -> None:
            self.got.append(("complete_with_tools", args, list(kwargs.items())))

    caps, plan = lookup("gpt-4o-mini", "openai"), CachePlan("5m", "key", 4)
    spec = [{"name": "lookup", "parameters": {}}]
    schema = {"type": "object"}
    user = {"role": "user", "content": "Task one"}
    for temperature, passthrough, system, specs, with_schema, with_caps, with_plan in itertools.product(
        ("absent", None, 1, 0.2), ((), ("top_p", "stop")), (False, True), ([], spec), *[(False, True)] * 3
    ):
        llm: dict[str, Any] = {"model": "gpt-4o-mini", "top_p": 1, "stop": ["\n"]}
        if temperature != "absent":
            llm["temperature"] = temperature
        messages = [{"role": "system", "content": "Be brief."}, user] if system else [user]
        client = Keeping()
        AgentExecutor._send(
            client,  # type: ignore[arg-type]
            llm,
            passthrough,
            messages,
            specs,
            schema if with_schema else None,
            64,
            caps if with_caps else None,
            plan if with_plan else None,
        )
        expected: list[tuple[str, Any]] = [(k, llm[k]) for k in passthrough]
        expected += [("capabilities", caps)] if with_caps else []
        expected += [("prompt_cache", plan)] if with_plan else []
        expected += [("response_schema", schema)] if with_schema else []
        sent = 0.7 if temperature == "absent" else None if temperature is None else float(temperature)
        if specs:
            assert client.got == [("complete_with_tools", (messages, "gpt-4o-mini", specs, sent, 64), expected)]
        else:
            expected += [("system", "Be brief.")] if system else []
            assert client.got == [("complete", ("Task one", "gpt-4o-mini", sent, 64, None), expected)]
        assert type(client.got[0][1][3 if specs else 2]) is type(sent)
