"""A dataset run whose shared budget scope has no room: the rows it refuses are counted as not
started (``budget_exceeded``, "refused"), never as failed rows, in results, the totals, the closing
summary and the exit code, and no new row starts after the first refusal.

Real parts: a redis-server the test starts, and an OpenAI-compatible loopback server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import orchestrate
from tests.fake_provider import FakeProvider
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


def test_rows_a_full_budget_scope_refuses_are_not_started_not_failed(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    provider: FakeProvider,
) -> None:
    namespace, scope = f"refuse{uuid.uuid4().hex[:8]}", "procurement-2026-12"
    state = ["--state", redis_server.url, "--state-namespace", namespace]
    env = {"OPENAI_API_KEY": "sk-test-scope-refusals"}
    assert orchestrate("budget", "set", scope, "0.0000001", *state, cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:03d}"}}\n' for i in range(12)))
    (tmp_path / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\n"
        f"defaults:\n  llm_config: {{model: gpt-4o-mini, max_tokens: 100, base_url: '{provider.url}/v1'}}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
        "  - {name: post, module: Finance, dependencies: [check], prompt_template: 'Post {check.output}.'}\n"
    )
    done = orchestrate(
        "run", "inv.yaml", "--data", "rows.jsonl", *state, "--budget-scope", scope, "--max-rows-parallel", "2",
        "-o", "out", "--json", cwd=tmp_path, env=env,
    )  # fmt: skip
    (run_dir,) = (tmp_path / "out").iterdir()
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == 12
    assert {r["status"] for r in results} == {"budget_exceeded"}, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["counts"].get("failed", 0) == 0 and result["counts"]["budget_exceeded"] == 12
    assert provider.requests == []  # nothing was called
    # Rows stop starting after the first refusal: at most the rows already in flight started.
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "row_started" for e in events) <= 2
    assert "0 failed" in done.stderr and "12 refused" in done.stderr, done.stderr
    not_started = [r for r in results if r["error"].startswith("not started")]
    assert not_started and all("budget_scope procurement-2026-12 has no room" in r["error"] for r in not_started)
    # Nothing completed: exit 1, as when the dataset's own budget refuses every row (not 0).
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"budget_exceeded": 12}, done.stdout
