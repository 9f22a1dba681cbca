"""``audit.jsonl``: the tamper-evident trail of a run or dataset run, a sink of the engine's events.

One record per thing an auditor asks about, never the content itself:

- ``run_started``: the workflow and its digest, the invocation (inputs as digests),
  the approver, the data-protection policy, the retention period, how the chain is sealed;
- ``call``: provider, model asked for and model served, endpoint and region,
  the prompt template's digest, the digests of what was sent and answered, tokens,
  cost, whether the response cache answered, and any fallback notice;
- ``tool_call`` (arguments' and result's digests), ``step_finished`` (each code step, and
  each agent that did not complete: status, its input fingerprint, output digest,
  cost, error; a model's completed answer is in its ``call``), ``retry``,
  ``approval`` (who, decision, note, when), ``budget_refused``, ``usage_anomaly``,
  ``provider_batch``, ``row_finished`` (a dataset run's row);
- ``run_finished``: the totals.

Records are sealed into a hash chain (see `orchestrate.observe.audit_chain`).
The trail fails closed like the run's other journals: when a record cannot be
written, `on_failure` is told (the engine's ``journal_failed``: no call starts
after it, and the run exits 1 naming the file) and nothing more is written. Each record is written at once (no group commit), so what the
trail holds never lags what was paid for; it is fsynced every second and at
the end.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from orchestrate.observe.audit_chain import AUDIT_FILE, GENESIS, digest, key_id, seal
from orchestrate.observe.journal import GroupCommit, JsonLines
from orchestrate.run.events import Event, EventType, try_of

__all__ = ["DEFAULT_RETENTION_DAYS", "AuditTrail", "endpoint_of", "invocation", "template_digests"]

DEFAULT_RETENTION_DAYS = 183  # six months and a day: the EU AI Act's floor (Art. 19, 26(6))
_ERROR_CHARS = 300
_TAIL_BYTES = 1 << 20  # where the last whole record is looked for when the trail fails (records are small)
_SIMULATED = {"endpoint": "simulated", "region": None}
_REGIONS = frozenset({"eu", "us", "au", "in", "jp", "ca", "uk"})
_EMPTY = hashlib.sha256()  # copied for a call's digests: OpenSSL 3 skips looking the algorithm up
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_CALL_KEYS = sorted(
    ("batch_id", "cache_hit", "cached_input_tokens", "cost", "endpoint", "input", "input_tokens", "model", "output")
    + ("output_tokens", "prompt_template", "provider", "region", "request_id", "served_model")
)


class AuditTrail:
    """Writes ``run_dir/audit.jsonl``; `head` is kept current for result.json and the report.

    Args:
        run_dir: The run or dataset-run folder.
        start: What ``run_started`` says (the caller knows the invocation).
        key: The HMAC key (None: an unkeyed SHA-256 chain).
        templates: Per agent, the digest of its prompt template (or code step's function).
        endpoints: Per (agent, model), its own and its fallbacks', {"endpoint", "region"} it calls.
        content: Whether error texts may be written (they can quote inputs); else their digests.
        sink: An append-only copy of the heads: a file path or an http(s) URL.
        on_failure: Called once with the reason when a record cannot be written.
        commit: A dataset run's group commit: records are written with its other
            journals once a turn of the event loop (a failure is then told by the commit).
        tries: ``--repeat K``: every try of a case is audited, each record of a try's run
            saying which try it is (``"try"``; a dataset row's ``row_finished`` is the case's).
    """

    event_types = frozenset(
        {
            EventType.LLM_CALL,
            EventType.TOOL_CALL,
            EventType.AGENT_FINISHED,
            EventType.AGENT_RETRYING,
            EventType.AGENT_FALLBACK,
            EventType.APPROVAL_DECIDED,
            EventType.AGENT_BUDGET_REFUSED,
            EventType.USAGE_ANOMALY,
            EventType.BATCH_SUBMITTED,
            EventType.BATCH_FINISHED,
            EventType.ROW_FINISHED,
        }
    )

    def __init__(
        self,
        run_dir: Path,
        *,
        start: Mapping[str, Any],
        key: bytes | None = None,
        templates: Mapping[str, str] | None = None,
        endpoints: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        content: bool = True,
        sink: str | None = None,
        on_failure: Callable[[str], None] | None = None,
        commit: GroupCommit | None = None,
        clock: Callable[[], float] = time.time,
        tries: bool = False,
    ) -> None:
        self.tries = tries
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / AUDIT_FILE
        self.key = key
        self.templates = dict(templates or {})
        self.endpoints = {name: dict(value) for name, value in (endpoints or {}).items()}
        self.content = content
        self.sink = sink
        self.on_failure: Callable[[str], None] | None = None
        self.clock = clock
        self.failed: str | None = None
        self.head: dict[str, Any] = {
            "file": AUDIT_FILE,
            "seq": -1,
            "hash": GENESIS,
            "algorithm": "hmac-sha256" if key is not None else "sha256",
        }
        self._prev = GENESIS
        self._seq = 0
        # A call record's data with what is fixed per (agent, provider, model) filled in.
        self._routes: dict[tuple[str, str, str], dict[str, Any]] = {}
        resumed = self.path.is_file() and self.path.stat().st_size > 0
        if resumed:  # a resumed dataset run: the chain goes on from the last record
            self._continue()
        self._journal: JsonLines | None = JsonLines(self.path, sync_interval=1.0, commit=commit)
        data = dict(start)
        data["chain"] = self.head["algorithm"]
        if key is not None:
            data["key_id"] = key_id(key)
        if resumed:
            data["continues"] = True
        self.record("run_started", data)
        self._to_sink()
        if self.failed is None:
            self.fail_closed(on_failure)

    def _continue(self) -> None:
        from orchestrate.observe.audit_chain import verify_trail

        found = verify_trail(self.run_dir, key=self.key)
        if found.head is not None:
            self._prev, self._seq = found.head, found.records
            self.head.update(seq=found.records - 1, hash=found.head)

    # -- writing ------------------------------------------------------------------------------

    def record(
        self,
        kind: str,
        data: Mapping[str, Any],
        *,
        run: str | None = None,
        agent: str | None = None,
        presorted: bool = False,
    ) -> None:
        """Seal and append one record (dropped once the trail has failed).

        Args:
            presorted: `data` (and any mapping in it) has its keys in sorted order: the record
                is then written without sorting (`seal`), as the body is built in sorted order.
        """
        journal = self._journal
        if journal is None:
            return
        # The body's keys in sorted order: agent, data, prev, run, seq, time, try, type.
        if run is not None and not self.tries:  # a call's or a row's: made whole at once
            body: dict[str, Any] = {
                "agent": agent,
                "data": data,
                "prev": self._prev,
                "run": run,
                "seq": self._seq,
                "time": self.clock(),
                "type": kind,
            }
            if agent is None:  # a row's: no agent key (the others keep their order)
                del body["agent"]
        else:
            body = {"agent": agent, "data": data} if agent is not None else {"data": data}
            body["prev"] = self._prev
            if run is not None:
                body["run"] = run
            body["seq"] = self._seq
            body["time"] = self.clock()
            if run is not None and self.tries and kind != "row_finished":
                body["try"] = try_of(run)
            body["type"] = kind
        line, sealed = seal(body, self.key, presorted=presorted)
        try:
            journal.write_line(line)
        except OSError as exc:  # no one told yet (the trail is being opened): said by the caller
            self._fail(f"cannot write the audit trail {self.path}: {exc.strerror or exc}", tell=False)
            return
        if journal.failure is not None:  # told through the journal's on_error
            self._fail(journal.failure, tell=False)
            return
        self._prev = sealed
        self.head["seq"] = self._seq
        self.head["hash"] = sealed
        self._seq += 1

    def fail_closed(self, on_failure: Callable[[str], None] | None) -> None:
        """From now on a write that fails is told to `on_failure` (``"PATH: error"``) rather than raised."""
        self.on_failure = on_failure
        if self._journal is not None:
            self._journal.on_error = self._journal_failed if on_failure is not None else None

    def _journal_failed(self, reason: str) -> None:
        """The journal could not write (records held for a group commit among them): the head
        goes back to the last record on disk before anyone is told."""
        self._fail(reason, tell=False)
        if self.on_failure is not None:
            self.on_failure(reason)

    def _fail(self, reason: str, *, tell: bool = True) -> None:
        if self.failed is None:
            self._head_on_disk()
        self.failed = reason
        journal, self._journal = self._journal, None
        if journal is not None:
            try:
                journal.close()
            except OSError:
                pass  # already failing: the reason above is what is reported
        if tell and self.on_failure is not None:
            self.on_failure(reason)

    def _head_on_disk(self) -> None:
        """Set the head to the trail's last whole record on disk (records written since it failed are not)."""
        last: dict[str, Any] | None = None
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                tail = handle.read()
        except OSError:
            return  # the trail is gone: the head stays what was last sealed
        lines = tail.split(b"\n")
        for raw in reversed(lines[:-1] if len(lines) > 1 else []):  # whole lines only
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("seq"), int) and record.get("hash"):
                last = record
                break
        if last is None:
            if size == 0:  # not one record kept
                self._prev, self._seq = GENESIS, 0
                self.head.update(seq=-1, hash=GENESIS)
            return
        self._prev, self._seq = last["hash"], last["seq"] + 1
        self.head["seq"], self.head["hash"] = last["seq"], last["hash"]

    def finish(self, totals: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``run_finished``, fsync and close; returns the head (also sent to the sink)."""
        self.record("run_finished", totals)
        journal, self._journal = self._journal, None
        if journal is not None:
            try:
                journal.close()
            except OSError as exc:
                self._fail(f"cannot write the audit trail {self.path}: {exc.strerror or exc}", tell=False)
        self._to_sink()
        return self.head

    def _to_sink(self) -> None:
        if self.sink is None or self.failed is not None:
            return
        line = {
            "run_id": self.run_dir.name,
            "run_dir": str(self.run_dir),
            "seq": self.head["seq"],
            "hash": self.head["hash"],
            "time": self.clock(),
        }
        try:
            send_head(self.sink, line)
        except OSError as exc:
            self._fail(f"--audit-sink {self.sink}: {exc}", tell=False)

    # -- the sink -----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        # One look-up in a table: an Enum member named through its class (`EventType.X`) costs
        # ~0.2 us in Python 3.11 (the metaclass's __getattr__), and a row's end was the tenth asked.
        handle = _HANDLERS.get(event.type)
        if handle is not None:
            handle(self, event)

    def _tool_call(self, event: Event) -> None:
        d = event.data
        c = event.content or {}
        self.record(
            "tool_call",
            {  # keys in sorted order (presorted)
                "arguments": digest(c.get("arguments")),
                "error": self._text(d.get("error")),
                "result": digest(c.get("result")),
                "tool": d.get("tool"),
            },
            run=event.workflow_id,
            agent=event.agent,
            presorted=True,
        )

    def _picked(self, event: Event) -> None:
        """A retry's or a fallback's record: the fields `_PICKED` names, and its error's text."""
        kind, fields = _PICKED[event.type]
        d = event.data
        data = {name: d.get(name) for name in fields}
        data["error"] = self._text(d.get("error"))
        self._of(kind, event, data)

    def _approval(self, event: Event) -> None:
        d = event.data
        self._of(
            "approval",
            event,
            {
                "approver": d.get("by"),
                "decision": "approved" if d.get("approved") else "rejected",
                "note": d.get("note"),
                "at": d.get("at"),
                "source": d.get("source"),
            },
        )

    def _row(self, event: Event) -> None:
        d = event.data
        error = d.get("error")
        self.record(
            "row_finished",
            {  # keys in sorted order (presorted)
                "cost": d.get("cost"),
                "error": self._text(error) if error is not None else None,
                "key": d.get("key"),
                "row": d.get("row"),
                "status": d.get("status"),
                "tokens": d.get("tokens"),
            },
            run=event.workflow_id,
            presorted=True,
        )

    def _of(self, kind: str, event: Event, data: Mapping[str, Any]) -> None:
        """A record of `kind` for `event`'s run and agent."""
        self.record(kind, data, run=event.workflow_id, agent=event.agent)

    def _refused(self, event: Event) -> None:
        name = "budget_refused" if event.type is EventType.AGENT_BUDGET_REFUSED else "usage_anomaly"
        self._of(name, event, dict(event.data))

    def _provider_batch(self, event: Event) -> None:
        d = event.data
        keep = ("provider", "model", "batch_id", "requests", "status", "counts")
        self.record(
            "provider_batch",
            {"event": event.type.value, **{k: d[k] for k in keep if k in d}},
            run=event.workflow_id,
        )

    def _call(self, event: Event) -> None:
        d = event.data
        c = event.content or {}
        route = (event.agent or "", d["provider"], d["model"])
        shape = self._routes.get(route)
        if shape is None:  # what is the same for every call of an agent to a model: made once
            where = _SIMULATED if d["provider"] == "simulated" else self.endpoints.get(route[::2], {})
            shape = self._routes[route] = dict.fromkeys(_CALL_KEYS)  # in sorted order: the record is presorted
            shape.update(
                endpoint=where.get("endpoint"),
                model=d["model"],
                prompt_template=self.templates.get(route[0]),
                provider=d["provider"],
                region=where.get("region"),
            )
        messages = c.get("messages")
        answer = c.get("answer") or ""
        data = shape.copy()  # a key set again keeps its place: still in sorted order
        data["batch_id"] = d.get("batch_id")
        data["cache_hit"] = d["cached"]
        data["cached_input_tokens"] = d["cached_input_tokens"]
        data["cost"] = d["cost"]
        # The digests made here, once, as `digest` makes them (from an empty SHA-256 copied).
        if messages.__class__ is list:
            sent = _EMPTY.copy()
            sent.update(_dumps(messages, option=_SORT_KEYS, default=str))
            data["input"] = "sha256:" + sent.hexdigest()
        else:
            data["input"] = digest(messages)
        data["input_tokens"] = d["input_tokens"]
        if answer.__class__ is str:
            said = _EMPTY.copy()
            said.update(answer.encode("utf-8", "surrogatepass"))
            data["output"] = "sha256:" + said.hexdigest()
        else:
            data["output"] = digest(answer)
        data["output_tokens"] = d["output_tokens"]
        data["request_id"] = d.get("request_id")
        data["served_model"] = d.get("response_model")
        notice = d.get("notice")
        if notice:  # rare: sorted when sealed
            data["fallback"] = notice
        self.record("call", data, run=event.workflow_id, agent=event.agent, presorted=not notice)

    def _finished(self, event: Event) -> None:
        d = event.data
        if d.get("status") == "completed" and d.get("provider") is not None:
            return  # a model's answer is in its call records; a code step's end is its only record
        output = d.get("output")
        self.record(
            "step_finished",
            {  # keys in sorted order (presorted)
                "code_step": d.get("provider") is None and d.get("model") is None,
                "cost": d.get("cost"),
                "error": self._text(d.get("error")),
                "error_type": d.get("error_type"),
                "input_fingerprint": d.get("fingerprint"),
                "output": digest(output) if output is not None else None,
                "retries": d.get("retry_count"),
                "status": d.get("status"),
                "tokens": d.get("tokens_used"),
            },
            run=event.workflow_id,
            agent=event.agent,
            presorted=True,
        )

    def _text(self, text: Any) -> Any:
        """An error's text, or its digest when content is not kept (errors can quote inputs)."""
        if text is None:
            return None
        text = str(text)
        if not self.content:
            return digest(text)
        return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "…"


# The records that copy fields of their event's data as they are (and its error's text).
_PICKED: dict[EventType, tuple[str, tuple[str, ...]]] = {
    EventType.AGENT_RETRYING: ("retry", ("attempt", "error_type", "status_code", "delay")),
    EventType.AGENT_FALLBACK: ("fallback", ("from_model", "from_provider", "to_model", "to_provider", "reason")),
}

# What the trail records of each event it subscribes to (`AuditTrail.event_types`).
_HANDLERS: dict[EventType, Callable[[AuditTrail, Event], None]] = {
    EventType.LLM_CALL: AuditTrail._call,
    EventType.TOOL_CALL: AuditTrail._tool_call,
    EventType.AGENT_FINISHED: AuditTrail._finished,
    EventType.AGENT_RETRYING: AuditTrail._picked,
    EventType.AGENT_FALLBACK: AuditTrail._picked,
    EventType.APPROVAL_DECIDED: AuditTrail._approval,
    EventType.ROW_FINISHED: AuditTrail._row,
    EventType.AGENT_BUDGET_REFUSED: AuditTrail._refused,
    EventType.USAGE_ANOMALY: AuditTrail._refused,
    EventType.BATCH_SUBMITTED: AuditTrail._provider_batch,
    EventType.BATCH_FINISHED: AuditTrail._provider_batch,
}


def send_head(sink: str, line: Mapping[str, Any]) -> None:
    """Append a head to an append-only file, or POST it (JSON) to an http(s) URL.

    Raises:
        OSError: When it could not be kept (a refused or failed POST included).
    """
    from orchestrate.jsonline import json_line

    if sink.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.post(sink, content=json_line(line), headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise OSError(f"cannot reach it: {exc}") from None
        if response.status_code >= 300:
            raise OSError(f"answered HTTP {response.status_code}")
        return
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, json_line(line))
        os.fsync(fd)
    finally:
        os.close(fd)


def endpoint_of(llm_config: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """Where an agent's calls go: the endpoint (scheme and host, no path or key) and its region if named."""
    if provider == "simulated":
        return {"endpoint": "simulated", "region": None}
    from orchestrate.llm.anthropic import AnthropicClient
    from orchestrate.llm.azure import AzureOpenAIClient
    from orchestrate.llm.openai import OpenAIClient

    classes: dict[str, Any] = {"openai": OpenAIClient, "anthropic": AnthropicClient, "azure": AzureOpenAIClient}
    cls = classes.get(provider)
    url = str(llm_config.get("base_url") or "")
    if not url and cls is not None:
        url = os.environ.get(cls.url_env) or cls.default_url
    parts = urlsplit(url)
    endpoint = (
        f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") if parts.hostname else None
    )
    first = (parts.hostname or "").split(".", 1)[0]
    region = llm_config.get("region") or (first if first in _REGIONS else None)
    if region is None:
        from orchestrate.llm.presets import region_of

        try:
            region = region_of(provider, llm_config)  # an AWS or Google region, "global", "local"
        except Exception:  # a configuration validate refuses anyway: no region rather than no trail
            region = None
    return {"endpoint": endpoint or provider, "region": region}


def template_digests(agents: Any) -> dict[str, str]:
    """Per agent, the digest of what it is told to do: its prompt template and system prompt, or its function."""
    found = {}
    for agent in agents:
        if agent.is_code_step:
            found[agent.name] = digest({"function": agent.function, "arguments": agent.arguments})
        else:
            found[agent.name] = digest({"prompt": agent.prompt_template, "system": agent.llm_config.get("system")})
    return found


def invocation(argv: list[str], *, withhold: bool = False) -> list[str]:
    """The command line with every input's value replaced by its digest (inputs can be personal data).

    Args:
        withhold: Replace them by ``(withheld)`` instead: under a data-protection policy, whose
            values a plain digest would let anyone check guesses against (the inputs the run used,
            protected, are in the record's ``inputs``).
    """

    def hidden(value: str) -> str:
        return "(withheld)" if withhold else digest(value)

    out: list[str] = []
    take = False
    for arg in argv:
        if take:
            name, sep, value = arg.partition("=")
            out.append(f"{name}={hidden(value)}" if sep else hidden(arg))
            take = False
            continue
        flag, sep, value = arg.partition("=")
        if flag in ("--input", "-i") and sep:
            name, _, raw = value.partition("=")
            out.append(f"{flag}={name}={hidden(raw)}")
            continue
        out.append(arg)
        take = arg in ("--input", "-i")
    return out
