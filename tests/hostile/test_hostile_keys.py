"""The key never leaves: every echo vector of a hostile server against every output.

The loopback server (tests/fake_provider.py) echoes the API key back in each place a provider
string can come from: the answer's text, an error message, each request-id header on a 200, 404,
500 and 529, the content-type of a body that is not JSON, a usage count, the answer's id and model,
and a tool call. The run's stdout and stderr (plain, --json, --quiet), result.json, cost.json,
events.jsonl, the JUnit and Markdown reports and the cache folder must hold it 0 times.
The keys are not shaped like keys (no "sk-"), so only scrubbing the real secret can hide them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.fake_provider import FakeProvider, Fault, anthropic_message, error_body, openai_completion
from tests.hostile.helpers import every_file, orchestrate, workflow_file

SECRETS = {"openai": "hostile-openai-SECRET-0123456789", "anthropic": "hostile-claude-SECRET-9876543210"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


def _vectors(provider: str) -> list[tuple[str, Fault]]:
    key = SECRETS[provider]
    path = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    id_header = "x-request-id" if provider == "openai" else "request-id"
    request = {"model": MODELS[provider], "messages": [{"role": "user", "content": "hi"}]}
    answer = openai_completion(request) if provider == "openai" else anthropic_message(request)

    def changed(**fields: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(answer))
        for dotted, value in fields.items():
            holder = body
            *parents, last = dotted.split(".")
            for part in parents:
                holder = holder[int(part)] if part.isdigit() else holder[part]
            holder[last] = value
        return body

    text_field = "choices.0.message.content" if provider == "openai" else "content.0.text"
    usage_field = "usage.prompt_tokens" if provider == "openai" else "usage.input_tokens"
    vectors = [
        ("body text", Fault(200, changed(**{text_field: f"your key is {key} \x1b]0;pwned\x07"}))),
        ("error message", Fault(400, error_body(path, 400, f"Incorrect API key provided: {key}"))),
        ("usage count", Fault(200, changed(**{usage_field: key}))),
        ("id", Fault(200, changed(id=key))),
        ("model", Fault(200, changed(model=key))),
        ("content-type of a non-JSON body", Fault(200, b"<html>oops</html>", {"content-type": f"text/html; {key}"})),
        (f"{id_header} on 200", Fault(200, None, {id_header: key})),
    ]
    for status in (404, 500, 529):
        vectors.append((f"{id_header} on {status}", Fault(status, None, {id_header: f"req_{key}"})))
    if provider == "openai":
        vectors.append(("x-request-id with a key and control bytes", Fault(500, None, {"x-request-id": f"{key}"})))
    return vectors


def _run(tmp_path: Path, provider: str, label: str, *flags: str) -> tuple[Any, list[str], Path, FakeProvider]:
    vectors = _vectors(provider)
    agents = [
        {
            "name": f"v{i}",
            "module": "Finance",
            "prompt_template": f"vector {i}",
            "max_retries": 0,
            "llm_config": {"model": MODELS[provider], "max_tokens": 50},
        }
        for i in range(len(vectors))
    ]
    path = workflow_file(
        tmp_path,
        f"{label}.yaml",
        agents=agents,
        cost_budget=5.0,
        max_parallel_agents=1,
        allow_partial_completion=True,
        rate_limits={provider: {"requests_per_minute": 100000}},
    )
    env_key = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    env_url = "OPENAI_BASE_URL" if provider == "openai" else "ANTHROPIC_BASE_URL"
    out = tmp_path / label
    with FakeProvider() as server:
        server.script(*(fault for _, fault in vectors))
        done = orchestrate(
            "run",
            str(path),
            "-o",
            str(out / "runs"),
            *flags,
            cwd=tmp_path,
            env={env_key: SECRETS[provider], env_url: server.url + ("/v1" if provider == "openai" else "")},
        )
        assert len(server.requests) == len(vectors), done.stderr
    return done, [name for name, _ in vectors], out, server


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_no_echo_vector_reaches_any_output(tmp_path: Path, provider: str) -> None:
    key = SECRETS[provider]
    loud, names, out, _ = _run(
        tmp_path, provider, "loud", "--junit", "loud/junit.xml", "--summary", "loud/summary.md", "--cache", "loud/cache"
    )
    json_run, _, json_out, _ = _run(tmp_path, provider, "json", "--json")
    quiet, _, quiet_out, _ = _run(tmp_path, provider, "quiet", "--quiet")
    for done in (loud, json_run, quiet):
        assert done.returncode in (1, 3), done.stderr
        assert "Traceback" not in done.stderr
        assert key not in done.stdout and key not in done.stderr
        assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    files = every_file(out, json_out, quiet_out)
    assert {p.name for p in files} >= {"result.json", "cost.json", "events.jsonl", "junit.xml", "summary.md"}
    assert any(p.parent.parent.name == "cache" for p in files), "nothing was cached"
    for file in files:
        assert key.encode() not in file.read_bytes(), f"{file} holds the key"
    # The vectors did arrive and were scrubbed, not dropped.
    (run,) = (out / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    by_name = {a["name"]: a for a in result["agents"]}
    assert "***" in by_name["v0"]["output"]["text"]  # body text
    assert "***" in by_name["v1"]["error"]  # error message
    assert any("***" in (a["error"] or "") for a in result["agents"][5:])  # headers
    assert "***" in quiet.stderr
    ET.fromstring((out / "junit.xml").read_bytes())  # still well-formed


def test_request_ids_and_content_types_are_scrubbed_in_the_python_api() -> None:
    import asyncio

    from orchestrate.errors import LLMError
    from orchestrate.llm.openai import OpenAIClient

    key = SECRETS["openai"]

    async def call(fault: Fault) -> LLMError:
        with FakeProvider() as server:
            server.script(fault)
            client = OpenAIClient(api_key=key, base_url=f"{server.url}/v1")
            try:
                await client.complete("hi", "gpt-4o-mini")
            except LLMError as exc:
                return exc
            finally:
                await client.aclose()
        raise AssertionError("no error")

    error = asyncio.run(call(Fault(500, None, {"x-request-id": key})))
    assert key not in str(error) and key not in str(error.request_id)
    error = asyncio.run(call(Fault(200, b"x", {"content-type": key})))
    assert key not in str(error)


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")])
async def test_answers_inside_a_batch_result_file_are_scrubbed_and_their_usage_checked(
    provider: str, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
    from orchestrate.llm.batch import BatchHub
    from orchestrate.llm.batch_clients import BatchClients
    from orchestrate.llm.providers import ClientPool
    from tests.fake_batch import FakeBatchProvider, FakeClock

    key = SECRETS[provider]

    def echo(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        answer["id"] = key
        answer["model"] = key
        answer["usage"] = {"prompt_tokens": -5} if provider == "openai" else {"input_tokens": -5}
        return answer

    clock = FakeClock()
    with FakeBatchProvider(clock, rewrite=echo) as server:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        llm: dict[str, Any] = {"model": model, "max_tokens": 50}
        if provider == "openai":
            llm["base_url"] = f"{server.url}/v1"
        hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
        events: list[Any] = []
        engine = OrchestrationEngine(
            None,
            EngineConfig(),
            clients=BatchClients(ClientPool(), hub, everything=True),
            sleep=clock.sleep,
            sinks=[events.append],
        )
        from orchestrate.run.events import batch_events

        hub.emit = batch_events(engine.emit)
        workflow = Workflow(
            name="b",
            description="",
            agents=[Agent(name="a", module="Finance", description="", llm_config=llm, prompt_template="hi")],
        )
        await engine.register_workflow(workflow)
        await engine.execute_workflow(workflow.id)
        await engine.shutdown()
    assert server.submitted, "no batch was sent"
    dumped = json.dumps([e.to_dict() for e in events], default=str)
    assert key not in dumped and "***" in dumped
    (record,) = engine.cost_tracker.records(workflow.id)
    assert record.usage_anomaly and record.cost > 0
