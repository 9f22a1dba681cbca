"""OpenTelemetry traces of runs: a sink that turns the engine's events into spans.

The only module that imports OpenTelemetry (the optional extra
``orchestrate[otel]``); nothing imports it unless tracing is on. One trace
per workflow run (per row of a dataset, tagged ``orchestrate.row.key``),
following the GenAI semantic conventions (v1.41)::

    invoke_workflow {workflow}            INTERNAL  gen_ai.operation.name=invoke_workflow
    └── invoke_agent {agent}              INTERNAL  attempts, retries, rate-limit waits as span events
        ├── chat {model}                  CLIENT    one per provider call (a failed call too)
        └── execute_tool {tool}           INTERNAL  one per tool call

Usage goes on the ``chat`` spans only (``gen_ai.usage.*``), so a back end
that sums usage over a trace counts each token once; ``orchestrate.*``
attributes carry module, cost in USD, budget, retries and rate-limit waits.
Prompt and answer text (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, tool arguments and results) are recorded only
when `content` is on: they may hold personal data.

Spans are built from events after the fact (each event carries its time and
a call its duration), so the engine never waits on the tracer; the SDK's
BatchSpanProcessor exports them from its own thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orchestrate import __version__
from orchestrate import errors as _errors
from orchestrate.redaction import redact, scrub_url
from orchestrate.run.events import Event, EventType

__all__ = ["ERROR_STATUSES", "OTelSink", "Tracing"]

ERROR_STATUSES = frozenset({"failed", "budget_exceeded", "cancelled", "rejected", "timed_out"})
"""Agent and workflow statuses that set a span's status to ERROR; any other (completed,
skipped, waiting_approval, one a newer engine adds) leaves it unset, and is in orchestrate.status."""


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _is_llm_error(name: str | None) -> bool:
    cls = getattr(_errors, name or "", None)
    return isinstance(cls, type) and issubclass(cls, _errors.LLMError)


def _parts(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {
            "role": "tool",
            "parts": [
                {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}
            ],
        }
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        parts.append({"type": "text", "content": message["content"]})
    for call in message.get("tool_calls") or ():
        call = call.to_dict() if hasattr(call, "to_dict") else call
        parts.append(
            {"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("arguments")}
        )
    return {"role": role, "parts": parts}


class _AgentSpans:
    __slots__ = ("span", "last_activity", "attempt_started", "rate_limited", "provider", "model")

    def __init__(self, span: Span, at: float, provider: str | None, model: str | None) -> None:
        self.span = span
        self.last_activity = at
        self.attempt_started = at
        self.rate_limited = 0.0
        self.provider = provider
        self.model = model


class OTelSink:
    """A Monitor sink that records each workflow run as a trace.

    Args:
        tracer_provider: Where spans go (the SDK's, with its processors and exporter).
        content: Record prompts, answers and tool arguments/results on the spans.
    """

    def __init__(self, tracer_provider: trace.TracerProvider, *, content: bool = False) -> None:
        self.tracer = tracer_provider.get_tracer("orchestrate", __version__)
        self.content = content
        self._workflows: dict[str, Span] = {}
        self._agents: dict[tuple[str, str], _AgentSpans] = {}
        self._rows: dict[str, dict[str, Any]] = {}  # a dataset row's key, announced before its run

    def __call__(self, event: Event) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is not None and event.workflow_id is not None:
            handler(self, event)
        elif event.agent is not None and "approval" in str(getattr(event.type, "value", event.type)):
            self._approval(event)

    def _approval(self, event: Event) -> None:
        """An approval asked for or decided: an event on the agent's span, which covers the wait."""
        spans = self._agent_span(event, event.data)
        spans.last_activity = event.timestamp
        spans.span.add_event(
            str(getattr(event.type, "value", event.type)),
            {
                f"orchestrate.approval.{k}": v if isinstance(v, (bool, int, float)) else str(v)
                for k, v in event.data.items()
                if v is not None
            },
            timestamp=_ns(event.timestamp),
        )

    # --- workflow ---------------------------------------------------------------------------

    def _workflow_started(self, event: Event) -> None:
        data = event.data
        name = data.get("name") or event.workflow_name or "workflow"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": name,
            "orchestrate.workflow.id": event.workflow_id,
            "orchestrate.agents": len(data.get("agents") or ()),
            "orchestrate.max_parallel_agents": data.get("max_parallel_agents") or 0,
        }
        if data.get("cost_budget") is not None:
            attributes["orchestrate.budget_usd"] = float(data["cost_budget"])
        row = self._rows.pop(event.workflow_id or "", None)
        if row is not None:
            attributes["orchestrate.row.key"] = str(row.get("key"))
            attributes["orchestrate.row.line"] = int(row.get("row") or 0)
        self._workflows[event.workflow_id] = self.tracer.start_span(  # type: ignore[index]
            f"invoke_workflow {name}",
            context=Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.timestamp),
        )

    def _workflow_finished(self, event: Event) -> None:
        span = self._workflows.pop(event.workflow_id, None)  # type: ignore[arg-type]
        if span is None:
            return
        for key in [k for k in self._agents if k[0] == event.workflow_id]:  # never finished (killed)
            self._agents.pop(key).span.end(_ns(event.timestamp))
        data = event.data
        status = str(data.get("status"))
        span.set_attributes(
            {
                "orchestrate.status": status,
                "orchestrate.cost_usd": float(data.get("total_cost") or 0.0),
                "orchestrate.total_tokens": int(data.get("total_tokens") or 0),
            }
        )
        if status in ERROR_STATUSES or status == "partially_completed":
            span.set_attribute("error.type", status)
            span.set_status(Status(StatusCode.ERROR, redact(str(data.get("error") or status))))
        span.end(_ns(event.timestamp))

    def _row_started(self, event: Event) -> None:
        self._rows[event.workflow_id or ""] = event.data

    # --- agents -----------------------------------------------------------------------------

    def _agent_span(self, event: Event, data: dict[str, Any]) -> _AgentSpans:
        key = (event.workflow_id or "", event.agent or "")
        spans = self._agents.get(key)
        if spans is None:
            parent = self._workflows.get(key[0])
            context = trace.set_span_in_context(parent) if parent is not None else Context()
            attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": key[1]}
            if data.get("provider"):
                attributes["gen_ai.provider.name"] = data["provider"]
            if data.get("model"):
                attributes["gen_ai.request.model"] = data["model"]
            if data.get("module"):
                attributes["orchestrate.module"] = data["module"]
            span = self.tracer.start_span(
                f"invoke_agent {key[1]}",
                context=context,
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=_ns(event.timestamp),
            )
            spans = self._agents[key] = _AgentSpans(span, event.timestamp, data.get("provider"), data.get("model"))
        return spans

    def _agent_started(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)
        spans.attempt_started = spans.last_activity = event.timestamp
        spans.span.add_event(
            "attempt", {"orchestrate.attempt": int(data.get("attempt") or 1)}, timestamp=_ns(event.timestamp)
        )
        content = event.content if self.content else None
        if content and content.get("prompt") is not None:
            spans.span.set_attribute(
                "gen_ai.input.messages",
                _dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": content["prompt"]}]}], ensure_ascii=False
                ),
            )
            if content.get("system"):
                spans.span.set_attribute(
                    "gen_ai.system_instructions",
                    _dumps([{"type": "text", "content": content["system"]}], ensure_ascii=False),
                )

    def _agent_rate_limited(self, event: Event) -> None:
        spans = self._agent_span(event, event.data)
        waited = float(event.data.get("waited") or 0.0)
        spans.rate_limited += waited
        spans.last_activity = event.timestamp
        spans.span.add_event(
            "rate_limited",
            {"orchestrate.rate_limit_wait_s": waited, "gen_ai.provider.name": str(event.data.get("provider") or "")},
            timestamp=_ns(event.timestamp),
        )

    def _agent_retrying(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)
        if _is_llm_error(data.get("error_type")):
            self._failed_call(spans, event, data)
        spans.span.add_event(
            "retry",
            {
                "orchestrate.attempt": int(data.get("attempt") or 0),
                "orchestrate.retry_delay_s": float(data.get("delay") or 0.0),
                "error.type": str(data.get("error_type") or "_OTHER"),
                "exception.message": str(data.get("error") or ""),
            },
            timestamp=_ns(event.timestamp),
        )

    def _agent_fallback(self, event: Event) -> None:
        """A call moved to the agent's next model: an event on the agent's span, with the model left
        and why; the call that then serves carries both models (`_llm_call`)."""
        data = event.data
        spans = self._agent_span(event, data)
        spans.span.add_event(
            "fallback",
            {
                "gen_ai.request.model": str(data.get("from_model") or ""),
                "orchestrate.fallback_model": str(data.get("to_model") or ""),
                "orchestrate.fallback_reason": str(data.get("reason") or ""),
                "exception.message": str(data.get("error") or ""),
            },
            timestamp=_ns(event.timestamp),
        )

    def _failed_call(self, spans: _AgentSpans, event: Event, data: dict[str, Any]) -> None:
        """A provider call that ended in an error: from the attempt's last activity to the error."""
        model = spans.model or "unknown"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "error.type": str(data.get("error_type") or "_OTHER"),
        }
        if data.get("status_code"):
            attributes["http.response.status_code"] = int(data["status_code"])
        if spans.provider:
            attributes["gen_ai.provider.name"] = spans.provider
        span = self.tracer.start_span(
            f"chat {model}",
            context=trace.set_span_in_context(spans.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(spans.last_activity),
        )
        span.set_status(Status(StatusCode.ERROR, redact(str(data.get("error") or ""))))
        span.end(_ns(event.timestamp))

    def _agent_budget_refused(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)
        spans.span.add_event(
            "budget_refused",
            {
                "orchestrate.budget.scope": str(data.get("scope")),
                "orchestrate.budget_usd": float(data.get("limit") or 0.0),
                "orchestrate.requested_usd": float(data.get("requested") or 0.0),
                "orchestrate.committed_usd": float(data.get("committed") or 0.0),
            },
            timestamp=_ns(event.timestamp),
        )

    def _agent_finished(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)  # agents that never started get a span too
        self._agents.pop((event.workflow_id or "", event.agent or ""), None)
        status = str(data.get("status"))
        span = spans.span
        if status == "failed" and _is_llm_error(data.get("error_type")):
            self._failed_call(spans, event, data)
        span.set_attributes(
            {
                "orchestrate.status": status,
                "orchestrate.cost_usd": float(data.get("cost") or 0.0),
                "orchestrate.retries": int(data.get("retry_count") or 0),
                "orchestrate.tokens": int(data.get("tokens_used") or 0),
                "orchestrate.rate_limit_wait_s": spans.rate_limited,
            }
        )
        if data.get("model") and not spans.model:
            span.set_attribute("gen_ai.request.model", str(data["model"]))
        if status in ERROR_STATUSES:
            span.set_attribute("error.type", str(data.get("error_type") or status))
            span.set_status(Status(StatusCode.ERROR, redact(str(data.get("error") or status))))
        if self.content and status == "completed" and data.get("output") is not None:
            output = data["output"]
            text = output.get("text") if isinstance(output, dict) else output
            span.set_attribute(
                "gen_ai.output.messages",
                _dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}],
                    ensure_ascii=False,
                    default=str,
                ),
            )
        span.end(_ns(event.timestamp))

    # --- calls ------------------------------------------------------------------------------

    def _llm_call(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)
        took = float(data.get("duration") or 0.0)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(data.get("provider") or ""),
            # A fallback's call: the model asked for, not the one that served (gen_ai.response.model).
            "gen_ai.request.model": str(data.get("requested_model") or data.get("model") or ""),
            "gen_ai.usage.input_tokens": int(data.get("input_tokens") or 0),
            "gen_ai.usage.output_tokens": int(data.get("output_tokens") or 0),
            "orchestrate.cost_usd": float(data.get("cost") or 0.0),
        }
        # Set only when there is something to say: each attribute costs the SDK a type check.
        optional = {
            "gen_ai.usage.cache_read.input_tokens": data.get("cached_input_tokens") or None,
            "gen_ai.usage.cache_creation.input_tokens": data.get("cache_creation_input_tokens") or None,
            "gen_ai.usage.reasoning.output_tokens": data.get("reasoning_tokens") or None,
            "gen_ai.response.model": data.get("response_model")
            or (data.get("model") if data.get("requested_model") else None),
            "orchestrate.fallback_reason": data.get("fallback_reason"),
            "orchestrate.region": data.get("region"),
            "gen_ai.response.id": data.get("request_id"),
            "gen_ai.request.max_tokens": data.get("max_tokens"),
            "gen_ai.request.temperature": data.get("temperature"),
            "orchestrate.batch_id": data.get("batch_id"),
            "orchestrate.cached": True if data.get("cached") else None,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if data.get("finish_reason"):
            attributes["gen_ai.response.finish_reasons"] = [str(data["finish_reason"])]
        content = event.content if self.content else None
        if content:
            messages = content.get("messages") or []
            system = [m for m in messages if m.get("role") == "system"]
            if system:
                attributes["gen_ai.system_instructions"] = _dumps(
                    [{"type": "text", "content": m.get("content")} for m in system], ensure_ascii=False
                )
            attributes["gen_ai.input.messages"] = _dumps(
                [_parts(m) for m in messages if m.get("role") != "system"], ensure_ascii=False, default=str
            )
            attributes["gen_ai.output.messages"] = _dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": content.get("answer")}],
                        "finish_reason": data.get("finish_reason") or "stop",
                    }
                ],
                ensure_ascii=False,
            )
        start = event.timestamp - took
        span = self.tracer.start_span(
            f"chat {data.get('model')}",
            context=trace.set_span_in_context(spans.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(start),
        )
        span.end(_ns(event.timestamp))
        spans.last_activity = event.timestamp

    def _tool_call(self, event: Event) -> None:
        data = event.data
        spans = self._agent_span(event, data)
        took = float(data.get("duration") or 0.0)
        tool = str(data.get("tool"))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
        }
        if data.get("call_id"):
            attributes["gen_ai.tool.call.id"] = str(data["call_id"])
        if self.content and event.content:
            attributes["gen_ai.tool.call.arguments"] = _dumps(event.content.get("arguments"), default=str)
            attributes["gen_ai.tool.call.result"] = redact(str(event.content.get("result")))
        span = self.tracer.start_span(
            f"execute_tool {tool}",
            context=trace.set_span_in_context(spans.span),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.timestamp - took),
        )
        if data.get("error"):
            error = str(data["error"])
            span.set_attribute("error.type", error.split(":", 1)[0] if ":" in error else "_OTHER")
            span.set_status(Status(StatusCode.ERROR, redact(error)))
        span.end(_ns(event.timestamp))
        spans.last_activity = event.timestamp


