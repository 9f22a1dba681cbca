"""What the batch layer sends and reads, checked against the official SDKs' own types.

The `openai` and `anthropic` packages are test-only dependencies, used here as
oracles for the wire format: every request line we submit must be a valid
`CompletionCreateParams` / Anthropic batch `Request`, with no key the SDK does
not know; the loopback server's answers must parse as the SDKs' `Batch`,
`FileObject`, `MessageBatch` and `MessageBatchIndividualResponse`, so the
parsers are tested against the real shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typing_extensions import TypedDict

from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.llm.batch import BatchHub
from orchestrate.llm.batch_clients import BatchClients
from orchestrate.llm.providers import ClientPool
from orchestrate.workflow.models import WorkflowStatus
from tests.fake_batch import FakeBatchProvider, FakeClock
from tests.sdk_types import problems
from tests.test_provider_wire import LegacyMessageCreateParams

KEY = "sk-test-SECRET-0123456789abcdef"
SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}


@pytest.fixture
def server() -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(FakeClock(), validate_s=0.0, process_s=0.0, finalize_s=0.0) as fake:
        yield fake


class LegacyRequest(TypedDict):
    """Anthropic's batch `Request` with the params of a family that still takes temperature
    (claude-haiku-4-5), which the 1.x+ SDK no longer declares: the online tests' legacy type."""

    custom_id: str
    params: LegacyMessageCreateParams


class LegacyBatchCreateParams(TypedDict):
    requests: list[LegacyRequest]


def strict(kind: Any, value: dict[str, Any]) -> None:
    """`value` validates as the TypedDict `kind`: no undeclared key, none missing, every type right."""
    assert problems(value, kind) == []


async def run_both(server: FakeBatchProvider, monkeypatch: pytest.MonkeyPatch, *, complete: bool = True) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    clock = FakeClock()
    hub = BatchHub(window=0.01, sleep=clock.sleep, clock=clock)
    engine = OrchestrationEngine(
        None, EngineConfig(), clients=BatchClients(ClientPool(), hub, everything=True), sleep=clock.sleep
    )
    agents = []
    for model, extra in (
        ("gpt-4o-mini", {"base_url": f"{server.url}/v1", "temperature": 0.2}),
        ("o3-mini", {"base_url": f"{server.url}/v1"}),
        ("claude-haiku-4-5", {"temperature": 0.2, "top_p": 0.9, "stop": ["END"]}),
    ):
        agents.append(
            Agent(
                name=f"plain_{model.replace('.', '_')}",
                module="Finance",
                description="",
                llm_config={"model": model, "max_tokens": 64, "system": "Be exact.", **extra},
                prompt_template="Total of invoice 7?",
            )
        )
        agents.append(
            Agent(
                name=f"schema_{model.replace('.', '_')}",
                module="Finance",
                description="",
                llm_config={"model": model, "max_tokens": 64, **extra},
                prompt_template="Total of invoice 8 as JSON.",
                output_schema=SCHEMA,
            )
        )
    workflow = Workflow(name="wire", description="", agents=agents)
    await engine.register_workflow(workflow)
    done = await engine.execute_workflow(workflow.id)
    await engine.shutdown()
    if complete:
        assert done.status is WorkflowStatus.COMPLETED, [a.result.error for a in done.agents if a.result]


async def test_openai_request_files_are_what_the_sdk_types_allow(
    server: FakeBatchProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai.types import BatchCreateParams
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

    await run_both(server, monkeypatch)
    submissions = [s for s in server.submitted if s["provider"] == "openai"]
    assert len(submissions) == 2  # one per model: OpenAI refuses a file that mixes models
    assert {s["items"][0]["body"]["model"] for s in submissions} == {"gpt-4o-mini", "o3-mini"}
    for submission in submissions:
        batch = server.batches[submission["batch_id"]]
        strict(BatchCreateParams, batch["request"])
        assert batch["request"]["endpoint"] == "/v1/chat/completions"
        for line in submission["items"]:
            assert set(line) == {"custom_id", "method", "url", "body"}
            assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
            strict(CompletionCreateParamsNonStreaming, line["body"])
    assert (
        server.uploads
        == [{"filename": "orchestrate-batch.jsonl", "purpose": "batch", "content_type": "multipart/form-data"}] * 2
    )


async def test_anthropic_batch_requests_are_what_the_sdk_types_allow(
    server: FakeBatchProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anthropic.types.messages.batch_create_params import BatchCreateParams, Request

    assert set(LegacyRequest.__annotations__) == {"custom_id", "params"} <= set(Request.__annotations__)
    assert "requests" in BatchCreateParams.__annotations__
    await run_both(server, monkeypatch)
    (submission,) = [s for s in server.submitted if s["provider"] == "anthropic"]
    strict(LegacyBatchCreateParams, {"requests": submission["items"]})
    for request in submission["items"]:
        assert len(request["custom_id"]) <= 64 and request["custom_id"].replace("-", "").replace("_", "").isalnum()


async def test_the_loopback_server_answers_in_the_sdks_shapes(
    server: FakeBatchProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
    from openai.types import Batch
    from openai.types.chat import ChatCompletion

    server.outcome = lambda custom_id, body: "error" if custom_id.startswith("schema") else "ok"
    await run_both(server, monkeypatch, complete=False)
    seen: set[str] = set()
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for submission in server.submitted:
            if submission["provider"] == "openai":
                batch = Batch.model_validate((await http.get(f"/v1/batches/{submission['batch_id']}")).json())
                assert batch.status == "completed" and batch.request_counts is not None
                for file_id in (batch.output_file_id, batch.error_file_id):
                    if not file_id:
                        continue
                    for line in (await http.get(f"/v1/files/{file_id}/content")).content.splitlines():
                        row = json.loads(line)
                        if row["response"]["status_code"] == 200:
                            ChatCompletion.model_validate(row["response"]["body"])
                            seen.add("openai succeeded")
                        else:
                            assert row["response"]["body"]["error"]["message"]
                            seen.add("openai errored")
            else:
                batch = MessageBatch.model_validate(
                    (await http.get(f"/v1/messages/batches/{submission['batch_id']}")).json()
                )
                assert batch.processing_status == "ended" and batch.results_url
                for line in (await http.get(batch.results_url)).content.splitlines():
                    seen.add("anthropic " + MessageBatchIndividualResponse.model_validate(json.loads(line)).result.type)
    assert seen == {"openai succeeded", "openai errored", "anthropic succeeded", "anthropic errored"}
