"""With limits kept in Redis (`--state redis://...`), a run held back says which limit binds
and at what rate from its first line: `paced by openai 60/min (rate_limits.openai): ...`."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli import orchestrate
from tests.fake_provider import FakeProvider
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)


def test_a_run_paced_by_a_shared_limit_names_its_rate_from_the_first_line(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811  (the fixture)
) -> None:
    with FakeProvider() as fake:
        llm = f"{{model: gpt-4o-mini, base_url: '{fake.url}/v1', max_tokens: 20}}"
        agents = "".join(
            f"  - name: check_{n}\n    prompt_template: check {n}\n    llm_config: {llm}\n"
            for n in ("vendors", "accruals", "payroll", "assets")
        )
        (tmp_path / "close.yaml").write_text(
            "name: close\ndefaults: {module: Finance}\nrate_limits:\n  openai: {requests_per_minute: 60}\n"
            "agents:\n" + agents
        )
        done = orchestrate(
            "run",
            "close.yaml",
            "--state",
            redis_server.url,
            cwd=tmp_path,
            columns=80,
            env={"OPENAI_API_KEY": "sk-test"},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    paced = [line for line in done.stderr.splitlines() if " paced by " in line]
    assert paced, done.stderr
    assert all(" paced by openai 60/min (rate_limits.openai): " in line for line in paced), done.stderr
    # Only the calls the shared limit held back are said to have waited (one a second: three of four),
    # not every call for its round trip to Redis.
    waited = [line for line in done.stderr.splitlines() if " rate limited: waited " in line]
    assert len(waited) == 3, done.stderr
    assert all(re.search(r"waited \d+\.\d\ds for openai 60/min \(rate_limits\.openai\)", line) for line in waited), (
        done.stderr
    )
