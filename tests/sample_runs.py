"""One scripted month-end run with a retry, a tool call, a failure, a cancellation and hostile text.

Shared by the HTML report and OpenTelemetry tests: the run goes through the
real engine (scripted provider answers, no sleeping), with any extra sinks,
and optionally into a run folder (events.jsonl, result.json, cost.json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from orchestrate import Agent, EngineConfig, OrchestrationEngine, RetryPolicy, Workflow
from orchestrate.errors import BadRequestError, RateLimitError
from orchestrate.llm.base import ToolCall
from orchestrate.observe.eventlog import EventLog
from orchestrate.observe.reports import RunRecorder
from orchestrate.run.events import Event
from tests.scripted import FakeSleep, ScriptedClient, response

__all__ = ["HOSTILE", "lookup_balance", "run_sample"]

HOSTILE = '<script>document.title="pwned"</script><img src="http://leak.example/pixel.png">'


def lookup_balance(account: str) -> dict[str, Any]:
    """A real tool: the balance of a general-ledger account."""
    return {"account": account, "balance": 1250.75}


def _answers() -> Callable[[list[dict[str, Any]], str, dict[str, Any]], Any]:
    seen: dict[str, int] = {}

    def answer(messages: list[dict[str, Any]], model: str, options: dict[str, Any]) -> Any:
        first = next(m["content"] for m in messages if m["role"] == "user")
        name = first.split()[1]
        seen[name] = seen.get(name, 0) + 1
        if name == "ledger_extract" and seen[name] == 1:
            return RateLimitError(
                "openai: 429 Too Many Requests: slow down", provider="scripted", status_code=429, retry_after=0.25
            )
        if name == "gl_lookup" and not any(m["role"] == "tool" for m in messages):
            return response(
                "",
                model,
                finish_reason="tool_calls",
                tool_calls=[ToolCall("call_1", "lookup_balance", {"account": "4000"})],
            )
        if name == "vat_check":
            return BadRequestError(
                "openai: 400 Bad Request: unsupported parameter 'vat_mode'", provider="scripted", status_code=400
            )
        if name == "xss_probe":
            return response(f"Answer with markup {HOSTILE}", model, input_tokens=40, output_tokens=20)
        return response(f"done: {name}", model, input_tokens=30, output_tokens=12, cached_input_tokens=10)

    return answer


def sample_workflow() -> Workflow:
    tool = {
        "function": "tests.sample_runs:lookup_balance",
        "description": "GL balance",
        "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
    }

    def agent(name: str, deps: Iterable[str] = (), **fields: Any) -> Agent:
        return Agent(
            name=name,
            module=fields.pop("module", "Finance"),
            description=f"agent {name}",
            llm_config={"model": fields.pop("model", "gpt-4o-mini"), "max_tokens": 60},
            prompt_template=fields.pop("prompt", f"task {name} for period {{period}}"),
            dependencies=list(deps),
            **fields,
        )

    return Workflow(
        name="month_end_sample",
        description="sample",
        allow_partial_completion=True,
        cost_budget=1.0,
        agents=[
            agent("ledger_extract", max_retries=2),
            agent("gl_lookup", tools=[tool], module="General"),
            agent("vat_check", module="Compliance", model="gpt-4o"),
            agent("close_memo", ("ledger_extract", "vat_check")),
            agent("xss_probe", prompt=f"task xss_probe {HOSTILE}"),
        ],
        input_values={"period": "2026-10"},
    )


async def run_sample(run_dir: Path | None = None, *, sinks: Iterable[Callable[[Event], None]] = ()) -> Workflow:
    """Run the sample; with `run_dir`, write events.jsonl, result.json and cost.json there."""
    engine = OrchestrationEngine(
        ScriptedClient(_answers()),
        EngineConfig(rate_limit_config=None, default_retry_policy=RetryPolicy(jitter=False)),
        sinks=list(sinks),
        sleep=FakeSleep(),
    )
    workflow = sample_workflow()
    await engine.register_workflow(workflow)
    log = recorder = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = EventLog(run_dir / "events.jsonl")
        recorder = RunRecorder(run_dir, workflow, engine.cost_tracker, simulated=False)
        engine.add_sink(log)
        engine.add_sink(recorder)
    try:
        await engine.execute_workflow(workflow.id)
    finally:
        await engine.shutdown()
        if log is not None:
            log.close()
    if recorder is not None:
        recorder.flush()
    return workflow
