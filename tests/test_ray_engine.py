"""`run --data FILE --engine ray`: rows on a local Ray instance's workers, one killed mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from tests.fake_provider import FakeProvider  # noqa: E402
from tests.redis_server import RedisServer, redis_server  # noqa: E402,F401  (a fixture)
from tests.test_shards import _env  # noqa: E402
from tests.test_shared_processes import budget, only_run  # noqa: E402

ROWS = 2000


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(latency=0.02) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(provider: FakeProvider) -> Iterator[str]:
    """A local Ray instance with 2 CPUs; its workers get the loopback provider's URL from their environment."""
    import os

    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    os.environ.update({"OPENAI_API_KEY": "sk-test-ray", "OPENAI_BASE_URL": f"{provider.url}/v1"})
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="orchestrate-tests")
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _workflow(folder: Path, rows: int, *, prices: str = "") -> None:
    (folder / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:05d}"}}\n' for i in range(rows)))
    (folder / "inv.yaml").write_text(
        f"name: invoices\ninputs:\n  invoice: {{type: string}}\n{prices}"
        "rate_limits:\n  openai: {requests_per_minute: 1000000, tokens_per_minute: 1000000000, concurrent_requests: 256}\n"
        "defaults:\n  llm_config: {model: gpt-4o-mini, max_tokens: 100}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
    )


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def _count(folder: Path) -> int:
    """Lines in the run's results.jsonl so far (cheap: polled while the run goes on)."""
    found = next(folder.glob("*/results.jsonl"), None)
    return found.read_bytes().count(b"\n") if found is not None else 0


def _workers() -> list[str]:
    return sorted(
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("orchestrate-")
    )


