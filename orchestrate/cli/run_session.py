"""One `orchestrate run`: load, wire the engine to its sinks, run under signals, report.

Kept apart from the Typer command so that the command module stays cheap to
import (`orchestrate --help` loads no engine).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.cli.common import print_error
from orchestrate.errors import UserInputError
from orchestrate.llm.simulated import SimulatedClient
from orchestrate.observe.eventlog import EventLog
from orchestrate.observe.reports import RunRecorder, new_run_dir
from orchestrate.run.closing import closing_warnings, fail_closed
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.workflow.loader import load_workflow
from orchestrate.workflow.models import Workflow, WorkflowStatus

__all__ = ["RunOptions", "RunSession", "start_tracing", "tracing_requested"]

_EXIT_BY_STATUS = {
    WorkflowStatus.COMPLETED: 0,
    WorkflowStatus.FAILED: 1,
    WorkflowStatus.PARTIALLY_COMPLETED: 3,
    WorkflowStatus.CANCELLED: 1,
    WorkflowStatus.WAITING: 4,
}
# With several workflows the worst code wins: failed, then waiting, then partial, then completed.
_SEVERITY = {0: 0, 3: 1, 4: 2, 1: 3}
_EXIT_BY_SIGNAL: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@dataclass
class RunOptions:
    simulate: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path("runs")
    max_parallel: int | None = None
    budget: float | None = None
    resume: Path | None = None
    cache: Path | str | None = None
    cache_ttl: float = 7 * 86400.0
    state: str | None = None
    state_namespace: str = "orchestrate"
    budget_scope: str | None = None
    live: bool = False
    quiet: bool = False
    json_output: bool = False
    junit: Path | None = None
    summary: Path | None = None
    sim_latency: float = 0.0
    sim_failure_rate: float = 0.0
    seed: int = 0
    provider_batch: bool = False
    batch_fallback: str = "batch"
    batch_poll_max: float = 300.0
    batch_window: float = 2.0
    cancel_batches: bool = False
    otel: bool = False
    otel_content: bool = False
    approve: list[str] = field(default_factory=list)  # agents approved up front (--approve)
    approve_all: bool = False
    approved_by: str | None = None
    ask: bool = False  # ask y/N in the terminal for approvals not decided up front
    max_threads: int | None = None  # the run's worker threads (sync tools, code steps)
    fail_on_expect: bool = True  # exit 5 when the agents completed but expectations failed
    answers: Path | None = None  # --answers: fixed answers per agent (with --simulate)
    baseline: Path | None = None  # --baseline RUN_DIR: exit 6 on a pass -> fail against it
    tolerance: float = 0.0  # the pass-rate drop --baseline allows
    audit_sink: str | None = None  # an append-only copy of the audit trail's head
    no_content: bool = False  # store_content: false whatever the workflow says


class RunSession:
    """Everything one invocation of `orchestrate run` does, in order."""

    def __init__(self, files: list[Path], options: RunOptions) -> None:
        self.files = files
        self.options = options
        self.signal_received: int | None = None
        self.recorders: list[RunRecorder] = []
        self.ledgers: list[Any] = []
        self.carried: list[dict[str, Any]] = []  # open batches of the run being resumed
        self.hub: Any = None
        self._live_display: Any = None
        self.cache_store: Any = None
        self._workflow_ids: list[str] = []  # of each recorder, in order
        self.decisions: list[dict[str, Any]] = []
        self.trails: list[Any] = []  # the audit trail of each recorder, in order
        self.audit_failures: list[str] = []
        self.approver: tuple[str | None, str] = (None, "none")

    def execute(self) -> int:
        """Run every workflow; returns the exit code."""
        opts = self.options
        workflows = [self._load(path) for path in self.files]
        check_output_paths(opts)
        from orchestrate.run.rescore import check_baseline

        check_baseline(opts.baseline)
        self._compliance(workflows)
        reuse: dict[str, Any] = {}
        decided: dict[str, Any] = {}
        if opts.resume is not None:
            from orchestrate.run.approvals import read_decisions
            from orchestrate.run.resume import plan_resume

            reuse = plan_resume(opts.resume, workflows[0])
            from orchestrate.run.batch_ledger import open_batches

            self.carried = open_batches(opts.resume)
            decided = read_decisions(opts.resume)
        self.decisions = [self._up_front(wf, decided) for wf in workflows]
        engine = self._engine(workflows)
        tracing = start_tracing(self.options)
        if tracing is not None:
            engine.add_sink(tracing.sink)
        try:
            asyncio.run(self._run(engine, workflows, reuse))
        finally:
            if tracing is not None:
                tracing.shutdown()  # flushes what is buffered, Ctrl-C included
        halted = fail_closed(engine, workflows)
        if halted is not None:  # said first: writing the reports may fail for the same reason
            print_error(halted)
        documents = [recorder.flush() for recorder in self.recorders]
        if self.trails:
            from orchestrate.observe.compliance import close_trail

            for trail, document, workflow in zip(self.trails, documents, workflows):
                close_trail(trail, document, workflow.protector)
                if trail.failed is not None:
                    self.audit_failures.append(trail.failed)
            documents = [recorder.flush() for recorder in self.recorders]  # with the trail's last head
        self._write_html_reports()
        self._write_artefacts(documents)
        self._print_summary(documents)
        for line in closing_warnings(engine):
            sys.stderr.write(line + "\n")
        self._report_open_batches()
        _warn_usage(documents)
        _warn_cache(getattr(self, "cache_store", None))
        if self.signal_received is not None:
            return _EXIT_BY_SIGNAL.get(self.signal_received, 130)
        if halted is not None:
            return 1
        if self.audit_failures:  # the trail's last record or its head could not be kept
            print_error(self.audit_failures[0])
            return 1
        if engine.state_error is not None:
            self._keep_unsettled(engine)
            # Failed closed: no call started after the state was lost; in-flight ones are in cost.json.
            print_error(
                f"{engine.state_error}; no call was started without it, calls in flight were "
                "recorded in cost.json; run again with --resume RUN_DIR once it is back"
            )
            return 1
        codes = [_EXIT_BY_STATUS.get(wf.status, 1) for wf in workflows]
        code = max(codes, key=lambda c: _SEVERITY.get(c, 3)) if codes else 0
        from orchestrate.run.evaluation import exit_code

        code = exit_code(code, [wf.evaluation for wf in workflows], fail_on_expect=opts.fail_on_expect)
        from orchestrate.run.rescore import gate

        return gate(code, self.recorders[0].run_dir, opts.baseline, opts.tolerance, _say) if self.recorders else code

    def _compliance(self, workflows: list[Workflow]) -> None:
        """Name the approver, apply each workflow's data-protection policy, and turn off
        what would keep content the policy says not to keep (see orchestrate.observe.compliance)."""
        from orchestrate.observe.compliance import approver_identity, check_identity, protect_workflow

        opts = self.options
        self.approver = approver_identity(opts.approved_by)
        for workflow in workflows:
            check_identity(workflow, self.approver[0])
            protector = protect_workflow(workflow, no_content=opts.no_content)
            if protector is not None and not protector.policy.store_content:
                _without_content(opts)

    def _trail(self, engine: OrchestrationEngine, run_dir: Path, workflow: Workflow) -> Any:
        from orchestrate.observe.compliance import open_trail

        trail = open_trail(
            run_dir,
            workflow,
            kind="run",
            argv=sys.argv,
            approver=self.approver,
            sink=self.options.audit_sink,
            on_failure=engine.journal_failed,
            extra={"resumed_from": str(self.options.resume) if self.options.resume else None},
        )
        self.trails.append(trail)
        return trail

    def _up_front(self, workflow: Workflow, decided: dict[str, Any]) -> dict[str, Any]:
        """Decisions known before the run: recorded in the resumed folder, then --approve."""
        from orchestrate.errors import UserInputError
        from orchestrate.run.approvals import Decision

        opts = self.options
        gated = [a.name for a in workflow.agents if a.approval is not None]
        for name in opts.approve:
            if name not in gated:
                names = ", ".join(gated) or "none"
                raise UserInputError(
                    f"--approve {name}: workflow {workflow.name!r} has no agent "
                    f"{name!r} with an approval (agents with one: {names})"
                )
        by = self.approver[0] or "unknown"
        decisions = {name: d for name, d in decided.items() if name in gated}
        for name in gated:
            if name in decisions:
                continue
            if opts.approve_all or name in opts.approve:
                source = "--approve-all" if opts.approve_all else "--approve"
                decisions[name] = Decision.now(name, True, by, source=source)
        return decisions

    def _load(self, path: Path) -> Workflow:
        workflow = load_workflow(path, inputs=self.options.inputs)
        if self.options.max_parallel is not None:
            workflow.max_parallel_agents = self.options.max_parallel
        if self.options.budget is not None:
            workflow.cost_budget = self.options.budget
        if self.options.budget_scope is not None:
            workflow.budget_scope = self.options.budget_scope
        return workflow

    def _engine(self, workflows: list[Workflow]) -> OrchestrationEngine:
        opts = self.options
        from orchestrate.run.fixed_answers import bind_engine, with_answers

        simulated = with_answers(
            SimulatedClient(latency=opts.sim_latency, failure_rate=opts.sim_failure_rate, seed=opts.seed),
            opts.answers,
            workflows[0],
        )
        from orchestrate.llm.providers import ClientPool

        clients: Any = ClientPool(simulated=simulated, force_simulated=opts.simulate)
        if not opts.simulate:
            from orchestrate.llm.http import transport_limits

            transport_limits()  # a bad ORCHESTRATE_MAX_* is the user's input: refused before any call
            clients.check_keys(
                [agent.llm_config for wf in workflows for agent in wf.agents if not agent.is_code_step]
            )  # a code step calls no provider
            clients = self._batching(clients, workflows)
        state = None
        if opts.state:
            from orchestrate.state.backends import state_from_url

            state = state_from_url(opts.state, namespace=opts.state_namespace)
        approver = None
        if opts.ask:
            from orchestrate.cli.approve import TerminalApprover

            approver = TerminalApprover(by=self.approver[0] or "unknown", pause=self._pause_display)
        if opts.cache is not None:
            from orchestrate.run.cache import CachingClients, cache_store

            self.cache_store = cache_store(opts.cache, state, namespace=opts.state_namespace, ttl=opts.cache_ttl)
            clients = CachingClients(self.cache_store, clients)
        engine = OrchestrationEngine(
            None, EngineConfig(max_threads=self.options.max_threads), clients=clients, state=state, approver=approver
        )
        bind_engine(simulated, engine)
        if self.hub is not None:
            from orchestrate.run.events import batch_events

            self.hub.emit = batch_events(engine.emit)
        return engine

    def _batching(self, clients: Any, workflows: list[Workflow]) -> Any:
        """The pool behind batching clients when the run or an agent asks for batches."""
        opts = self.options
        wanted = (
            opts.provider_batch
            or self.carried
            or any(agent.llm_config.get("batch") for wf in workflows for agent in wf.agents)
        )
        if not wanted:
            return clients
        from orchestrate.llm.batch import BatchHub
        from orchestrate.llm.batch_clients import BatchClients

        self.hub = BatchHub(
            window=opts.batch_window,
            poll_max=opts.batch_poll_max,
            poll_min=min(5.0, opts.batch_poll_max),
            fallback=opts.batch_fallback,
            cancel_on_close=opts.cancel_batches,
            adopt=self.carried,
        )
        return BatchClients(clients, self.hub, everything=opts.provider_batch)

    def _report_open_batches(self) -> None:
        """Say which batches are still running at the provider, and how to collect them."""
        for path, ledger, recorder in zip(self.files, self.ledgers, self.recorders):
            still = ledger.still_open
            if not still:
                continue
            verb = "cancel requested for" if self.options.cancel_batches else "left running at the provider:"
            print_error(
                f"{len(still)} batch(es) {verb} {', '.join(b['batch_id'] for b in still)}; "
                f"'orchestrate run {path} --resume {recorder.run_dir}' collects what they "
                "answer without submitting (or paying for) them again"
            )

    async def _run(self, engine: OrchestrationEngine, workflows: list[Workflow], reuse: dict[str, Any]) -> None:
        opts = self.options
        display = self._display(engine)
        logs: list[EventLog] = []
        try:
            for workflow in workflows:
                await engine.register_workflow(workflow)
            await self._check_state(engine, workflows)
            for workflow, decisions in zip(workflows, self.decisions):
                run_dir = new_run_dir(opts.output_dir, workflow.name)
                if decisions:  # carried on, so that resuming this run keeps them
                    from orchestrate.run.approvals import write_decisions

                    write_decisions(run_dir, decisions)
                engine.add_sink(_only(workflow.id, _DecisionKeeper(run_dir, decisions)))
                trail = self._trail(engine, run_dir, workflow)
                engine.add_sink(_only(workflow.id, trail))
                from orchestrate.observe.compliance import event_redactor

                log = EventLog(
                    run_dir / "events.jsonl", on_error=engine.journal_failed, redact=event_redactor(workflow)
                )
                logs.append(log)
                engine.add_sink(_only(workflow.id, log))
                recorder = RunRecorder(
                    run_dir,
                    workflow,
                    engine.cost_tracker,
                    simulated=opts.simulate,
                    extra={
                        "resumed_from": str(opts.resume) if opts.resume else None,
                        "reused_agents": sorted(reuse),
                        "audit": trail.head,  # the same object: result.json always has the current head
                    },
                )
                self.recorders.append(recorder)
                self._workflow_ids.append(workflow.id)
                engine.add_sink(recorder)
                from orchestrate.run.batch_ledger import BatchLedger

                ledger = BatchLedger(run_dir, workflow.id, self.carried)
                self.ledgers.append(ledger)
                engine.add_sink(ledger)
            self._install_signals(engine)
            if hasattr(display, "start"):
                self._live_display = display
                display.start()
            try:
                await asyncio.gather(
                    *(
                        engine.execute_workflow(wf.id, reuse=reuse or None, decisions=decisions or None)
                        for wf, decisions in zip(workflows, self.decisions)
                    )
                )
                if self.signal_received is None:
                    from orchestrate.run.evaluation import evaluate_runs

                    await evaluate_runs(engine, workflows)
            finally:
                self._stop_display()  # on every way out, so the cursor is never left hidden
        finally:
            self._remove_signals()
            await engine.shutdown()
            for log in logs:
                log.close()
            await self._close_state(engine)

    async def _check_state(self, engine: OrchestrationEngine, workflows: list[Workflow]) -> None:
        """Before anything runs: the shared state answers, and every budget scope named is set.

        Resuming a run that lost the state, what it spent meanwhile is booked
        into its scope first, so the shared ledger is whole again.
        """
        state = engine.state if self.options.state else None
        await check_shared_state(state, self.cache_store, workflows)
        if state is not None and self.options.resume is not None:
            from orchestrate.money.budget_scope import book_unsettled

            for scope, cost in await book_unsettled(state, self.options.resume):
                print_error(f"booked ${cost:.6f} spent while the shared state was lost into budget scope {scope!r}")

    def _keep_unsettled(self, engine: OrchestrationEngine) -> None:
        """Write what the lost state never booked next to each run's cost.json."""
        ledger = engine.cost_tracker.scopes
        if ledger is None or not ledger.unsettled or engine.state is None:
            return
        from orchestrate.money.budget_scope import write_unsettled

        for workflow_id, recorder in zip(self._workflow_ids, self.recorders):
            entries = [e for e in ledger.unsettled if e["workflow_id"] == workflow_id]
            if entries:
                write_unsettled(recorder.run_dir, engine.state.url, entries)

    async def _close_state(self, engine: OrchestrationEngine) -> None:
        states = [engine.state, getattr(self.cache_store, "state", None)]
        for state in {id(s): s for s in states if s is not None}.values():
            await state.aclose()

    def _pause_display(self, paused: bool) -> None:
        """Stop the live table while the terminal asks for an approval, and start it again after."""
        display = self._live_display
        if display is not None:
            (display.stop if paused else display.start)()

    def _display(self, engine: OrchestrationEngine) -> Any:
        opts = self.options
        if opts.live:
            from rich.console import Console

            from orchestrate.observe.progress import LiveTable

            display: Any = LiveTable(Console(file=sys.stderr))
        else:
            from orchestrate.observe.progress import PlainLog

            if opts.quiet:
                display = PlainLog(sys.stderr, quiet=True)
            else:
                display = PlainLog(sys.stderr)
        engine.add_sink(display)
        return display

    def _install_signals(self, engine: OrchestrationEngine) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            # The live display goes first, so that nothing printed now is drawn over.
            self._stop_display()
            if self.signal_received is not None:
                # Second signal: the reports on disk are whole (atomic writes); leave now.
                print_error(f"received {name} again: exiting at once")
                self._print_resume_hints()
                os._exit(_EXIT_BY_SIGNAL.get(signum, 130))
            self.signal_received = signum
            print_error(
                f"received {name}: cancelling in-flight calls and writing reports (press Ctrl-C again to exit at once)"
            )
            loop.create_task(engine.stop(f"interrupted by {name}"))

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)

    def _stop_display(self) -> None:
        display, self._live_display = self._live_display, None
        if display is not None:
            display.stop()

    def _print_resume_hints(self) -> None:
        for path, recorder in zip(self.files, self.recorders):
            sys.stderr.write(
                f"to continue: orchestrate run {shlex.quote(str(path))} --resume {shlex.quote(str(recorder.run_dir))}\n"
            )
        sys.stderr.flush()

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _write_html_reports(self) -> None:
        # After result.json and cost.json, from the folder itself: `orchestrate report` rebuilds the same page.
        from orchestrate.observe.html_report import write_run_report

        for recorder in self.recorders:
            write_run_report(recorder.run_dir)

    def _write_artefacts(self, documents: list[dict[str, Any]]) -> None:
        opts = self.options
        if opts.junit is None and opts.summary is None:
            return
        from orchestrate.observe.ci_reports import write_junit, write_summary

        if opts.junit is not None:
            write_junit(opts.junit, documents)
        if opts.summary is not None:
            write_summary(opts.summary, documents)

    def _print_summary(self, documents: list[dict[str, Any]]) -> None:
        opts = self.options
        if opts.json_output:
            payload = [
                {
                    "name": d["name"],
                    "status": d["status"],
                    "run_dir": str(r.run_dir),
                    "total_cost": d["total_cost"],
                    "total_tokens": d["total_tokens"],
                    "retries": d["retries"],
                    "duration_seconds": d["duration_seconds"],
                    "simulated": d["simulated"],
                    "outputs": d.get("outputs", {}),
                    "agents": {a["name"]: a["status"] for a in d["agents"]},
                    "expectations": d.get("expectations"),
                }
                for d, r in zip(documents, self.recorders)
            ]
            sys.stdout.write(json.dumps(payload if len(payload) != 1 else payload[0], indent=2) + "\n")
            return
        if opts.quiet:  # only what went wrong: a line per agent, cancelled ones grouped by cause
            from orchestrate.observe.printable import printable
            from orchestrate.observe.summary import failure_lines

            for d in documents:
                for line in failure_lines(d, indent=""):
                    print_error(printable(f"{d['name']}: {line}", one_line=True))
            return
        import shutil

        from orchestrate.observe.summary import closing_lines

        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        from orchestrate.run.evaluation import expectation_lines

        blocks = [
            "\n".join([*closing_lines(d, r.run_dir, path, width=width), *expectation_lines(d.get("expectations"))])
            for d, r, path in zip(documents, self.recorders, self.files)
        ]
        from orchestrate.observe.printable import printable

        lead = "\n" if opts.live else ""  # set apart from the live table's last frame
        sys.stdout.write(lead + printable("\n\n".join(blocks)) + "\n")  # provider text: controls escaped
        sys.stdout.flush()


