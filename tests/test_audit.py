"""audit.jsonl: written by every run, a chain `orchestrate audit verify` checks record by record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrate.errors import UserInputError
from orchestrate.observe.audit_chain import verify_trail
from orchestrate.observe.audit_retention import expired_runs
from orchestrate.observe.compliance import approver_identity, check_identity
from orchestrate.workflow.loader import load_workflow_text

FLOW = """\
name: payroll_posting
defaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 60}}
audit: {retention_days: 30}
agents:
  - name: gather
    prompt_template: Gather the payroll journal for {period}
  - name: check
    dependencies: [gather]
    prompt_template: "Check {gather.output}"
  - name: post
    dependencies: [check]
    function: json:dumps
    arguments: {obj: "{check.output}"}
    approval: {message: "Post the payroll journal?", require_identity: %(require)s}
inputs: {period: {type: string, default: 2026-11}}
"""


def orchestrate(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRATE_AUDIT_KEY", "ORCHESTRATE_APPROVER")}
    environment.update({"CI": "true", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, require: str = "false") -> Path:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW % {"require": require})
    before = set((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else set()
    proc = orchestrate(
        tmp_path, "run", str(flow), "--simulate", "--approve", "post", "-o", "runs", "--quiet", *args, env=env
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = set((tmp_path / "runs").iterdir()) - before
    return run_dir


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]


def lines(run_dir: Path) -> list[str]:
    return (run_dir / "audit.jsonl").read_text().splitlines(keepends=True)


def rewrite(run_dir: Path, new: list[str]) -> None:
    (run_dir / "audit.jsonl").write_text("".join(new))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("audit"), "--approver", "Dana Controller")


@pytest.fixture
def trail(pristine: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / pristine.name
    shutil.copytree(pristine, copy)
    return copy


def test_a_run_writes_a_chain_that_verifies_with_calls_steps_approval_and_totals(trail: Path, tmp_path: Path) -> None:
    kinds = [r["type"] for r in records(trail)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("call") == 2 and kinds.count("step_finished") == 1 and kinds.count("approval") == 1
    start = records(trail)[0]["data"]
    assert start["retention_days"] == 30 and start["workflow_digest"].startswith("sha256:")
    assert start["approver"] == {"name": "Dana Controller", "source": "--approver"}
    assert start["inputs"]["period"].startswith("sha256:")  # a digest, not the value
    call = next(r for r in records(trail) if r["type"] == "call")["data"]
    assert call["provider"] == "simulated" and call["input"].startswith("sha256:") and call["prompt_template"]
    approval = next(r for r in records(trail) if r["type"] == "approval")
    assert approval["agent"] == "post" and approval["data"]["approver"] == "Dana Controller"
    assert approval["data"]["decision"] == "approved" and approval["data"]["at"]
    head = json.loads((trail / "result.json").read_text())["audit"]
    assert head["seq"] == len(kinds) - 1 and head["hash"] == records(trail)[-1]["hash"]
    assert head["hash"] in (trail / "report.html").read_text()
    proc = orchestrate(tmp_path, "audit", "verify", str(trail))
    assert proc.returncode == 0, proc.stdout
    assert f"ok, {len(kinds)} records" in proc.stdout and "detects accidents" in proc.stdout
    shown = orchestrate(tmp_path, "audit", "show", str(trail))
    assert "approved by Dana Controller" in shown.stdout
    as_json = json.loads(orchestrate(tmp_path, "audit", "show", str(trail), "--format", "json").stdout)["records"]
    assert len(as_json) == len(kinds)


def verify(tmp_path: Path, run_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = orchestrate(tmp_path, "audit", "verify", str(run_dir), *args, env=env)
    return proc.returncode, proc.stdout


def test_an_edited_record_is_reported_with_its_line(trail: Path, tmp_path: Path) -> None:
    old = lines(trail)
    old[2] = old[2].replace('"type":"', '"type":"x', 1)
    rewrite(trail, old)
    code, out = verify(tmp_path, trail)
    assert code == 1 and "audit.jsonl:3: record 2 was changed" in out


def test_a_deleted_record_is_reported_with_its_line(trail: Path, tmp_path: Path) -> None:
    old = lines(trail)
    rewrite(trail, old[:3] + old[4:])
    code, out = verify(tmp_path, trail)
    assert code == 1 and "audit.jsonl:4: record 3 missing before record 4 (deleted)" in out


def test_reordered_records_are_reported_with_their_lines(trail: Path, tmp_path: Path) -> None:
    old = lines(trail)
    rewrite(trail, old[:2] + [old[3], old[2]] + old[4:])
    code, out = verify(tmp_path, trail)
    assert code == 1
    assert "audit.jsonl:3: record 3 where record 2 belongs (reordered)" in out
    assert "audit.jsonl:4: record 2 where record 4 belongs (reordered)" in out


def test_an_inserted_record_is_reported_with_its_line(trail: Path, tmp_path: Path) -> None:
    old = lines(trail)
    forged = json.loads(old[2])
    forged["data"] = {"status": "completed"}
    rewrite(trail, old[:3] + [json.dumps(forged) + "\n"] + old[3:])
    code, out = verify(tmp_path, trail)
    assert code == 1 and "audit.jsonl:4: record 2 was changed" in out
    assert "record 2 appears on lines 3, 4 (one was inserted)" in out


def test_a_cut_tail_is_found_through_the_head_in_result_json(trail: Path, tmp_path: Path) -> None:
    old = lines(trail)
    rewrite(trail, old[:-2])
    code, out = verify(tmp_path, trail)
    assert code == 1 and f"truncated: {trail / 'result.json'} records a head at record {len(old) - 1}" in out


def test_a_cut_tail_with_result_json_rewritten_is_found_through_the_audit_sink(tmp_path: Path) -> None:
    sink = tmp_path / "heads.jsonl"
    run_dir = run(tmp_path, "--audit-sink", str(sink))
    old = lines(run_dir)
    rewrite(run_dir, old[:-2])
    result = json.loads((run_dir / "result.json").read_text())
    result["audit"] = {"seq": len(old) - 3, "hash": json.loads(old[-3])["hash"]}  # the head made to match
    (run_dir / "result.json").write_text(json.dumps(result))
    assert verify(tmp_path, run_dir)[0] == 0  # undetectable from the folder alone
    code, out = verify(tmp_path, run_dir, "--audit-sink", str(sink))
    assert code == 1 and f"truncated: {sink}:2 records a head at record {len(old) - 1}" in out


def test_a_keyed_chain_catches_a_rehashed_edit_that_an_unkeyed_one_cannot(tmp_path: Path) -> None:
    key = {"ORCHESTRATE_AUDIT_KEY": "s3cret-for-the-auditor"}
    run_dir = run(tmp_path, env=key)
    assert all("mac" in r for r in records(run_dir))
    assert verify(tmp_path, run_dir, env=key) == (0, verify(tmp_path, run_dir, env=key)[1])
    assert "HMAC-SHA-256 checked" in verify(tmp_path, run_dir, env=key)[1]
    assert "set ORCHESTRATE_AUDIT_KEY to check its HMACs" in verify(tmp_path, run_dir)[1]
    # Re-seal an edited record as a forger without the key would: the right hash, a stale mac.
    from orchestrate.observe.audit_chain import canonical

    old = lines(run_dir)
    record = json.loads(old[1])
    mac = record.pop("mac")
    record.pop("hash")
    record["data"]["cost"] = 0.0
    import hashlib

    record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
    record["mac"] = mac
    rewrite(run_dir, [old[0], json.dumps(record) + "\n"] + old[2:])
    code, out = verify(tmp_path, run_dir, env=key)
    assert code == 1 and "audit.jsonl:2: record 1 fails its HMAC" in out
    code, out = verify(tmp_path, run_dir, env={"ORCHESTRATE_AUDIT_KEY": "another"})
    assert code == 1 and "sealed with another key" in out


def test_an_unwritable_trail_stops_the_run_before_any_call(tmp_path: Path) -> None:
    flow = tmp_path / "payroll.yaml"
    flow.write_text(FLOW % {"require": "false"})
    proc = orchestrate(
        tmp_path, "run", str(flow), "--simulate", "--approve", "post", "-o", "runs", "--audit-sink", "/dev/full"
    )
    assert proc.returncode == 1 and "--audit-sink /dev/full" in proc.stderr  # a journal that cannot be kept
    result = json.loads(next((tmp_path / "runs").iterdir()).joinpath("audit.jsonl").read_text().splitlines()[0])
    assert result["type"] == "run_started"
    assert not any((tmp_path / "runs").rglob("result.json"))  # nothing ran


def test_require_identity_refuses_an_approval_without_a_name() -> None:
    workflow = load_workflow_text(FLOW % {"require": "true"})
    with pytest.raises(UserInputError, match="requires a named approver"):
        check_identity(workflow, None)
    check_identity(workflow, "dana")
    assert approver_identity("  ", {"ORCHESTRATE_APPROVER": "Sam Ops"}) == ("Sam Ops", "ORCHESTRATE_APPROVER")
    assert approver_identity("Dana", {"ORCHESTRATE_APPROVER": "Sam Ops"}) == ("Dana", "--approver")


def test_the_approver_from_the_environment_is_in_the_trail(tmp_path: Path) -> None:
    run_dir = run(tmp_path, env={"ORCHESTRATE_APPROVER": "Sam Ops"}, require="true")
    approval = next(r for r in records(run_dir) if r["type"] == "approval")
    assert approval["data"]["approver"] == "Sam Ops"


def test_expired_lists_folders_past_their_retention(pristine: Path, tmp_path: Path) -> None:
    folder = pristine.parent
    assert expired_runs(folder, now=time.time()) == []
    (found,) = expired_runs(folder, now=time.time() + 31.5 * 86400)
    assert found["run_dir"] == str(pristine) and found["retention_days"] == 30 and found["days_past"] == 1
    assert orchestrate(tmp_path, "audit", "expired", str(folder)).stdout == ""
    from orchestrate.observe.audit import AuditTrail

    old = tmp_path / "runs" / "payroll_posting-20260401T090000Z"
    old.mkdir(parents=True)
    AuditTrail(old, start={"retention_days": 183}, clock=lambda: time.time() - 200 * 86400).finish({})
    listed = orchestrate(tmp_path, "runs", "--expired", str(tmp_path / "runs"), "--format", "json")
    assert [(e["run_dir"], e["days_past"]) for e in json.loads(listed.stdout)["runs"]] == [(str(old), 17)]
    assert "expired 17 days ago" in orchestrate(tmp_path, "runs", "--expired", str(tmp_path / "runs")).stdout


def test_verify_checks_every_chain_given(pristine: Path, trail: Path, tmp_path: Path) -> None:
    rewrite(trail, lines(trail)[1:])
    code, out = verify(tmp_path, pristine, str(trail))  # type: ignore[arg-type]
    assert code == 1 and out.count(": ok,") == 1 and "BROKEN" in out
    assert verify_trail(pristine, key=None).holds


def test_a_fallback_and_the_endpoint_each_call_went_to_are_in_the_trail(tmp_path: Path) -> None:
    from tests.fake_provider import FakeProvider, Fault

    with FakeProvider() as provider:
        provider.script(Fault(500, None))
        flow = tmp_path / "fb.yaml"
        flow.write_text(
            "name: fb\ndefaults: {module: Finance}\nagents:\n  - name: a\n    prompt_template: hello\n"
            f"    llm_config: {{model: gpt-4o, base_url: '{provider.url}/v1', max_tokens: 20,\n"
            f"      fallbacks: [{{model: gpt-4o-mini, base_url: '{provider.url}/v1'}}]}}\n"
        )
        proc = orchestrate(tmp_path, "run", str(flow), "-o", "runs", "-q", env={"OPENAI_API_KEY": "sk-test"})
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (fallback,) = [r for r in records(run_dir) if r["type"] == "fallback"]
    assert fallback["agent"] == "a" and fallback["data"]["from_model"] == "gpt-4o"
    assert fallback["data"]["to_model"] == "gpt-4o-mini" and fallback["data"]["reason"] == "server_error"
    (call,) = [r["data"] for r in records(run_dir) if r["type"] == "call"]
    assert call["model"] == "gpt-4o-mini" and call["endpoint"] == provider.url and call["region"] == "local"
    assert orchestrate(tmp_path, "audit", "verify", str(run_dir)).returncode == 0


def test_heads_are_posted_to_an_audit_sink_url_and_a_refused_head_fails_the_run(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200 if len(received) == 1 else 503)  # the end's head is refused
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        flow = tmp_path / "payroll.yaml"
        flow.write_text(FLOW % {"require": "false"})
        url = f"http://127.0.0.1:{server.server_address[1]}/heads"
        proc = orchestrate(
            tmp_path, "run", str(flow), "--simulate", "--approve", "post", "-o", "runs", "--audit-sink", url
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1 and f"--audit-sink {url}: answered HTTP 503" in proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert [(h["run_id"], h["seq"]) for h in received] == [(run_dir.name, 0), (run_dir.name, len(records(run_dir)) - 1)]
    assert received[0]["hash"] == records(run_dir)[0]["hash"]


@pytest.mark.parametrize("key", [None, b"k3y"])
def test_records_written_without_sorting_are_their_canonical_json_and_verify(tmp_path: Path, key: bytes | None) -> None:
    """The hot records (call, tool_call, step_finished, row_finished) are built in sorted key order and
    sealed without sorting: each line must be exactly the canonical JSON `verify` recomputes."""
    import orjson

    from orchestrate.observe.audit import AuditTrail
    from orchestrate.observe.audit_chain import canonical
    from orchestrate.run.events import Event, EventType, try_id

    run = try_id("wf-1", 2)
    trail = AuditTrail(tmp_path, start={"kind": "run", "b": {"z": 1, "a": 2}}, key=key, tries=True)
    usage = {"input_tokens": 4, "cached_input_tokens": 0, "output_tokens": 3, "cost": 1e-6, "cached": False}
    content = {"messages": [{"role": "user", "content": "Grüße"}], "answer": "ok"}
    for notice in (None, "structured output fell back to JSON mode", {"kind": "fallback", "a": 1}):
        data = {"provider": "simulated", "model": "m", "response_model": "m-1", **usage}
        if notice is not None:
            data["notice"] = notice
        trail(Event(EventType.LLM_CALL, run, "check", data, content=content))
    trail(Event(EventType.LLM_CALL, run, "check", {"provider": "openai", "model": "x", **usage}, content={}))
    trail(Event(EventType.TOOL_CALL, run, "look", {"tool": "erp", "error": "x" * 400}, content={"arguments": {"b": 1}}))
    for status in ("completed", "failed"):
        trail(
            Event(
                EventType.AGENT_FINISHED,
                run,
                "step",
                {"status": status, "output": {"y": 1, "a": [2]}, "error": "boom" if status == "failed" else None},
            )
        )
    trail(Event(EventType.ROW_FINISHED, run, None, {"key": "r1", "row": 1, "status": "failed", "error": "bad"}))
    trail(Event(EventType.ROW_FINISHED, run, None, {"key": "r2", "row": 2, "status": "completed"}))
    trail.finish({"status": "completed"})
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds.count("call") == 4 and "tool_call" in kinds and kinds.count("step_finished") == 2
    assert kinds.count("row_finished") == 2
    for line in lines:
        record = orjson.loads(line)
        record.pop("hash"), record.pop("mac", None)
        assert line.startswith(canonical(record)[:-1] + b',"hash":'), line
    assert verify_trail(tmp_path, key=key).holds


@pytest.mark.parametrize("key", [b"k", b"benchmark-key", b"x" * 64, b"y" * 65, "schlüssel".encode()])
def test_a_records_mac_is_hmac_sha256_made_from_keyed_states_copied_per_record(key: bytes) -> None:
    """The chain's HMAC is made from the key's inner and outer hashes, made once and copied for
    each record (RFC 2104 by hand, for speed): the same values as hmac's, for keys of every length."""
    import hashlib
    import hmac

    from orchestrate.observe.audit_chain import canonical, mac, seal

    for size in (0, 1, 55, 56, 63, 64, 65, 200, 5000):
        data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert mac(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()
    body = {"data": {"cost": 1.5e-5, "n": 1}, "prev": "0" * 64, "seq": 0, "time": 1.5, "type": "x"}
    for presorted in (True, False):
        line, sealed = seal(body, key, presorted=presorted)
        record = json.loads(line)
        assert record.pop("hash") == sealed == hashlib.sha256(canonical(body)).hexdigest()
        assert record.pop("mac") == hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
        assert record == body


def test_every_event_the_trail_subscribes_to_writes_its_record(tmp_path: Path) -> None:
    """Each kind of event the trail takes (`AuditTrail.event_types`) is written as its record, with
    what it says; a model agent's completed end is not (its call records say it)."""
    from orchestrate.observe.audit import AuditTrail
    from orchestrate.run.events import Event, EventType

    usage = {"input_tokens": 4, "cached_input_tokens": 0, "output_tokens": 3, "cost": 1e-6, "cached": False}
    events = {
        EventType.LLM_CALL: ({"provider": "simulated", "model": "m", **usage}, "call", "input_tokens", 4),
        EventType.TOOL_CALL: ({"tool": "erp"}, "tool_call", "tool", "erp"),
        EventType.AGENT_FINISHED: (
            {"status": "failed", "provider": "openai", "model": "m"},
            "step_finished",
            "status",
            "failed",
        ),
        EventType.AGENT_RETRYING: ({"attempt": 2, "error_type": "timeout"}, "retry", "attempt", 2),
        EventType.AGENT_FALLBACK: ({"from_model": "a", "to_model": "b"}, "fallback", "to_model", "b"),
        EventType.APPROVAL_DECIDED: ({"by": "ana", "approved": True}, "approval", "approver", "ana"),
        EventType.ROW_FINISHED: ({"key": "r1", "row": 1, "status": "completed"}, "row_finished", "key", "r1"),
        EventType.AGENT_BUDGET_REFUSED: ({"estimate": 2.0}, "budget_refused", "estimate", 2.0),
        EventType.USAGE_ANOMALY: ({"reason": "odd"}, "usage_anomaly", "reason", "odd"),
        EventType.BATCH_SUBMITTED: ({"batch_id": "b1", "secret": 1}, "provider_batch", "event", "batch_submitted"),
        EventType.BATCH_FINISHED: ({"batch_id": "b1", "status": "ended"}, "provider_batch", "status", "ended"),
    }
    assert set(events) == AuditTrail.event_types
    trail = AuditTrail(tmp_path, start={"kind": "run"}, key=b"k")
    for kind, (data, _, _, _) in events.items():
        trail(Event(kind, "wf-1", "a", data, content={"messages": [], "answer": "x"}))
    trail(Event(EventType.AGENT_FINISHED, "wf-1", "a", {"status": "completed", "provider": "openai", "model": "m"}))
    trail(Event(EventType.AGENT_STARTED, "wf-1", "a", {}))  # not subscribed to: nothing written
    trail.finish({"status": "completed"})
    written = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()][1:-1]
    said = [(record["type"], record["data"][name]) for record, (_, _, name, _) in zip(written, events.values())]
    assert said == [(kind, value) for _, kind, _, value in events.values()]
    assert len(written) == len(events)
    assert "secret" not in written[-2]["data"]
    assert verify_trail(tmp_path, key=b"k").holds
