"""Several `orchestrate` processes sharing one real redis-server: limits, budgets, crashes, outages."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from orchestrate.money.rate_limit import skew_margin
from tests.fake_provider import FakeProvider, Fault
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from tests.test_rate_limit import most_in_any_window

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {name: json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text()) for name in ("result", "cost")}


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "CI": "true"}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ORCHESTRATE_STATE_URL", "REDIS_PASSWORD"):
        env.pop(key, None)
    # Runs that must spend (a simulated call never books in a budget scope) call a FakeProvider.
    return {**env, "OPENAI_API_KEY": "sk-test-shared-processes", **extra}


def orchestrate(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def workflow_file(
    folder: Path,
    name: str,
    agents: int,
    *,
    parallel: int = 4,
    max_tokens: int = 200,
    extra: str = "",
    provider: FakeProvider | None = None,
) -> Path:
    """A workflow of `agents` independent agents; with a `provider`, its calls go there (real spend)."""
    served = f", provider: openai, base_url: '{provider.url}/v1'" if provider is not None else ""
    lines = [
        f"name: {name}",
        f"max_parallel_agents: {parallel}",
        "cost_budget: 100",
        extra,
        "defaults:",
        f"  llm_config: {{model: gpt-4o-mini, max_tokens: {max_tokens}{served}}}",
        "agents:",
    ]
    lines += [
        f"  - {{name: a{i}, module: Finance, prompt_template: 'Check invoice {i} of the month.'}}"
        for i in range(agents)
    ]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """An OpenAI-compatible server on loopback: runs that spend money in a scope call it."""
    with FakeProvider() as server:
        yield server


def budget(url: str, namespace: str, *args: str, cwd: Path) -> dict[str, object]:
    done = orchestrate("budget", *args, "--state", url, "--state-namespace", namespace, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def only_run(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def test_four_processes_share_one_limit_in_every_sliding_minute(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """4 x 150 calls, 600/min shared: never 601 in any 60 s, and the limit is really used.

    The processes run on a clock 10 times faster than the wall clock (the
    same in all of them), so the minute takes 6 s. What is checked is counted, not
    timed: on a loaded machine a process may start or be scheduled late, which only
    ever lowers the rate, so the safety bound is exact and the use of the limit is
    shown by the busiest minute holding nearly all of it.
    """
    scale, namespace = 10.0, f"lim{uuid.uuid4().hex[:8]}"
    base = time.time()
    start_at = base + 2.0  # every process is up and waiting before the first call
    outs = [tmp_path / f"stamps{k}.txt" for k in range(4)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.shared_limit_worker",
                redis_server.url,
                namespace,
                repr(base),
                repr(scale),
                "150",
                repr(start_at),
                str(out),
            ],
            cwd=ROOT,
            env=environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    per_process = [[float(line) for line in out.read_text().split()] for out in outs]
    assert [len(p) for p in per_process] == [150] * 4
    stamps = sorted(t for p in per_process for t in p)
    assert most_in_any_window(stamps, 60.0 + skew_margin(60.0) - 1e-6) <= 600
    # Paced at the limit, not starved: some minute holds at least 80% of what the limit allows.
    assert most_in_any_window(stamps, 60.0) >= 480, most_in_any_window(stamps, 60.0)


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_four_processes_never_pass_a_shared_budget_scope(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    seed: int,
    provider: FakeProvider,
) -> None:
    rng = random.Random(seed)
    namespace, scope = f"bud{uuid.uuid4().hex[:8]}", f"finance-{seed}"
    # A call may cost up to ~$0.0002 (its worst case), so a few fit at once, far fewer than 4 x 12.
    ceiling = round(rng.uniform(0.0006, 0.0016), 6)
    assert budget(redis_server.url, namespace, "set", scope, str(ceiling), cwd=tmp_path)["limit"] == ceiling
    # No pacing (the default 60 a minute, shared through Redis, would space the calls a second apart):
    # the four processes race for the scope at full speed.
    fast = "rate_limits:\n  openai: {requests_per_minute: 100000}"
    path = workflow_file(
        tmp_path, "invoices", 12, parallel=rng.randint(2, 6), max_tokens=400, provider=provider, extra=fast
    )
    provider.latency = rng.uniform(0.01, 0.08)
    runs = []
    for k in range(4):
        runs.append(
            spawn(
                "run",
                str(path),
                "--state",
                redis_server.url,
                "--state-namespace",
                namespace,
                "--budget-scope",
                scope,
                "-o",
                str(tmp_path / f"out{k}"),
                cwd=tmp_path,
            )
        )
    total = 0.0
    for k, process in enumerate(runs):
        _, err = process.communicate(timeout=120)
        # 3: some agents were refused by the budget; 1: all of them (the workflow failed).
        assert process.returncode in (0, 1, 3) and "Traceback" not in err, err
        run = only_run(tmp_path / f"out{k}")
        result = json.loads((run / "result.json").read_text())
        jsonschema.validate(result, SCHEMAS["result"])
        assert {a["status"] for a in result["agents"]} <= {"completed", "budget_exceeded"}
        for agent in result["agents"]:
            if agent["status"] == "budget_exceeded":
                assert agent["cost"] == 0.0 and "budget scope" in agent["error"]
        total += result["total_cost"]
    shown = budget(redis_server.url, namespace, "show", scope, cwd=tmp_path)
    assert total <= ceiling + 1e-9
    assert shown["spent"] == pytest.approx(total, abs=1e-9) and shown["reserved"] == 0.0
    assert shown["spent"] > 0.0  # the scope was really used, not refused outright


def test_a_killed_process_reservation_lapses_and_the_others_go_on(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    provider: FakeProvider,
) -> None:
    namespace, scope = f"kill{uuid.uuid4().hex[:8]}", "hr-2026-11"
    url = f"{redis_server.url}?lease_seconds=1"
    # Room for one call's worst case (~$0.00025) at a time, no more.
    budget(url, namespace, "set", scope, "0.0004", cwd=tmp_path)
    slow = workflow_file(tmp_path, "slow", 1, max_tokens=400, provider=provider)
    provider.latency = 60  # the victim's call is answered after it is killed
    victim = spawn(
        "run",
        str(slow),
        "--state",
        url,
        "--state-namespace",
        namespace,
        "--budget-scope",
        scope,
        "-o",
        str(tmp_path / "victim"),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while budget(url, namespace, "show", scope, cwd=tmp_path)["open_reservations"] != 1:
            assert time.monotonic() < deadline and victim.poll() is None, "the call never reserved"
            time.sleep(0.05)
        time.sleep(1.6)  # longer than the lease: the living holder keeps renewing it
        assert budget(url, namespace, "show", scope, cwd=tmp_path)["open_reservations"] == 1
        other = orchestrate(
            "run",
            str(workflow_file(tmp_path, "blocked", 1, max_tokens=400, provider=provider)),
            "--state",
            url,
            "--state-namespace",
            namespace,
            "--budget-scope",
            scope,
            "-o",
            str(tmp_path / "blocked"),
            cwd=tmp_path,
        )
        assert (
            other.returncode in (1, 3)
            and "budget_exceeded" in (only_run(tmp_path / "blocked") / "result.json").read_text()
        )
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)  # reaps it and closes its pipes
    deadline = time.monotonic() + 10
    while (shown := budget(url, namespace, "show", scope, cwd=tmp_path))["open_reservations"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert shown["reserved"] == 0.0 and shown["spent"] == 0.0
    provider.latency = 0.0
    after = orchestrate(
        "run",
        str(workflow_file(tmp_path, "after", 1, max_tokens=400, provider=provider)),
        "--state",
        url,
        "--state-namespace",
        namespace,
        "--budget-scope",
        scope,
        "-o",
        str(tmp_path / "after"),
        cwd=tmp_path,
    )
    assert after.returncode == 0, after.stderr


def test_redis_stopped_mid_run_fails_closed_and_resume_finishes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cr3t-pw").start()
    try:
        path = workflow_file(
            tmp_path, "ledger", 30, parallel=2, extra="rate_limits: {simulated: {requests_per_minute: 100000}}"
        )
        out = tmp_path / "out"
        process = spawn(
            "run", str(path), "--simulate", "--sim-latency", "0.2", "--state", server.url, "-o", str(out), cwd=tmp_path
        )
        deadline = time.monotonic() + 60
        while True:
            runs = list(out.glob("*/events.jsonl")) if out.exists() else []
            if runs and runs[0].read_text().count('"llm_call"') >= 4:
                break
            assert time.monotonic() < deadline and process.poll() is None, "the run never got going"
            time.sleep(0.02)
        server.stop()
        stopped_at = time.time()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert f"redis://:***@127.0.0.1:{server.port}/0" in err and "s3cr3t" not in err
        assert "--resume" in err and "Traceback" not in err
        run = only_run(out)
        result = json.loads((run / "result.json").read_text())
        cost = json.loads((run / "cost.json").read_text())
        jsonschema.validate(result, SCHEMAS["result"])
        jsonschema.validate(cost, SCHEMAS["cost"])
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        calls = [e for e in events if e["type"] == "llm_call"]
        # Calls in flight when Redis went (at most 2) finish and are recorded; none starts after. A call's
        # start is its end less its duration; the second of slack is for a call whose permission came
        # just before the stop but whose request left a little after it on a loaded machine.
        assert all(e["timestamp"] - e["data"]["duration"] <= stopped_at + 1.0 for e in calls)
        assert len(cost["calls"]) == len(calls) < 30
        completed = [a["name"] for a in result["agents"] if a["status"] == "completed"]
        assert len(completed) == len(calls)

        server.start()
        resumed = orchestrate(
            "run",
            str(path),
            "--simulate",
            "--state",
            server.url,
            "--resume",
            str(run),
            "-o",
            str(tmp_path / "again"),
            cwd=tmp_path,
        )
        assert resumed.returncode == 0, resumed.stderr
        again = json.loads((only_run(tmp_path / "again") / "result.json").read_text())
        assert sorted(again["reused_agents"]) == sorted(completed)
        assert all(a["status"] == "completed" for a in again["agents"])
    finally:
        server.stop()


def test_an_unreachable_state_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw-never-shown")  # not started
    done = orchestrate(
        "run",
        str(workflow_file(tmp_path, "w", 2)),
        "--simulate",
        "--state",
        server.url,
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert done.returncode == 1 and f"127.0.0.1:{server.port}" in done.stderr
    assert "pw-never-shown" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_budget_commands_and_an_unset_scope(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    provider: FakeProvider,
) -> None:
    namespace = f"cmd{uuid.uuid4().hex[:8]}"
    path = workflow_file(tmp_path, "w", 2, extra="budget_scope: compliance-q4", provider=provider)
    refused = orchestrate(
        "run",
        str(path),
        "--state",
        redis_server.url,
        "--state-namespace",
        namespace,
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert f"orchestrate budget set compliance-q4 USD --state {redis_server.url}" in refused.stderr
    assert budget(redis_server.url, namespace, "show", "compliance-q4", cwd=tmp_path)["limit"] is None
    assert budget(redis_server.url, namespace, "set", "compliance-q4", "5", cwd=tmp_path)["limit"] == 5.0
    ran = orchestrate(
        "run",
        str(path),
        "--state",
        redis_server.url,
        "--state-namespace",
        namespace,
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    shown = budget(redis_server.url, namespace, "show", "compliance-q4", cwd=tmp_path)
    assert shown["spent"] > 0 and shown["remaining"] == pytest.approx(5.0 - shown["spent"])
    reset = budget(redis_server.url, namespace, "reset", "compliance-q4", cwd=tmp_path)
    assert reset["spent"] == 0.0 and reset["limit"] == 5.0
    plain = orchestrate(
        "budget", "show", "compliance-q4", "--state", redis_server.url, "--state-namespace", namespace, cwd=tmp_path
    )
    assert plain.stdout.startswith("compliance-q4: limit $5.0000, spent $0.0000")
    from_env = subprocess.run(
        [sys.executable, "-m", "orchestrate", "budget", "show", "compliance-q4", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(ORCHESTRATE_STATE_URL=redis_server.url, ORCHESTRATE_STATE_NAMESPACE=namespace),
    )
    assert json.loads(from_env.stdout)["limit"] == 5.0
    other_namespace = budget(redis_server.url, f"{namespace}-other", "show", "compliance-q4", cwd=tmp_path)
    assert other_namespace["limit"] is None  # namespaces do not share
    no_state = orchestrate("budget", "show", "x", cwd=tmp_path)
    assert no_state.returncode == 2 and "--state" in no_state.stderr
    bad = orchestrate("budget", "set", "x", "nan", "--state", redis_server.url, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    local = orchestrate("run", str(path), "--simulate", "-o", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 2 and "is not set in this process" in local.stderr


def test_the_response_cache_can_live_in_redis(redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    namespace = f"cache{uuid.uuid4().hex[:8]}"
    path = workflow_file(tmp_path, "cached", 3)
    costs = []
    for k in range(2):
        done = orchestrate(
            "run",
            str(path),
            "--simulate",
            "--cache",
            redis_server.url,
            "--cache-ttl",
            "60",
            "--state-namespace",
            namespace,
            "-o",
            str(tmp_path / f"out{k}"),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        cost = json.loads((only_run(tmp_path / f"out{k}") / "cost.json").read_text())
        costs.append(cost)
    assert all(not c["cached"] for c in costs[0]["calls"])
    assert all(c["cached"] for c in costs[1]["calls"]) and len(costs[1]["calls"]) == 3


def test_four_shards_cover_every_row_once_under_one_scope_and_limit(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    provider: FakeProvider,
) -> None:
    namespace, scope = f"shard{uuid.uuid4().hex[:8]}", "procurement-2026-11"
    budget(redis_server.url, namespace, "set", scope, "5", cwd=tmp_path)
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:03d}"}}\n' for i in range(41)))
    (tmp_path / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\n"
        "rate_limits:\n  openai: {requests_per_minute: 6000, concurrent_requests: 3}\n"
        f"defaults:\n  llm_config: {{model: gpt-4o-mini, max_tokens: 100, base_url: '{provider.url}/v1'}}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
    )
    shards = [
        spawn(
            "run",
            "inv.yaml",
            "--data",
            "rows.jsonl",
            "--shard",
            f"{k}/4",
            "--state",
            redis_server.url,
            "--state-namespace",
            namespace,
            "--budget-scope",
            scope,
            "-o",
            f"out{k}",
            cwd=tmp_path,
        )
        for k in range(1, 5)
    ]
    rows: list[int] = []
    total = 0.0
    for k, process in enumerate(shards, start=1):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        run = only_run(tmp_path / f"out{k}")
        results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
        assert all(r["status"] == "completed" for r in results)
        assert all((r["row"] - 1) % 4 == k - 1 for r in results)  # row K-1 modulo N, rows counted from 1
        rows += [r["row"] for r in results]
        total += json.loads((run / "cost.json").read_text())["totals"]["cost"]
    assert sorted(rows) == list(range(1, 42))  # every row exactly once
    assert budget(redis_server.url, namespace, "show", scope, cwd=tmp_path)["spent"] == pytest.approx(total)
    merged = orchestrate(
        "cost-report", "out1", "out2", "out3", "out4", "--include-simulated", "--format", "json", cwd=tmp_path
    )
    assert merged.returncode == 0, merged.stderr
    report = json.loads(merged.stdout)
    assert report["total"]["calls"] == 41 and report["total"]["cost"] == pytest.approx(total)


@pytest.mark.parametrize("command", ["show", "set", "reset"])
def test_budget_commands_have_help_with_examples(command: str, tmp_path: Path) -> None:
    shown = orchestrate("budget", command, "-h", cwd=tmp_path)
    assert shown.returncode == 0 and f"orchestrate budget {command}" in shown.stdout
    assert "Examples:" in shown.stdout and "<str>" not in shown.stdout and "<float>" not in shown.stdout


def test_spend_the_lost_state_never_booked_is_booked_on_resume(tmp_path: Path, provider: FakeProvider) -> None:
    server = RedisServer(tmp_path, password="pw-9").start()
    held = threading.Event()
    try:
        budget(server.url, "orchestrate", "set", "audit-q4", "5", cwd=tmp_path)
        fast = "budget_scope: audit-q4\nrate_limits:\n  openai: {requests_per_minute: 100000}"
        path = workflow_file(tmp_path, "audit", 30, parallel=3, extra=fast, provider=provider)
        out = tmp_path / "out"
        # The fifth call is held at the provider until Redis is gone: whatever the machine's
        # load, one call is in flight when the state is lost, and its booking cannot land.
        provider.script(Fault(), Fault(), Fault(), Fault(), Fault(held=held))
        process = spawn("run", str(path), "--state", server.url, "-o", str(out), cwd=tmp_path)
        deadline = time.monotonic() + 60
        while len(provider.requests) < 5:
            assert time.monotonic() < deadline and process.poll() is None, "the run never got going"
            time.sleep(0.02)
        server.shutdown_saving()  # what was booked so far survives; the call in flight is not booked
        held.set()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1, err
        run = only_run(out)
        spent_here = json.loads((run / "cost.json").read_text())["totals"]["cost"]
        unsettled = json.loads((run / "unsettled_scope.json").read_text())
        assert unsettled["calls"] and "pw-9" not in json.dumps(unsettled)
        assert all(call["booking"] for call in unsettled["calls"])  # booked on resume under its first id
        server.start()
        booked = budget(server.url, "orchestrate", "show", "audit-q4", cwd=tmp_path)["spent"]
        assert booked + unsettled["total"] == pytest.approx(spent_here)
        resumed = orchestrate(
            "run",
            str(path),
            "--state",
            server.url,
            "--resume",
            str(run),
            "-o",
            str(tmp_path / "again"),
            cwd=tmp_path,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "booked $" in resumed.stderr and not (run / "unsettled_scope.json").exists()
        second = json.loads((only_run(tmp_path / "again") / "cost.json").read_text())
        new_spend = sum(c["cost"] for c in second["calls"] if not c.get("reused"))
        shown = budget(server.url, "orchestrate", "show", "audit-q4", cwd=tmp_path)
        assert shown["spent"] == pytest.approx(spent_here + new_spend)
    finally:
        held.set()
        server.stop()
