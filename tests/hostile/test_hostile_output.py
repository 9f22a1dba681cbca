"""What a hostile provider or workflow can put on the screen and in CI reports: control
characters, rich markup, answers without end, and waits without end."""

from __future__ import annotations

import asyncio
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from orchestrate.errors import NonRetriableLLMError, RateLimitError
from orchestrate.llm.anthropic import AnthropicClient
from orchestrate.llm.openai import OpenAIClient
from orchestrate.observe.progress import LiveTable
from orchestrate.run.events import Event, EventType
from tests.fake_provider import FakeProvider, Fault, error_body
from tests.hostile.helpers import KEY, assert_clean_failure, orchestrate, workflow_file

NASTY = "bad \x1b]0;pwned\x07 \x1b[2J\x00 end\u202e|x\n## heading"


def test_control_characters_from_a_provider_never_reach_the_terminal_or_break_reports(tmp_path: Path) -> None:
    path = workflow_file(tmp_path, rate_limits={"openai": {"requests_per_minute": 100000}})
    with FakeProvider() as server:
        server.script(Fault(400, error_body("/v1/chat/completions", 400, NASTY)))
        for quiet in ("--no-progress", "--quiet"):
            server.script(Fault(400, error_body("/v1/chat/completions", 400, NASTY)))
            done = orchestrate(
                "run",
                str(path),
                "-o",
                "runs",
                quiet,
                "--junit",
                "j.xml",
                "--summary",
                "s.md",
                cwd=tmp_path,
                env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{server.url}/v1"},
            )
            assert_clean_failure(done, 1, "\\x1b]0;pwned\\x07")
            for raw in ("\x1b", "\x07", "\x00", "\u202e"):
                assert raw not in done.stderr and raw not in done.stdout
    ET.fromstring((tmp_path / "j.xml").read_bytes())  # well-formed despite NUL and ESC
    summary = (tmp_path / "s.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| a |")]
    # Two per run (its answers table and its agents table): the second run appended, as for
    # $GITHUB_STEP_SUMMARY, and the hostile error text split no row.
    assert len(rows) == 4
    agent_rows = [row for row in rows if "| Finance |" in row]  # the agents table's, with the error
    assert len(agent_rows) == 2
    assert all("## heading" in row and "\\|x" in row for row in agent_rows)
    assert not any(line.startswith("## heading") for line in summary.splitlines())


def test_names_with_control_characters_keep_junit_and_markdown_well_formed() -> None:
    from orchestrate.observe.ci_reports import junit_xml, mermaid, summary_markdown

    doc = {
        "name": "wf",
        "status": "failed",
        "simulated": False,
        "total_cost": 0.0,
        "cost_budget": 1.0,
        "total_tokens": 0,
        "retries": 0,
        "duration_seconds": 0.0,
        "started_at": "x",
        "agents": [
            {
                "name": "a",
                "module": "Finance",
                "status": "failed",
                "model": 'm"] --> x["\x00',
                "error": NASTY,
                "dependencies": [],
                "tokens_used": 0,
                "cost": 0.0,
            }
        ],
    }
    ET.fromstring(junit_xml([doc]))
    graph = mermaid(doc)
    assert "\n" not in graph.splitlines()[4] and '"]' not in graph.splitlines()[4][: -len('"]:::failed')]
    # One row in the answers table and one in the agents table: the hostile text adds none.
    assert summary_markdown([doc]).count("\n| a |") == 2


