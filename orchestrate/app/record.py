"""How a run was started, kept in its folder (``invocation.json``), so that a resume is the same run.

`orchestrate run --resume RUN_DIR` alone continues a run with exactly what started it:
the workflow file, inputs, simulated or real, data file and key, shard, shared state,
budget scope and limits. A flag given with ``--resume`` that would change the run
(its inputs, simulated or real, the data, key or shard, the workflow file, the state)
is refused, naming each difference; the budget may only be raised, and the raise is
recorded. Other flags (how the run is shown, reports, approvals, parallelism) apply
to the resumed session only. The workflow's content may change as far as fingerprints
allow: a changed agent runs again, the others are reused.

Inputs a workflow's ``data_protection:`` policy protects (pseudonymized, masked, dropped,
or holding what its recognisers find; every input when it keeps no content) are not
kept: ``invocation.json`` names them under ``withheld_inputs`` with a check keyed like
the run's pseudonyms, and a resume must be given them again (``--input NAME=VALUE``),
each checked against what the run was started with. The run needs the originals: its
restored outputs are made from them, and nothing in the folder turns a token back.

Rows read from a pipe or standard input cannot be read again: the folder keeps them
(`DATA_COPY`) and a resume reads them there; where no copy is kept (a data-protection
policy, an older folder), ``--data FILE`` given with ``--resume`` supplies them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrate.app.invocation import DatasetSpec, Invocation
from orchestrate.errors import UserInputError
from orchestrate.fsutil import atomic_write_text
from orchestrate.run.resume import refuse_special_files

__all__ = ["DATA_COPY", "INVOCATION_FILE", "file_digest", "read_record", "record_invocation", "resumed"]

INVOCATION_FILE = "invocation.json"
DATA_COPY = "data.copy"  # the rows of a dataset run read from a pipe or stdin, kept for its resume
MAX_RECORD_BYTES = 1024 * 1024
# What makes the run this run: given again with --resume, each must be what was recorded.
_FIXED = (
    "inputs",
    "simulate",
    "sim_latency",
    "sim_failure_rate",
    "seed",
    "answers",
    "state",
    "state_namespace",
    "budget_scope",
    "residency",
    "provider_batch",
)
_FIXED_DATA = ("data", "key", "shard")
# Kept from the first session unless given again (they shape the run, and may be changed).
_CARRIED = (
    "output_dir",
    "max_parallel",
    "cache",
    "cache_ttl",
    "batch_fallback",
    "batch_poll_max",
    "batch_window",
    "max_threads",
    "no_content",
    "protected_inputs",
    "audit_sink",
    "repeat",
    "min_pass_rate",
)
_CARRIED_DATA = ("skip_invalid_rows", "max_rows_parallel", "engine", "address", "workers")


def file_digest(path: Path) -> str | None:
    """The SHA-256 of a file's bytes (None for standard input or a file that cannot be read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe was read once, already; a device never ends
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()
    except OSError:
        return None


