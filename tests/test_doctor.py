"""`orchestrate doctor`: one line a check, every problem with its fix, exit 1 when something is wrong.

Endpoints are real loopback servers speaking the providers' wire formats
(`tests/fake_provider.py`), the state a real redis-server; keys never appear.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.cli import orchestrate
from tests.fake_provider import FakeProvider, Fault
from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)

KEY = "sk-doctor-secret-0123456789"

OPENAI_WORKFLOW = """\
name: doc_check
agents:
  - name: draft
    module: Finance
    prompt_template: Write a note.
    llm_config: {model: gpt-4o-mini}
"""

ANTHROPIC_WORKFLOW = """\
name: doc_claude
agents:
  - name: draft
    module: Finance
    prompt_template: Write a note.
    llm_config: {model: claude-haiku-4-5}
"""


def _write(folder: Path, text: str, name: str = "flow.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _lines(out: str) -> dict[str, str]:
    """Each check's line by its name (the status word first)."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "PROBLEM", "warning", "skipped"):
            found.setdefault(parts[1], line)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_missing_key_is_a_problem_with_its_fix_and_exit_1(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    done = orchestrate("doctor", "flow.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = _lines(done.stdout)
    assert lines["python"].startswith("ok")
    assert lines["workflow"].startswith("ok") and "flow.yaml: valid, 1 model call" in lines["workflow"]
    assert lines["openai"].startswith("PROBLEM") and "OPENAI_API_KEY is not set" in lines["openai"]
    assert "fix: export OPENAI_API_KEY=" in done.stdout and "--simulate" in done.stdout
    assert "prices" in lines and "gpt-4o-mini" in lines["prices"]
    assert done.stdout.rstrip().endswith("1 problem")


def test_a_key_the_endpoint_accepts_is_ok_and_never_printed(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    with FakeProvider() as fake:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{fake.url}/v1"}
        done = orchestrate("doctor", "flow.yaml", cwd=tmp_path, env=env)
        asked = list(fake.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    assert "OPENAI_API_KEY is set" in done.stdout
    assert f"{fake.url}/v1/models answers (HTTP 200" in done.stdout
    assert [r["path"] for r in asked] == ["/v1/models"]  # one cheap request, nothing billed
    assert asked[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert "ready:" in done.stdout


def test_a_refused_key_is_a_problem_naming_the_url(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    with FakeProvider() as fake:
        fake.script(Fault(401, {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}))
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{fake.url}/v1"}
        done = orchestrate("doctor", "flow.yaml", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert KEY not in done.stdout + done.stderr  # even when the server echoes it
    endpoint = next(line for line in done.stdout.splitlines() if "openai endpoint" in line)
    assert endpoint.startswith("PROBLEM") and f"{fake.url}/v1/models refused the key" in endpoint
    assert "fix: check OPENAI_API_KEY" in done.stdout


def test_an_endpoint_that_does_not_answer_is_a_problem_naming_its_url(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    url = f"http://127.0.0.1:{_free_port()}/v1"
    done = orchestrate(
        "doctor", "flow.yaml", "--timeout", "2", cwd=tmp_path, env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url}
    )
    assert done.returncode == 1
    endpoint = next(line for line in done.stdout.splitlines() if "openai endpoint" in line)
    assert endpoint.startswith("PROBLEM") and f"connection to {url}/models failed" in endpoint


def test_anthropic_is_asked_for_its_model_list_with_its_own_header(tmp_path: Path) -> None:
    _write(tmp_path, ANTHROPIC_WORKFLOW)
    with FakeProvider() as fake:
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url}
        done = orchestrate("doctor", "flow.yaml", cwd=tmp_path, env=env)
        asked = list(fake.requests)
    assert done.returncode == 0, done.stdout
    assert f"{fake.url}/v1/models answers (HTTP 200" in done.stdout
    assert asked[0]["headers"]["x-api-key"] == KEY


def test_offline_asks_no_server(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    with FakeProvider() as fake:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{fake.url}/v1"}
        done = orchestrate("doctor", "flow.yaml", "--offline", cwd=tmp_path, env=env)
        asked = list(fake.requests)
    assert done.returncode == 0
    assert asked == []
    assert any(line.startswith("skipped") and "openai endpoint" in line for line in done.stdout.splitlines())


def test_the_shared_state_is_pinged(tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    done = orchestrate("doctor", "--state", redis_server.url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert _lines(done.stdout)["state"].startswith("ok") and f"{redis_server.url} answers" in done.stdout
    gone = f"redis://127.0.0.1:{_free_port()}/0"
    done = orchestrate("doctor", "--timeout", "2", cwd=tmp_path, env={"ORCHESTRATE_STATE_URL": gone})
    assert done.returncode == 1
    assert _lines(done.stdout)["state"].startswith("PROBLEM") and gone in _lines(done.stdout)["state"]
    assert "fix: start Redis there" in done.stdout


def test_a_run_folder_that_cannot_be_made_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    done = orchestrate("doctor", "--output-dir", "afile/runs", cwd=tmp_path)
    assert done.returncode == 1
    assert _lines(done.stdout)["run"].startswith("PROBLEM") and "afile is not a folder" in done.stdout
    ok = orchestrate("doctor", cwd=tmp_path)
    assert ok.returncode == 0 and "runs/ will be made in ./ (writable)" in ok.stdout


def test_an_invalid_workflow_points_at_validate(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW.replace("module:", "modul:"))
    done = orchestrate("doctor", "flow.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert _lines(done.stdout)["workflow"].startswith("PROBLEM") and "flow.yaml:4:5:" in done.stdout
    assert "fix: orchestrate validate flow.yaml" in done.stdout


def test_json_is_the_envelope_with_one_entry_a_check(tmp_path: Path) -> None:
    _write(tmp_path, OPENAI_WORKFLOW)
    done = orchestrate("doctor", "flow.yaml", "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["kind"] == "doctor" and document["schema_version"] == 1 and document["ok"] is False
    names = [c["name"] for c in document["checks"]]
    assert names[:3] == ["python", "orchestrate", "workflow"]
    key = next(c for c in document["checks"] if c["name"] == "openai key")
    assert key["status"] == "problem" and "OPENAI_API_KEY" in key["fix"]
    assert json.loads(orchestrate("doctor", "--json", cwd=tmp_path).stdout)["ok"] is True
