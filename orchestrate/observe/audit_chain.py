"""The audit trail's chain: how a record is sealed, and how a trail is checked.

Each line of ``audit.jsonl`` is one JSON object. Its *body* is every key but
``hash`` and ``mac``, written canonically (sorted keys, compact, UTF-8); the
body holds ``seq`` (0, 1, 2, ...) and ``prev``, the previous record's hash
(64 zeros for the first). Then::

    hash = SHA-256(body)
    mac  = HMAC-SHA-256(key, body)        # only with ORCHESTRATE_AUDIT_KEY

so a record's mac covers the record and, through ``prev``, the chain before it.
Without a key anyone can recompute the hashes after an edit: such a chain shows
accidents (a torn write, a stray edit, a lost line), not a deliberate forgery,
and `verify` says so. Whoever holds the key can check a keyed chain; nobody
without it can forge one. A truncated tail leaves a valid chain behind, so the
head (the last record's ``seq`` and ``hash``) is also kept elsewhere: in
result.json, in report.html, and, with ``--audit-sink``, in an append-only file
outside the run folder.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from orchestrate.fsutil import open_regular

__all__ = [
    "AUDIT_FILE",
    "GENESIS",
    "KEY_ENV",
    "ChainReport",
    "audit_key",
    "canonical",
    "digest",
    "key_id",
    "seal",
    "sink_heads",
    "verify_trail",
]

AUDIT_FILE = "audit.jsonl"
KEY_ENV = "ORCHESTRATE_AUDIT_KEY"
GENESIS = "0" * 64
_SORTED = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
# A new SHA-256 copied from an empty one: OpenSSL 3 then skips looking the algorithm up
# (~0.1 us of the ~1 us a short digest costs through hashlib).
_EMPTY = hashlib.sha256()


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash and mac are taken over: sorted keys, compact JSON, UTF-8."""
    return orjson.dumps(body, option=_SORTED, default=str)


def digest(value: Any) -> str:
    """``sha256:<hex>`` of a text (its UTF-8) or of any other value's canonical JSON."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    else:
        data = orjson.dumps(value, option=_SORTED, default=str)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def audit_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key from ORCHESTRATE_AUDIT_KEY (its UTF-8 bytes), or None when unset or empty."""
    value = (os.environ if env is None else env).get(KEY_ENV, "")
    return value.encode("utf-8") if value else None


def key_id(key: bytes) -> str:
    """A short name for a key, written in the trail so that a wrong key is told from a forgery."""
    return hashlib.sha256(b"orchestrate-audit-key-id\0" + key).hexdigest()[:16]


def seal(body: Mapping[str, Any], key: bytes | None, *, presorted: bool = False) -> tuple[bytes, str]:
    """The record's line (newline included) and its hash.

    Args:
        presorted: Every mapping in `body` already has its keys in sorted order, so its plain
            JSON is its canonical JSON (the same bytes, made without sorting: a record's hot path).
    """
    data = _dumps(body, default=str) if presorted else _dumps(body, option=_SORTED, default=str)
    plain = _EMPTY.copy()
    plain.update(data)
    sealed = plain.hexdigest()
    if key is None:
        return data[:-1] + f',"hash":"{sealed}"}}\n'.encode(), sealed
    pads = _PADS.get(key) or _pads(key)  # `mac`, inline: a record's hot path
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return data[:-1] + f',"hash":"{sealed}","mac":"{outer.hexdigest()}"}}\n'.encode(), sealed


_PADS: dict[bytes, tuple[Any, Any]] = {}


