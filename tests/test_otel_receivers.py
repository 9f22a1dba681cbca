"""Against real receivers: a collector that accepts and never answers does not hold the run's exit,
the failure span of an agent's last call carries its HTTP status, and `--junit /dev/stdout` writes
through a pipe.

The collector is a loopback socket that accepts connections and never replies; the provider is
`tests/fake_provider.py` on loopback, answering a 400 in OpenAI's wire format.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orchestrate import Agent, EngineConfig, OrchestrationEngine, Workflow
from orchestrate.observe.otel import OTelSink
from tests.fake_provider import FakeProvider, Fault, error_body

FLOW = (
    "name: payroll_check\ndefaults: {module: HR, llm_config: {model: gpt-4o-mini, max_tokens: 50}}\nagents:\n"
    "  - name: gather\n    prompt_template: Gather timesheets for {period}\n"
    "  - name: verify\n    dependencies: [gather]\n    prompt_template: 'Verify {gather.output}'\n"
    "inputs: {period: {type: string, default: 2026-10}}\n"
)


class SilentCollector:
    """Accepts every connection on 127.0.0.1 and never sends a byte back."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentCollector]:
    collector = SilentCollector()
    yield collector
    collector.close()


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and not k.endswith("_API_KEY")}
    environment.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrate", "run", str(flow), "--simulate", "--no-progress", "-o", "runs", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def test_a_collector_that_never_answers_holds_the_exit_at_most_three_seconds(
    tmp_path: Path, silent: SilentCollector
) -> None:
    plain, baseline = run_cli(tmp_path)
    assert plain.returncode == 0, plain.stderr
    done, took = run_cli(tmp_path, "--otel", env={"OTEL_EXPORTER_OTLP_ENDPOINT": silent.url})
    assert done.returncode == 0, done.stderr
    assert silent.held, "the exporter never connected"
    # The same run without tracing took `baseline`; the promise is at most 3 s more at exit
    # (the exporter's own timeout is 10 s, and it retries). 2 s of slack for a loaded machine.
    assert took < baseline + 3 + 2, (took, baseline)
    warnings = [line for line in done.stderr.splitlines() if "OpenTelemetry" in line]
    assert len(warnings) == 1 and "not exported" in warnings[0] and silent.url in warnings[0], done.stderr


async def test_the_span_of_an_agent_whose_last_call_failed_carries_the_http_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-otel-status")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with FakeProvider() as server:
        server.script(Fault(400, error_body("/v1/chat/completions", 400, "unsupported parameter 'vat_mode'")))
        llm = {"model": "gpt-4o-mini", "max_tokens": 50, "base_url": f"{server.url}/v1"}
        workflow = Workflow("vat", "d", [Agent("vat_check", "Finance", "d", llm, "Check VAT", max_retries=0)])
        engine = OrchestrationEngine(None, EngineConfig(rate_limit_config=None), sinks=[OTelSink(provider)])
        await engine.register_workflow(workflow)
        done = await engine.execute_workflow(workflow.id)
        await engine.shutdown()
    provider.shutdown()
    assert done.agents[0].status.value == "failed"
    (call,) = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes["http.response.status_code"] == 400


def test_junit_to_dev_stdout_writes_through_a_pipe(tmp_path: Path) -> None:
    done, _ = run_cli(tmp_path, "--junit", "/dev/stdout")  # stdout is a pipe here, as in `| tee`
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<?xml") and "<testsuite " in done.stdout and "</testsuites>" in done.stdout
    assert ".tmp" not in done.stderr
