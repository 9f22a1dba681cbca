"""A workflow's ``data_protection:`` policy, applied to its inputs before any provider sees them.

Per input or dataset column (``columns:``):

- ``pseudonymize``: the value becomes a token (``EMPLOYEE_NAME_3f9a2c1b``), the same
  token for the same value throughout the run (rows included), so a model can still
  tell people apart and refer to them;
- ``mask``: all but the first and last four characters hidden (``DE89 **** **** **** 3000``);
- ``drop``: never sent, never stored (``[withheld]``);
- ``keep``: sent as it is, not scanned.

Every other string value (nested in JSON inputs too) is scanned with the pattern
recognisers named in ``detect:`` (`orchestrate.run.recognizers`), and what they find is
pseudonymized the same way (``IBAN_…``, ``EMAIL_…``).

The tokens' originals live only in this object's memory (the per-run *vault*): never
in a log, a trace, a report or the audit trail. With ``restore_in_outputs`` the
declared ``outputs:`` of the workflow get the real values back where they are written
(result.json, results.jsonl, the ``--json`` summary); every other record keeps the tokens.

With ``store_content: false`` (or ``--no-content``), prompts, answers, tool arguments and
undeclared outputs are written as their digest and size (`withheld`) wherever the run
writes them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from orchestrate.run.recognizers import KINDS, PHONE_HINT, Recogniser, combined

__all__ = [
    "ACTIONS",
    "DROPPED",
    "Policy",
    "Protector",
    "evaluation_without_content",
    "not_kept",
    "outcome_without_content",
    "shown",
    "shown_reason",
    "withheld",
]

ACTIONS = ("pseudonymize", "mask", "drop", "keep")
DROPPED = "[withheld]"
_TOKEN = re.compile(r"\b[A-Z][A-Z0-9_]*_[0-9a-f]{8,16}\b")
_LABEL = {"email": "EMAIL", "iban": "IBAN", "credit_card": "CARD", "phone": "PHONE", "national_id": "NATIONAL_ID"}
# The fewest digits a value of each kind has: a text with fewer is not scanned for it.
_MIN_DIGITS = {"email": 0, "iban": 10, "credit_card": 13, "phone": 7, "national_id": 6}
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = b"0123456789"
_ENOUGH_DIGITS = max(_MIN_DIGITS.values())  # more digits than this let every recogniser try
# A text's shape: its digits 2-9 written as 1. No recogniser (nor `PHONE_HINT`) tells 1-9 apart
# (they read \d, [1-9], a 0), so texts of one shape are matched alike (tests/test_protection_shapes.py),
# though a check (IBAN's, Luhn's) may tell them apart: a shape is kept only when nothing matched.
_SHAPE = bytes.maketrans(b"23456789", b"11111111")
_SHAPES_KEPT = 4096  # shapes remembered at most (then forgotten all at once)
_SHAPE_CHARS = 64  # texts longer than this are not remembered (free text rarely repeats its shape)
_PLAIN = frozenset({int, float, bool})  # values no recogniser reads
_UNSEEN: Any = object()  # a kind of text not met before (None: one no recogniser can match)


@dataclass(frozen=True)
class Policy:
    """The ``data_protection:`` mapping of a workflow (or its defaults), checked by the schema."""

    store_content: bool = True
    columns: Mapping[str, str] = field(default_factory=dict)
    detect: tuple[str, ...] = ()
    restore_in_outputs: bool = False
    declared: bool = False  # whether the workflow has a policy at all

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, no_content: bool = False) -> Policy:
        data = data or {}
        detect = tuple(k for k in data.get("detect") or () if k in KINDS)
        return cls(
            store_content=bool(data.get("store_content", True)) and not no_content,
            columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
            detect=detect,
            restore_in_outputs=bool(data.get("restore_in_outputs", False)),
            declared=bool(data) or no_content,
        )

    @property
    def pseudonymizes(self) -> bool:
        """Whether it makes pseudonyms at all (a column to pseudonymize, or anything to detect)."""
        return self.declared and (bool(self.detect) or "pseudonymize" in self.columns.values())

    @property
    def active(self) -> bool:
        return self.declared and (bool(self.columns) or bool(self.detect) or not self.store_content)

    def summary(self) -> dict[str, Any]:
        """The policy as the audit trail records it."""
        return {
            "declared": self.declared,
            "store_content": self.store_content,
            "columns": dict(sorted(self.columns.items())),
            "detect": list(self.detect),
            "restore_in_outputs": self.restore_in_outputs,
        }


def withheld(value: Any) -> dict[str, Any] | None:
    """What is written instead of content that is not kept: its SHA-256 and its size."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        import json

        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return {
        "withheld": True,
        "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        "chars": len(text),
    }


