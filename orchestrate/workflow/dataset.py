"""Datasets: the rows a batch runs a workflow over, read one at a time.

A dataset is JSON Lines (one object of input values a line; blank lines are
skipped) or CSV (a header row, then one row of values a line, converted to
the declared input types, an empty cell counting as not given). Each row's
values are laid over the values shared by every row (``--input``), checked
against the workflow's declared inputs and bound, exactly as a single run's
``--input`` values are. Reading is streaming: a 100,000-row file is never held
in memory, only the row being read (and, to refuse duplicates, a 64-bit digest
of each key).

A row's identity is its ``key``: the value of the ``--key`` column, or else its
line number and a digest of its content (``12-3fa9c1d2``), so a resumed batch
recognises its rows and an edited row counts as a new one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrate.errors import UserInputError
from orchestrate.jsonline import MAX_DEPTH, nests_too_deep, read_line
from orchestrate.workflow.loader import check_inputs
from orchestrate.workflow.models import AgentStatus, Workflow, WorkflowStatus

__all__ = [
    "MAX_LINE_BYTES",
    "BadRow",
    "Dataset",
    "DatasetCheck",
    "Row",
    "instantiate",
    "parse_shard",
    "spool_stdin",
]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(slots=True)
class Row:
    """One valid row: where it is, who it is, and its bound input values."""

    index: int  # 0-based among the data rows of the file (header and blank lines not counted)
    line: int  # 1-based line of the file where the row starts
    key: str
    values: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)  # read only by expectations ({row.COLUMN})


@dataclass(slots=True)
class BadRow:
    """A row that cannot run, and why."""

    index: int
    line: int
    column: int
    key: str | None
    reason: str


@dataclass
class DatasetCheck:
    """What a full pass over a dataset found."""

    rows: int = 0
    valid: int = 0
    bad: list[BadRow] = field(default_factory=list)  # the first `limit` of them
    bad_count: int = 0


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) as a pair; a row belongs to shard K when its index modulo N is K-1."""
    k, sep, n = text.partition("/")
    try:
        shard, shards = int(k), int(n)
    except ValueError:
        raise UserInputError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not sep or shards < 1 or not 1 <= shard <= shards:
        raise UserInputError(f"--shard {text!r}: K must be between 1 and N, e.g. 2/4")
    return shard, shards


def spool_stdin(stream: IO[bytes] | None = None) -> Path:
    """Copy standard input to a temporary file (a dataset is read twice: checked, then run)."""
    source = stream if stream is not None else sys.stdin.buffer
    handle = tempfile.NamedTemporaryFile(prefix="orchestrate-data-", suffix=".data", delete=False)  # noqa: SIM115
    with handle:
        shutil.copyfileobj(source, handle)
    return Path(handle.name)


