"""Keys never leave, round 2: the exits the hostile pass of 2026-12-03 found open.

A failed provider batch whose reason echoes the key, a prompt file that reads
``/proc/self/environ``, a cache entry holding a key, a tool result holding a key
exported with ``--otel-content``, a collector URL with a token in it, and an
Anthropic batch whose ``results_url`` names another host. Each runs the CLI as a
subprocess against loopback servers; the key is not shaped like one (no ``sk-``),
so only scrubbing the real secret can hide it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fake_batch import FakeBatchProvider, FakeClock
from tests.hostile.helpers import assert_clean_failure, every_file, orchestrate, workflow_file

SECRET = "finance-prod-SECRET-77f0c2d9e1"


def _leaks(done: Any, *folders: Path) -> list[str]:
    """Where the secret shows: 'stdout', 'stderr' or a file's path."""
    found = [name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if SECRET in text]
    for path in every_file(*folders):
        if SECRET.encode() in path.read_bytes():
            found.append(str(path))
    return found


@pytest.fixture
def batches() -> Iterator[FakeBatchProvider]:
    with FakeBatchProvider(FakeClock(), validate_s=0.0, process_s=0.0, finalize_s=0.0) as fake:
        yield fake


def _batch_workflow(tmp_path: Path, llm: dict[str, Any]) -> Path:
    agents = [{"name": "extract", "module": "Finance", "prompt_template": "Extract the total.", "max_retries": 0}]
    return workflow_file(tmp_path, agents=agents, defaults={"llm_config": llm}, allow_partial_completion=True)


def _batch_run(tmp_path: Path, path: Path, env: dict[str, str]) -> Any:
    return orchestrate(
        "run",
        str(path),
        "-o",
        "runs",
        "--provider-batch",
        "--batch-window",
        "0.05",
        "--batch-poll-max",
        "0.2",
        "--junit",
        "reports/junit.xml",
        "--summary",
        "reports/summary.md",
        "--json",
        cwd=tmp_path,
        env=env,
    )


def test_a_failed_batch_whose_reason_echoes_the_key_leaks_it_nowhere(
    tmp_path: Path, batches: FakeBatchProvider
) -> None:
    batches.fate = lambda n: "failed"
    batches.failure_message = f"Invalid authentication: the key {SECRET} is not allowed to create batches"
    path = _batch_workflow(tmp_path, {"model": "gpt-4o-mini", "base_url": f"{batches.url}/v1", "max_tokens": 40})
    done = _batch_run(tmp_path, path, {"OPENAI_API_KEY": SECRET})
    assert batches.submissions == 1, done.stderr
    assert done.returncode == 1, (done.stdout, done.stderr)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "is not allowed to create batches" in (run_dir / "batches.json").read_text()  # the reason is kept...
    assert _leaks(done, tmp_path / "runs", tmp_path / "reports") == []  # ...without the key


