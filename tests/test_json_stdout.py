"""`orchestrate run --json`: stdout holds the JSON document alone, whatever user code prints.

A code step or a tool that calls ``print()``, writes to file descriptor 1 or starts a
subprocess that does, must not put a byte before or after the document: CI reads it with
``jq``. What they printed goes to stderr instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import orchestrate

STEPS = """\
import os
import subprocess
import sys


def loud(vendor):
    print(f"checking {vendor}")
    os.write(1, b"raw bytes on fd 1\\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    return {"vendor": vendor, "ok": True}


def balance(account):
    print(f"tool looked up {account}")
    return {"account": account, "balance": 7}
"""

WORKFLOW = """\
name: noisy
cost_budget: 1.0
inputs:
  vendor: {type: string, default: Acme}
defaults:
  module: Finance
  llm_config: {model: gpt-4o-mini, max_tokens: 50}
agents:
  - name: check
    function: "noisy_steps:loud"
    arguments: {vendor: "{vendor}"}
  - name: ask
    dependencies: [check]
    prompt_template: "Balance for {vendor}?"
    tools:
      - function: "noisy_steps:balance"
        description: balance of an account
        parameters: {type: object, properties: {account: {type: string}}}
"""


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "noisy_steps.py").write_text(STEPS)
    (tmp_path / "noisy.yaml").write_text(WORKFLOW)
    return tmp_path / "noisy.yaml"


def test_a_code_steps_print_goes_to_stderr_and_stdout_stays_json(tmp_path: Path) -> None:
    path = _folder(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "--json", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)["runs"][0]  # the whole of stdout is one JSON document
    assert document["status"] == "completed"
    for line in ("checking Acme", "raw bytes on fd 1", "from a child process", "tool looked up"):
        assert line in done.stderr and line not in done.stdout


def test_a_dataset_run_with_json_keeps_stdout_json(tmp_path: Path) -> None:
    path = _folder(tmp_path)
    data = tmp_path / "vendors.jsonl"
    data.write_text('{"vendor": "Acme"}\n{"vendor": "Bolt"}\n')
    done = orchestrate("run", str(path), "--simulate", "--data", str(data), "--json", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["rows"] == 2
    assert "checking Acme" in done.stderr and "checking Bolt" in done.stderr


def test_without_json_a_print_stays_on_stdout(tmp_path: Path) -> None:
    path = _folder(tmp_path)
    done = orchestrate("run", str(path), "--simulate", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "checking Acme" in done.stdout  # nothing is moved when no JSON is promised
