"""The simulated provider: offline runs, cost previews and fault drills.

Answers are a pure function of (seed, model, prompt, attempt), so a run is
reproducible whatever order its agents happen to run in. Tokens are counted
from the text (about four characters a token, never more tokens than UTF-8
bytes), and the response names the model asked for, so the cost tracker prices
a simulated run exactly as it would price the real one. Injected failures
raise the same error classes the HTTP clients raise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from orchestrate.errors import (
    LLMTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from orchestrate.llm.base import LLMClient, LLMResponse, ToolCall, single_turn

__all__ = ["SimulatedClient", "count_tokens", "example_from_schema"]

Latency = float | Sequence[float]
_MAX_REMEMBERED = 10_000  # recent prompts whose attempt count is kept (it varies the outcome of retries)


def count_tokens(text: str) -> int:
    """About four characters a token, at least one for non-empty text."""
    return (len(text) + 3) // 4


def example_from_schema(schema: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A small instance that satisfies a JSON Schema of the kinds workflows use."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return example_from_schema(schema[key][0], rng, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_from_schema(merged, rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {
            name: example_from_schema(props.get(name, {}), rng, depth + 1)
            for name in props
            if name in required or depth < 2
        }
    if kind == "array":
        count = max(int(schema.get("minItems", 1 if depth < 3 else 0)), 0)
        count = min(max(count, 1 if depth < 3 else 0), int(schema.get("maxItems", 3)))
        return [example_from_schema(schema.get("items", {}), rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", low + 100))
        return rng.randint(low, max(low, high))
    if kind == "number":
        lowest = float(schema.get("minimum", 0.0))
        highest = float(schema.get("maximum", lowest + 1000.0))
        return round(rng.uniform(lowest, max(lowest, highest)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    text = f"sample-{rng.randrange(16**6):06x}"
    low_len = int(schema.get("minLength", 0))
    if len(text) < low_len:
        text = text.ljust(low_len, "x")
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


class _LazyRandom:
    """A `random.Random` made on first use: most calls need none, and making one costs ~6 µs."""

    __slots__ = ("seed_value", "_rng")

    def __init__(self, seed: int) -> None:
        self.seed_value = seed
        self._rng: random.Random | None = None

    def __getattr__(self, name: str) -> Any:  # random(), uniform(), choice(), ...
        if self._rng is None:
            self._rng = random.Random(self.seed_value)
        return getattr(self._rng, name)


class SimulatedClient(LLMClient):
    """An offline LLMClient with optional latency and injected failures.

    Args:
        latency: Seconds per call, or a (min, max) range drawn per call.
        failure_rate: Share of calls (0-1) that fail with a retriable error:
            a 429 with a retry-after, a 503/529, or a time-out.
        seed: Makes answers, latencies and failures reproducible.
        sleep: Waits out the latency; tests and benchmarks may pass their own.

    Per-call keyword options `latency` and `failure_rate` (from an agent's
    llm_config) override the client's own.
    """

    provider = "simulated"

    def __init__(
        self,
        *,
        latency: Latency = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.latency = latency
        self.failure_rate = failure_rate
        self.seed = seed
        self.sleep = sleep
        self.calls = 0
        self._attempts: dict[str, int] = {}

    async def complete(
        self,
        prompt: str,
        model: str,
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        return await self.complete_with_tools(
            single_turn(prompt, kwargs.get("system")), model, tools or [], temperature, max_tokens, **kwargs
        )

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]],
        temperature: float | None = 0.7,
        max_tokens: int = 1000,
        **kwargs: Any,
    ) -> LLMResponse:
        self.calls += 1
        text_in = "\n".join(str(m.get("content") or "") for m in messages)
        key = hashlib.blake2b(f"{self.seed}\x00{model}\x00{text_in}".encode(), digest_size=8).hexdigest()
        attempt = self._attempts.get(key, 0)
        if len(self._attempts) >= _MAX_REMEMBERED:  # bounded memory in a long-lived process
            self._attempts.clear()
        self._attempts[key] = attempt + 1
        rng: Any = _LazyRandom((int(key, 16) << 16) + attempt)

        delay = self._draw_latency(kwargs.get("latency", self.latency), rng)
        if delay > 0:
            await self.sleep(delay)
        failure_rate = float(kwargs.get("failure_rate", self.failure_rate))
        if failure_rate > 0 and rng.random() < failure_rate:
            self._raise_injected(rng)

        tool_calls = self._tool_calls(messages, tools, rng, key)
        if tool_calls:
            content, finish = "", "tool_calls"
        else:
            content, finish = self._answer(messages, model, kwargs.get("response_schema"), rng)
            limit = max(1, int(max_tokens)) * 4
            if len(content) > limit:
                content, finish = content[:limit], "length"
        output_tokens = count_tokens(content) + sum(count_tokens(json.dumps(c.arguments)) for c in tool_calls)
        return LLMResponse(
            content=content,
            model=model,
            input_tokens=count_tokens(text_in) + 4 * len(messages),
            output_tokens=max(1, min(output_tokens, int(max_tokens))),
            finish_reason=finish,
            tool_calls=tool_calls or None,
            metadata={"simulated": True},
            request_id=f"sim-{key}-{attempt}",
            provider=self.provider,
        )

    @staticmethod
    def _draw_latency(latency: Latency, rng: random.Random) -> float:
        if isinstance(latency, (int, float)):
            return float(latency)
        low, high = (float(v) for v in latency)
        return rng.uniform(low, high)

    def _raise_injected(self, rng: random.Random) -> None:
        kind = rng.random()
        if kind < 0.4:
            raise RateLimitError(
                "simulated 429: rate limit reached",
                provider=self.provider,
                status_code=429,
                retry_after=round(rng.uniform(0.01, 0.05), 3),
            )
        if kind < 0.8:
            status = rng.choice((500, 502, 503, 529))
            raise ProviderUnavailableError(
                f"simulated {status}: provider unavailable", provider=self.provider, status_code=status
            )
        raise LLMTimeoutError("simulated time-out", provider=self.provider)

    @staticmethod
    def _tool_calls(
        messages: list[dict[str, Any]], tools: list[dict[str, Any]], rng: random.Random, key: str
    ) -> list[ToolCall]:
        """Call every tool once, in the first turn; answer once their results are in."""
        if not tools or any(m.get("role") == "tool" for m in messages):
            return []
        return [
            ToolCall(
                id=f"call_{key[:8]}_{i}",
                name=tool["name"],
                arguments=example_from_schema(tool.get("parameters") or {"type": "object"}, rng),
            )
            for i, tool in enumerate(tools)
        ]

    @staticmethod
    def _answer(
        messages: list[dict[str, Any]], model: str, schema: dict[str, Any] | None, rng: _LazyRandom
    ) -> tuple[str, str]:
        if schema is not None:
            draws = cast(random.Random, rng)  # _LazyRandom stands in for a Random
            return json.dumps(example_from_schema(schema, draws), sort_keys=True), "stop"
        prompt = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        words = prompt[:200].split()
        gist = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
        tool_notes = [
            f"{m.get('name', 'tool')} returned {str(m.get('content'))[:80]}"
            for m in messages
            if m.get("role") == "tool"
        ]
        lines = [f"[simulated {model}] Response to: {gist}"]
        lines.extend(tool_notes)
        lines.append(f"Finding {rng.seed_value % 1000:03d}: no anomalies beyond expected variance.")
        return "\n".join(lines), "stop"