def _scrubbed_state(url: str | None) -> str | None:
    """A state URL as kept on disk: no password (a resume takes it from REDIS_PASSWORD or --state)."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def record_invocation(
    run_dir: Path,
    invocation: Invocation,
    workflow: Path,
    *,
    data_copy: Path | None = None,
    withheld: Mapping[str, str] | None = None,
) -> None:
    """Write ``invocation.json`` into `run_dir`: how this run was started (and any later budget raise).

    Args:
        data_copy: The folder's copy of the rows when they came from a pipe or standard input
            (`DATA_COPY`): recorded by name, with its digest, for a resume to read.
        withheld: Inputs the data-protection policy protects, by name, with their keyed checks:
            kept as the checks only (see the module's docstring).
    """
    inv = invocation
    document: dict[str, Any] = {
        "kind": "invocation",
        "schema_version": 1,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workflow": str(workflow),
        "workflow_path": str(workflow.resolve()),
        "workflow_digest": file_digest(workflow),
        "budget": inv.budget,
        "changes": list(invocation.history),
    }
    for name in (*_FIXED, *_CARRIED):
        document[name] = _plain(getattr(inv, name))
    if withheld:
        document["inputs"] = {k: v for k, v in (document["inputs"] or {}).items() if k not in withheld}
        document["withheld_inputs"] = dict(sorted(withheld.items()))
    document["state"] = _scrubbed_state(inv.state)
    if isinstance(inv.cache, str) and "://" in inv.cache:
        document["cache"] = _scrubbed_state(inv.cache)
    if inv.dataset is not None:
        spec = inv.dataset
        data: dict[str, Any] = {name: _plain(getattr(spec, name)) for name in (*_FIXED_DATA, *_CARRIED_DATA)}
        if data_copy is not None:
            data["data_copy"] = data_copy.name
            data["data_digest"] = file_digest(data_copy)
        else:
            data["data_digest"] = file_digest(Path(spec.data)) if spec.data != "-" else None
        document["dataset"] = data
    atomic_write_text(run_dir / INVOCATION_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The folder's ``invocation.json``, or None for a folder made before runs recorded one."""
    path = run_dir / INVOCATION_FILE
    if not path.exists():
        return None
    from orchestrate.finite import loads_strict
    from orchestrate.fsutil import TooLargeError, read_bytes_capped

    try:
        document = loads_strict(read_bytes_capped(path, MAX_RECORD_BYTES, special=False).decode("utf-8"))
    except TooLargeError:
        raise UserInputError(f"{path}: over {MAX_RECORD_BYTES:,} bytes: not a file orchestrate wrote") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserInputError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != "invocation":
        raise UserInputError(f"{path}: not an invocation record (no kind: invocation)")
    return document


def resumed(given: Invocation, explicit: set[str]) -> Invocation:
    """The invocation that continues ``given.resume``: what was recorded, with the flags given again.

    Args:
        given: The invocation built from this command's flags (its `resume` names the folder).
        explicit: The `Invocation` (and `DatasetSpec`) field names this command gave explicitly.

    Returns:
        The invocation to run; its `history` holds the changes to record (a budget raised).

    Raises:
        UserInputError: Naming every flag that would change the run (exit 2).
    """
    assert given.resume is not None
    if not given.resume.is_dir():
        raise UserInputError(f"{given.resume}: no such run folder (--resume takes a run folder under runs/)")
    refuse_special_files(given.resume)
    record = read_record(given.resume)
    if record is None:
        if not given.workflows:
            raise UserInputError(
                f"{given.resume}: no {INVOCATION_FILE} (a folder from an older version): "
                "give the workflow file and its flags too: orchestrate run WORKFLOW --resume RUN_DIR ..."
            )
        return given
    problems: list[str] = []
    recorded_path = Path(str(record.get("workflow_path") or record.get("workflow")))
    workflow = Path(str(record.get("workflow")))
    if given.workflows:
        if given.workflows[0].resolve() != recorded_path:
            problems.append(f"workflow {given.workflows[0]} (the run is of {record.get('workflow')})")
        workflow = given.workflows[0]
    elif not recorded_path.exists() and not workflow.exists():
        raise UserInputError(f"{given.resume}: its workflow {record.get('workflow')} no longer exists")
    elif not workflow.exists():
        workflow = recorded_path
    values: dict[str, Any] = {}
    for name in _FIXED:
        was = record.get(name)
        if name == "inputs" and record.get("withheld_inputs"):
            values[name] = _inputs_again(given, explicit, was or {}, record["withheld_inputs"], problems)
        elif name in explicit:
            now = _plain(getattr(given, name))
            if name == "state":
                now = _scrubbed_state(now)
            if now != was:
                problems.append(f"{_flag(name)} {_shown(now)} (the run has {_shown(was)})")
            values[name] = getattr(given, name)
        else:
            values[name] = Path(was) if name == "answers" and was else was
    for name in _CARRIED:
        if name in explicit or name not in record:
            values[name] = getattr(given, name)
        else:
            was = record[name]
            values[name] = Path(was) if name == "output_dir" and was is not None else was
    changes: list[dict[str, Any]] = list(record.get("changes") or [])
    budget = record.get("budget")
    if "budget" in explicit and given.budget != budget:
        if budget is not None and (given.budget is None or given.budget < budget):
            problems.append(f"--budget {_shown(given.budget)} (the run has ${budget}; a budget may only be raised)")
        else:
            changes.append({"at": datetime.now(UTC).isoformat(timespec="seconds"), "budget": [budget, given.budget]})
            budget = given.budget
    dataset = given.dataset
    recorded_data = record.get("dataset")
    if recorded_data is not None:
        spec: dict[str, Any] = {}
        piped = _read_once(recorded_data)
        for name in _FIXED_DATA:
            was = recorded_data.get(name)
            if name in explicit and dataset is not None:
                now = _plain(getattr(dataset, name))
                if name == "data" and piped:  # rows from a pipe or stdin: given again, they are the rows
                    was = now
                elif now != was:
                    problems.append(f"{_flag(name)} {_shown(now)} (the run has {_shown(was)})")
            spec[name] = tuple(was) if name == "shard" and was else was
        for name in _CARRIED_DATA:
            spec[name] = getattr(dataset, name) if name in explicit and dataset is not None else recorded_data.get(name)
        if piped and not ("data" in explicit and dataset is not None):
            spec["data_copy"] = _data_copy(given.resume, recorded_data)
        dataset = DatasetSpec(**spec, progress_every=dataset.progress_every if dataset is not None else 10.0)
    elif dataset is not None:
        problems.append(f"--data {dataset.data} (the run is a single run, not a dataset run)")
    if problems:
        raise UserInputError(
            f"{given.resume}: --resume continues the same run; these flags would change it: "
            + "; ".join(problems)
            + f". Run 'orchestrate run --resume {given.resume}' alone, or start a new run"
        )
    return dataclasses.replace(given, workflows=[workflow], budget=budget, dataset=dataset, history=changes, **values)


def _inputs_again(
    given: Invocation, explicit: set[str], was: dict[str, Any], withheld: dict[str, str], problems: list[str]
) -> dict[str, Any]:
    """The inputs of a resume whose run withheld some (personal data): given again, and checked.

    Raises:
        UserInputError: They were not given again, or the run's pseudonyms were made with another key.
    """
    assert given.resume is not None
    names = sorted(withheld)
    if "inputs" not in explicit or any(name not in given.inputs for name in names):
        missing = [name for name in names if name not in given.inputs]
        raise UserInputError(
            f"{given.resume}: its input(s) {', '.join(missing)} are protected (the workflow's data_protection "
            "policy, or --no-content) and not kept in the run folder: give them again: orchestrate run --resume "
            f"{given.resume} " + " ".join(f"--input {name}=..." for name in missing)
        )
    from orchestrate.run.pseudonym_key import carried_secret, input_check

    secret = carried_secret(given.resume)
    if secret is None:
        raise UserInputError(f"{given.resume}: its pseudonyms.json is gone: the inputs given again cannot be checked")
    for name in names:
        if input_check(secret, name, given.inputs[name]) != withheld[name]:
            problems.append(f"--input {name}=(not shown) (the run was started with another value)")
    rest = {k: v for k, v in given.inputs.items() if k not in withheld}
    if rest != was:
        problems.append(f"--input {_shown(rest)} (the run has {_shown(was)} besides {', '.join(names)})")
    return dict(given.inputs)


def _read_once(recorded: dict[str, Any]) -> bool:
    """Whether a dataset run's rows came from a pipe or standard input, which cannot be read again.

    Records from before `DATA_COPY` have no ``data_copy``: their rows were read once when the data is
    ``-``, or had no digest (only a regular file has one) and are not a regular file now.
    """
    data = recorded.get("data")
    if recorded.get("data_copy") or data == "-":
        return True
    if recorded.get("data_digest") is not None or not isinstance(data, str):
        return False
    try:
        return not stat.S_ISREG(os.stat(data).st_mode)
    except OSError:
        return True


def _data_copy(run_dir: Path, recorded: dict[str, Any]) -> Path:
    """The folder's copy of rows read from a pipe or stdin.

    Raises:
        UserInputError: It keeps none (a data-protection policy, or a folder from before copies
            were kept), or it is gone: the rows must be given again.
    """
    name = recorded.get("data_copy")
    data = recorded.get("data")
    source = "standard input" if data == "-" else f"{data} (a pipe)"
    again = f"give them again: orchestrate run --resume {run_dir} --data FILE"
    if not isinstance(name, str) or not name:
        raise UserInputError(
            f"{run_dir}: its rows were read from {source} and the folder keeps no copy of them "
            f"(none is kept under a data_protection policy, or by older versions); {again}"
        )
    path = run_dir / Path(name).name
    if not path.is_file():
        raise UserInputError(f"{path}: the copy of the rows read from {source} is gone; {again}")
    return path


_FLAGS = {
    "inputs": "--input",
    "simulate": "--simulate",
    "budget_scope": "--budget-scope",
    "state_namespace": "--state-namespace",
    "provider_batch": "--provider-batch",
    "sim_latency": "--sim-latency",
    "sim_failure_rate": "--sim-failure-rate",
}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value)