_HANDLERS = {
    EventType.ROW_STARTED: OTelSink._row_started,
    EventType.WORKFLOW_STARTED: OTelSink._workflow_started,
    EventType.WORKFLOW_FINISHED: OTelSink._workflow_finished,
    EventType.AGENT_STARTED: OTelSink._agent_started,
    EventType.AGENT_RATE_LIMITED: OTelSink._agent_rate_limited,
    EventType.AGENT_RETRYING: OTelSink._agent_retrying,
    EventType.AGENT_FALLBACK: OTelSink._agent_fallback,
    EventType.AGENT_BUDGET_REFUSED: OTelSink._agent_budget_refused,
    EventType.AGENT_FINISHED: OTelSink._agent_finished,
    EventType.LLM_CALL: OTelSink._llm_call,
    EventType.TOOL_CALL: OTelSink._tool_call,
}


# --- setting up the SDK for a CLI run --------------------------------------------------------


class Tracing:
    """The SDK set up for one `orchestrate run`: a batch processor and an OTLP/HTTP exporter.

    The exporter reads the standard variables itself (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``..._TRACES_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``; default http://localhost:4318).
    Spans are exported from the SDK's own thread while the run goes on. A collector that
    cannot be reached costs at most `flush_timeout` seconds at exit and one warning line
    through `warn`; it never raises and never fails the run.
    """

    def __init__(
        self,
        *,
        content: bool,
        warn: Callable[[str], None],
        exporter: SpanExporter | None = None,
        flush_timeout: float = 3.0,
    ) -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        self.warn = warn
        self.flush_timeout = flush_timeout
        self._notes = _SdkNotes()
        self._logger = logging.getLogger("opentelemetry")
        self._logger.addHandler(self._notes)
        self._propagate = self._logger.propagate
        self._logger.propagate = False  # the SDK's retry chatter is summed up in one line at the end
        self.exporter = _CountingExporter(exporter)
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "orchestrate", "service.version": __version__}
        )
        # Not shut down again at exit: `shutdown` did it within its deadline, or gave up on it.
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.sink = OTelSink(self.provider, content=content)

    def shutdown(self) -> None:
        """Export what is buffered, waiting at most `flush_timeout` seconds (and a moment for the
        exporter to stop), then go on: a collector that never answers cannot hold the exit."""
        # The SDK's flush exports in the calling thread and blocks until the exporter's request
        # times out (10 s by default) and its retries end; its shutdown waits up to 30 s more. Both
        # run in a daemon thread instead, waited on until our deadline; stopping the exporter then
        # ends its retries, and a request still unanswered is left to die with the process.
        finished = threading.Event()

        def flush() -> None:
            try:
                self.provider.force_flush()
                self.provider.shutdown()
            except Exception:  # an exporter must not take the run down with it
                pass
            finally:
                finished.set()

        threading.Thread(target=flush, name="orchestrate-otel-flush", daemon=True).start()
        if not finished.wait(self.flush_timeout):
            threading.Thread(target=self.exporter.shutdown, name="orchestrate-otel-stop", daemon=True).start()
            finished.wait(_STOP_GRACE)
        try:
            if not finished.is_set():
                self.warn(
                    redact(
                        f"OpenTelemetry: spans not exported to {_endpoint()}: "
                        f"{self._notes.cause() or 'no answer within ' + format(self.flush_timeout, 'g') + 's'}"
                    )
                )
            elif self.exporter.failed:
                self.warn(
                    redact(
                        f"OpenTelemetry: {self.exporter.failed} spans not exported to {_endpoint()}: "
                        f"{self._notes.cause() or 'no answer within ' + format(self.flush_timeout, 'g') + 's'}"
                    )
                )
        finally:
            self._logger.removeHandler(self._notes)
            self._logger.propagate = self._propagate


# How long, after the deadline, the exporter is given to stop its retries and report what it lost.
_STOP_GRACE = 0.5


def _endpoint() -> str:
    """The collector's URL as it may be printed: no user, password or token in it."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return scrub_url(traces)
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return scrub_url(base.rstrip("/") + "/v1/traces")


def _dumps(value: Any, **options: Any) -> str:
    """`value` as a JSON attribute, with every key the run knows redacted (content may echo one)."""
    return redact(json.dumps(value, **options))


class _CountingExporter(SpanExporter):
    """Counts the spans its exporter could not deliver."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = 0
        self._stopped = False
        self._lock = threading.Lock()

    def export(self, spans: Any) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter must not take the run down with it
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)  # read after the processor's thread has stopped
        return result

    def shutdown(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _SdkNotes(logging.Handler):
    """Keeps the SDK's warnings (no tracebacks printed); `cause` sums up the first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 20:
            try:
                self.messages.append(record.getMessage().splitlines()[0])
            except Exception:  # a record whose arguments do not format
                self.messages.append(str(record.msg))

    def cause(self) -> str:
        if not self.messages:
            return ""
        first = self.messages[0]
        errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", first)
        return errno.group(1).strip() if errno else first[:200]
