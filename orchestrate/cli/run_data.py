"""`orchestrate run FILE --data ROWS`: one workflow over every row of a dataset, as one batch.

Order: load the workflow once; check every row (of this shard) before
anything runs; make or reopen the batch folder; run the rows in one engine
under signals; write the reports; exit with a code for the batch as a whole:
0 every row completed, 3 some did not, 1 none did, 130/143 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate.cli.common import print_error
from orchestrate.cli.run_session import RunOptions, start_tracing
from orchestrate.errors import UserInputError
from orchestrate.observe.dataset_report import BatchRecorder, PriorBatch, load_prior
from orchestrate.observe.eventlog import EventLog
from orchestrate.observe.html_report import write_run_report
from orchestrate.observe.journal import GroupCommit
from orchestrate.observe.reports import new_run_dir
from orchestrate.run.closing import closing_warnings, halt_message
from orchestrate.run.dataset_run import BatchRunner, CappedClients, batch_engine_config, default_rows_parallel
from orchestrate.run.engine import OrchestrationEngine
from orchestrate.run.evaluation import DatasetScoring, exit_code
from orchestrate.run.events import EventType
from orchestrate.run.fixed_answers import bind_engine, with_answers
from orchestrate.run.rescore import check_baseline, gate
from orchestrate.workflow.answers import load_answers
from orchestrate.workflow.dataset import Dataset, spool_stdin
from orchestrate.workflow.expectations import row_columns
from orchestrate.workflow.loader import load_workflow
from orchestrate.workflow.models import Workflow

__all__ = ["BatchOptions", "BatchSession", "open_dataset"]

DEFAULT_MAX_CALLS = 32  # calls in flight for the whole batch unless --max-parallel says otherwise
_EXIT_BY_SIGNAL: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
_EXIT_BY_STATUS = {"completed": 0, "partially_completed": 3, "failed": 1, "cancelled": 1}
# Left out of a batch's events.jsonl, whose JSON would cost more than the engine at volume: each
# call is in calls.jsonl, an agent's start is in its agent_finished, workflow_started says the
# same for every row, and a row's workflow_finished says what its row_finished and its line of
# results.jsonl say.
BATCH_UNLOGGED = frozenset(
    {EventType.LLM_CALL, EventType.AGENT_STARTED, EventType.WORKFLOW_STARTED, EventType.WORKFLOW_FINISHED}
)


@dataclass
class BatchOptions:
    data: str
    key: str | None = None
    skip_invalid_rows: bool = False
    max_rows_parallel: int | None = None
    shard: tuple[int, int] | None = None
    shard_source: str | None = None  # --shard auto: where K/N came from; the folder is then the shard's own
    progress_every: float = 10.0


def open_dataset(
    file: Path, data: str, shared: dict[str, Any], *, key: str | None, shard: tuple[int, int] | None
) -> tuple[Workflow, Dataset, Path | None]:
    """The workflow (inputs unbound) and its dataset; a spooled copy of stdin to delete after."""
    template = load_workflow(file, bind=False)
    unknown = sorted(set(shared) - set(template.inputs))
    if unknown:
        names = ", ".join(sorted(template.inputs)) or "none"
        raise UserInputError(f"unknown input {unknown[0]!r} for workflow {template.name!r} (declared inputs: {names})")
    spooled = spool_stdin() if data == "-" else None
    path = spooled or Path(data)
    if spooled is None and not path.is_file():
        raise UserInputError(f"{data}: no such dataset file")
    dataset = Dataset(
        path,
        workflow_name=template.name,
        declared=template.inputs,
        shared=shared,
        key=key,
        shard=shard,
        label="<stdin>" if spooled else data,
        columns=row_columns(template),
    )
    return template, dataset, spooled


class BatchSession:
    """Everything one `orchestrate run FILE --data ROWS` does, in order."""

    def __init__(self, file: Path, options: RunOptions, batch: BatchOptions) -> None:
        self.file = file
        self.options = options
        self.batch = batch
        self.signal_received: int | None = None
        self.total_rows = 0  # in the data file (this shard), once checked
        self.runner: BatchRunner | None = None
        self.cache_store: Any = None
        self.hub: Any = None  # the provider batch queues, when calls are batched
        self.carried: list[dict[str, Any]] = []
        self.simulated: Any = None

    def execute(self) -> int:
        opts, batch = self.options, self.batch
        from orchestrate.cli.run_session import check_output_paths

        check_output_paths(opts)  # before the first row is paid for
        check_baseline(opts.baseline)
        template, dataset, spooled = open_dataset(self.file, batch.data, opts.inputs, key=batch.key, shard=batch.shard)
        if opts.answers is not None:  # checked before any row, and its {row.COLUMN}s allowed in the data
            dataset.columns |= load_answers(opts.answers, template).columns() - set(template.inputs)
        try:
            return self._execute(template, dataset)
        finally:
            if spooled is not None:
                spooled.unlink(missing_ok=True)

    def _execute(self, template: Workflow, dataset: Dataset) -> int:
        opts, batch = self.options, self.batch
        check = dataset.check()
        self.total_rows = check.rows
        if check.bad_count and not batch.skip_invalid_rows:
            for bad in check.bad:
                print_error(dataset.describe(bad))
            more = check.bad_count - len(check.bad)
            raise UserInputError(
                f"{check.bad_count} of {check.rows} rows are invalid"
                + (f" ({more} more not shown)" if more else "")
                + "; fix them or pass --skip-invalid-rows"
            )
        if check.rows == 0 and batch.shard is None:
            raise UserInputError(f"{dataset.label}: no rows to run")
        from orchestrate.observe.compliance import approver_identity, check_identity, protect_workflow

        approver = approver_identity(opts.approved_by)
        check_identity(template, approver[0])
        protector = protect_workflow(template, no_content=opts.no_content)
        if protector is not None and not protector.policy.store_content:
            from orchestrate.cli.run_session import _without_content

            _without_content(opts)
        prior: PriorBatch | None = None
        shard_dir = self._shard_dir(template, dataset) if batch.shard_source and opts.resume is None else None
        if opts.resume is not None:
            prior = load_prior(opts.resume)
            if prior.name is not None and prior.name != template.name:
                raise UserInputError(
                    f"{opts.resume}: this batch folder is of workflow {prior.name!r}, not {template.name!r}"
                )
            if prior.key_column != batch.key:
                was = f"--key {prior.key_column}" if prior.key_column else "no --key"
                raise UserInputError(
                    f"{opts.resume}: this batch ran with {was}; resume it the same way, "
                    "or its rows would not be recognised"
                )
            run_dir = opts.resume
            from orchestrate.run.batch_ledger import open_batches

            self.carried = open_batches(run_dir)
        else:
            run_dir = shard_dir or new_run_dir(opts.output_dir, template.name)
        max_calls = opts.max_parallel or DEFAULT_MAX_CALLS
        if opts.budget_scope is not None:
            template.budget_scope = opts.budget_scope
        self._check_state(template)
        state = self._state()
        clients = self._clients(template, state)
        rows_parallel = batch.max_rows_parallel or default_rows_parallel(template, max_calls)
        if self.hub is not None and batch.max_rows_parallel is None:
            # Batched calls wait at the provider, not in a slot: every row is in flight at once,
            # so each layer of the workflow goes out as one submission for the whole dataset.
            rows_parallel = max(rows_parallel, check.rows)
        capped = CappedClients(clients, max_calls)
        engine = OrchestrationEngine(
            None, batch_engine_config(rows_parallel, opts.max_threads), clients=capped, state=state
        )
        bind_engine(self.simulated, engine)
        ledger = None
        if self.hub is not None:
            from orchestrate.run.batch_ledger import BatchLedger
            from orchestrate.run.events import batch_events

            self.hub.emit = batch_events(engine.emit)
            ledger = BatchLedger(run_dir, None, self.carried)
            engine.add_sink(ledger)
        batch_id = f"batch:{run_dir.name}"
        if prior is not None:
            engine.cost_tracker.carry_spend(batch_id, prior.spent)
        commit = GroupCommit(engine.journal_failed)  # the folder's journals are written once a turn of the event loop
        from orchestrate.observe.compliance import event_redactor, open_trail

        trail = open_trail(
            run_dir,
            template,
            kind="dataset_run",
            argv=sys.argv,
            approver=approver,
            sink=opts.audit_sink,
            on_failure=engine.journal_failed,
            extra={"data": dataset.label, "key": batch.key, "rows": check.rows},
        )
        engine.add_sink(trail)
        recorder = BatchRecorder(
            run_dir,
            template,
            engine.cost_tracker,
            batch_id=batch_id,
            simulated=opts.simulate,
            budget=opts.budget,
            prior=prior,
            commit=commit,
            extra={
                "data": dataset.label,
                "key": batch.key,
                "inputs": opts.inputs,
                "shard": f"{batch.shard[0]}/{batch.shard[1]}" if batch.shard else None,
                "rows_in_data": check.rows,  # of this shard: what `orchestrate merge` expects of it
                "resumed_from": str(opts.resume) if opts.resume else None,
                "max_rows_parallel": rows_parallel,
                "max_calls_in_flight": max_calls,
                "audit": trail.head,  # the same object: result.json always has the current head
                **({"data_protection": protector.policy.summary()} if protector is not None else {}),
                **({"content_kept": False} if protector is not None and not protector.policy.store_content else {}),
            },
        )
        todo = check.rows - (len(prior.completed) if prior is not None else 0)
        display = self._display(template, engine, capped, batch_id, max(0, todo))
        log = EventLog(
            run_dir / "events.jsonl",
            sync_interval=1.0,
            exclude=BATCH_UNLOGGED,
            commit=commit,
            redact=event_redactor(template),
        )
        engine.add_sink(log)
        scoring = DatasetScoring.of(template, run_dir)
        runner = self.runner = BatchRunner(
            engine,
            template,
            protector.rows(dataset, batch.key) if protector is not None else dataset,
            sinks=[recorder, display, *scoring.sinks],
            evaluator=scoring.evaluator,
            batch_id=batch_id,
            budget=opts.budget,
            max_rows_parallel=rows_parallel,
            completed=prior.completed if prior is not None else frozenset(),
            reuse=prior.reuse if prior is not None else None,
            session=uuid.uuid4().hex[:6],
        )
        engine.add_sink(display)
        engine.add_sink(recorder)
        tracing = start_tracing(opts)  # a trace per row
        if tracing is not None:
            engine.add_sink(tracing.sink)
        try:
            asyncio.run(self._run(engine, runner, display))
        finally:
            commit.flush()
            log.close()
            if tracing is not None:
                tracing.shutdown()
        status = self._status(recorder)
        reason = (
            f"interrupted by {signal.Signals(self.signal_received).name}" if self.signal_received is not None else None
        )
        halted = halt_message(engine)
        if halted is not None:  # a journal failed: never `completed` with a short journal
            status, reason = "failed", engine.halted
            print_error(halted)  # said first: writing the reports may fail for the same reason
        from orchestrate.observe.compliance import close_trail

        close_trail(trail, {**recorder.document(), "status": status, "error": reason}, protector)
        document = recorder.finish(status, reason)
        document["expectations"] = scoring.finish()
        self._artefacts(document, run_dir)
        write_run_report(run_dir)
        self._print(document, run_dir)
        for line in closing_warnings(engine):
            sys.stderr.write(line + "\n")
        if ledger is not None and ledger.still_open:
            still = ledger.still_open
            verb = "cancel requested for" if opts.cancel_batches else "left running at the provider:"
            print_error(
                f"{len(still)} batch(es) {verb} {', '.join(b['batch_id'] for b in still)}; "
                f"'orchestrate run {self.file} --data {batch.data} --resume {run_dir}' collects "
                "what they answer without submitting (or paying for) them again"
            )
        if self.signal_received is not None:
            return _EXIT_BY_SIGNAL.get(self.signal_received, 130)
        if halted is not None:
            return 1
        if trail.failed is not None:  # the trail's last record or its head could not be kept
            print_error(trail.failed)
            return 1
        if engine.state_error is not None:
            print_error(
                f"{engine.state_error}; no row or call was started without it, calls in flight "
                "were recorded; run again with --resume RUN_DIR once it is back"
            )
            return 1
        code = exit_code(_EXIT_BY_STATUS.get(status, 1), [document["expectations"]], fail_on_expect=opts.fail_on_expect)
        return gate(code, run_dir, opts.baseline, opts.tolerance, lambda line: sys.stdout.write(line + "\n"))

    def _shard_dir(self, template: Workflow, dataset: Dataset) -> Path | None:
        """`--shard auto`: the shard's own folder; an earlier start's is resumed (then None: `--resume` has it)."""
        from orchestrate.run.shards import dataset_digest, shard_run_dir

        assert self.batch.shard is not None
        folder, started = shard_run_dir(
            self.options.output_dir, template.name, dataset_digest(dataset.path), self.batch.shard
        )
        if not self.options.quiet:
            sys.stderr.write(f"{self.batch.shard_source}: {'resuming' if started else 'run folder'} {folder}\n")
        if started:
            self.options.resume = folder
            return None
        return folder

    def _state(self) -> Any:
        if not self.options.state:
            return None
        from orchestrate.state.backends import state_from_url

        return state_from_url(self.options.state, namespace=self.options.state_namespace)

    def _check_state(self, template: Workflow) -> None:
        """Before the batch folder is made: the state answers and the budget scope is set."""
        if not self.options.state and not template.budget_scope and "://" not in str(self.options.cache or ""):
            return
        from orchestrate.cli.run_session import check_shared_state
        from orchestrate.run.cache import cache_store

        async def check() -> None:
            state = self._state()
            store = (
                cache_store(self.options.cache, state, namespace=self.options.state_namespace)
                if self.options.cache is not None
                else None
            )
            try:
                await check_shared_state(state, store, [template])
            finally:
                for held in {id(s): s for s in (state, getattr(store, "state", None)) if s is not None}.values():
                    await held.aclose()

        asyncio.run(check())

    def _clients(self, template: Workflow, state: Any = None) -> Any:
        from orchestrate.llm.providers import ClientPool
        from orchestrate.llm.simulated import SimulatedClient

        opts = self.options
        simulated = SimulatedClient(latency=opts.sim_latency, failure_rate=opts.sim_failure_rate, seed=opts.seed)
        self.simulated = with_answers(simulated, opts.answers, template)
        clients: Any = ClientPool(simulated=self.simulated, force_simulated=opts.simulate)
        if not opts.simulate:
            clients.check_keys([agent.llm_config for agent in template.agents])
            if opts.provider_batch or self.carried or any(a.llm_config.get("batch") for a in template.agents):
                from orchestrate.llm.batch import BatchHub
                from orchestrate.llm.batch_clients import BatchClients

                self.hub = BatchHub(
                    window=opts.batch_window,
                    poll_max=opts.batch_poll_max,
                    poll_min=min(5.0, opts.batch_poll_max),
                    fallback=opts.batch_fallback,
                    cancel_on_close=opts.cancel_batches,
                    adopt=self.carried,
                    per_workflow_events=False,
                )
                clients = BatchClients(clients, self.hub, everything=opts.provider_batch)
        if opts.cache is not None:
            from orchestrate.run.cache import CachingClients, cache_store

            self.cache_store = cache_store(opts.cache, state, namespace=opts.state_namespace, ttl=opts.cache_ttl)
            clients = CachingClients(self.cache_store, clients)
        return clients

    def _display(
        self, template: Workflow, engine: OrchestrationEngine, capped: CappedClients, batch_id: str, total: int
    ) -> Any:
        opts = self.options
        common: dict[str, Any] = {
            "total": total,
            "budget": opts.budget,
            "spent": lambda: engine.cost_tracker.spent(batch_id),
            "in_flight": lambda: capped.in_flight,
        }
        if opts.live:
            from rich.console import Console

            from orchestrate.observe.dataset_progress import LiveBatch

            return LiveBatch(template.name, Console(file=sys.stderr), **common)
        from orchestrate.observe.dataset_progress import PlainBatchLog

        return PlainBatchLog(template.name, sys.stderr, every=self.batch.progress_every, quiet=opts.quiet, **common)

    async def _run(self, engine: OrchestrationEngine, runner: BatchRunner, display: Any) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.signal_received is not None:
                os._exit(_EXIT_BY_SIGNAL.get(signum, 130))
            self.signal_received = signum
            print_error(
                f"received {signal.Signals(signum).name}: starting no more rows, cancelling "
                "the calls in flight and writing reports (press Ctrl-C again to exit at once)"
            )
            loop.create_task(runner.stop(f"interrupted by {signal.Signals(signum).name}"))

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        display.start()
        try:
            await runner.run()
        finally:
            display.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await engine.shutdown()
            states = (engine.state if self.options.state else None, getattr(self.cache_store, "state", None))
            for state in {id(s): s for s in states if s is not None}.values():
                await state.aclose()

    def _status(self, recorder: BatchRecorder) -> str:
        if self.signal_received is not None:
            return "cancelled"
        counts = recorder.counts
        rows = sum(counts.values())
        done = counts.get("completed", 0)
        if done == rows:
            return "completed"
        return "partially_completed" if done else "failed"

    def _artefacts(self, document: dict[str, Any], run_dir: Path) -> None:
        opts = self.options
        if opts.junit is None and opts.summary is None:
            return
        from orchestrate.observe.dataset_ci import write_batch_junit, write_batch_summary

        if opts.junit is not None:
            write_batch_junit(opts.junit, document, run_dir)
        if opts.summary is not None:
            write_batch_summary(opts.summary, document, run_dir)

    def _print(self, d: dict[str, Any], run_dir: Path) -> None:
        opts = self.options
        if opts.json_output:
            payload = {
                k: d[k]
                for k in (
                    "name",
                    "status",
                    "rows",
                    "counts",
                    "total_cost",
                    "total_tokens",
                    "duration_seconds",
                    "simulated",
                    "budget",
                )
            }
            payload["run_dir"] = str(run_dir)
            payload["expectations"] = d.get("expectations")
            payload["outcomes"] = _outcomes(run_dir)
            sys.stdout.write(json.dumps(payload, indent=2) + "\n")
            return
        if opts.quiet:
            return
        counts = d["counts"]
        others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "completed")
        rows = max(int(d["rows"]), self.total_rows)
        if rows > int(d["rows"]):  # stopped early: the rows never reached are counted too
            others += f"{', ' if others else ''}{rows - int(d['rows'])} not started"
        label = " (simulated)" if d["simulated"] else ""
        from orchestrate.money.amounts import usd
        from orchestrate.observe.summary import next_steps, plural

        # As a single run's closing block: figures after the counts, the run folder on its own line.
        sys.stdout.write(
            f"{d['name']}: {d['status']}{label} - {counts.get('completed', 0)}/{rows} rows completed"
            f"{', ' + others if others else ''};\n  {usd(float(d['total_cost']))}, "
            f"{plural(int(d['total_tokens']), 'token')}, {d['duration_seconds']:.2f}s\n"
            + "".join(f"{line}\n" for line in _outcome_lines(run_dir))
            + f"run folder: {run_dir}\n"
        )
        if d.get("expectations"):
            from orchestrate.run.evaluation import closing_line

            sys.stdout.write(closing_line(d["expectations"]) + "\n")
        if d["status"] != "completed":  # what to do about the rows left: above all, how to resume
            batch = self.batch
            again = ("--data", batch.data, *(("--key", batch.key) if batch.key else ()))
            sys.stdout.write("next:\n" + "".join(f"{step}\n" for step in next_steps(d, run_dir, self.file, again)))


def _outcomes(run_dir: Path) -> dict[str, dict[str, int]]:
    from orchestrate.observe.dataset_results import outcome_counts

    return outcome_counts(run_dir)


def _outcome_lines(run_dir: Path) -> list[str]:
    from orchestrate.observe.dataset_results import outcome_lines

    return outcome_lines(run_dir)
