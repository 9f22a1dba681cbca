"""A model's tool call is untrusted: its arguments are checked against the tool's declared
`parameters` before the function runs; a mismatch goes back to the model as the tool's error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrate.run.tools import load_tools
from tests.fake_provider import FakeProvider, Fault, openai_completion
from tests.hostile import hostile_tools
from tests.hostile.helpers import KEY, orchestrate, workflow_file


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    hostile_tools.CALLS.clear()


async def test_arguments_outside_the_declared_schema_never_reach_the_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tool,) = load_tools(
        [
            {
                "function": "tests.hostile.hostile_tools:touch",
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string", "pattern": "^[a-z]+[.]txt$"}},
                    "required": ["path"],
                    "additionalProperties": False,
                },
            }
        ]
    )
    for arguments in (
        {"command": "touch PWNED"},
        {"path": 5},
        {"path": "../../etc/x"},
        {"path": "ok.txt", "extra": 1},
        {},
    ):
        content, error = await tool.call(arguments)
        assert error is not None and error.startswith("arguments do not match the tool's parameters")
        assert json.loads(content) == {"error": error}
    assert hostile_tools.CALLS == []
    content, error = await tool.call({"path": "ok.txt"})
    assert error is None and hostile_tools.CALLS == [{"path": "ok.txt"}]
    assert (tmp_path / "ok.txt").read_text() == "made"


async def test_a_tool_without_parameters_takes_no_arguments() -> None:
    (tool,) = load_tools([{"function": "tests.hostile.hostile_tools:no_arguments"}])
    _, error = await tool.call({"command": "touch PWNED"})
    assert error is not None and "additional properties" in error.lower()
    assert hostile_tools.CALLS == []
    _, error = await tool.call({})
    assert error is None and hostile_tools.CALLS == [{}]


def test_os_system_with_a_hostile_tool_call_creates_nothing(tmp_path: Path) -> None:
    agents = [
        {
            "name": "a",
            "module": "General",
            "prompt_template": "Do it",
            "max_retries": 0,
            "tools": [{"function": "os:system"}],
            "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
        }
    ]
    path = workflow_file(tmp_path, agents=agents, rate_limits={"openai": {"requests_per_minute": 100000}})
    call = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "system", "arguments": json.dumps({"command": "touch PWNED"})},
        }
    ]
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": []}
    with FakeProvider() as server:
        server.script(Fault(200, openai_completion(request, tool_calls=call)))
        done = orchestrate(
            "run",
            str(path),
            "-o",
            "runs",
            cwd=tmp_path,
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{server.url}/v1"},
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        second = server.requests[1]["body"]["messages"][-1]
    assert not (tmp_path / "PWNED").exists()
    assert second["role"] == "tool" and "arguments do not match the tool's parameters" in second["content"]
