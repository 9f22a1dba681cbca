"""The run folder's record of provider batches: ``batches.json``.

Every batch a run submits is written down the moment the provider accepts it
(batch id, file id, custom ids and what each stands for, when), and again as
its status changes, atomically. A batch is *open* until its results have been
read into the run. ``--resume RUN_DIR`` hands the open batches of RUN_DIR to
the batch layer, which collects their answers instead of submitting (and
paying for) the same requests again; ``orchestrate show`` lists them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import atomic_write_text, read_regular_text
from orchestrate.run.events import Event, EventType

__all__ = ["FILE_NAME", "BatchLedger", "batch_summaries", "open_batches", "read_batches"]

FILE_NAME = "batches.json"
SCHEMA_VERSION = 1
_KINDS = (EventType.BATCH_SUBMITTED, EventType.BATCH_STATUS, EventType.BATCH_FINISHED)


def read_batches(run_dir: Path) -> list[dict[str, Any]]:
    """Every batch recorded in a run folder (none when it has no batches.json)."""
    path = run_dir / FILE_NAME
    if not path.exists():
        return []
    try:
        document = json.loads(read_regular_text(path))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except ValueError as exc:  # not UTF-8
        raise UserInputError(f"{path}: not valid JSON: {exc}") from exc
    batches = document.get("batches") if isinstance(document, dict) else None
    if not isinstance(batches, dict) or not all(
        isinstance(b, dict)
        and isinstance(b.get("batch_id"), str)
        and isinstance(b.get("provider"), str)
        and isinstance(b.get("model"), str)
        and isinstance(b.get("custom_ids"), dict)
        for b in batches.values()
    ):
        raise UserInputError(
            f"{path}: not a batch record (expected batches by id, each with batch_id, provider, model and custom_ids)"
        )
    return sorted(batches.values(), key=lambda b: (b.get("submitted_at") or 0, b["batch_id"]))


def batch_summaries(run_dir: Path) -> list[dict[str, Any]]:
    """Each recorded batch without its custom ids (their number instead), open ones marked."""
    return [
        {
            **{k: v for k, v in b.items() if k != "custom_ids"},
            "requests": len(b["custom_ids"]),
            "open": not b.get("collected"),
        }
        for b in read_batches(run_dir)
    ]


def open_batches(run_dir: Path) -> list[dict[str, Any]]:
    """The batches of a run folder whose results were never read into it."""
    return [b for b in read_batches(run_dir) if not b.get("collected")]


class BatchLedger:
    """A sink that keeps one run folder's batches.json current.

    Args:
        run_dir: The run folder.
        workflow_id: Only this workflow's batch events are recorded (None: every batch event,
            as for a dataset's rows, which share one folder).
        carried: Open batches of the run being resumed, recorded here too so that
            a later resume of this run still finds them.
    """

    def __init__(self, run_dir: Path, workflow_id: str | None, carried: list[dict[str, Any]] | None = None) -> None:
        self.path = run_dir / FILE_NAME
        self.workflow_id = workflow_id
        self.batches: dict[str, dict[str, Any]] = {b["batch_id"]: {**b, "carried_over": True} for b in carried or ()}
        if self.batches:
            self._write()

    def __call__(self, event: Event) -> None:
        if event.type not in _KINDS or (self.workflow_id is not None and event.workflow_id != self.workflow_id):
            return
        data = dict(event.data)
        data.pop("requests", None)
        previous = self.batches.get(data["batch_id"], {})
        record = {"carried_over": False, **previous, **data}
        record["custom_ids"] = {**previous.get("custom_ids", {}), **data.get("custom_ids", {})}
        record["collected"] = event.type is EventType.BATCH_FINISHED
        self.batches[data["batch_id"]] = record
        self._write()

    @property
    def still_open(self) -> list[dict[str, Any]]:
        return [b for b in self.batches.values() if not b.get("collected")]

    def _write(self) -> None:
        document = {"kind": "batches", "schema_version": SCHEMA_VERSION, "batches": self.batches}
        atomic_write_text(self.path, json.dumps(document, indent=1, sort_keys=True) + "\n")
