"""A corpus of broken workflow files, each with exactly one defect, run through `orchestrate validate`.

Every file in `tests/corpus/broken/` starts from a small valid workflow (2-4 agents,
gpt-4o-mini, one of the HR/Finance/Inventory/Compliance/General modules) and breaks
it in one way. `expected.json` gives, per file, the line the loader reports and a
substring of its message; the lines were checked by hand against the files.

Positions worth knowing (the loader was improved after this corpus found them):

* 02_unclosed_quote.yaml -- reported where the quote opens (line 3), not at the
  end of the file where PyYAML noticed it.
* 01_yaml_bad_indentation.yaml -- right line (the under-indented `module:`), but
  PyYAML's message ("did not find expected '-' indicator") does not say
  "indentation"; we pass the parser's words through.
* 28_alias_bomb.yaml -- refused in milliseconds, reported at the innermost anchor
  (aliased nodes share their anchor's position).
* 22-25 (template problems) -- reported at the placeholder itself, also inside a
  block scalar (`prompt_template: |`).
* 30_output_schema_invalid.yaml -- reported at the offending key inside the
  output_schema, with the JSON path of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate.workflow.loader import validate_file

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus" / "broken"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))
FILES = sorted(CORPUS.glob("*.yaml"))


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", "validate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_broken_file_is_reported_at_its_line(path: Path) -> None:
    expected = EXPECTED[path.name]
    line, message = expected["line"], str(expected["message"])
    result = _validate(str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    prefix = f"{path}:{line}:"
    # Each problem is a block: FILE:LINE:COL: message, the source line, a caret, maybe a help line.
    blocks = result.stderr.split("\n\n")
    matching = [block for block in blocks if block.startswith(prefix) and message in block.replace("\n", " ")]
    assert matching, f"no problem starts with {prefix!r} and contains {message!r}:\n{result.stderr}"


def test_expected_json_matches_the_folder() -> None:
    names = {p.name for p in FILES}
    assert len(names) >= 25
    assert names - set(EXPECTED) == set(), "files without an entry in expected.json"
    assert set(EXPECTED) - names == set(), "entries in expected.json without a file"
    for name, entry in EXPECTED.items():
        assert isinstance(entry.get("line"), int) and entry["line"] >= 1, name
        assert isinstance(entry.get("message"), str) and entry["message"], name


def test_json_format_over_the_whole_folder() -> None:
    result = _validate("--format", "json", str(CORPUS))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    files = payload["files"]
    assert sorted(Path(entry["file"]).name for entry in files) == sorted(p.name for p in FILES)
    for entry in files:
        assert entry["valid"] is False, entry
        assert entry["problems"], entry
        expected = EXPECTED[Path(entry["file"]).name]
        assert any(
            p["line"] == expected["line"] and str(expected["message"]) in f"{p['message']}; {p['hint']}"
            for p in entry["problems"]
        ), entry


def test_alias_bomb_is_refused_quickly() -> None:
    bomb = CORPUS / "28_alias_bomb.yaml"
    start = time.monotonic()
    problems = validate_file(bomb)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"the alias bomb took {elapsed:.2f}s to refuse"
    assert any("alias expansion" in p.message for p in problems), problems

    # End to end too: the whole CLI process (interpreter start-up included) must not expand it.
    start = time.monotonic()
    result = _validate(str(bomb))
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    assert "alias expansion" in result.stderr
    assert elapsed < 10.0, f"validate on the alias bomb took {elapsed:.2f}s"


def test_example_workflows_are_valid() -> None:
    result = _validate("workflows/")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
