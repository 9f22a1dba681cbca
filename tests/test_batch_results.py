"""A provider batch's results file read line by line: one line that cannot be read, or a custom id
answered twice, fails that request alone (booked at its worst case), and Anthropic's
``billing_error`` inside a batch is not retried, as a 402 online is not.

Requests go over real sockets to `tests/fake_batch.py`, which serves each provider's results in its
wire format and lets a test garble the file as served (`results_filter`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from orchestrate.workflow.models import AgentStatus, WorkflowStatus
from tests.fake_batch import FakeBatchProvider, FakeClock
from tests.test_batch import engine_for, layered, run

KEY = "sk-test-SECRET-0123456789abcdef"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(clock) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch, server: FakeBatchProvider) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)


def spoil_once(target: str, how: Callable[[bytes], bytes]) -> Callable[[str, bytes], bytes]:
    """A results filter that rewrites the first line of `target` (an agent) with `how`, in the first file only."""
    done: set[str] = set()

    def rewrite(provider: str, content: bytes) -> bytes:
        lines = content.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if f'"custom_id": "{target}-a1'.encode() in line and target not in done:
                done.add(target)
                lines[i] = how(line)
        return b"".join(lines)

    return rewrite


async def one_layer(server: FakeBatchProvider, clock: FakeClock, provider: str, width: int = 4):  # type: ignore[no-untyped-def]
    engine, hub, _ = engine_for(clock)
    workflow = layered(server, width=width, model=MODELS[provider], provider=provider)
    workflow.agents = workflow.agents[:width]
    done = await run(engine, workflow)
    return engine, done


def first_attempts(server: FakeBatchProvider, n: int) -> set[str]:
    return {item["custom_id"].split("-a")[0] for item in server.submitted[n]["items"]}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_unreadable_result_line_fails_its_request_alone_at_its_worst_case(
    server: FakeBatchProvider, clock: FakeClock, provider: str
) -> None:
    server.results_filter = spoil_once("l0_2", lambda line: line[: len(line) // 2] + b"\n")  # torn mid-line
    engine, done = await one_layer(server, clock, provider)
    assert done.status is WorkflowStatus.COMPLETED  # l0_2 went through its retry policy
    # The other three answers were taken from the first batch, not bought again.
    assert first_attempts(server, 0) == {"l0_0", "l0_1", "l0_2", "l0_3"}
    assert server.submissions == 2 and first_attempts(server, 1) == {"l0_2"}
    spoiled = [r for r in engine.cost_tracker.records(done.id) if r.agent == "l0_2" and r.usage_anomaly]
    assert len(spoiled) == 1 and spoiled[0].cost > 0  # booked at its reserved worst case, never $0
    assert "could not be read" in spoiled[0].usage_anomaly


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_result_line_without_a_readable_custom_id_fails_only_the_unanswered_request(
    server: FakeBatchProvider, clock: FakeClock, provider: str
) -> None:
    server.results_filter = spoil_once("l0_1", lambda line: b"\x00\xff garbage \n")
    engine, done = await one_layer(server, clock, provider)
    assert done.status is WorkflowStatus.COMPLETED
    assert server.submissions == 2 and first_attempts(server, 1) == {"l0_1"}
    booked = [r for r in engine.cost_tracker.records(done.id) if r.agent == "l0_1" and r.usage_anomaly]
    assert len(booked) == 1 and booked[0].cost > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_custom_id_answered_twice_is_given_neither_answer(
    server: FakeBatchProvider, clock: FakeClock, provider: str
) -> None:
    def twice(kind: str, content: bytes) -> bytes:
        lines = content.splitlines(keepends=True)
        if not any(b'"custom_id": "l0_0-a1' in line for line in lines):
            return content
        # l0_3's line comes back a second time, carrying l0_0's answer under l0_3's id.
        mine = next(line for line in lines if b'"custom_id": "l0_0-a1' in line)
        other = next(line for line in lines if b'"custom_id": "l0_3-a1' in line)
        theirs = re.search(rb'"custom_id": "([^"]+)"', other).group(1)  # type: ignore[union-attr]
        return content + re.sub(rb'"custom_id": "[^"]+"', b'"custom_id": "' + theirs + b'"', mine)

    server.results_filter = twice
    engine, done = await one_layer(server, clock, provider)
    assert done.status is WorkflowStatus.COMPLETED
    assert server.submissions == 2 and first_attempts(server, 1) == {"l0_3"}
    l0_0, l0_3 = done.agents[0], done.agents[3]
    assert l0_3.result is not None and l0_3.result.retry_count == 1
    assert l0_0.result is not None and l0_0.result.retry_count == 0  # its own answer, taken once


async def test_anthropic_billing_error_inside_a_batch_is_not_retried(
    server: FakeBatchProvider, clock: FakeClock
) -> None:
    server.outcome = lambda custom_id, body: "billing" if custom_id.startswith("l0_1-") else "ok"
    engine, done = await one_layer(server, clock, "anthropic")
    failed = done.agents[1]
    assert failed.status is AgentStatus.FAILED
    assert "402" in (failed.result.error or "") if failed.result else False
    assert server.submissions == 1  # not resubmitted: an account out of credit stays so
    assert [a.status for a in done.agents].count(AgentStatus.COMPLETED) == 3
