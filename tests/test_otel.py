"""OpenTelemetry traces: the span tree and its attributes, content only on request, and real OTLP/HTTP export.

The span tests use the SDK's in-memory exporter; the export tests run the CLI
against an OTLP/HTTP receiver started here on 127.0.0.1 that decodes the
protobuf it is sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orchestrate.app.wiring import tracing_requested
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.observe.otel import OTelSink
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.workflow.loader import load_workflow_text
from tests.sample_runs import HOSTILE, run_sample

CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
)


async def traced_sample(*, content: bool = False) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await run_sample(sinks=[OTelSink(provider, content=content)])
    provider.shutdown()
    return list(exporter.get_finished_spans())


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def agent_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == f"invoke_agent {name}"]
    return span


async def test_one_trace_workflow_then_agents_then_calls_and_tools() -> None:
    spans = await traced_sample()
    assert len({s.context.trace_id for s in spans}) == 1
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_workflow month_end_sample" and root.kind is SpanKind.INTERNAL
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["orchestrate.budget_usd"] == 1.0
    assert root.attributes["orchestrate.status"] == "partially_completed"
    agents = children(spans, root)
    assert sorted(s.name for s in agents) == sorted(
        f"invoke_agent {n}" for n in ("ledger_extract", "gl_lookup", "vat_check", "close_memo", "xss_probe")
    )
    for span in agents:
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
        for call in children(spans, span):
            assert span.start_time <= call.start_time <= call.end_time <= span.end_time
    gl = agent_span(spans, "gl_lookup")
    assert gl.attributes["orchestrate.module"] == "General"
    calls = children(spans, gl)
    assert [s.name for s in calls] == ["chat gpt-4o-mini", "execute_tool lookup_balance", "chat gpt-4o-mini"]
    tool = calls[1]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_1" and tool.status.status_code is StatusCode.UNSET


async def test_a_retry_is_a_failed_call_and_a_retry_event_then_a_good_call() -> None:
    spans = await traced_sample()
    ledger = agent_span(spans, "ledger_extract")
    assert ledger.status.status_code is StatusCode.UNSET
    assert ledger.attributes["orchestrate.retries"] == 1 and ledger.attributes["orchestrate.status"] == "completed"
    # the 429's retry-after paused the provider, so the second attempt waited in the limiter first
    assert [e.name for e in ledger.events] == ["attempt", "retry", "attempt", "rate_limited"]
    assert (
        ledger.attributes["orchestrate.rate_limit_wait_s"]
        == pytest.approx(ledger.events[3].attributes["orchestrate.rate_limit_wait_s"])
        and ledger.events[3].attributes["orchestrate.rate_limit_wait_s"] > 0.1
    )
    retry = ledger.events[1]
    assert retry.attributes["error.type"] == "RateLimitError" and retry.attributes["orchestrate.retry_delay_s"] > 0
    failed, good = children(spans, ledger)
    assert failed.kind is SpanKind.CLIENT and failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RateLimitError" and "Too Many Requests" in failed.status.description
    assert failed.attributes["http.response.status_code"] == 429
    assert good.status.status_code is StatusCode.UNSET
    usage = {k: v for k, v in good.attributes.items() if k.startswith("gen_ai.")}
    assert usage == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.request.max_tokens": 60,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert good.attributes["orchestrate.cost_usd"] > 0
    assert ledger.attributes["orchestrate.cost_usd"] == pytest.approx(good.attributes["orchestrate.cost_usd"])


async def test_failures_and_cancellations_set_error_status() -> None:
    spans = await traced_sample()
    vat = agent_span(spans, "vat_check")
    assert vat.status.status_code is StatusCode.ERROR and "vat_mode" in vat.status.description
    assert vat.attributes["error.type"] == "BadRequestError"
    (call,) = children(spans, vat)
    assert call.status.status_code is StatusCode.ERROR and call.attributes["error.type"] == "BadRequestError"
    memo = agent_span(spans, "close_memo")  # never started: a span all the same, with the reason
    assert memo.status.status_code is StatusCode.ERROR and memo.attributes["orchestrate.status"] == "cancelled"
    assert "dependency 'vat_check' failed" in memo.status.description and children(spans, memo) == []
    (root,) = [s for s in spans if s.parent is None]
    assert root.status.status_code is StatusCode.ERROR


async def test_no_prompt_or_answer_text_without_otel_content() -> None:
    spans = await traced_sample()
    for span in spans:
        assert not set(CONTENT_KEYS) & set(span.attributes)
        values = json.dumps(
            [str(v) for v in span.attributes.values()] + [str(v) for e in span.events for v in e.attributes.values()]
        )
        assert "task ledger_extract" not in values and "pixel.png" not in values and "1250.75" not in values


async def test_otel_content_records_messages_answers_and_tool_io() -> None:
    spans = await traced_sample(content=True)
    gl_calls = children(spans, agent_span(spans, "gl_lookup"))
    second = json.loads(gl_calls[2].attributes["gen_ai.input.messages"])
    assert second[0] == {"role": "user", "parts": [{"type": "text", "content": "task gl_lookup for period 2026-10"}]}
    assert second[1]["parts"][0] == {
        "type": "tool_call",
        "id": "call_1",
        "name": "lookup_balance",
        "arguments": {"account": "4000"},
    }
    assert second[2] == {
        "role": "tool",
        # `response`, the key the GenAI conventions' ToolCallResponsePart defines (Phoenix keeps it)
        "parts": [
            {"type": "tool_call_response", "id": "call_1", "response": '{"account": "4000", "balance": 1250.75}'}
        ],
    }
    assert json.loads(gl_calls[2].attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "done: gl_lookup"
    assert json.loads(gl_calls[1].attributes["gen_ai.tool.call.arguments"]) == {"account": "4000"}
    probe = agent_span(spans, "xss_probe")
    assert (
        json.loads(probe.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == f"task xss_probe {HOSTILE}"
    )


def test_approvals_are_events_on_the_agent_span_which_covers_the_wait() -> None:
    from collections import namedtuple

    from orchestrate.run.events import Event, EventType

    Kind = namedtuple("Kind", "value")  # the event types issue 16 adds, before they exist here

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTelSink(provider)
    sink(Event(EventType.WORKFLOW_STARTED, "w1", None, {"name": "close", "agents": []}, timestamp=100.0))
    asked = Event(EventType.AGENT_STARTED, "w1", "post", {}, timestamp=101.0)
    asked.type = Kind("approval_requested")  # type: ignore[assignment]
    sink(asked)
    decided = Event(
        EventType.AGENT_STARTED, "w1", "post", {"decision": "approved", "by": "controller"}, timestamp=160.0
    )
    decided.type = Kind("approval_decided")  # type: ignore[assignment]
    sink(decided)
    sink(Event(EventType.AGENT_FINISHED, "w1", "post", {"status": "skipped"}, timestamp=161.0))
    sink(Event(EventType.WORKFLOW_FINISHED, "w1", None, {"status": "completed"}, timestamp=162.0))
    spans = list(exporter.get_finished_spans())
    post = agent_span(spans, "post")
    assert [e.name for e in post.events] == ["approval_requested", "approval_decided"]
    assert post.events[1].attributes["orchestrate.approval.by"] == "controller"
    assert post.start_time == 101 * 10**9 and post.end_time == 161 * 10**9
    assert post.status.status_code is StatusCode.UNSET  # skipped is not an error


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (False, {"OTEL_SERVICE_NAME": "erp"}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        (True, {"OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_with_the_flag_or_an_endpoint_and_off_when_disabled(
    flag: bool, env: dict[str, str], expected: bool
) -> None:
    assert tracing_requested(flag, env) is expected


# --- real export over OTLP/HTTP ---------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every request, decoded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                decoded = ExportTraceServiceRequest()
                decoded.ParseFromString(body)
                owner.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, decoded))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for _, _, request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope.spans)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        value = a.value
        kind = value.WhichOneof("value")
        out[a.key] = (
            [v.string_value for v in value.array_value.values] if kind == "array_value" else getattr(value, kind)
        )
    return out


FLOW = (
    "name: payroll_check\ndefaults: {module: HR, llm_config: {model: gpt-4o-mini, max_tokens: 50}}\nagents:\n"
    "  - name: gather\n    prompt_template: Gather timesheets for {period}\n"
    "  - name: verify\n    dependencies: [gather]\n    prompt_template: 'Verify {gather.output}'\n"
    "inputs: {period: {type: string, default: 2026-10}}\n"
)


def run_cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrate",
            "run",
            str(flow),
            "--simulate",
            "--no-progress",
            "-o",
            str(tmp_path / "runs"),
            *args,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exports_the_run_over_otlp_http_to_the_collector(tmp_path: Path, receiver: Receiver) -> None:
    done = run_cli(
        tmp_path,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "hr-payroll",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant-key=s3cr3t-header",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "s3cr3t-header" not in done.stdout + done.stderr and "warning" not in done.stderr
    paths = {path for path, _, _ in receiver.requests}
    assert paths == {"/v1/traces"}
    assert all(
        h["content-type"] == "application/x-protobuf" and h["x-tenant-key"] == "s3cr3t-header"
        for _, h, _ in receiver.requests
    )
    received = receiver.spans()
    assert {r["service.name"] for r, _ in received} == {"hr-payroll"}
    by_name = {span.name: span for _, span in received}
    assert (
        set(by_name)
        == {"invoke_workflow payroll_check", "invoke_agent gather", "invoke_agent verify", "chat gpt-4o-mini"}
        and len(received) == 5
    )
    root = by_name["invoke_workflow payroll_check"]
    assert root.parent_span_id == b"" and len({span.trace_id for _, span in received}) == 1
    assert attrs(by_name["invoke_agent verify"])["orchestrate.module"] == "HR"
    chat = [span for _, span in received if span.name == "chat gpt-4o-mini"]
    assert {attrs(s)["gen_ai.provider.name"] for s in chat} == {"simulated"}
    assert all(attrs(s)["gen_ai.usage.input_tokens"] > 0 for s in chat)
    assert not any(k in attrs(s) for _, s in received for k in CONTENT_KEYS)


def test_otel_content_flag_sends_prompts(tmp_path: Path, receiver: Receiver) -> None:
    done = run_cli(
        tmp_path, "--otel", "--otel-content", env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces"}
    )
    assert done.returncode == 0, done.stderr
    chat = [span for _, span in receiver.spans() if span.name == "chat gpt-4o-mini"]
    assert any("Gather timesheets for 2026-10" in attrs(s)["gen_ai.input.messages"] for s in chat)


def test_an_unreachable_collector_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = run_cli(tmp_path, "--otel", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OpenTelemetry" in line]
    assert warnings == [
        f"warning: OpenTelemetry: 5 spans not exported to http://127.0.0.1:{port}/v1/traces: Connection refused"
    ]
    assert time.monotonic() - started < 15  # the exporter's own retries would take 10 s; we stop at 3
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"


def test_otel_sdk_disabled_sends_nothing_and_imports_nothing(tmp_path: Path, receiver: Receiver) -> None:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW)
    program = (
        "import runpy, sys\n"
        f"sys.argv = ['orchestrate', 'run', {str(flow)!r}, '--simulate', '--quiet', '--otel', "
        f"'-o', {str(tmp_path / 'runs')!r}]\n"
        "try:\n    runpy.run_module('orchestrate', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SDK_DISABLED="true")
    done = subprocess.run([sys.executable, "-c", program], env=environment, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
    assert receiver.requests == []


def test_ctrl_c_still_flushes_the_trace(tmp_path: Path, receiver: Receiver) -> None:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrate",
            "run",
            str(flow),
            "--simulate",
            "--no-progress",
            "--sim-latency",
            "30",
            "-o",
            str(tmp_path / "runs"),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the first call is in flight
        logs = list((tmp_path / "runs").glob("*/events.jsonl"))
        if logs and "agent_started" in logs[0].read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    by_name = {span.name: span for _, span in receiver.spans()}
    root = by_name["invoke_workflow payroll_check"]
    assert attrs(root)["orchestrate.status"] == "cancelled"
    assert attrs(by_name["invoke_agent gather"])["orchestrate.status"] == "cancelled"


def test_a_dataset_run_is_one_trace_per_row(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "periods.jsonl"
    data.write_text('{"period": "2026-09"}\n{"period": "2026-10"}\n{"period": "2026-11"}\n')
    done = run_cli(tmp_path, "--data", str(data), "--key", "period", env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert done.returncode == 0, done.stderr
    roots = [span for _, span in receiver.spans() if span.name == "invoke_workflow payroll_check"]
    assert sorted(attrs(r)["orchestrate.row.key"] for r in roots) == ["2026-09", "2026-10", "2026-11"]
    assert len({r.trace_id for r in roots}) == 3
    assert len([s for _, s in receiver.spans() if s.name.startswith("invoke_agent")]) == 6


LANGUAGE_FLOW = """\
name: ap_lines
defaults: {module: Finance, llm_config: {model: gpt-4o-mini, provider: simulated, max_tokens: 50}}
inputs:
  lines: {type: array, default: [{sku: A-1}, {sku: B-2}, {sku: C-3}]}
  region: {type: string, default: test}
