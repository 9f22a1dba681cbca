"""Journal lines: orjson with json's output where they differ, and the batch's group commit."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrate.jsonline import json_line
from orchestrate.observe.journal import GroupCommit, JsonLines


@dataclass
class _Point:
    x: int


def test_a_journal_line_reads_back_as_json_would_have_written_it() -> None:
    moment = datetime(2026, 11, 26, 1, 2, 3, 456000, tzinfo=UTC)
    value = {
        "text": "Überweisung 5 €",
        "n": 3,
        "f": 0.1,
        "ok": True,
        "none": None,
        "when": moment,
        "obj": _Point(1),
        "list": [1, "a"],
    }
    line = json_line(value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    expected = json.loads(json.dumps(value, default=str))  # datetimes and objects as str(), as before
    assert json.loads(line) == expected
    assert "Überweisung".encode() in line  # UTF-8, not \u escapes


def test_what_orjson_refuses_is_written_by_json_and_non_finite_numbers_become_null() -> None:
    assert json.loads(json_line({"cost": float("nan"), "inf": [float("inf")]})) == {"cost": None, "inf": [None]}
    big = 2**70
    assert json.loads(json_line({"big": big})) == {"big": big}
    assert json.loads(json_line({1: "int key"})) == {"1": "int key"}
    line = json_line({"text": "lone \ud800 surrogate"})
    assert line.isascii() and json.loads(line) == {"text": "lone \ud800 surrogate"}


def test_a_group_commit_writes_a_turns_lines_at_its_end_calls_first(tmp_path: Path) -> None:
    commit = GroupCommit()
    calls = JsonLines(tmp_path / "calls.jsonl", commit=commit)
    results = JsonLines(tmp_path / "results.jsonl", commit=commit)
    written: list[str] = []
    for journal in (calls, results):  # note the order in which the files are written

        def write(data: bytes, journal: JsonLines = journal, inner=journal._write) -> None:  # type: ignore[no-untyped-def]
            written.append(journal.path.name)
            inner(data)

        journal._write = write  # type: ignore[method-assign]

    async def turn() -> None:
        results.write({"key": "a", "status": "completed"})  # made first, written after the calls
        calls.write({"row": "a", "cost": 0.5})
        assert (tmp_path / "results.jsonl").read_text() == ""  # held until the turn ends
        await asyncio.sleep(0)  # the turn ends: both written, one write each
        assert (tmp_path / "calls.jsonl").read_text() == '{"row":"a","cost":0.5}\n'
        assert (tmp_path / "results.jsonl").read_text() == '{"key":"a","status":"completed"}\n'
        results.write({"key": "b", "status": "failed"})  # pending when the journal closes

    asyncio.run(turn())
    assert written[:2] == ["calls.jsonl", "results.jsonl"]  # one write each, calls first
    results.close()  # closing writes what is pending
    calls.close()
    assert [json.loads(x)["key"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == ["a", "b"]


def test_outside_an_event_loop_a_grouped_journal_writes_at_once(tmp_path: Path) -> None:
    commit = GroupCommit()
    journal = JsonLines(tmp_path / "rows.jsonl", commit=commit)
    journal.write({"key": "x"})
    assert (tmp_path / "rows.jsonl").read_text() == '{"key":"x"}\n'
    journal.close()
