"""The ollama and vllm presets against a real llama.cpp server (llama-cpp-python's OpenAI-compatible
server, tests/llama_server.py) serving a tiny random-weight model written at test time
(tests/tiny_gguf.py): the server's own chat template, tokenizer, usage counts, grammar-constrained
JSON, validation errors and context-window errors, through the client and through `orchestrate run`.

Two servers: one with a 256-token context (to overflow) and one with 2,048.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate.errors import BadRequestError
from orchestrate.llm.compatible import CompatibleClient
from orchestrate.llm.fallbacks import failure_class
from orchestrate.llm.providers import ClientPool
from tests.cli import orchestrate
from tests.llama_server import MODEL, LlamaServer, need_llama_cpp

PRICES = f"prices: {{{MODEL}: {{input: 0, output: 0}}}}\n"
LONG = "The supplier statement lists invoice 4711 twice. " * 15  # about 700 of the tiny vocabulary's tokens


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    need_llama_cpp()
    from tests.tiny_gguf import write_tiny_llama

    folder = tmp_path_factory.mktemp("llama")
    model = write_tiny_llama(folder / "tiny-llama.gguf")
    small = LlamaServer(model, context=256, log=folder / "small.log")
    large = LlamaServer(model, context=2048, log=folder / "large.log")
    try:
        small.wait_ready()
        large.wait_ready()
        yield small, large
    finally:
        small.stop()
        large.stop()


async def test_the_ollama_preset_gets_an_answer_with_the_servers_own_usage(
    servers: tuple[LlamaServer, LlamaServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    small, _ = servers
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{small.port}")
    pool = ClientPool()
    llm = {"model": MODEL, "provider": "ollama"}
    pool.check_keys([llm])  # no key needed
    client = pool.get(llm)
    short = await client.complete("Hi", MODEL, 0.7, 6)
    longer = await client.complete("Reconcile the supplier statement for March, line by line.", MODEL, 0.7, 6)
    await pool.aclose()
    assert short.provider == "ollama" and short.model == MODEL
    assert 1 <= short.output_tokens <= 6
    assert short.finish_reason in ("stop", "length")
    # The server counts the chat template's tokens too: more than the words, more for a longer prompt.
    assert short.input_tokens > 2
    assert longer.input_tokens > short.input_tokens + 10


async def test_a_body_the_server_refuses_is_a_bad_request_not_retried_though_sent_as_a_500(
    servers: tuple[LlamaServer, LlamaServer],
) -> None:
    _, large = servers
    client = CompatibleClient("vllm", base_url=large.url)
    with pytest.raises(BadRequestError) as caught:
        await client.complete("Hi", MODEL, 0.7, 6, top_p=5.0)  # the server takes 0 <= top_p <= 1
    await client.aclose()
    assert caught.value.status_code == 500  # llama-cpp-python answers a body it refuses with a 500
    assert not caught.value.retriable
    assert "top_p" in str(caught.value)
    assert failure_class(caught.value) is None  # the same on every model: never a reason to fall back


async def test_a_prompt_over_the_context_window_is_a_context_window_failure(
    servers: tuple[LlamaServer, LlamaServer],
) -> None:
    small, _ = servers
    client = CompatibleClient("ollama", base_url=small.url)
    with pytest.raises(BadRequestError) as caught:
        await client.complete(LONG, MODEL, 0.7, 6)
    await client.aclose()
    assert caught.value.status_code == 400
    assert "maximum context length is 256 tokens" in str(caught.value)
    assert failure_class(caught.value) == "context_window"


def test_a_run_with_an_output_schema_gets_grammar_constrained_json_from_the_server(
    servers: tuple[LlamaServer, LlamaServer], tmp_path: Path
) -> None:
    """llama-cpp-python refuses response_format json_schema (it knows text and json_object): the
    client asks again at once with json_object, which the server enforces with a JSON grammar."""
    _, large = servers
    (tmp_path / "w.yaml").write_text(
        "name: tiny\ndefaults: {module: Finance}\nagents:\n"
        "  - name: check\n    prompt_template: Is the statement complete?\n"
        f"    llm_config: {{model: {MODEL}, provider: vllm, base_url: '{large.url}', max_tokens: 20}}\n"
        "    output_schema: {type: object, properties: {note: {type: string}}}\n" + PRICES
    )
    proc = orchestrate("run", "w.yaml", "--output-dir", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (agent,) = json.loads((run_dir / "result.json").read_text())["agents"]
    assert agent["output"]["json"] == {}  # the tiny model's likeliest JSON: the grammar closes the object
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    notices = [e["data"]["notice"] for e in events if e.get("type") == "llm_call" and e.get("data", {}).get("notice")]
    assert len(notices) == 1 and "refused response_format json_schema" in notices[0]
    (call,) = json.loads((run_dir / "cost.json").read_text())["calls"]
    assert call["input_tokens"] > 0 and 1 <= call["output_tokens"] <= 20
    assert call["region"] == "local"


def test_a_prompt_too_long_for_ollama_falls_back_to_the_vllm_server_at_once(
    servers: tuple[LlamaServer, LlamaServer], tmp_path: Path
) -> None:
    small, large = servers
    (tmp_path / "w.yaml").write_text(
        "name: tiny\nresidency: eu\ndefaults: {module: Finance}\nagents:\n"
        f"  - name: reconcile\n    prompt_template: '{LONG}'\n"
        f"    llm_config:\n      model: {MODEL}\n      provider: ollama\n      max_tokens: 8\n"
        f"      fallbacks:\n        - {{model: {MODEL}, provider: vllm, base_url: '{large.url}'}}\n" + PRICES
    )
    proc = orchestrate("run", "w.yaml", "--output-dir", "runs", cwd=tmp_path, env={"OLLAMA_HOST": small.url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (agent,) = json.loads((run_dir / "result.json").read_text())["agents"]
    assert agent["metadata"]["served_provider"] == "vllm"
    assert agent["metadata"]["fallback_reason"] == "context_window"
    assert "maximum context length is 256 tokens" in agent["metadata"]["fallbacks"][0]["error"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert not any(e.get("type") == "agent_retrying" for e in events)  # no retry budget spent first
    (call,) = json.loads((run_dir / "cost.json").read_text())["calls"]
    assert call["input_tokens"] > 256  # what the 256-token server could not hold, counted by the other