def test_rich_markup_in_a_model_name_is_shown_as_written(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        'name: t\nprices:\n  "[/]": {input: 0.001, output: 0.002}\nagents:\n  - name: a\n'
        '    module: Finance\n    llm_config: {model: "[/]", provider: simulated}\n    prompt_template: hi\n'
    )
    for command in ("plan", "graph"):
        done = orchestrate(command, str(path), cwd=tmp_path)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "[/]" in done.stdout
    table = LiveTable(Console(file=io.StringIO(), width=120))
    table(
        Event(
            EventType.WORKFLOW_STARTED,
            "w",
            data={
                "name": "[bold]t",
                "cost_budget": 1.0,
                "agents": [{"name": "[/]", "module": "[red]", "model": "[/]"}],
            },
            workflow_name="[bold]t",
        )
    )
    table(Event(EventType.AGENT_STARTED, "w", "[/]", {"attempt": 1, "model": "[/x]\x1b[2J"}))
    console = Console(file=io.StringIO(), width=120)
    console.print(table.render())
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/x]\\x1b[2J" in shown and "[red]" in shown and "\x1b" not in shown


# -- answers without end, waits without end ---------------------------------------------------


async def test_an_answer_larger_than_the_cap_fails_the_call_as_a_provider_error() -> None:
    with FakeProvider() as server:
        server.script(Fault(200, b"x" * 50_000))
        client = OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1", max_response_bytes=10_000)
        with pytest.raises(NonRetriableLLMError, match="larger than the limit of 10,000 bytes"):
            await client.complete("hi", "gpt-4o-mini", max_tokens=50)
        await client.aclose()


def test_the_answer_cap_is_set_by_an_environment_variable(tmp_path: Path) -> None:
    path = workflow_file(tmp_path, rate_limits={"openai": {"requests_per_minute": 100000}})
    with FakeProvider() as server:
        server.script(*[Fault(200, {"pad": "y" * 5000, **json.loads('{"choices": []}')})] * 3)
        done = orchestrate(
            "run",
            str(path),
            "-o",
            "runs",
            cwd=tmp_path,
            env={
                "OPENAI_API_KEY": KEY,
                "OPENAI_BASE_URL": f"{server.url}/v1",
                "ORCHESTRATE_MAX_RESPONSE_BYTES": "2000",
            },
        )
    assert_clean_failure(done, 1, "larger than the limit of 2,000 bytes")
    done = orchestrate(
        "run",
        str(path),
        "-o",
        "runs",
        cwd=tmp_path,
        env={"OPENAI_API_KEY": KEY, "ORCHESTRATE_MAX_RESPONSE_BYTES": "lots"},
    )
    assert_clean_failure(done, 2, "ORCHESTRATE_MAX_RESPONSE_BYTES='lots': expected a finite number")


@pytest.mark.parametrize(
    "header",
    [
        {"retry-after": "1000000000"},
        {"retry-after": "Wed, 01 Jan 2099 00:00:00 GMT"},
        {"retry-after-ms": "1e12"},
        {"retry-after": "inf"},
    ],
)
async def test_a_huge_retry_after_is_capped_and_said(header: dict[str, str]) -> None:
    with FakeProvider() as server:
        server.script(Fault(429, None, header))
        client = AnthropicClient(api_key=KEY, base_url=server.url)
        with pytest.raises(RateLimitError) as caught:
            await client.complete("hi", "claude-haiku-4-5", max_tokens=50)
        await client.aclose()
    if header.get("retry-after") == "inf":
        assert caught.value.retry_after is None  # not a number: ignored
        return
    assert caught.value.retry_after == 300.0
    assert "waiting at most 300s" in str(caught.value)


async def test_the_retry_after_cap_is_configurable() -> None:
    with FakeProvider() as server:
        server.script(Fault(429, None, {"retry-after": "120"}))
        client = OpenAIClient(api_key=KEY, base_url=f"{server.url}/v1", max_retry_after=5)
        with pytest.raises(RateLimitError) as caught:
            await client.complete("hi", "gpt-4o-mini", max_tokens=50)
        await client.aclose()
    assert caught.value.retry_after == 5.0


def test_the_capped_wait_is_in_the_retry_event(tmp_path: Path) -> None:
    path = workflow_file(
        tmp_path,
        rate_limits={"openai": {"requests_per_minute": 100000}},
        agents=[
            {
                "name": "a",
                "module": "Finance",
                "prompt_template": "hi",
                "max_retries": 1,
                "retry": {"strategy": "immediate"},
                "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
            }
        ],
    )
    with FakeProvider() as server:
        server.script(Fault(429, None, {"retry-after": "99999"}))
        done = orchestrate(
            "run",
            str(path),
            "-o",
            "runs",
            cwd=tmp_path,
            timeout=60,
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{server.url}/v1", "ORCHESTRATE_MAX_RETRY_AFTER": "0.2"},
        )
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    retry = next(e for e in events if e["type"] == "agent_retrying")
    assert "asked to wait 99999s; waiting at most 0s" in retry["data"]["error"]
    assert retry["data"]["delay"] <= 0.2 + 1e-9


def test_asyncio_is_imported() -> None:  # keeps the module's imports honest for linters
    assert asyncio.iscoroutinefunction(test_the_retry_after_cap_is_configurable)