class _Elsewhere:
    """Another host: records every request made to it (and the key it came with)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_anthropic_batch_results_are_fetched_only_from_the_providers_host(
    tmp_path: Path, batches: FakeBatchProvider
) -> None:
    elsewhere = _Elsewhere()
    try:
        batches.results_base = f"http://user:{SECRET}@{elsewhere.url.removeprefix('http://')}"
        path = _batch_workflow(tmp_path, {"model": "claude-haiku-4-5", "max_tokens": 40})
        done = _batch_run(tmp_path, path, {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": batches.url})
    finally:
        elsewhere.close()
    assert batches.submissions == 1, done.stderr
    assert elsewhere.requests == []  # the key never went to another host
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "only from the provider's own host" in done.stdout + done.stderr
    assert _leaks(done, tmp_path / "runs", tmp_path / "reports") == []


def test_anthropic_batch_results_on_the_providers_own_host_are_read(tmp_path: Path, batches: FakeBatchProvider) -> None:
    path = _batch_workflow(tmp_path, {"model": "claude-haiku-4-5", "max_tokens": 40})
    done = _batch_run(tmp_path, path, {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": batches.url})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["status"] == "completed"


# -- prompt files ------------------------------------------------------------------------------


def _prompt_file_workflow(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    agents = [
        {
            "name": "a",
            "module": "Finance",
            "prompt_file": name,
            "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
        }
    ]
    return workflow_file(folder, agents=agents)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("/proc/self/environ", "outside the workflow's folder"),
        ("../secrets.txt", "outside the workflow's folder"),
        ("prompts/../../secrets.txt", "outside the workflow's folder"),
        ("linked.md", "leads outside the workflow's folder"),
        ("huge.md", "the limit is 1,048,576"),
    ],
)
def test_a_prompt_file_stays_inside_the_workflows_folder(tmp_path: Path, name: str, says: str) -> None:
    (tmp_path / "secrets.txt").write_text(f"the key is {SECRET}")
    path = _prompt_file_workflow(tmp_path, name)
    (path.parent / "linked.md").symlink_to(tmp_path / "secrets.txt")
    with open(path.parent / "huge.md", "wb") as handle:
        handle.truncate(1024 * 1024 * 1024)  # 1 GB, sparse: read whole, it would take a gigabyte of memory
    for command in (("validate", str(path)), ("run", str(path), "--simulate", "-o", "runs")):
        done = orchestrate(*command, cwd=tmp_path, env={"OPENAI_API_KEY": SECRET}, timeout=60)
        assert_clean_failure(done, 2, "wf.yaml:6:16: agent 'a': prompt_file: ", says)
        assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_prompt_file_inside_the_folder_is_still_read(tmp_path: Path) -> None:
    path = _prompt_file_workflow(tmp_path, "prompts/ask.md")
    (path.parent / "prompts").mkdir()
    (path.parent / "prompts" / "ask.md").write_text("Summarise the October close.")
    done = orchestrate("run", str(path), "--simulate", "-o", "runs", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# -- cache, tool results, traces ---------------------------------------------------------------


def test_a_cache_entry_holding_a_key_is_replayed_scrubbed(tmp_path: Path) -> None:
    path = workflow_file(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "--cache", "cache", "-o", "first", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (entry,) = (tmp_path / "cache").rglob("*.json")
    stored = json.loads(entry.read_text())
    stored["content"] = f"the key is {SECRET}"  # as an earlier version, or a hand, wrote it
    stored["request_id"] = SECRET
    stored["metadata"] = {"note": SECRET, SECRET: 1}
    entry.write_text(json.dumps(stored))
    done = orchestrate(
        "run",
        str(path),
        "--simulate",
        "--cache",
        "cache",
        "-o",
        "runs",
        "--json",
        "--junit",
        "reports/junit.xml",
        "--summary",
        "reports/summary.md",
        cwd=tmp_path,
        env={"OPENAI_API_KEY": SECRET},
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["calls"][0]["cached"]  # it was replayed...
    assert "the key is ***" in (run_dir / "result.json").read_text()
    assert _leaks(done, tmp_path / "runs", tmp_path / "reports") == []  # ...scrubbed


def test_a_tool_result_holding_a_key_is_scrubbed_everywhere_and_the_collector_url_is_never_printed(
    tmp_path: Path,
) -> None:
    from tests.test_otel import Receiver, attrs

    (tmp_path / "gl_tools.py").write_text(
        "import os\n\ndef balance(account):\n    return {'account': account, 'token': os.environ['ERP_API_TOKEN']}\n"
    )
    agents = [
        {
            "name": "ask",
            "module": "Finance",
            "prompt_template": "What is the balance of account 4000?",
            "tools": [
                {
                    "function": "gl_tools:balance",
                    "description": "balance of an account",
                    "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
                }
            ],
            "llm_config": {"model": "gpt-4o-mini", "max_tokens": 50},
        }
    ]
    path = workflow_file(tmp_path, agents=agents)
    collector_secret = "collector-TOKEN-5c1d0e9a8b"
    receiver = Receiver()
    try:
        endpoint = receiver.url.replace("http://", f"http://tenant:{collector_secret}@")
        done = orchestrate(
            "run",
            str(path),
            "--simulate",
            "--otel",
            "--otel-content",
            "-o",
            "runs",
            cwd=tmp_path,
            env={"ERP_API_TOKEN": SECRET, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        )
        spans = receiver.spans()
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    tools = [span for _, span in spans if span.name == "execute_tool balance"]
    assert tools and all("***" in attrs(s)["gen_ai.tool.call.result"] for s in tools)
    exported = json.dumps([{k: str(v) for k, v in attrs(span).items()} for _, span in spans])
    assert SECRET not in exported
    assert _leaks(done, tmp_path / "runs") == []
    # A collector that cannot be reached is named in a warning, without its credentials.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = orchestrate(
        "run",
        str(path),
        "--simulate",
        "--otel",
        "-o",
        "runs2",
        cwd=tmp_path,
        env={
            "ERP_API_TOKEN": SECRET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://tenant:{collector_secret}@127.0.0.1:{port}",
        },
    )
    assert done.returncode == 0, done.stderr
    assert f"spans not exported to http://***@127.0.0.1:{port}/v1/traces" in done.stderr
    assert collector_secret not in done.stdout + done.stderr
    assert all(collector_secret.encode() not in p.read_bytes() for p in every_file(tmp_path / "runs2"))


def test_the_scrubber_hides_every_credential_variable_and_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate.redaction import redact, scrub_url

    monkeypatch.setenv("PAYROLL_SERVICE_PASSWORD", "hunter2-but-longer")
    monkeypatch.setenv("ERP_TIMEOUT", "a-long-harmless-value")
    text = redact("pw hunter2-but-longer; timeout a-long-harmless-value; to https://u:p4ss@h.example/x")
    assert text == "pw ***; timeout a-long-harmless-value; to https://***@h.example/x"
    assert scrub_url("https://tok3n@collector.example:4318/v1") == "https://***@collector.example:4318/v1"
    assert os.environ["ERP_TIMEOUT"] in redact(os.environ["ERP_TIMEOUT"])


def test_a_credential_set_as_another_goes_is_still_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrate.redaction import redact

    monkeypatch.setenv("OLD_SERVICE_TOKEN", "first-secret-value")
    assert redact("a first-secret-value") == "a ***"  # the names are looked up and kept
    monkeypatch.delenv("OLD_SERVICE_TOKEN")
    monkeypatch.setenv("NEW_SERVICE_TOKEN", "second-secret-value")  # as many variables as before
    assert redact("b second-secret-value") == "b ***"


def test_a_code_step_that_returns_or_raises_a_key_leaks_it_nowhere(tmp_path: Path) -> None:
    (tmp_path / "erp_steps.py").write_text(
        "import os\n\n"
        "def fetch():\n    return {'vendor': 'Acme', 'token': os.environ['ERP_API_TOKEN']}\n\n"
        "def post(vendor):\n    raise RuntimeError(f\"login {os.environ['ERP_API_TOKEN']} refused for {vendor}\")\n"
    )
    agents = [
        {"name": "fetch", "module": "Finance", "function": "erp_steps:fetch"},
        {
            "name": "post",
            "module": "Finance",
            "dependencies": ["fetch"],
            "max_retries": 0,
            "function": "erp_steps:post",
            "arguments": {"vendor": "{fetch.output.vendor}"},
        },
    ]
    path = workflow_file(tmp_path, agents=agents, allow_partial_completion=True)
    done = orchestrate(
        "run", str(path), "--simulate", "-o", "runs", "--junit", "reports/junit.xml",
        "--summary", "reports/summary.md", cwd=tmp_path, env={"ERP_API_TOKEN": SECRET},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # fetch completed, post failed
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    outputs = {a["agent_id"]: a for a in result["agents"]}
    assert outputs["fetch"]["output"]["json"] == {"vendor": "Acme", "token": "***"}
    assert "login *** refused for Acme" in outputs["post"]["error"]
    assert _leaks(done, tmp_path / "runs", tmp_path / "reports") == []
