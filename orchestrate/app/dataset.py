"""One workflow over every row of a data file: `execute_dataset`.

Order: load the workflow once; check every row (of this shard) before anything
runs; make or reopen the dataset run's folder; run the rows in one engine under
signals; write the reports. Its exit code is the dataset run's as a whole: 0 every
row completed, 3 some did not, 1 none did, 130/143 interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import stat
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.app.exits import ExitCode, for_signal, for_status
from orchestrate.app.invocation import DatasetSpec, Invocation
from orchestrate.app.record import DATA_COPY, record_invocation
from orchestrate.app.signals import Interrupts
from orchestrate.app.wiring import (
    Clients,
    check_output_paths,
    check_shared_state,
    close_states,
    notice,
    open_state,
    start_tracing,
    without_content,
)
from orchestrate.errors import UserInputError
from orchestrate.fsutil import atomic_copy
from orchestrate.observe.dataset_report import DatasetRecorder, PriorDatasetRun, load_prior
from orchestrate.observe.eventlog import EventLog
from orchestrate.observe.html_report import write_run_report
from orchestrate.observe.journal import GroupCommit
from orchestrate.observe.reports import new_run_dir
from orchestrate.run.closing import closing_warnings, halt_message
from orchestrate.run.dataset_run import CappedClients, DatasetRunner, dataset_engine_config, default_rows_parallel
from orchestrate.run.engine import OrchestrationEngine
from orchestrate.run.evaluation import DatasetScoring, exit_code
from orchestrate.run.events import EventType, Sink
from orchestrate.run.rescore import check_baseline, gate
from orchestrate.workflow.answers import load_answers
from orchestrate.workflow.dataset import Dataset, spool_stdin
from orchestrate.workflow.expectations import row_columns
from orchestrate.workflow.loader import load_workflow
from orchestrate.workflow.models import Workflow

__all__ = ["DATASET_UNLOGGED", "DEFAULT_MAX_CALLS", "DatasetOutcome", "open_dataset", "execute_dataset"]

DEFAULT_MAX_CALLS = 32  # calls in flight for the whole dataset run unless --max-parallel says otherwise
# Left out of a dataset run's events.jsonl, whose JSON would cost more than the engine at volume:
# each call is in calls.jsonl, an agent's start is in its agent_finished, workflow_started says
# the same for every row, and a row's workflow_finished says what its row_finished and its line
# of results.jsonl say.
DATASET_UNLOGGED = frozenset(
    {
        EventType.LLM_CALL,
        EventType.AGENT_STARTED,
        EventType.WORKFLOW_STARTED,
        EventType.WORKFLOW_FINISHED,
        EventType.ITEMS_STARTED,  # a row's fan-out, item by item: its result keeps every item
        EventType.ITEM_FINISHED,
        EventType.RATE_LIMIT_WAITING,  # the progress display's; each wait's end is logged
    }
)


@dataclass
class DatasetOutcome:
    """What a dataset run left behind.

    Attributes:
        document: The run folder's result.json document (rows, counts, totals).
        run_dir: The run folder.
        file: The workflow file.
        rows: Rows in the data file (this shard), whether reached or not.
        exit_code: The process exit code (`orchestrate.app.exits`).
        signal: The signal that stopped the run, if one did.
        state_error: Why the shared state was lost mid-run, if it was.
        open_batches: Provider batches still running at the provider.
        warnings: Closing lines on what the run left behind (worker threads still running, ...).
        halted: Why the run stopped itself (a journal that could not be written), if it did.
        baseline_lines: The comparison with `invocation.baseline`, for a person.
        audit_failure: Why the audit trail's last record or head could not be kept, if so.
    """

    document: dict[str, Any]
    run_dir: Path
    file: Path
    rows: int
    exit_code: int
    signal: int | None = None
    state_error: str | None = None
    open_batches: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    halted: str | None = None
    baseline_lines: list[str] = field(default_factory=list)
    audit_failure: str | None = None


def open_dataset(
    file: Path,
    data: str,
    shared: dict[str, Any],
    *,
    key: str | None,
    shard: tuple[int, int] | None,
    data_copy: Path | None = None,
) -> tuple[Workflow, Dataset, Path | None]:
    """The workflow (inputs unbound) and its dataset; a spooled copy of stdin or a pipe to delete after.

    Args:
        data_copy: The run folder's copy of rows first read from a pipe or stdin (`data` then only
            names them in messages and reports): read instead of `data`, nothing spooled.
    """
    template = load_workflow(file, bind=False)
    unknown = sorted(set(shared) - set(template.inputs))
    if unknown:
        names = ", ".join(sorted(template.inputs)) or "none"
        raise UserInputError(f"unknown input {unknown[0]!r} for workflow {template.name!r} (declared inputs: {names})")
    if data_copy is not None:
        spooled = None
        path = data_copy
    else:
        spooled = spool_stdin() if data == "-" else _spool_pipe(Path(data))
        path = spooled or Path(data)
    dataset = Dataset(
        path,
        workflow_name=template.name,
        declared=template.inputs,
        shared=shared,
        key=key,
        shard=shard,
        label="<stdin>" if data == "-" else data,
        columns=row_columns(template),
    )
    return template, dataset, spooled


def _spool_pipe(path: Path) -> Path | None:
    """A copy of a pipe given as the data file (``--data <(...)``), which cannot be read twice;
    None for a regular file. Anything else (a device, a folder, nothing) is refused."""
    try:
        info = os.stat(path)
    except OSError:
        raise UserInputError(f"{path}: no such dataset file") from None
    if stat.S_ISREG(info.st_mode):
        return None
    if not stat.S_ISFIFO(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "a device or special file"
        raise UserInputError(f"{path}: not a dataset file ({what}); give a file, a pipe or - for standard input")
    try:
        with open(path, "rb") as stream:
            return spool_stdin(stream)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None


def execute_dataset(
    invocation: Invocation,
    *,
    sinks: Sequence[Sink] = (),
    notify: Callable[[str], None] = notice,
    inform: Callable[[str], None] = lambda line: None,
    handle_signals: bool = False,
) -> DatasetOutcome:
    """Run the invocation's one workflow over every row of its `dataset`, under one budget.

    Args:
        invocation: What to run; its `dataset` names the data file.
        sinks: More sinks for the engine's events (every row's).
        notify: Prints a line for a person (invalid rows, signals).
        inform: Prints a line of information (what a resume keeps); silent by default.
        handle_signals: Stop cleanly on SIGINT/SIGTERM (only from the main thread).

    Raises:
        UserInputError: The workflow, a row, an input or an option is invalid (nothing was run).
    """
    if invocation.dataset is None:
        raise ValueError("execute_dataset needs an invocation with a dataset")
    if len(invocation.workflows) != 1:
        raise UserInputError("--data takes exactly one workflow file")
    invocation = dataclasses.replace(invocation)  # a data-protection policy may turn parts of it off
    assert invocation.dataset is not None
    session = _DatasetSession(invocation, invocation.dataset, sinks, notify, handle_signals)
    session.inform = inform
    return session.execute()


class _DatasetSession:
    def __init__(
        self,
        invocation: Invocation,
        spec: DatasetSpec,
        sinks: Sequence[Sink],
        notify: Callable[[str], None],
        handle_signals: bool,
    ) -> None:
        self.inv = invocation
        self.spec = spec
        self.file = invocation.workflows[0]
        self.sinks = list(sinks)
        self.notify = notify
        self.handle_signals = handle_signals
        self.total_rows = 0  # in the data file (this shard), once checked
        self.interrupts: Interrupts | None = None
        self.clients: Clients | None = None
        self.inform: Callable[[str], None] = lambda line: None
        self.spooled: Path | None = None  # the rows read from a pipe or stdin, until kept in the folder

    def execute(self) -> DatasetOutcome:
        inv, spec = self.inv, self.spec
        if spec.engine == "ray":
            from orchestrate.app.ray_dataset import check_ray

            check_ray(inv, spec)
        check_output_paths(inv)  # before the first row is paid for
        check_baseline(inv.baseline)
        template, dataset, spooled = open_dataset(
            self.file, spec.data, inv.inputs, key=spec.key, shard=spec.shard, data_copy=spec.data_copy
        )
        self.spooled = spooled
        if inv.answers is not None:  # checked before any row, and its {row.COLUMN}s allowed in the data
            dataset.columns |= load_answers(inv.answers, template).columns() - set(template.inputs)
        try:
            return self._execute(template, dataset)
        finally:
            if spooled is not None:
                spooled.unlink(missing_ok=True)

    def _keep_data(self, run_dir: Path, *, protected: bool) -> Path | None:
        """The folder's copy of rows read from a pipe or stdin, for a resume to read (None: none kept).

        Rows from a file are not copied (a resume reads the file again). Under a data-protection
        policy no copy is kept either: the rows hold the personal data the policy keeps out of run
        folders, and a resume asks for them again (``--data FILE``).
        """
        if self.spooled is not None and not protected:  # read now: kept, or replaced by a resume's new rows
            atomic_copy(self.spooled, run_dir / DATA_COPY)
            return run_dir / DATA_COPY
        return None if protected else self.spec.data_copy

    def _execute(self, template: Workflow, dataset: Dataset) -> DatasetOutcome:
        inv, spec = self.inv, self.spec
        check = dataset.check()
        self.total_rows = check.rows
        if check.bad_count and not spec.skip_invalid_rows:
            for bad in check.bad:
                self.notify(dataset.describe(bad))
            more = check.bad_count - len(check.bad)
            raise UserInputError(
                f"{check.bad_count} of {check.rows} rows are invalid"
                + (f" ({more} more not shown)" if more else "")
                + "; fix them or pass --skip-invalid-rows"
            )
        if check.rows == 0 and spec.shard is None:
            raise UserInputError(f"{dataset.label}: no rows to run")
        from orchestrate.observe.compliance import (
            approver_identity,
            check_identity,
            keep_pseudonyms,
            protect_workflow,
            pseudonyms_for,
            shard_pseudonym_salt,
            withheld_inputs,
        )

        approver = approver_identity(inv.approved_by)
        check_identity(template, approver[0])
        shard_salt = shard_pseudonym_salt(template, dataset.path, spec.shard, spec.shard_source)  # all shards alike
        prior: PriorDatasetRun | None = None
        carried: list[dict[str, Any]] = []
        resume = inv.resume
        shard_dir = None
        if spec.shard_source and resume is None:
            shard_dir, resume = self._shard_dir(template, dataset)
        if resume is not None:
            prior = load_prior(resume)
            if prior.name is not None and prior.name != template.name:
                raise UserInputError(
                    f"{resume}: this dataset run's folder is of workflow {prior.name!r}, not {template.name!r}"
                )
            if prior.key_column != spec.key:
                was = f"--key {prior.key_column}" if prior.key_column else "no --key"
                raise UserInputError(
                    f"{resume}: this dataset run ran with {was}; resume it the same way, "
                    "or its rows would not be recognised"
                )
            run_dir = resume
            from orchestrate.run.batch_ledger import open_batches

            carried = open_batches(run_dir)
        pseudonyms = pseudonyms_for(
            template, resume, shard=shard_salt, no_content=inv.no_content
        )  # a resume's: the same person keeps their token
        if resume is None:
            run_dir = shard_dir or new_run_dir(inv.output_dir, template.name)
        protector = protect_workflow(template, no_content=inv.no_content, secret=pseudonyms)
        if protector is not None and not protector.policy.store_content:
            without_content(inv)
        record_invocation(
            run_dir,
            inv,
            self.file,
            data_copy=self._keep_data(run_dir, protected=protector is not None),
            withheld=withheld_inputs(template, inv.inputs, pseudonyms),
        )
        keep_pseudonyms(run_dir, pseudonyms)
        max_calls = inv.max_parallel or DEFAULT_MAX_CALLS
        if inv.budget_scope is not None:
            template.budget_scope = inv.budget_scope
        from orchestrate.llm.residency import apply_residency
        from orchestrate.run.evaluation import Evaluator

        evaluator = Evaluator.of(template)
        judges = evaluator.judges() if evaluator is not None else []
        apply_residency(template, inv.residency, judges=judges)  # --residency, then every route (judges too) checked
        self.clients = Clients(inv, carried=carried, per_workflow_events=False)
        self._check_state(template)
        state = open_state(inv)
        clients = self.clients.build([template], state)
        rows_parallel = spec.max_rows_parallel or default_rows_parallel(template, max_calls)
        if self.clients.hub is not None and spec.max_rows_parallel is None:
            # Batched calls wait at the provider, not in a slot: every row is in flight at once,
            # so each layer of the workflow goes out as one submission for the whole dataset.
            rows_parallel = max(rows_parallel, check.rows)
        capped = CappedClients(clients, max_calls)
        engine = OrchestrationEngine(
            None,
            dataset_engine_config(rows_parallel, inv.max_threads, prompt_cache=inv.prompt_cache),
            clients=capped,
            state=state,
        )
        self.clients.attach(engine)
        ledger = None
        if self.clients.hub is not None:
            from orchestrate.run.batch_ledger import BatchLedger

            ledger = BatchLedger(run_dir, None, carried)
            engine.add_sink(ledger)
        run_id = f"dataset:{run_dir.name}"
        if prior is not None:
            engine.cost_tracker.carry_spend(run_id, prior.spent)
        commit = GroupCommit(engine.journal_failed)  # the folder's journals are written once a turn of the loop
        from orchestrate.observe.compliance import event_redactor, open_trail

        trail = open_trail(
            run_dir,
            template,
            kind="dataset_run",
            argv=sys.argv,
            approver=approver,
            sink=inv.audit_sink,
            on_failure=engine.journal_failed,
            extra={"data": dataset.label, "key": spec.key, "rows": check.rows},
            commit=commit,  # written with the folder's other journals, once a turn of the event loop
            tries=inv.repeat > 1,  # every try of a row audited, with its try number
        )
        engine.add_sink(trail)
        recorder = DatasetRecorder(
            run_dir,
            template,
            engine.cost_tracker,
            run_id=run_id,
            simulated=inv.simulate,
            budget=inv.budget,
            prior=prior,
            commit=commit,
            extra={
                "data": dataset.label,
                "key": spec.key,
                "inputs": protector.quietly(inv.inputs) if protector is not None else inv.inputs,
                "shard": f"{spec.shard[0]}/{spec.shard[1]}" if spec.shard else None,
                "rows_in_data": check.rows,  # of this shard: what `orchestrate merge` expects of it
                "resumed_from": str(resume) if resume else None,
                "max_rows_parallel": rows_parallel,
                "max_calls_in_flight": max_calls,
                "audit": trail.head,  # the same object: result.json always has the current head
                **({"data_protection": protector.policy.summary()} if protector is not None else {}),
                **({"content_kept": False} if protector is not None and not protector.policy.store_content else {}),
            },
        )
        todo = check.rows - (len(prior.completed) if prior is not None else 0)
        if prior is not None:
            self.inform(
                f"resuming {run_dir}: keeping {len(prior.completed)} completed row(s) (${prior.spent:.6f} already "
                f"spent); running {max(0, todo)} row(s)"
            )
        # On Ray the calls are made and priced in the workers: the driver's spend is what the rows reported.
        spent = (lambda: recorder.cost) if spec.engine == "ray" else (lambda: engine.cost_tracker.spent(run_id))
        display = self._display(template, capped, spent, max(0, todo))
        log = EventLog(
            run_dir / "events.jsonl",
            sync_interval=1.0,
            exclude=DATASET_UNLOGGED,
            commit=commit,
            redact=event_redactor(template),
            tries=inv.repeat > 1,
        )
        engine.add_sink(log)
        scoring = DatasetScoring.of(template, run_dir, repeat=inv.repeat, min_pass_rate=inv.min_pass_rate)
        if prior is not None:  # evaluation.json counts the rows earlier sessions completed too
            scoring.carry(prior.rows, prior.completed)
        rows_in = protector.rows(dataset, spec.key) if protector is not None else dataset
        row_sinks = [recorder, *([display] if display is not None else []), *scoring.sinks]
        completed: set[str] | frozenset[str] = prior.completed if prior is not None else frozenset()
        tracing = start_tracing(inv)  # a trace per row
        runner: Any
        if spec.engine == "ray":  # the rows run on Ray workers; the folder and reports stay here
            from orchestrate.app.ray_dataset import ray_runner

            runner = ray_runner(
                inv,
                spec,
                self.file,
                run_id,
                rows_in,
                row_sinks,
                completed,
                rows_parallel,
                max_calls,
                template.budget_scope,
                # The workers' events, journaled and traced here as a local run's are (spans take
                # their times from the events, so a row's trace is as the worker ran it).
                [log, trail, *([tracing.sink] if tracing is not None else [])],
            )
        else:
            runner = DatasetRunner(
                engine,
                template,
                rows_in,
                sinks=row_sinks,
                evaluator=scoring.evaluator,
                run_id=run_id,
                budget=inv.budget,
                max_rows_parallel=rows_parallel,
                completed=completed,
                reuse=prior.reuse if prior is not None else None,
                session=uuid.uuid4().hex[:6],
                repeat=inv.repeat,
            )
        if display is not None:
            engine.add_sink(display)
        engine.add_sink(recorder)
        if tracing is not None:
            engine.add_sink(tracing.sink)
        for sink in self.sinks:
            engine.add_sink(sink)
        try:
            asyncio.run(self._run(engine, runner, display))
        finally:
            commit.flush()
            log.close()
            if tracing is not None:
                tracing.shutdown()
        scopes = engine.cost_tracker.scopes
        if scopes is not None and scopes.unsettled and engine.state is not None:
            from orchestrate.money.budget_scope import write_unsettled

            write_unsettled(run_dir, engine.state.url, scopes.unsettled)  # booked by --resume
        received = self.interrupts.received if self.interrupts is not None else None
        status = self._status(recorder, received)
        reason = f"interrupted by {signal.Signals(received).name}" if received is not None else None
        halted = halt_message(engine)
        if halted is not None:  # a journal failed: never `completed` with a short journal
            status, reason = "failed", engine.halted
            self.notify(halted)  # said first: writing the reports may fail for the same reason
        from orchestrate.observe.compliance import close_trail

        close_trail(trail, {**recorder.document(), "status": status, "error": reason}, protector)
        document = recorder.finish(status, reason)
        document["expectations"] = scoring.finish()
        self._artefacts(document, run_dir)
        write_run_report(run_dir)
        outcome = DatasetOutcome(
            document=document,
            run_dir=run_dir,
            file=self.file,
            rows=self.total_rows,
            exit_code=exit_code(for_status(status), [document["expectations"]], fail_on_expect=inv.fail_on_expect),
            open_batches=list(ledger.still_open) if ledger is not None else None,
            warnings=closing_warnings(engine) + (runner.dead_worker_notes(run_dir) if spec.engine == "ray" else []),
            halted=halted,
        )
        if received is not None:
            outcome.signal, outcome.exit_code = received, for_signal(received)
        elif halted is not None:
            outcome.exit_code = ExitCode.FAILED
        elif trail.failed is not None:  # the trail's last record or its head could not be kept
            outcome.audit_failure, outcome.exit_code = trail.failed, ExitCode.FAILED
        elif engine.state_error is not None:
            outcome.state_error, outcome.exit_code = str(engine.state_error), ExitCode.FAILED
        else:
            outcome.exit_code = gate(
                outcome.exit_code, run_dir, inv.baseline, inv.tolerance, outcome.baseline_lines.append
            )
        return outcome

    def _shard_dir(self, template: Workflow, dataset: Dataset) -> tuple[Path | None, Path | None]:
        """`--shard auto`: (the shard's own new folder, None), or (None, its folder to resume)."""
        from orchestrate.run.shards import dataset_digest, shard_run_dir

        assert self.spec.shard is not None
        folder, started = shard_run_dir(
            self.inv.output_dir, template.name, dataset_digest(dataset.path), self.spec.shard
        )
        if self.inv.progress not in ("quiet", "none"):
            sys.stderr.write(f"{self.spec.shard_source}: {'resuming' if started else 'run folder'} {folder}\n")
        return (None, folder) if started else (folder, None)

    def _check_state(self, template: Workflow) -> None:
        """Before the run's folder is made: the state answers and the budget scope is set."""
        inv = self.inv
        if not inv.state and not template.budget_scope and "://" not in str(inv.cache or ""):
            return
        from orchestrate.run.cache import cache_store

        async def check() -> None:
            state = open_state(inv)
            store = cache_store(inv.cache, state, namespace=inv.state_namespace) if inv.cache is not None else None
            try:
                await check_shared_state(state, store, [template])
                if state is not None and inv.resume is not None:  # what it spent while the state was lost
                    from orchestrate.money.budget_scope import book_unsettled

                    for scope, cost in await book_unsettled(state, inv.resume):
                        self.notify(
                            f"booked ${cost:.6f} spent while the shared state was lost into budget scope {scope!r}"
                        )
            finally:
                await close_states(state, getattr(store, "state", None))

        asyncio.run(check())

    def _display(self, template: Workflow, capped: CappedClients, spent: Callable[[], float], total: int) -> Any:
        progress = self.inv.progress
        if progress == "none":
            return None
        common: dict[str, Any] = {
            "total": total,
            "budget": self.inv.budget,
            "spent": spent,
            "in_flight": lambda: capped.in_flight,
        }
        if progress == "live":
            from rich.console import Console

            from orchestrate.observe.dataset_progress import LiveDataset

            return LiveDataset(template.name, Console(file=sys.stderr), **common)
        from orchestrate.observe.dataset_progress import PlainDatasetLog

        return PlainDatasetLog(
            template.name, sys.stderr, every=self.spec.progress_every, quiet=progress == "quiet", **common
        )

    async def _run(self, engine: OrchestrationEngine, runner: Any, display: Any) -> None:
        if self.handle_signals:
            self.interrupts = Interrupts(
                runner.stop,
                notify=self.notify,
                doing="no more rows; cancelling calls in flight, writing reports",
            )
            self.interrupts.install()
        if display is not None:
            display.start()
        try:
            await runner.run()
        finally:
            if display is not None:
                display.stop()
            if self.interrupts is not None:
                self.interrupts.remove()
            await engine.shutdown()
            cache_store = self.clients.cache_store if self.clients is not None else None
            await close_states(engine.state if self.inv.state else None, getattr(cache_store, "state", None))

    @staticmethod
    def _status(recorder: DatasetRecorder, received: int | None) -> str:
        if received is not None:
            return "cancelled"
        counts = recorder.counts
        rows = sum(counts.values())
        done = counts.get("completed", 0)
        if done == rows:
            return "completed"
        return "partially_completed" if done else "failed"

    def _artefacts(self, document: dict[str, Any], run_dir: Path) -> None:
        inv = self.inv
        if inv.junit is None and inv.summary is None:
            return
        from orchestrate.observe.dataset_ci import write_dataset_junit, write_dataset_summary

        if inv.junit is not None:
            write_dataset_junit(inv.junit, document, run_dir)
        if inv.summary is not None:
            write_dataset_summary(inv.summary, document, run_dir)