def test_rows_run_on_ray_workers_and_a_killed_workers_rows_run_elsewhere(
    redis_server: RedisServer,  # noqa: F811
    provider: FakeProvider,
    cluster: str,
    tmp_path: Path,
) -> None:
    namespace, scope = f"ray{uuid.uuid4().hex[:8]}", "ap-ray"
    url = f"{redis_server.url}?lease_seconds=1"
    budget(url, namespace, "set", scope, "1", cwd=tmp_path)
    _workflow(tmp_path, ROWS)
    provider.requests.clear()
    command = [sys.executable, "-m", "orchestrate", "run", "inv.yaml", "--data", "rows.jsonl", "--engine", "ray"]
    command += ["--address", cluster, "--workers", "2", "--max-parallel", "16", "--state", url]
    command += ["--state-namespace", namespace, "--budget-scope", scope, "-o", "out"]
    env = _env({"OPENAI_API_KEY": "sk-test-ray", "OPENAI_BASE_URL": f"{provider.url}/v1"})
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        results = tmp_path / "out"
        while _count(results) < 300:
            assert time.monotonic() < deadline and run.poll() is None, run.stderr.read() if run.stderr else ""
            time.sleep(0.2)
        # Hold every answer at the provider, wait until the rows answered so far are reported,
        # then kill a worker: its rows in flight are waiting on calls it will never read.
        provider.latency = 4.0
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 1.5:
            now = _count(results)
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            time.sleep(0.2)
        (victim, *_) = _workers()
        ray.kill(ray.get_actor(victim, namespace="orchestrate"), no_restart=True)
        provider.latency = 0.02
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=30)
    assert run.returncode == 0, err
    folder = only_run(tmp_path / "out")
    rows = _lines(folder / "results.jsonl")
    assert len(rows) == ROWS and {r["status"] for r in rows} == {"completed"}
    assert len({r["key"] for r in rows}) == ROWS  # every row completed exactly once
    calls = _lines(folder / "calls.jsonl")
    assert Counter(c["row"] for c in calls).most_common(1)[0][1] == 1 and len(calls) == ROWS  # no row paid twice
    # The dead worker's rows in flight were asked again elsewhere: more requests than rows, each
    # unanswered one never booked (its reservation lapsed), each answered one booked once.
    assert len(provider.requests) > ROWS
    cost = json.loads((folder / "cost.json").read_text())
    total = cost["totals"]["cost"]
    assert cost["totals"]["calls"] == ROWS
    deadline = time.monotonic() + 15
    while (shown := budget(url, namespace, "show", scope, cwd=tmp_path))["open_reservations"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert shown["spent"] == pytest.approx(total, abs=1e-9) and shown["spent"] <= shown["limit"]
    result = json.loads((folder / "result.json").read_text())
    assert result["counts"] == {"completed": ROWS} and (folder / "report.html").exists()
    # The run says a worker died, and where the calls it never reported can be seen.
    assert f"1 Ray worker(s) died mid-run ({victim})" in err
    assert f"orchestrate budget reconcile {scope} {Path('out') / folder.name} --state URL" in err
    assert redis_server.url not in err
    reconciled = subprocess.run(
        [sys.executable, "-m", "orchestrate", "budget", "reconcile", scope, str(folder), "--state", url]
        + ["--state-namespace", namespace, "--json"],
        cwd=tmp_path, env=_env({}), capture_output=True, text=True,
    )  # fmt: skip
    assert reconciled.returncode == 0, reconciled.stderr
    found = json.loads(reconciled.stdout)  # the command the warning names, run on this folder
    assert found["expected_spent"] == pytest.approx(total, abs=1e-9) and found["drift"] == pytest.approx(0, abs=1e-9)


def _progress(stderr: str) -> list[str]:
    """The plain progress lines of a dataset run ("invoices: 40/100 rows (...), ..., $0.3810, ...")."""
    return [line for line in stderr.splitlines() if "invoices: " in line and " rows (" in line]


def _ray_run(tmp_path: Path, provider: FakeProvider, url: str, namespace: str, scope: str, *extra: str) -> Any:
    command = [sys.executable, "-m", "orchestrate", "run", "inv.yaml", "--data", "rows.jsonl", "--engine", "ray"]
    command += ["--workers", "2", "--max-parallel", "8", "--state", url, "--state-namespace", namespace]
    command += ["--budget-scope", scope, "-o", "out", *extra]
    env = _env({"OPENAI_API_KEY": "sk-test-ray", "OPENAI_BASE_URL": f"{provider.url}/v1"})
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_ray_run_stops_at_its_budget_scope_and_resume_runs_the_rest(
    redis_server: RedisServer,  # noqa: F811
    provider: FakeProvider,
    cluster: str,
    tmp_path: Path,
) -> None:
    namespace, scope, rows = f"rayb{uuid.uuid4().hex[:8]}", "ap-ceiling", 100
    url = f"{redis_server.url}?lease_seconds=1"
    budget(url, namespace, "set", scope, "0.4", cwd=tmp_path)
    # About a cent a call (a worst case of about five), so the ceiling is reached after some 40 rows.
    _workflow(tmp_path, rows, prices="prices:\n  gpt-4o-mini: {input: 0.5, output: 0.5}\n")
    first = _ray_run(tmp_path, provider, url, namespace, scope, "--address", cluster)
    assert "Traceback" not in first.stderr, first.stderr
    folder = only_run(tmp_path / "out")
    results = _lines(folder / "results.jsonl")
    statuses = Counter(str(r["status"]) for r in results)
    assert len(results) == rows and set(statuses) == {"completed", "budget_exceeded"}, statuses
    assert statuses["completed"] >= 10 and statuses["budget_exceeded"] >= 10, statuses
    total = json.loads((folder / "cost.json").read_text())["totals"]["cost"]
    deadline = time.monotonic() + 15
    while (shown := budget(url, namespace, "show", scope, cwd=tmp_path))["open_reservations"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    # Across both workers the scope never passed its ceiling, and it holds exactly what cost.json holds.
    assert total <= 0.4 and shown["spent"] == pytest.approx(total, abs=1e-9)
    # The driver's progress shows what the workers spent (it read $0.0000 while the files were right).
    assert f"${total:.4f}" in _progress(first.stderr)[-1], first.stderr
    # A higher ceiling and --resume: the refused rows run, the completed ones are not paid again.
    budget(url, namespace, "set", scope, "5", cwd=tmp_path)
    again = _ray_run(tmp_path, provider, url, namespace, scope, "--address", cluster, "--resume", str(folder))
    assert again.returncode == 0, again.stderr
    results = _lines(folder / "results.jsonl")
    latest = {str(r["key"]): r["status"] for r in results}
    assert len(latest) == rows and set(latest.values()) == {"completed"}
    calls = _lines(folder / "calls.jsonl")
    assert len(calls) == rows and Counter(c["row"] for c in calls).most_common(1)[0][1] == 1
    total = json.loads((folder / "cost.json").read_text())["totals"]["cost"]
    deadline = time.monotonic() + 15
    while (shown := budget(url, namespace, "show", scope, cwd=tmp_path))["open_reservations"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert shown["spent"] == pytest.approx(total, abs=1e-9)
    assert f"${total:.4f}" in _progress(again.stderr)[-1], again.stderr


def test_repeat_runs_each_rows_tries_on_its_worker_and_the_driver_reports_pass_k(
    redis_server: RedisServer,  # noqa: F811
    provider: FakeProvider,
    cluster: str,
    tmp_path: Path,
) -> None:
    # The answer depends on the row and the try, whichever worker asks: V1 approves every try, V2
    # only its first, V3 all but its second (the tries of a row run one after the other).
    asked: Counter[str] = Counter()
    lock = threading.Lock()
    plan = {"V1": "AAA", "V2": "AHH", "V3": "AHA"}

    def rewrite(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        vendor = next(v for v in plan if v in json.dumps(request.get("messages")))
        with lock:
            n = asked[vendor]
            asked[vendor] += 1
        answer["choices"][0]["message"]["content"] = "approve" if plan[vendor][n % 3] == "A" else "hold"
        return answer

    namespace, scope = f"rayr{uuid.uuid4().hex[:8]}", "ap-repeat"
    url = f"{redis_server.url}?lease_seconds=1"
    budget(url, namespace, "set", scope, "1", cwd=tmp_path)
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"vendor": "{v}"}}\n' for v in plan))
    (tmp_path / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  vendor: {type: string}\n"
        "rate_limits:\n  openai: {requests_per_minute: 1000000}\n"
        "agents:\n  - name: decide\n    module: Finance\n    llm_config: {model: gpt-4o-mini, max_tokens: 20}\n"
        "    prompt_template: 'Approve or hold the invoices of {vendor}?'\n"
        "    expect:\n      - {equals: approve, name: approves}\n"
    )
    provider.rewrite = rewrite
    try:
        run = _ray_run(
            tmp_path, provider, url, namespace, scope, "--address", cluster, "--key", "vendor",
            "--repeat", "3", "--min-pass-rate", "0.6",
        )  # fmt: skip
    finally:
        provider.rewrite = None
    assert run.returncode == 5, run.stdout + run.stderr  # a case under the bar fails the run, as locally
    assert "Traceback" not in run.stderr
    assert dict(asked) == {"V1": 3, "V2": 3, "V3": 3}  # every try asked the provider (none from a cache)
    assert "repeat 3: pass^3 1/3 case(s), mean pass rate 67%; 1 case(s) under --min-pass-rate 0.6" in run.stdout
    folder = only_run(tmp_path / "out")
    lines = {str(line["key"]): line for line in _lines(folder / "results.jsonl")}
    assert {k: line["expectations"]["tries_passed"] for k, line in lines.items()} == {"V1": 3, "V2": 1, "V3": 2}
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["repeat"] == 3 and evaluation["tries"] == 9 and evaluation["cases_below_min"] == 1
    assert len(_lines(folder / "calls.jsonl")) == 9  # every try's call booked
    assert json.loads((folder / "cost.json").read_text())["totals"]["calls"] == 9
    # The workers' events are journaled by the driver, as a local dataset run journals its own: every
    # try's agent end and scoring in events.jsonl (its calls are in calls.jsonl), every call sealed
    # into the audit trail, which verifies.
    events = Counter(str(e["type"]) for e in _lines(folder / "events.jsonl"))
    assert events["agent_finished"] == 9 and events["expectations_checked"] == 9, events
    assert events["row_started"] == 3 and events["row_finished"] == 3 and "llm_call" not in events, events
    trail = _lines(folder / "audit.jsonl")
    calls = [r for r in trail if r["type"] == "call"]
    assert len(calls) == 9 and sorted(Counter(r["try"] for r in calls).values()) == [3, 3, 3], calls[:2]
    assert all(r["data"]["input"].startswith("sha256:") and r["data"]["model"] == "gpt-4o-mini" for r in calls)
    assert trail[0]["type"] == "run_started" and trail[-1]["type"] == "run_finished"
    verified = subprocess.run(
        [sys.executable, "-m", "orchestrate", "audit", "verify", str(folder)],
        cwd=tmp_path, env=_env({}), capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_ray_run_is_one_trace_per_row_as_a_local_run_is(
    redis_server: RedisServer,  # noqa: F811
    cluster: str,
    tmp_path: Path,
) -> None:
    from tests.test_otel import Receiver, attrs

    receiver = Receiver()
    try:
        _workflow(tmp_path, 4)
        command = [sys.executable, "-m", "orchestrate", "run", "inv.yaml", "--data", "rows.jsonl", "--engine", "ray"]
        command += ["--address", cluster, "--workers", "2", "--state", redis_server.url, "--simulate"]
        command += ["--state-namespace", f"rayo{uuid.uuid4().hex[:8]}", "--key", "invoice", "-o", "out"]
        env = _env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "ray-invoices"})
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        spans = [span for _, span in receiver.spans()]
    finally:
        receiver.close()
    roots = [s for s in spans if s.name == "invoke_workflow invoices"]
    keys = sorted(str(attrs(r)["orchestrate.row.key"]) for r in roots)
    assert keys == [f"INV-{i:05d}" for i in range(4)] and len({r.trace_id for r in roots}) == 4
    agents = [s for s in spans if s.name.startswith("invoke_agent")]
    assert len(agents) == 4 and {a.trace_id for a in agents} == {r.trace_id for r in roots}
    for agent in agents:  # each agent span inside its row's, with the times the worker saw
        (root,) = [r for r in roots if r.trace_id == agent.trace_id]
        assert root.start_time_unix_nano <= agent.start_time_unix_nano <= agent.end_time_unix_nano
        assert agent.end_time_unix_nano <= root.end_time_unix_nano


def test_ray_needs_a_redis_state_and_refuses_budget(tmp_path: Path) -> None:
    _workflow(tmp_path, 3)
    base = [sys.executable, "-m", "orchestrate", "run", "inv.yaml", "--simulate", "--data", "rows.jsonl"]
    no_state = subprocess.run([*base, "--engine", "ray"], cwd=tmp_path, env=_env({}), capture_output=True, text=True)
    assert no_state.returncode == 2 and "--state redis://" in no_state.stderr and "Traceback" not in no_state.stderr
    with_budget = subprocess.run(
        [*base, "--engine", "ray", "--state", "redis://127.0.0.1:1/0", "--budget", "1"],
        cwd=tmp_path, env=_env({}), capture_output=True, text=True,
    )  # fmt: skip
    assert with_budget.returncode == 2 and "--budget-scope" in with_budget.stderr
    stray = subprocess.run([*base, "--workers", "3"], cwd=tmp_path, env=_env({}), capture_output=True, text=True)
    assert stray.returncode == 2 and "go with --engine ray" in stray.stderr
    assert not (tmp_path / "runs").exists()