class Protector:
    """Applies a `Policy` within one run (or dataset run); holds the run's vault.

    Args:
        policy: What to do.
        secret: Keys the tokens (random per run unless given, e.g. by a test).
    """

    def __init__(self, policy: Policy, *, secret: bytes | None = None) -> None:
        self.policy = policy
        self._secret = secret or secrets.token_bytes(32)
        self._vault: dict[str, str] = {}  # token -> original; never written anywhere
        self._tokens: dict[tuple[str, str], str] = {}  # (label, original) -> token
        self.counts: dict[str, int] = {}
        self._summary = policy.summary()  # the policy does not change: said once
        self._columns = {name: (action, _label(name)) for name, action in policy.columns.items()}
        # Which recognisers can match a text with n digits, (not) an "@" and (not) a phone's hint
        # (`PHONE_HINT`): one combined pattern each.
        self._patterns: dict[tuple[bool, int, bool], Recogniser | None] = {}
        self._phones = "phone" in policy.detect
        # The shapes (see `_SHAPE`) of short ASCII texts in which no recogniser matched: a dataset
        # column of ids (INV-0000123, INV-0000124...) is then scanned once, not once a row.
        self._clean: set[bytes] = set()

    def __repr__(self) -> str:  # the vault stays out of any repr, log or traceback
        return f"Protector({self.policy.summary()!r}, {len(self._vault)} pseudonyms)"

    # -- applying -----------------------------------------------------------------------------

    def protect_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs (or a row's values) with the policy applied; a new mapping."""
        columns = self._columns
        detect = bool(self.policy.detect)
        out: dict[str, Any] = {}
        for name, value in values.items():
            column = columns.get(name)
            if column is None:
                if not detect or value is None or value.__class__ in _PLAIN:
                    out[name] = value
                elif value.__class__ is str:
                    out[name] = self.scan_text(value)
                else:
                    out[name] = self._scan(value)
                continue
            action = column[0]
            if action == "keep" or value is None:
                out[name] = value
            elif action == "pseudonymize":
                out[name] = self._pseudonym(column[1], str(value))
            elif action == "mask":
                out[name] = self._mask(str(value))
            else:
                self._count("dropped")
                out[name] = DROPPED
        return out

    def quietly(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`protect_values` for a record of values already counted (a dataset run's shared inputs)."""
        counts = dict(self.counts)
        protected = self.protect_values(values)
        self.counts = counts
        return protected

    def rows(self, rows: Iterable[Any], key_column: str | None = None) -> Iterator[Any]:
        """A dataset's rows with the policy applied to their values (and to a protected key)."""
        action = self.policy.columns.get(key_column or "")
        for row in rows:
            values = getattr(row, "values", None)
            if values is None:  # a bad row: only its line and reason travel on
                yield row
                continue
            protected = self.protect_values(values)
            key = row.key
            if key_column and key_column in values and action not in (None, "keep"):
                key = str(protected[key_column]) if action != "drop" else f"row-{row.index + 1}"
            elif key_column and key_column in values and action is None and self.policy.detect:
                key = str(protected[key_column])
            columns = getattr(row, "columns", None)  # read by expectations: protected alike, so tokens compare
            if columns:
                yield replace(row, values=protected, key=key, columns=self.protect_values(columns))
            else:
                yield replace(row, values=protected, key=key)

    def _scan(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scan_text(value)
        if isinstance(value, list):
            return [self._scan(v) for v in value]
        if isinstance(value, dict):
            return {k: self._scan(v) for k, v in value.items()}
        return value

    def scan_text(self, text: str) -> str:
        """`text` with what the `detect:` recognisers find replaced by pseudonyms."""
        shape = None
        if text.isascii():
            encoded = text.encode()
            if len(encoded) <= _SHAPE_CHARS:
                shape = encoded.translate(_SHAPE)
                if shape in self._clean:
                    return text
            digits = min(len(encoded) - len(encoded.translate(None, _ASCII_DIGITS)), _ENOUGH_DIGITS)
        else:  # \d: any script's digits
            digits = min(len(_DIGIT.findall(text)), _ENOUGH_DIGITS)
        phone = self._phones and digits >= _MIN_DIGITS["phone"] and PHONE_HINT.search(text) is not None
        key = ("@" in text, digits, phone)
        found = self._patterns.get(key, _UNSEEN)
        if found is _UNSEEN:
            has_at = key[0]
            kinds = tuple(
                k
                for k in self.policy.detect
                if digits >= _MIN_DIGITS[k] and (has_at or k != "email") and (phone or k != "phone")
            )
            found = self._patterns[key] = combined(kinds, guard=digits >= _MIN_DIGITS["iban"]) if kinds else None
        first = None if found is None else found.pattern.search(text)
        if found is None or first is None:
            if shape is not None:
                if len(self._clean) >= _SHAPES_KEPT:
                    self._clean.clear()
                self._clean.add(shape)
            return text
        parts: list[str] = []
        at = 0
        for start, end, kind in found.spans(text, first):
            if kind is None:  # an IBAN not asked for: kept, and not read as a phone either
                continue
            parts.append(text[at:start])
            parts.append(self._pseudonym(_LABEL[kind], text[start:end]))
            self._count(f"detected_{kind}")
            at = end
        if not parts:
            return text
        parts.append(text[at:])
        return "".join(parts)

    def _pseudonym(self, label: str, value: str) -> str:
        token = self._tokens.get((label, value))
        counts = self.counts
        if token is not None:
            counts["pseudonymized"] = counts.get("pseudonymized", 0) + 1
            return token
        mac = hmac.new(self._secret, f"{label}\0{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        size = 8
        token = f"{label}_{mac[:size]}"
        while token in self._vault and self._vault[token] != value:  # a collision: a longer token
            size += 2
            token = f"{label}_{mac[:size]}"
        self._vault[token] = value
        self._tokens[(label, value)] = token
        self._count("pseudonymized")
        return token

    def _mask(self, value: str) -> str:
        self._count("masked")
        compact = re.sub(r"\s", "", value)
        if len(compact) >= 12:
            return f"{compact[:4]} **** **** **** {compact[-4:]}"
        return "*" * max(0, len(compact) - 2) + compact[-2:] if len(compact) > 4 else "****"

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- restoring and writing ----------------------------------------------------------------

    def restore(self, value: Any) -> Any:
        """`value` with every pseudonym of this run put back (strings, lists and mappings)."""
        if isinstance(value, str):
            if not self._vault or "_" not in value:
                return value
            return _TOKEN.sub(lambda m: self._vault.get(m.group(), m.group()), value)
        if isinstance(value, list):
            return [self.restore(v) for v in value]
        if isinstance(value, dict):
            return {k: self.restore(v) for k, v in value.items()}
        return value

    def outputs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The declared outputs as they are written: restored when the policy says so."""
        return self.restore(dict(values)) if self.policy.restore_in_outputs else dict(values)

    def result_document(self, document: dict[str, Any]) -> dict[str, Any]:
        """A result.json (or rows.jsonl) document as this policy lets it be written: a new one."""
        document = dict(document)
        if "outputs" in document and isinstance(document["outputs"], dict):
            document["outputs"] = self.outputs(document["outputs"])
        repeat = document.get("repeat")
        if isinstance(repeat, dict) and repeat.get("runs"):  # --repeat K: each later try's answers, alike
            document["repeat"] = {**repeat, "runs": [self._try(run) for run in repeat["runs"]]}
        document["data_protection"] = {**self._summary, "applied": dict(sorted(self.counts.items()))}
        if self.policy.store_content:
            return document
        document["content_kept"] = False
        document["inputs"] = {k: withheld(v) for k, v in (document.get("inputs") or {}).items()}
        document["agents"] = [_agent_without_content(a) for a in document.get("agents") or ()]
        if isinstance(document.get("expectations"), dict):  # what was expected and what came: content
            document["expectations"] = evaluation_without_content(document["expectations"])
        # A row's columns that expectations read (rows.jsonl): not kept; `orchestrate eval` reads
        # them from the data file again (its --data).
        document.pop("columns", None)
        return document

    def _try(self, run: Mapping[str, Any]) -> dict[str, Any]:
        run = dict(run)
        if isinstance(run.get("outputs"), dict):
            run["outputs"] = self.outputs(run["outputs"])
        if not self.policy.store_content:
            run["agents"] = [_agent_without_content(a) for a in run.get("agents") or ()]
        return run

    def summary(self) -> dict[str, Any]:
        """The policy and what it did so far (counts only), for the audit trail."""
        return {**self._summary, "applied": dict(sorted(self.counts.items()))}


def _agent_without_content(row: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(row)
    output = row.get("output")
    if isinstance(output, dict):
        row["output"] = {"withheld": True, **{k: withheld(v) for k, v in output.items()}}
    meta = dict(row.get("metadata") or {})
    for key in ("prompt", "system_prompt", "arguments"):
        if meta.get(key) is not None:
            meta[key] = withheld(meta[key])
    if meta.get("tool_log"):
        meta["tool_log"] = [
            {"tool": t.get("tool"), "arguments": withheld(t.get("arguments")), "error": t.get("error")}
            for t in meta["tool_log"]
        ]
    if meta.get("items"):  # a foreach agent's items: their outputs are content too
        meta["items"] = [
            {k: (withheld(v) if k in ("output", "input", "text") else v) for k, v in item.items()}
            if isinstance(item, dict)
            else withheld(item)
            for item in meta["items"]
        ]
    if meta.get("expectations"):
        meta["expectations"] = [outcome_without_content(o) for o in meta["expectations"]]
    row["metadata"] = meta
    return row


def evaluation_without_content(document: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation document (result.json's ``expectations``, a results.jsonl line's, an
    ``orchestrate eval`` case's) with each outcome's expected and got withheld, and its reason
    where the reason quotes them: they quote the answers (and the row's columns)."""
    return {**document, "outcomes": [outcome_without_content(o) for o in document.get("outcomes") or ()]}


# The kinds whose reason may quote content: a needle, the instance a schema refused, the numbers
# compared, an any/all's children's reasons. A rubric's is the judge's own words.
_QUOTING = frozenset({"contains", "icontains", "not_contains", "json_schema", "approx", "any", "all"})
# ... and when the outcome is an error: a CEL error may quote a value (an error of the other kinds
# names a path, a column or an agent, not a value).
_QUOTING_ERRORS = frozenset({"cel", "any", "all"})
# Kinds whose expected and got are figures of the workflow and the run's meters, not content: a
# limit and what was spent (or took), a judge's threshold and score.
_FIGURES = frozenset({"max_cost", "max_latency", "rubric"})


def _reason_quotes(outcome: Mapping[str, Any]) -> bool:
    kind = outcome.get("kind")
    if kind == "rubric":
        return outcome.get("score") is not None  # the judge answered: its reason reads the answer
    return kind in (_QUOTING_ERRORS if outcome.get("status") == "error" else _QUOTING)


def outcome_without_content(outcome: Any) -> Any:
    """One expectation outcome as a run that keeps no content writes or shows it (idempotent)."""
    if not isinstance(outcome, Mapping):
        return outcome
    changed = (
        {}
        if outcome.get("kind") in _FIGURES
        else {
            k: withheld(outcome[k])
            for k in ("expected", "got")
            if outcome.get(k) is not None and not not_kept(outcome[k])
        }
    )
    reason = outcome.get("reason")
    if isinstance(reason, str) and reason and _reason_quotes(outcome):
        changed["reason"] = withheld(reason)
    return {**outcome, **changed} if changed else dict(outcome)


def not_kept(value: Any) -> bool:
    """Whether `value` is what was written instead of content (`withheld`)."""
    return isinstance(value, Mapping) and value.get("withheld") is True


def shown(value: Any, width: int = 60) -> str:
    """A value as a line of text shows it: its repr (cut at `width`), or, for content not kept,
    ``[content not kept: N chars]``."""
    if not_kept(value):
        return f"[content not kept: {value.get('chars')} chars]"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def shown_reason(value: Any) -> str:
    """An outcome's reason as text: itself, or ``[reason not kept: N chars]``."""
    if not_kept(value):
        return f"[reason not kept: {value.get('chars')} chars]"
    return "" if value is None else str(value)


@lru_cache(maxsize=256)
def _label(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "VALUE"


def without_content(document: dict[str, Any]) -> dict[str, Any]:
    """An events.jsonl record with the content it may carry withheld (answers, messages)."""
    data = document.get("data")
    if not isinstance(data, dict):
        return document
    changed: dict[str, Any] = {k: withheld(data[k]) for k in ("output", "message") if data.get(k) is not None}
    if data.get("outcomes"):  # expectations_checked: what was expected and what came are content
        changed["outcomes"] = [outcome_without_content(o) for o in data["outcomes"]]
    if not changed:
        return document
    return {**document, "data": {**data, **changed}}