def start_tracing(opts: RunOptions) -> Any:
    """OpenTelemetry for this run when `--otel` or the standard variables ask for it, else None."""
    if not tracing_requested(opts.otel, os.environ):
        return None
    try:
        from orchestrate.observe.otel import Tracing
    except ImportError:
        message = "OpenTelemetry is not installed: pip install 'orchestrate[otel]'"
        if opts.otel:
            raise UserInputError(f"--otel: {message}") from None
        _warn(f"OTEL_EXPORTER_OTLP_ENDPOINT is set but {message}; running without traces")
        return None
    return Tracing(content=opts.otel_content, warn=_warn)


def tracing_requested(flag: bool, env: Any) -> bool:
    """Traces are on with `--otel` or an OTLP endpoint in the environment, and off whenever
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` says so (the SDK's own switches)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return flag or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _without_content(opts: RunOptions) -> None:
    """store_content: false: traces without content, and no response cache (it keeps answers)."""
    if opts.otel_content:
        _warn("--otel-content ignored: the workflow's data_protection says store_content: false")
        opts.otel_content = False
    if opts.cache is not None:
        _warn("--cache ignored: the response cache keeps answers, and store_content is false")
        opts.cache = None


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def check_output_paths(opts: RunOptions) -> None:
    """Refuse, before the first call is paid for, a report path or cache folder that cannot be used.

    Raises:
        UserInputError: naming the flag and the user's path (exit 2).
    """
    from orchestrate.fsutil import check_writable

    for flag, path in (("--junit", opts.junit), ("--summary", opts.summary)):
        if path is not None:
            problem = check_writable(path)
            if problem:
                raise UserInputError(f"{flag} {path}: {problem}")
    if opts.cache is not None and "://" not in str(opts.cache):  # a state URL is checked when opened
        cache = Path(opts.cache)
        if cache.exists() and not cache.is_dir():
            raise UserInputError(f"--cache {cache}: is a file, not a folder")
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"--cache {cache}: cannot create the folder: {exc.strerror or exc}") from None
        if not os.access(cache, os.W_OK | os.X_OK):
            raise UserInputError(f"--cache {cache}: the folder is not writable")


def _warn_cache(store: Any) -> None:
    """Cache entries that could not be used or stored: said once, after the run they did not stop."""
    problems = list(getattr(store, "problems", ()))
    if problems:
        from orchestrate.observe.printable import printable

        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        sys.stderr.write(
            printable(f"warning: --cache: {problems[0]}{more}; those requests went to the provider", one_line=True)
            + "\n"
        )


def _warn_usage(documents: list[dict[str, Any]]) -> None:
    """Usage a provider reported that was not taken at its word, and any budget it pushed past:
    printed even with --quiet, since it is money spent that the budget did not foresee."""
    from orchestrate.observe.printable import printable

    for doc in documents:
        for item in doc.get("usage_anomalies") or ():
            sys.stderr.write(
                printable(f"warning: {doc['name']}/{item['agent']}: usage anomaly: {item['anomaly']}", one_line=True)
                + "\n"
            )
        overrun = doc.get("budget_overrun")
        if overrun:
            sys.stderr.write(
                f"warning: {doc['name']}: budget of ${overrun['budget']:.4f} passed: "
                f"${overrun['spent']:.4f} spent ({overrun['cause']})\n"
            )
    sys.stderr.flush()


class _DecisionKeeper:
    """Adds decisions made during the run (in the terminal) to the run folder's approvals.json."""

    def __init__(self, run_dir: Path, decisions: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.decisions = dict(decisions)

    def __call__(self, event: Any) -> None:
        from orchestrate.run.approvals import Decision, write_decisions
        from orchestrate.run.events import EventType

        if event.type is not EventType.APPROVAL_DECIDED or event.agent in self.decisions:
            return
        d = event.data
        self.decisions[event.agent] = Decision(
            event.agent,
            bool(d.get("approved")),
            str(d.get("by")),
            str(d.get("at")),
            d.get("note"),
            str(d.get("source")),
        )
        write_decisions(self.run_dir, self.decisions)


def _only(workflow_id: str, sink: Any) -> Any:
    def forward(event: Any) -> None:
        if event.workflow_id == workflow_id:
            sink(event)

    return forward


async def check_shared_state(state: Any, cache_store: Any, workflows: list[Workflow]) -> None:
    """The shared state (and a Redis cache) answers, and every budget scope the workflows name is set.

    Raises:
        StateUnavailableError: When the state or cache cannot be reached (exit 1).
        UserInputError: For a scope never set, naming the command that sets it (exit 2).
    """
    from orchestrate.errors import UserInputError
    from orchestrate.money.budget_scope import set_command

    cache_state = getattr(cache_store, "state", None)
    if cache_state is not None and cache_state is not state:
        await cache_state.connect()
    if state is not None:
        await state.connect()
    for scope in sorted({wf.budget_scope for wf in workflows if wf.budget_scope}):
        if not _SCOPE.fullmatch(scope):
            raise UserInputError(f"budget scope {scope!r}: use letters, digits, '.', '_', ':' and '-' (at most 128)")
        if state is None:
            raise UserInputError(
                f"budget scope {scope!r} is not set in this process (no --state); set it with: "
                f"{set_command(scope, 'memory://')}"
            )
        found = await state.budget_get(scope)
        if found.limit is None:
            raise UserInputError(
                f"budget scope {scope!r} is not set in {state.url}; set it with: {set_command(scope, state.url)}"
            )
