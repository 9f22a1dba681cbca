"""The response cache answers identical requests from disk and never stores failures or cut answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.errors import ProviderUnavailableError
from orchestrate.llm.base import ToolCall
from orchestrate.run.cache import CachingClient, CachingClients
from tests.scripted import ScriptedClient, response


async def test_identical_request_is_answered_from_disk(tmp_path: Path) -> None:
    inner = ScriptedClient()
    client = CachingClient(inner, tmp_path)
    first = await client.complete("close the ledger", "gpt-4o-mini", 0.2, 100)
    second = await CachingClient(ScriptedClient(), tmp_path).complete("close the ledger", "gpt-4o-mini", 0.2, 100)
    assert len(inner.calls) == 1
    assert second.content == first.content
    assert second.metadata["cached"] is True
    assert "cached" not in first.metadata


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "other prompt"},
        {"model": "gpt-4o"},
        {"temperature": 0.9},
        {"max_tokens": 50},
    ],
)
async def test_any_change_in_the_request_misses(tmp_path: Path, change: dict[str, object]) -> None:
    base = {"prompt": "p", "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 100}
    inner = ScriptedClient()
    client = CachingClient(inner, tmp_path)
    await client.complete(**base)  # type: ignore[arg-type]
    await client.complete(**{**base, **change})  # type: ignore[arg-type]
    assert len(inner.calls) == 2


async def test_failures_and_truncated_answers_are_never_stored(tmp_path: Path) -> None:
    failing = ScriptedClient(lambda m, model, o: ProviderUnavailableError("down", provider="scripted"))
    with pytest.raises(ProviderUnavailableError):
        await CachingClient(failing, tmp_path).complete("p", "m")
    cut = ScriptedClient(lambda m, model, o: response("half an answ", finish_reason="length"))
    await CachingClient(cut, tmp_path).complete("p", "m")
    assert not list(tmp_path.rglob("*.json"))


async def test_tool_calls_survive_the_round_trip(tmp_path: Path) -> None:
    call = ToolCall(id="c1", name="fx_rate", arguments={"currency": "EUR"})
    inner = ScriptedClient(lambda m, model, o: response("", tool_calls=[call], finish_reason="tool_calls"))
    messages = [{"role": "user", "content": "convert"}]
    tools = [{"name": "fx_rate", "description": "", "parameters": {"type": "object"}}]
    await CachingClient(inner, tmp_path).complete_with_tools(messages, "m", tools)
    again = await CachingClient(ScriptedClient(), tmp_path).complete_with_tools(messages, "m", tools)
    assert again.tool_calls == [call]


async def test_a_corrupt_entry_is_treated_as_a_miss(tmp_path: Path) -> None:
    inner = ScriptedClient()
    await CachingClient(inner, tmp_path).complete("p", "m")
    for entry in tmp_path.rglob("*.json"):
        entry.write_text("{not json")
    await CachingClient(inner, tmp_path).complete("p", "m")
    assert len(inner.calls) == 2


async def test_caching_clients_wraps_each_client_once() -> None:
    class Source:
        def __init__(self) -> None:
            self.client = ScriptedClient()

        def get(self, llm_config: dict[str, object]) -> ScriptedClient:
            return self.client

        async def aclose(self) -> None:
            return None

    pool = CachingClients(Path("unused"), Source())
    assert pool.get({"model": "a"}) is pool.get({"model": "b"})
