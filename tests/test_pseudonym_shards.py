"""The shards of one dataset run give a person one token: every shard keys its pseudonyms alike
(a salt made of the workflow, the data file and the shard count, under the shared master key), so
restoring works in each shard and the merged results name each person one way. Copies a platform
starts (``--shard auto``) must share ``ORCHESTRATE_PSEUDONYM_KEY``; shards keyed apart are not merged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fake_provider import FakeProvider
from tests.test_personal_data import WORKFLOW, echo, employees, leaks, without_outputs
from tests.test_pseudonym_resume import environment, orchestrate

TOKEN = re.compile(r"EMPLOYEE_NAME_[0-9a-f]{8}")
PLATFORM = ("JOB_COMPLETION_INDEX", "CLOUD_RUN_TASK_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "ORCHESTRATE_SHARD_INDEX")


def _setup(tmp_path: Path, provider: FakeProvider, n: int) -> list[dict[str, Any]]:
    (tmp_path / "letters.yaml").write_text(WORKFLOW % {"url": provider.url, "store": "true"})
    rows = employees(n)  # the last row is the employee of row 4 again, in the other shard of two
    (tmp_path / "employees.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _shards(tmp_path: Path, runs: list[tuple[list[str], dict[str, str]]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every shard at once, as separate processes, and wait for them all."""
    started = []
    for args, env in runs:
        command = [sys.executable, "-m", "orchestrate", "run", "letters.yaml", "--data", "employees.jsonl", *args]
        base = {k: v for k, v in environment(**env).items() if k not in PLATFORM or k in env}
        started.append(
            (
                command,
                subprocess.Popen(
                    command, cwd=tmp_path, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                ),
            )
        )
    done = []
    for command, proc in started:
        out, err = proc.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return done


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _prompt_tokens(folder: Path) -> dict[int, str]:
    found = {}
    for row in _lines(folder / "rows.jsonl"):
        if row["status"] == "completed":
            (token,) = set(TOKEN.findall(row["agents"][0]["metadata"]["prompt"]))
            found[row["row"]] = token
    return found


def _letters(folder: Path) -> dict[int, str]:
    return {r["row"]: r["outputs"]["letter"] for r in _lines(folder / "results.jsonl") if r["status"] == "completed"}


def test_two_shards_of_one_dataset_give_each_employee_one_token_restore_in_each_and_merge(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        rows = _setup(tmp_path, provider, 20)
        done = _shards(tmp_path, [(["--shard", f"{k}/2", "-o", f"runs{k}", "--quiet"], {}) for k in (1, 2)])
        sent = json.dumps(provider.requests)
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    one, two = (next((tmp_path / f"runs{k}").iterdir()) for k in (1, 2))
    first, second = _prompt_tokens(one), _prompt_tokens(two)
    assert sorted(first) == list(range(1, 22, 2)) and sorted(second) == list(range(2, 21, 2))
    assert second[4] == first[21]  # the same employee in shard 2 (row 4) and shard 1 (row 21): one token
    assert len(set(first.values()) | set(second.values())) == 20  # 20 people, 20 tokens across the shards
    assert leaks(sent) == [] and second[4] in sent
    for folder in (one, two):  # each shard restores its own rows' letters
        for number, letter in _letters(folder).items():
            assert letter == f"Dear {rows[number - 1]['employee_name']}, all is well.", (folder.name, number)
        for path in sorted(folder.rglob("*.json*")):
            docs = _lines(path) if path.suffix == ".jsonl" else [json.loads(path.read_text())]
            assert leaks(json.dumps(without_outputs(docs), ensure_ascii=False)) == [], path
    kept = [json.loads((folder / "pseudonyms.json").read_text()) for folder in (one, two)]
    assert kept[0] == kept[1]  # one salt, one key: the shards are one run

    merged = orchestrate("merge", str(one), str(two), "-o", "merged", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    letters = _letters(tmp_path / "merged")
    assert sorted(letters) == list(range(1, 22))
    assert all(letters[n] == f"Dear {rows[n - 1]['employee_name']}, all is well." for n in letters)
    tokens = _prompt_tokens(tmp_path / "merged")
    assert tokens[4] == tokens[21] and len(set(tokens.values())) == 20


def test_platform_shards_need_the_shared_key_and_with_it_agree_across_machines(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        rows = _setup(tmp_path, provider, 6)
        homes = [tmp_path / f"home{k}" for k in (0, 1)]  # two machines: each its own key file
        auto = ["--shard", "auto", "--shards", "2", "-o", "runs", "--quiet"]
        refused = _shards(
            tmp_path, [(auto, {"JOB_COMPLETION_INDEX": str(k), "XDG_CONFIG_HOME": str(homes[k])}) for k in (0, 1)]
        )
        for proc in refused:
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert "set ORCHESTRATE_PSEUDONYM_KEY to the same secret in every copy" in proc.stderr
        assert not (tmp_path / "runs").exists()  # refused before any folder was made
        assert provider.requests == []

        shared = "a-secret-from-the-platform-store-0123456789"
        done = _shards(
            tmp_path,
            [
                (
                    auto,
                    {
                        "JOB_COMPLETION_INDEX": str(k),
                        "XDG_CONFIG_HOME": str(homes[k]),
                        "ORCHESTRATE_PSEUDONYM_KEY": shared,
                    },
                )
                for k in (0, 1)
            ],
        )
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    one, two = sorted((tmp_path / "runs").iterdir())
    assert one.name.endswith("shard-1-of-2") and two.name.endswith("shard-2-of-2")
    assert _prompt_tokens(two)[4] == _prompt_tokens(one)[7]
    for folder in (one, two):
        for number, letter in _letters(folder).items():
            assert letter == f"Dear {rows[number - 1]['employee_name']}, all is well."
        assert shared not in "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert orchestrate("merge", str(one), str(two), "-o", "merged", cwd=tmp_path).returncode == 0


def test_shards_keyed_apart_are_not_merged(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        _setup(tmp_path, provider, 6)
        done = _shards(
            tmp_path,
            [
                (["--shard", f"{k + 1}/2", "-o", f"runs{k}", "--quiet"], {"XDG_CONFIG_HOME": str(tmp_path / f"h{k}")})
                for k in (0, 1)
            ],
        )
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    one, two = (next((tmp_path / f"runs{k}").iterdir()) for k in (0, 1))
    assert _prompt_tokens(two)[4] != _prompt_tokens(one)[7]  # two machines' key files: two tokens
    merged = orchestrate("merge", str(one), str(two), "-o", "merged", cwd=tmp_path)
    assert merged.returncode == 2 and "Traceback" not in merged.stderr
    assert f"{two}/pseudonyms.json: its pseudonyms were made with another key than {one}'s" in merged.stderr
    assert not (tmp_path / "merged" / "result.json").exists()
