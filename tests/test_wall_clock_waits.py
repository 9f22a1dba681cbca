"""Rate-limit waits are told as the time the run lost (wall-clock), not summed over the calls:
three calls held back side by side for 2 s cost the run 2 s, not 6 s."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestrate.run.waits import WaitClock, wall_seconds
from tests.cli import orchestrate
from tests.fake_provider import FakeProvider, Fault


def test_wait_clock_counts_side_by_side_waits_once_and_sums_them_apart() -> None:
    waits = WaitClock()
    for _ in range(10):  # ten calls that waited side by side for 6 s, ending at 106
        waits.add(106.0, 6.0)
    waits.add(110.0, 2.0)  # one more, after them
    waits.add(110.0, 0.0)  # no wait: not a call that waited
    assert (waits.seconds, waits.call_seconds, waits.calls) == (8.0, 62.0, 11)
    assert wall_seconds([(108.0, 110.0), (100.0, 106.0), (101.0, 105.0)]) == 8.0


def test_a_run_whose_calls_wait_together_on_a_provider_pause_reports_the_wall_clock_wait(tmp_path: Path) -> None:
    rate_limited = {"error": {"message": "Rate limit reached", "type": "requests"}}
    with FakeProvider() as fake:
        # The first call is refused with a 429 (retry-after 1 s); its retry's answer says no request
        # remains for 2 s: the three agents after it all wait for that, side by side.
        fake.script(
            Fault(429, rate_limited, {"retry-after": "1"}),
            Fault(200, None, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}),
        )
        llm = f"{{model: gpt-4o-mini, base_url: '{fake.url}/v1', max_tokens: 20}}"
        after = "".join(
            f"  - name: check_{n}\n    dependencies: [fetch_ledger]\n    prompt_template: check {n}\n    llm_config: {llm}\n"
            for n in ("vendors", "accruals", "payroll")
        )
        (tmp_path / "close.yaml").write_text(
            "name: close\ndefaults: {module: Finance}\nrate_limits:\n  openai: {requests_per_minute: 6000}\n"
            "agents:\n"
            f"  - name: fetch_ledger\n    prompt_template: fetch\n    llm_config: {llm}\n"
            "    max_retries: 2\n    retry: {strategy: constant_delay, base_delay: 0.1}\n" + after
        )
        done = orchestrate("run", "close.yaml", cwd=tmp_path, columns=80, env={"OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    waits = json.loads((run_dir / "result.json").read_text())["rate_limit_waits"]
    assert waits["calls"] == 3, waits
    assert 1.5 <= waits["wall_seconds"] < 3.5, waits
    assert waits["call_seconds"] >= 2.5 * waits["wall_seconds"], waits  # three side by side, summed
    # The closing lines give the wall-clock figure first, the summed one labelled as such.
    line = next(x for x in done.stdout.splitlines() if x.startswith("rate limits:"))
    assert line == (
        f"rate limits: waited {waits['wall_seconds']:.2f}s of the run's time "
        f"({waits['call_seconds']:.2f} call-seconds over 3 calls)"
    ), done.stdout
    html = (run_dir / "report.html").read_text()
    card = re.search(r'<div class="k">Rate-limit waits</div><div class="v">(.*?)</div>', html)
    assert card is not None, html
    assert card.group(1).startswith(f"{waits['wall_seconds']:.2f}s "), card.group(1)
    assert f"({waits['call_seconds']:.2f} call-seconds)" in card.group(1), card.group(1)
