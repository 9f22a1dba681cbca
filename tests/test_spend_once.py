"""Spend booked exactly once: ids on every reservation and booking, retries after lost replies, reconcile."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import redis.asyncio as aioredis

from orchestrate.money.budget_scope import UNSETTLED_FILE, ScopeLedger, book_unsettled, booking_id
from orchestrate.money.costs import CostTracker
from orchestrate.state.backends import state_from_url
from orchestrate.state.base import LeaseKeeper, SharedState
from tests.fake_provider import FakeProvider, Fault
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from tests.test_shards import orchestrate, spawn
from tests.test_shared_processes import budget, only_run


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[SharedState]:  # noqa: F811
    url = "memory://" if request.param == "memory" else redis_server.url
    backend = state_from_url(f"{url}?lease_seconds=10", namespace=f"once{uuid.uuid4().hex[:8]}", clock=Clock())
    await backend.connect()
    yield backend
    await backend.aclose()


async def test_a_repeated_reserve_returns_the_first_answer_and_reserves_once(state: SharedState) -> None:
    await state.budget_set("fin", 1.0)
    first = await state.budget_reserve("fin", "id-1", 0.4)
    assert first == ("ok", 1.0, 0.0)
    assert await state.budget_reserve("fin", "id-2", 0.4) == ("ok", 1.0, 0.4)
    # The same id again: the first answer (committed 0.0 then), nothing more reserved.
    assert await state.budget_reserve("fin", "id-1", 0.4) == first
    shown = await state.budget_get("fin")
    assert shown.reserved == pytest.approx(0.8) and shown.leases == 2


async def test_a_repeated_settle_books_once(state: SharedState) -> None:
    await state.budget_set("fin", 1.0)
    await state.budget_reserve("fin", "id-1", 0.4)
    for _ in range(3):
        await state.budget_settle("fin", "id-1", 0.25)
    shown = await state.budget_get("fin")
    assert (shown.spent, shown.reserved, shown.leases) == (pytest.approx(0.25), 0.0, 0)
    # A reserve of the settled id arriving late (a retry) opens no new reservation.
    assert (await state.budget_reserve("fin", "id-1", 0.4))[0] == "ok"
    assert (await state.budget_get("fin")).leases == 0


async def test_a_refusal_is_decided_afresh(state: SharedState) -> None:
    await state.budget_set("fin", 0.5)
    await state.budget_reserve("fin", "a", 0.4)
    assert (await state.budget_reserve("fin", "b", 0.4))[0] == "refused"
    await state.budget_settle("fin", "a", 0.0)
    assert (await state.budget_reserve("fin", "b", 0.4))[0] == "ok"


async def test_setting_a_ceiling_keeps_the_spend_and_correct_sets_it(state: SharedState) -> None:
    await state.budget_set("fin", 1.0)
    await state.budget_settle("fin", "x", 0.3)
    again = await state.budget_set("fin", 2.0)  # a second `budget set` never reseeds the spend
    assert (again.limit, again.spent) == (2.0, pytest.approx(0.3))
    corrected = await state.budget_correct("fin", 0.125)
    assert (corrected.limit, corrected.spent) == (2.0, 0.125)


async def test_redis_scope_counters_are_created_when_the_ceiling_is_set(redis_server: RedisServer) -> None:  # noqa: F811
    namespace = f"cold{uuid.uuid4().hex[:8]}"
    state = state_from_url(redis_server.url, namespace=namespace)
    raw = aioredis.from_url(redis_server.url)
    try:
        await state.budget_set("ops", 3.0)
        stored = await raw.hgetall(f"{namespace}:budget:{{ops}}")
        assert stored == {b"limit": b"3.0", b"spent": b"0", b"reserved": b"0"}
    finally:
        await raw.aclose()
        await state.aclose()


class DroppingProxy:
    """A TCP proxy to redis-server that swallows the reply to a command carrying `marker`, once, and hangs up.

    The command has reached Redis and run there; the client sees a lost connection.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.markers: list[bytes] = []
        self.dropped: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        drop: list[bytes] = []

        async def upstream() -> None:
            while data := await reader.read(65536):
                for marker in list(self.markers):
                    if marker in data:
                        self.markers.remove(marker)
                        drop.append(marker)
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if drop:
                    self.dropped.append(drop.pop())
                    writer.transport.abort()  # the reply is lost with the connection
                    return
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            writer.transport.abort()
            up_writer.close()


