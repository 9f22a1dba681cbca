"""The client behind ``--simulate --answers``: each agent's fixed answer, else the simulated one.

Who is calling comes from `CALL_TAG` (set by the executor around each
attempt); the run's row and inputs from the engine's registered workflows.
An agent's answers are used in order, one per call of that agent in that run
(the last one repeats), so a list can drive retries, foreach items and
branches. Tokens are counted as the simulated provider counts them, so a
run's cost preview stays meaningful.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrate.llm.base import LLMClient, LLMResponse
from orchestrate.llm.batch_api import CALL_TAG
from orchestrate.workflow.answers import Answers
from orchestrate.workflow.models import Workflow

__all__ = ["FixedAnswerClient"]


class FixedAnswerClient(LLMClient):
    """Answers from an answers file for the agents it names; `inner` (simulated) for the rest.

    `workflows` (the engine's, by run id) is set once the engine exists.
    """

    def __init__(self, inner: LLMClient, answers: Answers) -> None:
        self.inner = inner
        self.answers = answers
        self.provider = inner.provider
        self.workflows: Mapping[str, Workflow] = {}
        self._calls: dict[tuple[str, str], int] = {}

    def _answer(self, max_tokens: int) -> str | None:
        tag = CALL_TAG.get()
        if tag is None or tag.agent not in self.answers.by_agent:
            return None
        key = (tag.workflow_id, tag.agent)
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        workflow = self.workflows.get(tag.workflow_id)
        row = dict(workflow.row or {}) if workflow is not None else {}
        inputs = dict(workflow.input_values) if workflow is not None else {}
        return self.answers.text(tag.agent, call, {**inputs, **row}, inputs)

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        text = self._answer(max_tokens)
        if text is None:
            return await self.inner.complete(prompt, model, temperature, max_tokens, tools, **kwargs)
        return _response(text, model, prompt + str(kwargs.get("system") or ""), self.provider)

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        text = self._answer(max_tokens)
        if text is None:
            return await self.inner.complete_with_tools(messages, model, tools, temperature, max_tokens, **kwargs)
        sent = "\n".join(str(m.get("content") or "") for m in messages)
        return _response(text, model, sent, self.provider)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _response(text: str, model: str, sent: str, provider: str) -> LLMResponse:
    return LLMResponse(
        content=text,
        model=model,
        input_tokens=max(1, len(sent) // 4),
        output_tokens=max(1, len(text) // 4),
        finish_reason="stop",
        metadata={"simulated": True, "fixed_answer": True},
        provider=provider,
    )


def with_answers(simulated: LLMClient, path: Any, workflow: Workflow) -> LLMClient:
    """`simulated`, answering from the answers file at `path` (checked against `workflow`) when given."""
    if path is None:
        return simulated
    from orchestrate.workflow.answers import load_answers

    return FixedAnswerClient(simulated, load_answers(path, workflow))


def bind_engine(client: LLMClient, engine: Any) -> None:
    """Let a fixed-answer client read each run's row and inputs from `engine`."""
    if isinstance(client, FixedAnswerClient):
        client.workflows = engine.workflows