agents:
  - name: check_line
    foreach: "{inputs.lines}"
    max_items: 10
    prompt_template: "Check SKU {item.sku} (line {item_index})"
  - name: escalate
    dependencies: [check_line]
    when: "inputs.region != 'test'"
    prompt_template: "Escalate {check_line.output}"
"""


async def test_a_skipped_agent_and_a_foreach_agent_in_the_span_tree() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = OrchestrationEngine(
        SimulatedClient(), EngineConfig(rate_limit_config=None), sinks=[OTelSink(provider, content=False)]
    )
    workflow = load_workflow_text(LANGUAGE_FLOW)
    await engine.register_workflow(workflow)
    try:
        await engine.execute_workflow(workflow.id)
    finally:
        await engine.shutdown()
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    assert len({s.context.trace_id for s in spans}) == 1
    fanned, skipped = agent_span(spans, "check_line"), agent_span(spans, "escalate")
    (root,) = [s for s in spans if s.name == "invoke_workflow ap_lines"]
    assert fanned.parent.span_id == skipped.parent.span_id == root.context.span_id
    calls = [s for s in children(spans, fanned) if s.name.startswith("chat ")]
    assert len(calls) == 3 and all(s.status.status_code is not StatusCode.ERROR for s in calls)
    assert children(spans, skipped) == [] and skipped.status.status_code is not StatusCode.ERROR
    assert dict(skipped.attributes or {}).get("orchestrate.status") == "skipped", dict(skipped.attributes or {})