def _interpreters_sha256() -> Callable[..., Any]:
    """The interpreter's own SHA-256 (``_sha2`` from Python 3.12, ``_sha256`` before), else OpenSSL's.

    The HMAC's outer hash takes one block (the outer key's state, then 32 bytes): the
    interpreter finishes it in ~0.6 us against OpenSSL's ~0.9 through hashlib, whose
    set-up weighs more than the block. Longer data hashes faster through OpenSSL.
    """
    for name in ("_sha2", "_sha256"):
        try:
            return cast(Callable[..., Any], importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


def _pads(key: bytes) -> tuple[Any, Any]:
    """The key's inner and outer hashes (RFC 2104), made once per key."""
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    pads = _PADS[key] = (
        hashlib.sha256(bytes(b ^ 0x36 for b in block)),
        _interpreters_sha256()(bytes(b ^ 0x5C for b in block)),
    )
    return pads


def mac(key: bytes, data: bytes) -> str:
    """HMAC-SHA-256 of `data` (RFC 2104), hex; the same as `hmac.new(key, data, "sha256")`.

    The keyed inner and outer hashes are made once per key and copied for each record:
    OpenSSL 3 sets up a new HMAC in about 15 us, a record's whole budget.
    """
    pads = _PADS.get(key) or _pads(key)
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


@dataclass
class ChainReport:
    """What checking one trail found."""

    path: Path
    records: int = 0
    head: str | None = None
    keyed: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.problems


def verify_trail(
    run_dir: Path,
    *,
    key: bytes | None,
    heads: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> ChainReport:
    """Check the chain of ``run_dir/audit.jsonl`` line by line, then against each known head.

    Args:
        run_dir: A run or dataset-run folder.
        key: The HMAC key; None checks the hashes only (and says that a keyed trail was not checked).
        heads: (where, {"seq", "hash"}) pairs kept outside the trail: a head says the
            trail had at least that record, with that hash.
    """
    path = run_dir / AUDIT_FILE
    report = ChainReport(path)
    if not path.is_file():
        report.problems.append(f"{path}: no audit trail")
        return report
    lines: list[tuple[str, dict[str, Any], Any]] = []  # (where, body, stored hash), in file order
    trail_key = None
    with open_regular(path) as handle:  # a pipe put in its place since the check above: refused
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not raw.strip():
                report.problems.append(f"{where}: an empty line in the trail")
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                torn = not raw.endswith(b"\n")
                report.problems.append(
                    f"{where}: {'a torn last line (the write was cut short)' if torn else 'not JSON'}"
                )
                continue
            if not isinstance(record, dict):
                report.problems.append(f"{where}: not a record")
                continue
            stored_hash, stored_mac = record.pop("hash", None), record.pop("mac", None)
            data = canonical(record)
            seq = record.get("seq")
            if not lines:
                first = record.get("data")
                trail_key = first.get("key_id") if isinstance(first, dict) else None
                report.keyed = trail_key is not None
            if hashlib.sha256(data).hexdigest() != stored_hash:
                report.problems.append(f"{where}: record {seq} was changed (its hash does not match its content)")
            elif report.keyed and key is not None and trail_key == key_id(key):
                expected_mac = hmac.new(key, data, hashlib.sha256).hexdigest()
                if not isinstance(stored_mac, str) or not hmac.compare_digest(stored_mac, expected_mac):
                    report.problems.append(f"{where}: record {seq} fails its HMAC (changed and re-hashed)")
            elif not report.keyed and stored_mac is not None:
                report.problems.append(f"{where}: record {seq} carries a mac in a trail begun without a key")
            lines.append((where, record, stored_hash))
    report.problems.extend(_order_problems(lines))
    hashes: dict[int, str] = {}
    for _, record, stored_hash in lines:
        if isinstance(record.get("seq"), int) and isinstance(stored_hash, str):
            hashes.setdefault(record["seq"], stored_hash)
    report.records = len(lines)
    prev = lines[-1][2] if lines else None
    report.head = prev if isinstance(prev, str) else None
    if report.keyed and key is None:
        report.notes.append(f"keyed trail: set {KEY_ENV} to check its HMACs (only the hashes were checked)")
    elif report.keyed and key is not None and trail_key != key_id(key):
        report.problems.append(f"{path}: the trail was sealed with another key than {KEY_ENV} (key id {trail_key})")
    elif not report.keyed:
        report.notes.append(
            f"unkeyed trail (no {KEY_ENV} when it was written): the hash chain detects accidents, "
            "not deliberate edits by someone who re-hashes the records"
        )
    for where, head in heads:
        seq, sealed = head.get("seq"), head.get("hash")
        if not isinstance(seq, int):
            continue
        if seq not in hashes:
            report.problems.append(
                f"{path}: truncated: {where} records a head at record {seq}, "
                f"the trail ends at record {max(hashes) if hashes else 'none'}"
            )
        elif hashes[seq] != sealed:
            report.problems.append(f"{path}: record {seq} differs from the head kept in {where}")
    return report


def _order_problems(lines: list[tuple[str, dict[str, Any], Any]]) -> list[str]:
    """Records out of their places: each named by its line, as deleted, inserted or reordered."""
    problems: list[str] = []
    where_of: dict[int, list[str]] = {}
    first_hash: dict[int, Any] = {}
    for where, record, stored_hash in lines:
        seq = record.get("seq")
        if isinstance(seq, int):
            where_of.setdefault(seq, []).append(where.rsplit(":", 1)[1])
            first_hash.setdefault(seq, stored_hash)
    expected = 0
    for where, record, _ in lines:
        seq = record.get("seq")
        if not isinstance(seq, int) or seq < 0:
            problems.append(f"{where}: a record without a sequence number (inserted)")
            continue
        if len(where_of[seq]) > 1:
            if where.rsplit(":", 1)[1] == where_of[seq][0]:
                problems.append(f"{where}: record {seq} appears on lines {', '.join(where_of[seq])} (one was inserted)")
        elif seq != expected:
            gone = [s for s in range(expected, seq) if s not in where_of]
            if seq > expected and len(gone) == seq - expected:
                name = f"record {gone[0]}" if len(gone) == 1 else f"records {gone[0]}-{gone[-1]}"
                problems.append(f"{where}: {name} missing before record {seq} (deleted)")
            else:
                problems.append(f"{where}: record {seq} where record {expected} belongs (reordered)")
        before = GENESIS if seq == 0 else first_hash.get(seq - 1)
        if before is not None and record.get("prev") != before and len(where_of[seq]) == 1:
            problems.append(f"{where}: record {seq} does not follow record {seq - 1} (replaced or inserted)")
        if seq >= expected:
            expected = seq + 1
    return problems


def sink_heads(sink: Path, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The heads an append-only sink file holds for run `run_id` (the last one is the furthest)."""
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        with open(sink, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("run_id") == run_id:
                    found.append((f"{sink}:{number}", line))
    except OSError:
        return []
    return found
