"""What one run is asked to do: the workflow files, their inputs, the data, the money and the machinery.

An `Invocation` is what `orchestrate run` builds from its flags and what the Python
API builds from keyword arguments; `execute_workflows` and `execute_dataset` carry it out.
It holds no objects that live only in this process, so it can be written into the
run folder and read back by ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PROGRESS", "DatasetSpec", "Invocation"]

PROGRESS = ("live", "plain", "quiet", "none")


@dataclass
class DatasetSpec:
    """A run over every row of a data file (``--data``).

    Attributes:
        data: A JSONL or CSV file, or ``-`` for standard input.
        key: The column that identifies a row (default: its line and a digest).
        skip_invalid_rows: Record invalid rows as invalid and run the rest.
        max_rows_parallel: Rows in flight at most (default: enough to keep the calls going).
        shard: ``(K, N)``: run only the rows whose index modulo N is K-1.
        shard_source: Where `shard` came from with ``--shard auto`` (the platform's variables); the
            run folder is then the shard's own, resumed by a restarted copy.
        progress_every: Seconds between two progress lines without a terminal.
        engine: ``local`` (this process) or ``ray`` (a pool of Ray workers; needs a Redis `state`).
        address: With ``ray``: the cluster (``ray://HOST:10001``, ``auto``); None starts a local one.
        workers: With ``ray``: workers at once (default 2).
        data_copy: The copy of the rows that a run folder keeps when `data` was a pipe or standard
            input (``data.copy``): a resume reads its rows there, and `data` only names them.
    """

    data: str
    key: str | None = None
    skip_invalid_rows: bool = False
    max_rows_parallel: int | None = None
    shard: tuple[int, int] | None = None
    shard_source: str | None = None
    progress_every: float = 10.0
    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    data_copy: Path | None = None


@dataclass
class Invocation:
    """One run of one or more workflows, or of one workflow over a dataset.

    Attributes:
        workflows: Workflow files (one with `dataset` or `resume`).
        inputs: Input values (strings are converted to the declared types).
        simulate: Answer every call offline with the simulated provider.
        output_dir: Where run folders are created.
        max_parallel: Overrides ``max_parallel_agents`` (a dataset run: calls in flight).
        budget: Overrides ``cost_budget`` (a dataset run: the ceiling over every row).
        resume: A run folder to continue.
        cache: A response cache: a folder or a ``redis://`` URL.
        state: Shared state URL (``memory://``, ``redis://``) for limits, budgets and cache.
        budget_scope: Also reserve every call against this shared budget scope.
        residency: Keep every provider call in this region (``eu``, ``us``): overrides the workflows'.
        junit, summary: Where to write a JUnit XML report and a Markdown summary.
        provider_batch: Send calls through the providers' batch APIs.
        otel, otel_content: Export OpenTelemetry traces (with prompts and answers).
        approve, approve_all: Agents approved up front.
        approved_by: Who approves up front or in the terminal (default: the login name).
        ask: Ask y/N in the terminal for approvals not decided up front.
        max_threads: The run's own worker threads for sync tools and code steps (default: a few).
        prompt_cache: False sends nothing cache-related to the providers (no cache marks, keys
            or send-one-then-fan; see `orchestrate.run.prompt_cache`).
        fail_on_expect: Exit 5 when the agents completed but expectations failed.
        answers: With `simulate`: fixed answers per agent (a YAML file).
        baseline: An earlier run folder to compare expectations with (exit 6 on a pass -> fail).
        tolerance: The pass-rate drop per expectation `baseline` allows.
        repeat: Tries of each case (the run, or each dataset row), ``--repeat K``: the tries
            after the first skip the response cache; budgets and plans count every try.
        min_pass_rate: The share of its tries a case must pass (None: every try).
        audit_sink: Also append the audit trail's head to this append-only file (or POST it to a URL).
        no_content: Keep no prompts, answers or tool arguments anywhere the run writes.
        protected_inputs: Inputs a workflow's ``data_protection:`` policy protects, and how
            (``pseudonymize``, ``mask``, ``drop``): in a run of several workflows, every one of
            them protects them so (`orchestrate.observe.compliance.shared_protection`); kept in
            ``invocation.json`` for a resume of a run whose own workflow has no such rule.
        dataset: Run over a data file's rows.
        progress: ``live`` (a table redrawn in a terminal), ``plain`` (a line per change on
            stderr), ``quiet`` (only failures) or ``none`` (nothing printed: the Python API's default).
        history: Changes resumes made to the run (a budget raised), kept in ``invocation.json``.
    """

    workflows: list[Path]
    inputs: dict[str, Any] = field(default_factory=dict)
    simulate: bool = False
    sim_latency: float = 0.0
    sim_failure_rate: float = 0.0
    seed: int = 0
    output_dir: Path = Path("runs")
    max_parallel: int | None = None
    budget: float | None = None
    resume: Path | None = None
    cache: Path | str | None = None
    cache_ttl: float = 7 * 86400.0
    state: str | None = None
    state_namespace: str = "orchestrate"
    budget_scope: str | None = None
    residency: str | None = None
    junit: Path | None = None
    summary: Path | None = None
    provider_batch: bool = False
    batch_fallback: str = "batch"
    batch_poll_max: float = 300.0
    batch_window: float = 2.0
    cancel_batches: bool = False
    otel: bool = False
    otel_content: bool = False
    approve: list[str] = field(default_factory=list)
    approve_all: bool = False
    approved_by: str | None = None
    ask: bool = False
    max_threads: int | None = None
    prompt_cache: bool = True
    fail_on_expect: bool = True
    answers: Path | None = None
    baseline: Path | None = None
    tolerance: float = 0.0
    repeat: int = 1
    min_pass_rate: float | None = None
    audit_sink: str | None = None
    no_content: bool = False
    protected_inputs: dict[str, str] = field(default_factory=dict)
    dataset: DatasetSpec | None = None
    progress: str = "none"
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.progress not in PROGRESS:
            raise ValueError(f"progress must be one of {', '.join(PROGRESS)}, not {self.progress!r}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be at least 1, not {self.repeat}")
        if self.min_pass_rate is not None and not 0.0 <= self.min_pass_rate <= 1.0:
            raise ValueError(f"min_pass_rate must be between 0 and 1, not {self.min_pass_rate}")
        if self.batch_fallback not in ("batch", "online"):
            raise ValueError(f"batch_fallback must be 'batch' or 'online', not {self.batch_fallback!r}")