class Dataset:
    """The rows of a JSONL or CSV file, bound to a workflow's inputs.

    Args:
        path: The file.
        workflow_name: For error messages.
        declared: The workflow's declared inputs (name -> {type, default, ...}).
        shared: Values every row gets unless it has its own (``--input``).
        key: The column holding each row's identity, or None for line + digest.
        shard: ``(K, N)``: only rows whose index modulo N is K-1.
        label: How the file is named in messages (``-`` for standard input).
        columns: Columns that are not inputs but that expectations read (``{row.expected}``):
            kept on each row (`Row.columns`) rather than refused as unknown inputs.
    """

    def __init__(
        self,
        path: Path,
        *,
        workflow_name: str,
        declared: Mapping[str, Mapping[str, Any]],
        shared: Mapping[str, Any] | None = None,
        key: str | None = None,
        shard: tuple[int, int] | None = None,
        label: str | None = None,
        columns: Iterable[str] = (),
    ) -> None:
        self.path = Path(path)
        self.columns = frozenset(columns) - set(declared)
        self.workflow_name = workflow_name
        self.declared = {k: dict(v) for k, v in declared.items()}
        self.shared = dict(shared or {})
        self.key = key
        self.shard = shard
        self.label = label or str(path)
        self.format = self._sniff()
        self._repeats: dict[int, BadRow] | None = None  # line -> its duplicate-key error, once checked

    def _sniff(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return "jsonl"
        if suffix in (".csv", ".tsv"):
            return "csv"
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        except OSError as exc:
            raise UserInputError(f"{self.label}: cannot read dataset: {exc.strerror or exc}") from None
        return "jsonl" if head.startswith(b"{") else "csv"

    # -- reading ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Row | BadRow]:
        """Every row of this shard, valid or not, in file order."""
        raw = self._jsonl() if self.format == "jsonl" else self._csv()
        # Finding a repeated key means remembering every key seen. After a full `check()`
        # the repeats are known by line, so a run's pass remembers nothing per row.
        repeats = self._repeats
        seen: dict[int, int] | None = {} if repeats is None else None
        k, n = self.shard or (1, 1)
        for index, line, values, problem in raw:
            if index % n != k - 1:
                continue
            if problem is not None:
                yield BadRow(index, line, problem[0], None, problem[1])
                continue
            if repeats is not None and line in repeats:
                yield repeats[line]
                continue
            yield self._bind(index, line, values, seen)

    def _bind(self, index: int, line: int, values: dict[str, Any], seen: dict[int, int] | None) -> Row | BadRow:
        if self.key is not None:
            if values.get(self.key) in (None, ""):
                return BadRow(index, line, 1, None, f"no value in key column {self.key!r}")
            key = str(values[self.key])
            if self.key not in self.declared:
                values = {k: v for k, v in values.items() if k != self.key}
        else:
            blob = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
            key = f"{line}-{hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()}"
        if seen is not None:
            digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
            first = seen.get(digest)
            if first is not None:
                return BadRow(index, line, 1, key, f"duplicate key {key!r} (first at line {first})")
            seen[digest] = line
        extra: dict[str, Any] = {}
        if self.columns:
            extra = {k: values[k] for k in self.columns if k in values}
            if extra:
                values = {k: v for k, v in values.items() if k not in extra}
        try:
            bound = check_inputs(self.workflow_name, self.declared, {**self.shared, **values})
        except UserInputError as exc:
            return BadRow(index, line, 1, key, str(exc))
        return Row(index, line, key, bound, extra)

    def _open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise UserInputError(f"{self.label}: cannot read dataset: {exc.strerror or exc}") from None

    def _jsonl(self) -> Iterator[tuple[int, int, dict[str, Any], tuple[int, str] | None]]:
        index = 0
        with self._open() as handle:
            line = 0
            for text in _lines(handle, self.label):
                line += 1
                if not text.strip():
                    continue
                try:
                    value = read_line(text)  # orjson, with json for what it refuses
                except ValueError as exc:
                    yield index, line, {}, (getattr(exc, "colno", 1), f"not valid JSON: {getattr(exc, 'msg', exc)}")
                else:
                    if isinstance(value, dict) and nests_too_deep(value):
                        yield index, line, {}, (1, f"nests deeper than {MAX_DEPTH} levels")
                    elif isinstance(value, dict) and ("\\ud" in text or "\\uD" in text) and _lone_surrogate(value):
                        # JSON lets \ud800 stand alone; it is not a character, and could not be
                        # written to a report, a journal or a request body.
                        yield index, line, {}, (1, "holds a lone UTF-16 surrogate escape (such as \\ud800): not text")
                    elif isinstance(value, dict):
                        yield index, line, value, None
                    else:
                        yield (
                            index,
                            line,
                            {},
                            (1, f"expected a JSON object of input values, got {type(value).__name__}"),
                        )
                index += 1

    def _csv(self) -> Iterator[tuple[int, int, dict[str, Any], tuple[int, str] | None]]:
        with self._open() as handle:
            delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
            feed = _LineFeed(handle, self.label)
            reader = csv.reader(feed, delimiter=delimiter, strict=True)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise UserInputError(f"{self.label}:{feed.first_line}:1: not valid CSV: {exc}") from None
            if header is None:
                return
            names = [name.strip() for name in header]
            for position, name in enumerate(names, 1):
                if not name:
                    raise UserInputError(f"{self.label}:1:{position}: empty column name in the header")
                if names.index(name) != position - 1:
                    raise UserInputError(f"{self.label}:1:{position}: column {name!r} appears twice in the header")
            for position, name in enumerate(names, 1):
                if name not in self.declared and name not in self.columns and name != self.key:
                    known = ", ".join(sorted(self.declared)) or "none"
                    raise UserInputError(
                        f"{self.label}:1:{position}: column {name!r} is not an input of workflow "
                        f"{self.workflow_name!r} (inputs: {known}) and no expectation reads it"
                    )
            index = 0
            while True:
                feed.new_record()
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    # A syntax error (a stray quote, a cell over the csv module's field limit) spoils
                    # only its record: it is a bad row at the line where the record began, and reading
                    # goes on at the next line (a stray quote may have swallowed the lines after it).
                    line = feed.resync()
                    yield index, line, {}, (1, f"not valid CSV: {exc}; reading went on at line {line + 1}")
                    index += 1
                    continue
                line = feed.first_line
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(names):
                    yield index, line, {}, (1, f"{len(cells)} values, but the header has {len(names)} columns")
                else:
                    yield index, line, {n: c for n, c in zip(names, cells) if c != ""}, None
                index += 1

    # -- checking -----------------------------------------------------------------------------

    def check(self, *, limit: int = 20) -> DatasetCheck:
        """One pass over every row (of this shard): counts, and the first `limit` bad rows."""
        result = DatasetCheck()
        repeats: dict[int, BadRow] = {}
        self._repeats = None
        for item in self:
            result.rows += 1
            if isinstance(item, BadRow):
                result.bad_count += 1
                if len(result.bad) < limit:
                    result.bad.append(item)
                if item.reason.startswith("duplicate key "):
                    repeats[item.line] = item
            else:
                result.valid += 1
        self._repeats = repeats
        return result

    def describe(self, bad: BadRow) -> str:
        """``FILE:LINE:COL: row KEY: reason`` for a bad row."""
        who = f"row {bad.key!r}: " if bad.key is not None else ""
        return f"{self.label}:{bad.line}:{bad.column}: {who}{bad.reason}"


# The longest line a dataset may hold. A row of input values is a few kilobytes; a line past this
# is refused where it is (FILE:LINE) after reading at most this much of it, so a 1 GB line cannot
# fill memory.
MAX_LINE_BYTES = 8 << 20


def _lines(handle: IO[bytes], label: str, limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a UTF-8 file (a byte-order mark dropped), undecodable bytes a located error.

    Raises:
        UserInputError: A line is longer than `limit` bytes or is not UTF-8 (FILE:LINE:COL).
    """
    line = 0
    while True:
        raw = handle.readline(limit + 1)
        if not raw:
            return
        line += 1
        if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
            raise UserInputError(
                f"{label}:{line}:1: line longer than {limit:,} bytes (a dataset row must be shorter); nothing was run"
            )
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserInputError(f"{label}:{line}:{exc.start + 1}: not UTF-8 text ({exc.reason})") from None


class _LineFeed:
    """A CSV file's lines for `csv.reader`, numbered, with the lines of a bad record given back.

    `csv.reader` forgets where a record began; this remembers the lines of the record being read,
    so after a syntax error the lines after its first are read again as new records.
    """

    def __init__(self, handle: IO[bytes], label: str) -> None:
        self._source = _lines(handle, label)
        self._label = label
        self._number = 0  # of the last line read from the file
        self._again: list[tuple[int, str]] = []  # lines to read again, the next one last
        self._record: list[tuple[int, str]] = []  # the lines of the record being read
        self._size = 0
        self.first_line = 1

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self._again:
            number, text = self._again.pop()
        else:
            text = next(self._source)
            self._number += 1
            number = self._number
        if not self._record:
            self.first_line = number
        self._record.append((number, text))
        self._size += len(text)
        if self._size > MAX_LINE_BYTES:
            raise UserInputError(
                f"{self._label}:{self.first_line}:1: a CSV record longer than {MAX_LINE_BYTES:,} bytes "
                "(an unclosed quote?); nothing was run"
            )
        return text

    def new_record(self) -> None:
        """The next line read begins a record."""
        self._record.clear()
        self._size = 0

    def resync(self) -> int:
        """After a syntax error: the bad record's first line; its other lines are read again."""
        first = self._record[0][0] if self._record else self._number
        self._again.extend(reversed(self._record[1:]))
        self.new_record()
        return first


def instantiate(template: Workflow, values: dict[str, Any], workflow_id: str) -> Workflow:
    """A fresh run of `template` with `values` bound: shallow copies, the definitions shared."""
    workflow = _shallow(template)
    workflow.agents = agents = [_shallow(agent) for agent in template.agents]
    for agent in agents:
        agent.status, agent.result = AgentStatus.PENDING, None
    workflow.__post_init__()
    workflow.id = workflow_id
    workflow.input_values = values
    workflow.status = WorkflowStatus.PENDING
    workflow.total_cost = 0.0
    workflow.started_at = workflow.completed_at = None
    workflow.error = None
    workflow.output_values = {}
    workflow.evaluation = None
    return workflow


def _shallow(obj: Any) -> Any:
    """`copy.copy` of a plain dataclass instance, without its generic (and, per row, costly) machinery."""
    twin = object.__new__(type(obj))
    twin.__dict__.update(obj.__dict__)
    return twin


def _lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a string that cannot be encoded as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False