async def test_a_reserve_and_a_settle_whose_replies_are_lost_are_counted_once(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    proxy = DroppingProxy(redis_server.port)
    port = await proxy.start()
    namespace = f"lost{uuid.uuid4().hex[:8]}"
    state = state_from_url(f"redis://127.0.0.1:{port}/0", namespace=namespace)
    direct = state_from_url(redis_server.url, namespace=namespace)
    try:
        await state.budget_set("fin", 1.0)
        lease = booking_id("run-1/shard-1/session", "row-7", "row-7:extract", 1)
        proxy.markers.append(lease.encode())
        assert await state.budget_reserve("fin", lease, 0.4) == ("ok", 1.0, 0.0)
        assert proxy.dropped == [lease.encode()]  # the first reply was lost; the client sent it again
        shown = await direct.budget_get("fin")
        assert (shown.reserved, shown.leases) == (pytest.approx(0.4), 1)
        proxy.markers.append(lease.encode())
        await state.budget_settle("fin", lease, 0.3)
        assert len(proxy.dropped) == 2 and state.lost is None
        shown = await direct.budget_get("fin")
        assert (shown.spent, shown.reserved, shown.leases) == (pytest.approx(0.3), 0.0, 0)
    finally:
        await state.aclose()
        await direct.aclose()
        await proxy.aclose()


async def test_each_call_of_an_agent_has_its_own_id_and_a_new_attempt_new_ones() -> None:
    state = state_from_url("memory://")
    await state.budget_set("fin", 10.0)
    ids: list[str] = []
    for origin in ("batch:run-1/s1", "batch:run-1/s1", "batch:run-1/s2"):
        tracker = CostTracker()
        tracker.scopes = ScopeLedger(state, LeaseKeeper(state), origin=origin)
        tracker.scopes.scopes["row-3"] = "fin"
        for _ in range(2):
            reservation = tracker.reserve("row-3", "row-3:check", 0.1)
            await tracker.reserve_shared(reservation)
            assert reservation.lease is not None
            ids.append(reservation.lease)
            tracker.settle(reservation, 0.05)
        await tracker.scopes.drain()
        await tracker.scopes.keeper.aclose()
    # The same run and session derive the same ids (a retry); another session (attempt) new ones.
    assert ids[0] != ids[1] and ids[:2] == ids[2:4] and not set(ids[4:]) & set(ids[:4])
    assert (await state.budget_get("fin")).spent == pytest.approx(0.05 * 4)


async def test_unsettled_spend_is_booked_once_even_if_the_file_survives(tmp_path: Path) -> None:
    state = state_from_url("memory://")
    await state.budget_set("audit", 5.0)
    document = {"schema_version": 1, "state": "redis://x", "total": 0.5, "calls": [{"scope": "audit", "cost": 0.5}]}
    (tmp_path / UNSETTLED_FILE).write_text(json.dumps(document))
    assert await book_unsettled(state, tmp_path) == [("audit", 0.5)]
    (tmp_path / UNSETTLED_FILE).write_text(json.dumps(document))  # as if the process died before removing it
    await book_unsettled(state, tmp_path)
    assert (await state.budget_get("audit")).spent == pytest.approx(0.5)


async def test_unsettled_spend_that_did_land_is_not_booked_again_on_resume(tmp_path: Path) -> None:
    # The settlement reached the state, but its reply was lost and the state went away before the
    # retry: the run could not know, so it kept the call as unsettled, under the id it was sent with.
    state = state_from_url("memory://")
    await state.budget_set("audit", 5.0)
    await state.budget_reserve("audit", "id-landed", 0.5)
    await state.budget_settle("audit", "id-landed", 0.3)
    calls = [
        {"scope": "audit", "cost": 0.3, "booking": "id-landed"},
        {"scope": "audit", "cost": 0.2, "booking": "id-lost"},
    ]
    document = {"schema_version": 1, "state": "redis://x", "total": 0.5, "calls": calls}
    (tmp_path / UNSETTLED_FILE).write_text(json.dumps(document))
    assert await book_unsettled(state, tmp_path) == [("audit", 0.5)]
    assert (await state.budget_get("audit")).spent == pytest.approx(0.5)  # 0.3 once, 0.2 once


def _dataset(folder: Path, rows: int) -> None:
    (folder / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:04d}"}}\n' for i in range(rows)))
    (folder / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\n"
        "rate_limits:\n  openai: {requests_per_minute: 100000, concurrent_requests: 64}\n"
        "defaults:\n  llm_config: {model: gpt-4o-mini, max_tokens: 100}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
        "  - {name: post, module: Finance, dependencies: [check], prompt_template: 'Post {invoice}.'}\n"
    )


def _total(run: Path) -> float:
    return float(json.loads((run / "cost.json").read_text())["totals"]["cost"])


def _scope_now(url: str, namespace: str, scope: str) -> dict[str, object]:
    """The scope as stored, read in this process (a CLI call per poll is seconds on a loaded machine)."""

    async def read() -> dict[str, object]:
        state = state_from_url(url, namespace=namespace)
        try:
            return (await state.budget_get(scope)).to_dict()
        finally:
            await state.aclose()

    return asyncio.run(read())


def _calls(run: Path) -> int:
    return len(json.loads((run / "cost.json").read_text())["calls"])


def _provider_env(provider: FakeProvider) -> dict[str, str]:
    """A real provider's wire format on loopback: simulated calls are never booked in a scope."""
    return {"OPENAI_API_KEY": "sk-test-spend-once", "OPENAI_BASE_URL": f"{provider.url}/v1"}


def test_two_processes_and_a_killed_third_book_what_their_cost_files_hold(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    namespace, scope = f"three{uuid.uuid4().hex[:8]}", "ap-2026-12"
    url = f"{redis_server.url}?lease_seconds=1"
    budget(url, namespace, "set", scope, "50", cwd=tmp_path)
    _dataset(tmp_path, 60)
    common = ("--data", "rows.jsonl", "--state", url, "--state-namespace", namespace, "--budget-scope", scope)
    with FakeProvider(latency=0.01) as fast, FakeProvider(latency=3600) as slow:
        living = [
            spawn(
                "run", "inv.yaml", *common, "--shard", f"{k}/3", "-o", f"out{k}", cwd=tmp_path, env=_provider_env(fast)
            )
            for k in (1, 2)
        ]
        # The third is killed while its first calls are in flight (reserved, not yet answered). Its provider
        # never answers: with 30 s, a loaded machine sometimes took longer to see the reservations, the answers
        # came back first and were recorded, and the count of answered calls fell short by them.
        victim = spawn(
            "run", "inv.yaml", *common, "--shard", "3/3", "-o", "out3", cwd=tmp_path, env=_provider_env(slow)
        )
        try:
            deadline = time.monotonic() + 60
            while (
                budget(url, namespace, "show", scope, cwd=tmp_path)["open_reservations"] < 3 or len(slow.requests) < 3
            ):
                assert time.monotonic() < deadline and victim.poll() is None, "the third never reserved"
                time.sleep(0.05)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=30)
        for process in living:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        # The platform restarts the index: it resumes its own folder, and its rows call (and book) anew.
        resumed = orchestrate(
            "run", "inv.yaml", *common, "--shard", "3/3", "--resume", str(only_run(tmp_path / "out3")),
            cwd=tmp_path, env=_provider_env(fast),
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        answered = len(fast.requests)
    deadline = time.monotonic() + 10
    while _scope_now(url, namespace, scope)["open_reservations"]:
        assert time.monotonic() < deadline  # the killed process's leases lapse
        time.sleep(0.1)
    shown = budget(url, namespace, "show", scope, cwd=tmp_path)
    runs = [only_run(tmp_path / f"out{k}") for k in (1, 2, 3)]
    total = sum(_total(run) for run in runs)
    assert sum(_calls(run) for run in runs) == answered == 120  # 60 rows of two agents, every answer recorded
    assert shown["spent"] == pytest.approx(total, abs=1e-9) and shown["reserved"] == 0.0
    assert total > 0


def test_reconcile_finds_and_fixes_an_injected_drift(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    namespace, scope = f"rec{uuid.uuid4().hex[:8]}", "inventory-2026-12"
    budget(redis_server.url, namespace, "set", scope, "10", cwd=tmp_path)
    _dataset(tmp_path, 8)
    with FakeProvider() as provider:
        for k in (1, 2):
            done = orchestrate(
                "run", "inv.yaml", "--data", "rows.jsonl", "--shard", f"{k}/2", "--state", redis_server.url,
                "--state-namespace", namespace, "--budget-scope", scope, "-o", f"out{k}", cwd=tmp_path,
                env=_provider_env(provider),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
    runs = [str(only_run(tmp_path / f"out{k}")) for k in (1, 2)]
    total = sum(_total(Path(r)) for r in runs)
    state = ("--state", redis_server.url, "--state-namespace", namespace)
    agree = orchestrate("budget", "reconcile", scope, *runs, *state, cwd=tmp_path)
    assert agree.returncode == 0 and "in agreement" in agree.stdout, agree.stderr
    # Drift: a booking counted twice (as LiteLLM's counters at 2x spend).
    injected = 0.0421

    async def inject() -> None:
        raw = aioredis.from_url(redis_server.url)
        await raw.hincrbyfloat(f"{namespace}:budget:{{{scope}}}", "spent", injected)
        await raw.aclose()

    asyncio.run(inject())
    found = orchestrate("budget", "reconcile", scope, *runs, *state, "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    assert report["drift"] == pytest.approx(injected) and report["expected_spent"] == pytest.approx(total)
    assert not report["applied"] and budget(redis_server.url, namespace, "show", scope, cwd=tmp_path)["spent"] > total
    fixed = orchestrate("budget", "reconcile", scope, *runs, *state, "--apply", cwd=tmp_path)
    assert fixed.returncode == 0 and "applied" in fixed.stdout, fixed.stderr
    shown = budget(redis_server.url, namespace, "show", scope, cwd=tmp_path)
    assert shown["spent"] == pytest.approx(total, abs=1e-9) and shown["limit"] == 10.0
    bad = orchestrate("budget", "reconcile", scope, str(tmp_path), *state, cwd=tmp_path)
    assert bad.returncode == 2 and "not a run folder" in bad.stderr and "Traceback" not in bad.stderr


def test_reconcile_has_help_with_examples(tmp_path: Path) -> None:
    shown = orchestrate("budget", "reconcile", "-h", cwd=tmp_path)
    assert shown.returncode == 0 and "orchestrate budget reconcile" in shown.stdout and "--apply" in shown.stdout
    assert "Examples:" in shown.stdout and "<path>" not in shown.stdout.lower()


def test_a_dataset_run_keeps_what_the_lost_state_never_booked_and_resume_books_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw-7").start()
    held = threading.Event()
    try:
        budget(server.url, "orchestrate", "set", "ap", "5", cwd=tmp_path)
        _dataset(tmp_path, 6)
        common = ("--data", "rows.jsonl", "--state", server.url, "--budget-scope", "ap", "--max-rows-parallel", "1")
        with FakeProvider() as provider:
            provider.script(Fault(), Fault(), Fault(held=held))  # the third call is in flight when Redis goes
            process = spawn("run", "inv.yaml", *common, "-o", "out", cwd=tmp_path, env=_provider_env(provider))
            deadline = time.monotonic() + 60
            while len(provider.requests) < 3:
                assert time.monotonic() < deadline and process.poll() is None, "the run never got going"
                time.sleep(0.02)
            server.shutdown_saving()
            held.set()
            _, err = process.communicate(timeout=60)
            assert process.returncode == 1, err
            run = only_run(tmp_path / "out")
            unsettled = json.loads((run / UNSETTLED_FILE).read_text())
            assert unsettled["calls"] and "pw-7" not in json.dumps(unsettled)
            schema = json.loads((Path(__file__).parent.parent / "schemas" / "unsettled_scope.schema.json").read_text())
            jsonschema.validate(unsettled, schema)  # the file a real run writes, against the shipped schema
            assert unsettled["kind"] == "unsettled_scope"
            server.start()
            assert budget(server.url, "orchestrate", "show", "ap", cwd=tmp_path)["spent"] + unsettled[
                "total"
            ] == pytest.approx(_total(run))
            resumed = orchestrate(
                "run", "inv.yaml", *common, "--resume", str(run), cwd=tmp_path, env=_provider_env(provider)
            )
            assert resumed.returncode == 0, resumed.stderr
            assert "booked $" in resumed.stderr and not (run / UNSETTLED_FILE).exists()
            shown = budget(server.url, "orchestrate", "show", "ap", cwd=tmp_path)
            assert shown["spent"] == pytest.approx(_total(run))  # the resumed folder's cost.json holds every call
    finally:
        held.set()
        server.stop()
