"""A resumed run keeps its pseudonyms: the same employee gets the same token in every session, so
prompts keep their fingerprints, the files and the trail name a person one way, and restoring works
for answers of both sessions. The key stays out of the run folder (pseudonyms.json holds a salt and
the key's id)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_provider import FakeProvider, Fault
from tests.test_personal_data import WORKFLOW, echo, employees, leaks, without_outputs

TOKEN = re.compile(r"EMPLOYEE_NAME_[0-9a-f]{8}")


def environment(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OPENAI_API_KEY": "sk-test", "CI": "true", **more})
    return env


def orchestrate(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_resumed_dataset_run_gives_each_employee_the_first_sessions_token_and_restores_both(
    tmp_path: Path,
) -> None:
    with FakeProvider(rewrite=echo, latency=0.05) as provider:
        (tmp_path / "letters.yaml").write_text(WORKFLOW % {"url": provider.url, "store": "true"})
        rows = employees()  # 51 rows: row 51 is the employee of row 4 again
        (tmp_path / "employees.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        args = [sys.executable, "-m", "orchestrate", "run", "letters.yaml", "--data", "employees.jsonl"]
        proc = subprocess.Popen(
            [*args, "--max-rows-parallel", "2", "-o", "runs"],
            cwd=tmp_path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        results = tmp_path / "runs"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = list(results.glob("*/results.jsonl")) if results.exists() else []
            if found and len(found[0].read_text().splitlines()) >= 8:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        (run_dir,) = results.iterdir()
        first = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
        first_rows = {r["row"] for r in first if r["status"] == "completed"}
        assert 4 in first_rows and 51 not in first_rows
        asked = len(provider.requests)
        session_one = json.dumps(provider.requests)

        resumed = orchestrate("run", "--resume", str(run_dir), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        session_two = json.dumps(provider.requests[asked:])

    lines = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    prompts = {r["row"]: r["agents"][0]["metadata"]["prompt"] for r in lines if r["status"] == "completed"}
    (token,) = set(TOKEN.findall(prompts[4]))
    assert TOKEN.findall(prompts[51]) == [token]  # the same employee, a session apart: the same token
    assert token in session_one and token in session_two
    assert len({TOKEN.findall(prompts[row])[0] for row in prompts}) == 50
    letters: dict[int, str] = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["status"] == "completed":
            letters[row["row"]] = row["outputs"]["letter"]
    assert sorted(letters) == list(range(1, 52))
    for number, row in enumerate(rows, 1):  # restored, rows of either session
        assert letters[number] == f"Dear {row['employee_name']}, all is well.", number
    kept = json.loads((run_dir / "pseudonyms.json").read_text())
    assert set(kept) == {"kind", "schema_version", "version", "salt", "key_id", "key"}  # kind: 2026-12
    key_file = Path(os.environ["XDG_CONFIG_HOME"]) / "orchestrate" / "pseudonym.key"
    assert kept["key"] == str(key_file) and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for path in sorted(run_dir.rglob("*.json*")):
        docs = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else [json.loads(path.read_text())]
        )
        text = json.dumps(without_outputs(docs), ensure_ascii=False)
        assert leaks(text) == [], path.name
        assert key_file.read_text().strip() not in text, path.name  # the key is not next to the data
    verify = orchestrate("audit", "verify", str(run_dir), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout


SINGLE = """\
name: offer
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, base_url: "%(url)s/v1", max_tokens: 100}
inputs:
  employee_name: {type: string}
data_protection:
  columns: {employee_name: pseudonymize}
  restore_in_outputs: true
outputs:
  letter: "{letter.output}"
agents:
  - name: review
    prompt_template: "Review the offer for {employee_name}"
  - name: letter
    dependencies: [review]
    prompt_template: "Write to {employee_name}: {review.output}"
"""


def test_a_resumed_run_reuses_what_the_first_session_paid_for_and_refuses_another_key(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        (tmp_path / "offer.yaml").write_text(SINGLE % {"url": provider.url})
        provider.script(Fault(), Fault(status=400, body={"error": {"message": "bad request", "type": "invalid"}}))
        args = ["run", "offer.yaml", "--input", "employee_name=Ottilie Brennan-Vasquez", "-o", "runs"]
        failed = orchestrate(*args, cwd=tmp_path)
        assert failed.returncode == 3, failed.stderr  # partially completed
        (run_dir,) = (tmp_path / "runs").iterdir()
        assert len(provider.requests) == 2
        (token,) = set(TOKEN.findall(json.dumps(provider.requests[0])))

        again = ["--input", "employee_name=Ottilie Brennan-Vasquez"]  # personal data: not kept, given again
        other = orchestrate(
            "run", "--resume", str(run_dir), *again, "-o", "again", cwd=tmp_path, ORCHESTRATE_PSEUDONYM_KEY="x" * 40
        )
        assert other.returncode == 2, other.stderr
        (line,) = [line for line in other.stderr.splitlines() if line.strip()]
        assert "pseudonyms.json" in line and "another key" in line
        assert len(provider.requests) == 2  # nothing ran

        resumed = orchestrate("run", "--resume", str(run_dir), *again, "-o", "again", "--format", "json", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert len(provider.requests) == 3  # review reused: its prompt, tokens included, is unchanged
        assert TOKEN.findall(json.dumps(provider.requests[2])) == [token, token]  # the name and the review's answer
        assert "Ottilie" not in json.dumps(provider.requests)
        summary = json.loads(resumed.stdout)["runs"][0]
        assert summary["outputs"]["letter"] == "Dear Ottilie Brennan-Vasquez, all is well."  # restored
        (second,) = (tmp_path / "again").iterdir()
        assert json.loads((second / "pseudonyms.json").read_text()) == json.loads(
            (run_dir / "pseudonyms.json").read_text()
        )
