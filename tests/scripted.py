"""An LLMClient whose answers a test scripts, counting concurrency as it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from orchestrate.llm.base import LLMClient, LLMResponse

Answer = Callable[[list[dict[str, Any]], str, dict[str, Any]], "LLMResponse | str | Exception"]


def response(text: str, model: str = "gpt-4o-mini", **fields: Any) -> LLMResponse:
    return LLMResponse(
        content=text,
        model=model,
        input_tokens=fields.pop("input_tokens", 10),
        output_tokens=fields.pop("output_tokens", 5),
        finish_reason=fields.pop("finish_reason", "stop"),
        provider="scripted",
        **fields,
    )


class ScriptedClient(LLMClient):
    """Answers with `answer(messages, model, options)`; records every call in order."""

    provider = "scripted"

    def __init__(self, answer: Answer | None = None, *, delay: float | Callable[[str], float] = 0.0) -> None:
        self.answer = answer or (lambda messages, model, options: f"ok: {messages[-1]['content'][:40]}")
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[str] = []

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        messages = [{"role": "system", "content": kwargs["system"]}] if kwargs.get("system") else []
        messages.append({"role": "user", "content": prompt})
        return await self.complete_with_tools(messages, model, tools or [], temperature, max_tokens, **kwargs)

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        self.calls.append(
            {
                "messages": [dict(m) for m in messages],
                "model": model,
                "tools": tools,
                "max_tokens": max_tokens,
                "options": kwargs,
            }
        )
        self.started.append(messages[-1]["content"] if messages else "")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delay(messages[-1]["content"]) if callable(self.delay) else self.delay
            if delay:
                await asyncio.sleep(delay)
            outcome = self.answer(messages, model, {"tools": tools, **kwargs})
            if isinstance(outcome, Exception):
                raise outcome
            if isinstance(outcome, str):
                return response(outcome, model)
            return outcome
        finally:
            self.in_flight -= 1


class FakeSleep:
    """Records requested delays and returns at once: retries in tests never really wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)
