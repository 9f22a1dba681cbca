"""`--shard auto`: the shard a platform gives this process, and the run folder that belongs to it.

Platforms that run N copies of one command tell each copy its index:

============================  ===================================  ===========================================
platform                      index (0-based)                      count
============================  ===================================  ===========================================
any (and GitHub Actions)      ``ORCHESTRATE_SHARD_INDEX``           ``ORCHESTRATE_SHARD_COUNT`` or ``--shards``
Kubernetes Indexed Job        ``JOB_COMPLETION_INDEX``              ``--shards N`` (the Job's ``completions``)
Cloud Run job                 ``CLOUD_RUN_TASK_INDEX``              ``CLOUD_RUN_TASK_COUNT``
AWS Batch array job           ``AWS_BATCH_JOB_ARRAY_INDEX``         ``AWS_BATCH_JOB_ARRAY_SIZE`` or ``--shards``
============================  ===================================  ===========================================

A GitHub Actions matrix sets no variable of its own: a workflow passes
``ORCHESTRATE_SHARD_INDEX: ${{ strategy.job-index }}`` and
``ORCHESTRATE_SHARD_COUNT: ${{ strategy.job-total }}`` (see
``examples/github-actions-matrix.yml``). Index i of N is our shard K = i + 1.

The run folder of an automatic shard is named after the workflow, the
dataset's digest and the shard (``invoices-3f2a9c1b7d4e-shard-3-of-8``), so a
copy the platform restarts after a crash finds its own folder and resumes it:
the rows done are skipped, the others run (the platform's retry is our
failover).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrate.errors import UserInputError

__all__ = [
    "PLATFORM_VARIABLES",
    "PlatformShard",
    "dataset_digest",
    "dataset_sha256",
    "shard_from_environment",
    "shard_run_dir",
]

# (index variable, count variable or None, platform), in the order they are looked for.
PLATFORM_VARIABLES: tuple[tuple[str, str | None, str], ...] = (
    ("ORCHESTRATE_SHARD_INDEX", "ORCHESTRATE_SHARD_COUNT", "ORCHESTRATE_SHARD_INDEX (a CI matrix or any platform)"),
    ("JOB_COMPLETION_INDEX", None, "Kubernetes Indexed Job"),
    ("CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "Cloud Run job"),
    ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE", "AWS Batch array job"),
)


@dataclass(frozen=True, slots=True)
class PlatformShard:
    """This process's shard: K of N (K counted from 1), and where the numbers came from."""

    index: int
    count: int
    source: str

    @property
    def pair(self) -> tuple[int, int]:
        return self.index, self.count

    def describe(self) -> str:
        return f"shard {self.index}/{self.count} from {self.source}"


def _number(name: str, text: str, *, least: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UserInputError(f"--shard auto: {name}={text!r} is not a whole number") from None
    if value < least:
        raise UserInputError(f"--shard auto: {name}={value} must be at least {least}")
    return value


def shard_from_environment(environ: Mapping[str, str], shards: int | None = None) -> PlatformShard:
    """The shard the platform's variables name; `shards` is ``--shards N`` (the count where none is set).

    Raises:
        UserInputError: When no platform variable is set, a count is missing,
            the numbers disagree, or the index is not below the count.
    """
    for index_name, count_name, platform in PLATFORM_VARIABLES:
        raw = environ.get(index_name)
        if raw is None or not raw.strip():
            continue
        index = _number(index_name, raw, least=0)
        count_text = environ.get(count_name) if count_name else None
        count = _number(count_name, count_text, least=1) if count_name and count_text and count_text.strip() else None
        if count is not None and shards is not None and count != shards:
            raise UserInputError(f"--shard auto: --shards {shards} disagrees with {count_name}={count}")
        count = count if count is not None else shards
        if count is None:
            wanted = f"{count_name} or --shards N" if count_name else "--shards N (the Job's completions)"
            raise UserInputError(
                f"--shard auto: {index_name}={index} is set ({platform}) but not the count: pass {wanted}"
            )
        if index >= count:
            raise UserInputError(f"--shard auto: {index_name}={index} must be below the count {count}")
        source = f"{index_name}={index} ({platform})"
        return PlatformShard(index + 1, count, source)
    names = ", ".join(name for name, _, _ in PLATFORM_VARIABLES)
    raise UserInputError(
        f"--shard auto: no shard index in the environment (looked for {names}); "
        "run it as a Kubernetes Indexed Job, a Cloud Run or AWS Batch array job, or set "
        "ORCHESTRATE_SHARD_INDEX and ORCHESTRATE_SHARD_COUNT (in a GitHub Actions matrix: "
        "${{ strategy.job-index }} and ${{ strategy.job-total }}), or pass --shard K/N"
    )


def dataset_digest(path: Path) -> str:
    """The first 12 hex digits of the SHA-256 of a dataset file's bytes."""
    return dataset_sha256(path)[:12]


def dataset_sha256(path: Path) -> str:
    """The SHA-256 of a dataset file's bytes, in hex."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    return digest.hexdigest()


def shard_run_dir(output_dir: Path, workflow_name: str, digest: str, shard: tuple[int, int]) -> tuple[Path, bool]:
    """The run folder of `shard` of a dataset, made if new; and whether an earlier start left rows to resume."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", workflow_name).strip("-") or "workflow"
    folder = output_dir / f"{slug}-{digest}-shard-{shard[0]}-of-{shard[1]}"
    started = (folder / "results.jsonl").exists() or (folder / "events.jsonl").exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{output_dir}: cannot create a run folder: {exc.strerror or exc}") from None
    return folder, started


def resolve_shard(
    text: str | None, shards: int | None, environ: Mapping[str, str]
) -> tuple[tuple[int, int] | None, str | None]:
    """``--shard K/N`` or ``--shard auto`` (with ``--shards N``): the pair, and where an automatic one came from."""
    if shards is not None and (text or "").strip().lower() != "auto":
        raise UserInputError("--shards N goes with --shard auto (--shard K/N names the count itself)")
    if text is None:
        return None, None
    if text.strip().lower() == "auto":
        found = shard_from_environment(environ, shards)
        return found.pair, found.describe()
    from orchestrate.workflow.dataset import parse_shard

    return parse_shard(text), None
