"""A run of one or more workflows, side by side in one engine: `execute_workflows`.

Order: load every workflow; check the report paths; read what a resumed run
reused and decided; assemble the engine (clients, state, approver, cache,
provider batches, traces); make a run folder per workflow with its sinks; run
under signals; write the reports. What is printed about it is the caller's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrate.app.exits import ExitCode, for_signal, for_status, worst
from orchestrate.app.invocation import Invocation
from orchestrate.app.record import record_invocation
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
from orchestrate.observe.eventlog import EventLog
from orchestrate.observe.reports import RunRecorder, new_run_dir
from orchestrate.run.closing import closing_warnings, fail_closed
from orchestrate.run.engine import EngineConfig, OrchestrationEngine
from orchestrate.run.events import Event, Sink
from orchestrate.workflow.loader import load_workflow
from orchestrate.workflow.models import Workflow

__all__ = ["RunOutcome", "execute_workflows"]

ApproverFactory = Callable[[str, Callable[[bool], None]], Any]
"""Makes the approver that asks a person: given who decides and a function that pauses (True)
and resumes (False) the live display around the question."""


@dataclass
class RunOutcome:
    """What a run of workflows left behind.

    Attributes:
        documents: Each workflow's result.json document, in the order of the files.
        run_dirs: Each workflow's run folder.
        files: The workflow files.
        exit_code: The process exit code (`orchestrate.app.exits`).
        signal: The signal that stopped the run, if one did.
        state_error: Why the shared state was lost mid-run, if it was.
        open_batches: Per workflow, the provider batches still running at the provider.
        cache_problems: Cache entries that could not be used or stored.
        warnings: Closing lines on what the run left behind (worker threads still running, ...).
        halted: Why the run stopped itself (a journal that could not be written), if it did.
        baseline_lines: The comparison with `invocation.baseline`, for a person.
        audit_failure: Why the audit trail's last record or head could not be kept, if so.
    """

    documents: list[dict[str, Any]]
    run_dirs: list[Path]
    files: list[Path]
    exit_code: int
    signal: int | None = None
    state_error: str | None = None
    open_batches: list[list[dict[str, Any]]] = field(default_factory=list)
    cache_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    halted: str | None = None
    baseline_lines: list[str] = field(default_factory=list)
    audit_failure: str | None = None


def execute_workflows(
    invocation: Invocation,
    *,
    sinks: Sequence[Sink] = (),
    make_approver: ApproverFactory | None = None,
    notify: Callable[[str], None] = notice,
    inform: Callable[[str], None] = lambda line: None,
    handle_signals: bool = False,
) -> RunOutcome:
    """Run the invocation's workflows side by side and write a run folder for each.

    Args:
        invocation: What to run.
        sinks: More sinks for the engine's events (all workflows').
        make_approver: Asks a person for approvals not decided up front (with `invocation.ask`).
        notify: Prints a line for a person (signals, shared-state bookings).
        inform: Prints a line of information (what a resume reuses); silent by default.
        handle_signals: Stop cleanly on SIGINT/SIGTERM (only from the main thread).

    Raises:
        UserInputError: A workflow, an input or an option is invalid (nothing was run).
    """
    invocation = dataclasses.replace(invocation)  # a data-protection policy may turn parts of it off
    session = _Session(invocation, sinks, make_approver, notify, handle_signals)
    session.inform = inform
    return session.execute()


class _Session:
    def __init__(
        self,
        invocation: Invocation,
        sinks: Sequence[Sink],
        make_approver: ApproverFactory | None,
        notify: Callable[[str], None],
        handle_signals: bool,
    ) -> None:
        self.inv = invocation
        self.sinks = list(sinks)
        self.make_approver = make_approver
        self.notify = notify
        self.handle_signals = handle_signals
        self.recorders: list[RunRecorder] = []
        self.ledgers: list[Any] = []
        self.carried: list[dict[str, Any]] = []  # open batches of the run being resumed
        self.decisions: list[dict[str, Any]] = []
        self.interrupts: Interrupts | None = None
        self._live_display: Any = None
        self.clients: Clients | None = None
        self.inform: Callable[[str], None] = lambda line: None
        self.trails: list[Any] = []  # the audit trail of each recorder, in order
        self.approver: tuple[str | None, str] = (None, "none")
        self.pseudonyms: list[Any] = []  # per workflow, the key of its pseudonyms (None: no policy)

    def execute(self) -> RunOutcome:
        inv = self.inv
        workflows = [self._load(path) for path in inv.workflows]
        check_output_paths(inv)
        from orchestrate.run.rescore import check_baseline

        check_baseline(inv.baseline)
        self._compliance(workflows)
        reuse: dict[str, Any] = {}
        decided: dict[str, Any] = {}
        if inv.resume is not None:
            from orchestrate.run.approvals import read_decisions
            from orchestrate.run.batch_ledger import open_batches
            from orchestrate.run.resume import plan_resume

            reuse = plan_resume(inv.resume, workflows[0])
            self.carried = open_batches(inv.resume)
            decided = read_decisions(inv.resume)
        self.decisions = [self._up_front(wf, decided) for wf in workflows]
        if inv.resume is not None:
            from orchestrate.run.approvals import check_unclaimed

            check_unclaimed(inv.resume, self._acting_on(inv.resume, self.decisions[0], reuse))
        engine = self._engine(workflows)
        tracing = start_tracing(inv)
        if tracing is not None:
            engine.add_sink(tracing.sink)
        if inv.resume is not None:  # said once every check has passed, just before the run
            spent = sum(result.cost for result in reuse.values())
            others = len(workflows[0].agents) - len(reuse)
            self.inform(
                f"resuming {inv.resume}: reusing {len(reuse)} agent(s) (${spent:.6f} already spent) whose "
                f"definitions and inputs are unchanged; running the other {others}"
            )
        try:
            asyncio.run(self._run(engine, workflows, reuse))
        finally:
            if tracing is not None:
                tracing.shutdown()  # flushes what is buffered, Ctrl-C included
        halted = fail_closed(engine, workflows)
        if halted is not None:  # said first: writing the reports may fail for the same reason
            self.notify(halted)
        self._keep_unsettled(engine, workflows)  # on every way out: a signal or a halt may come with the loss
        documents = [recorder.flush() for recorder in self.recorders]
        audit_failures: list[str] = []
        if self.trails:
            from orchestrate.observe.compliance import close_trail

            for trail, document, workflow in zip(self.trails, documents, workflows):
                close_trail(trail, document, workflow.protector)
                if trail.failed is not None:
                    audit_failures.append(trail.failed)
            documents = [recorder.flush() for recorder in self.recorders]  # with the trail's last head
        self._write_html_reports()
        self._write_artefacts(documents)
        outcome = RunOutcome(
            documents=documents,
            run_dirs=[r.run_dir for r in self.recorders],
            files=list(inv.workflows),
            exit_code=ExitCode.COMPLETED,
            open_batches=[list(ledger.still_open) for ledger in self.ledgers],
            cache_problems=list(getattr(self.clients.cache_store if self.clients else None, "problems", ())),
            warnings=closing_warnings(engine),
            halted=halted,
        )
        received = self.interrupts.received if self.interrupts is not None else None
        if received is not None:
            outcome.signal, outcome.exit_code = received, for_signal(received)
        elif halted is not None:
            outcome.exit_code = ExitCode.FAILED
        elif audit_failures:  # the trail's last record or its head could not be kept
            outcome.audit_failure, outcome.exit_code = audit_failures[0], ExitCode.FAILED
        elif engine.state_error is not None:
            outcome.state_error, outcome.exit_code = str(engine.state_error), ExitCode.FAILED
        else:
            from orchestrate.run.evaluation import exit_code

            code = worst(for_status(wf.status.value) for wf in workflows)
            code = exit_code(code, [wf.evaluation for wf in workflows], fail_on_expect=inv.fail_on_expect)
            if self.recorders:
                from orchestrate.run.rescore import gate

                code = gate(code, self.recorders[0].run_dir, inv.baseline, inv.tolerance, outcome.baseline_lines.append)
            outcome.exit_code = code
        return outcome

    def _compliance(self, workflows: list[Workflow]) -> None:
        """Name the approver, apply each workflow's data-protection policy, and turn off
        what would keep content the policy says not to keep (see orchestrate.observe.compliance)."""
        from orchestrate.observe.compliance import (
            approver_identity,
            check_identity,
            protect_workflow,
            pseudonyms_for,
            share_protection,
            shared_protection,
        )

        self.approver = approver_identity(self.inv.approved_by)
        # An input one workflow protects is protected by all of them (and by a resume of any of their runs).
        rules = shared_protection(
            workflows, self.inv.inputs, self.inv.protected_inputs or {}, no_content=self.inv.no_content
        )
        self.inv.protected_inputs = rules
        for i, workflow in enumerate(workflows):
            share_protection(workflow, rules, self.inv.inputs)
            check_identity(workflow, self.approver[0])
            resumed = self.inv.resume if i == 0 else None
            secret = pseudonyms_for(workflow, resumed, no_content=self.inv.no_content)  # a resume: the same tokens
            self.pseudonyms.append(secret)
            protector = protect_workflow(workflow, no_content=self.inv.no_content, secret=secret)
            if protector is not None and not protector.policy.store_content:
                without_content(self.inv)

    def _trail(self, engine: OrchestrationEngine, run_dir: Path, workflow: Workflow) -> Any:
        from orchestrate.observe.compliance import open_trail

        trail = open_trail(
            run_dir,
            workflow,
            kind="run",
            argv=sys.argv,
            approver=self.approver,
            sink=self.inv.audit_sink,
            on_failure=engine.journal_failed,
            extra={"resumed_from": str(self.inv.resume) if self.inv.resume else None},
            tries=self.inv.repeat > 1,
        )
        self.trails.append(trail)
        return trail

    @staticmethod
    def _acting_on(resumed: Path, decisions: dict[str, Any], reuse: dict[str, Any]) -> list[str]:
        """The agents this run will run on an approval recorded in the resumed folder."""
        from orchestrate.run.approvals import read_decisions

        recorded = read_decisions(resumed)
        return sorted(
            name
            for name, decision in decisions.items()
            if decision.approved and name not in reuse and recorded.get(name) == decision
        )

    def _claim(self, resumed: Path, run_dir: Path, decisions: dict[str, Any], reuse: dict[str, Any]) -> None:
        """The approvals recorded in the resumed folder that this run acts on, claimed once."""
        from orchestrate.run.approvals import claim_approvals

        try:
            claim_approvals(resumed, self._acting_on(resumed, decisions, reuse), run_dir)
        except UserInputError:
            try:
                run_dir.rmdir()  # made a moment ago, still empty: no folder of a run that never ran
            except OSError:
                pass
            raise

    def _up_front(self, workflow: Workflow, decided: dict[str, Any]) -> dict[str, Any]:
        """Decisions known before the run: recorded in the resumed folder, then --approve."""
        from orchestrate.run.approvals import Decision

        inv = self.inv
        gated = [a.name for a in workflow.agents if a.approval is not None]
        for name in inv.approve:
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
            if inv.approve_all or name in inv.approve:
                source = "--approve-all" if inv.approve_all else "--approve"
                decisions[name] = Decision.now(name, True, by, source=source)
        return decisions

    def _load(self, path: Path) -> Workflow:
        workflow = load_workflow(path, inputs=self.inv.inputs)
        if self.inv.max_parallel is not None:
            workflow.max_parallel_agents = self.inv.max_parallel
        if self.inv.budget is not None:
            workflow.cost_budget = self.inv.budget
        if self.inv.budget_scope is not None:
            workflow.budget_scope = self.inv.budget_scope
        from orchestrate.llm.residency import apply_residency
        from orchestrate.run.evaluation import Evaluator

        evaluator = Evaluator.of(workflow)
        judges = evaluator.judges() if evaluator is not None else []
        apply_residency(
            workflow, self.inv.residency, judges=judges
        )  # --residency, then every route (judges too) checked
        return workflow

    def _engine(self, workflows: list[Workflow]) -> OrchestrationEngine:
        inv = self.inv
        state = open_state(inv)
        self.clients = Clients(inv, carried=self.carried, per_workflow_events=True)
        clients = self.clients.build(workflows, state)
        approver = None
        if inv.ask and self.make_approver is not None:
            approver = self.make_approver(self.approver[0] or "unknown", self._pause_display)
        engine = OrchestrationEngine(
            None,
            EngineConfig(max_threads=inv.max_threads, prompt_cache=inv.prompt_cache),
            clients=clients,
            state=state,
            approver=approver,
        )
        self.clients.attach(engine)
        return engine

    async def _run(self, engine: OrchestrationEngine, workflows: list[Workflow], reuse: dict[str, Any]) -> None:
        inv = self.inv
        display = self._display(engine)
        logs: list[EventLog] = []
        try:
            for workflow in workflows:
                await engine.register_workflow(workflow)
            await self._check_state(engine, workflows)
            # Each agent's expectations scored as it finishes; told of a run's end before its journals.
            scoring = _scoring(engine, workflows)
            from orchestrate.observe.compliance import keep_pseudonyms, withheld_inputs

            for workflow, decisions, path, secret in zip(workflows, self.decisions, inv.workflows, self.pseudonyms):
                run_dir = new_run_dir(inv.output_dir, workflow.name)
                if inv.resume is not None:
                    self._claim(inv.resume, run_dir, decisions, reuse)
                record_invocation(run_dir, inv, path, withheld=withheld_inputs(workflow, inv.inputs, secret))
                keep_pseudonyms(run_dir, secret)  # a resume of this folder makes the same tokens
                if decisions:  # carried on, so that resuming this run keeps them
                    from orchestrate.run.approvals import write_decisions

                    write_decisions(run_dir, decisions)
                engine.add_sink(_only(workflow.id, _DecisionKeeper(run_dir, decisions)))
                trail = self._trail(engine, run_dir, workflow)
                tries = inv.repeat > 1  # every try's events and audit records, each with its try number
                engine.add_sink(_only(workflow.id, trail, tries=tries))
                from orchestrate.observe.compliance import event_redactor

                log = EventLog(
                    run_dir / "events.jsonl",
                    on_error=engine.journal_failed,
                    redact=event_redactor(workflow),
                    tries=tries,
                )
                logs.append(log)
                engine.add_sink(_only(workflow.id, log, tries=tries))
                recorder = RunRecorder(
                    run_dir,
                    workflow,
                    engine.cost_tracker,
                    simulated=inv.simulate,
                    extra={
                        "resumed_from": str(inv.resume) if inv.resume else None,
                        "reused_agents": sorted(reuse),
                        "audit": trail.head,  # the same object: result.json always has the current head
                    },
                )
                self.recorders.append(recorder)
                engine.add_sink(recorder)
                from orchestrate.run.batch_ledger import BatchLedger

                ledger = BatchLedger(run_dir, workflow.id, self.carried)
                self.ledgers.append(ledger)
                engine.add_sink(ledger)
            for sink in self.sinks:
                engine.add_sink(sink)
            if self.handle_signals:
                self.interrupts = Interrupts(
                    engine.stop,
                    notify=self.notify,
                    doing="cancelling in-flight calls and writing reports",
                    before_message=self._stop_display,
                    before_exit=self._print_resume_hints,
                )
                self.interrupts.install()
            if hasattr(display, "start"):
                self._live_display = display
                display.start()
            try:

                def stopped() -> bool:
                    return self.interrupts is not None and self.interrupts.received is not None

                await asyncio.gather(
                    *(
                        engine.execute_workflow(wf.id, reuse=reuse or None, decisions=decisions or None)
                        for wf, decisions in zip(workflows, self.decisions)
                    )
                )
                if scoring is not None:
                    for wf in workflows:  # the judges still asking, and the workflows' own expectations
                        await scoring.finish(wf, score=not stopped())
                if inv.repeat > 1:  # the other tries of each run, each a run of its own
                    from orchestrate.run.repeat import repeat_run

                    await asyncio.gather(
                        *(
                            repeat_run(
                                engine, wf, inv.repeat, decisions=decisions or None, stopped=stopped, scoring=scoring
                            )
                            for wf, decisions in zip(workflows, self.decisions)
                        )
                    )
                for wf in workflows:  # the bar each run's tries are held to (exit 5 under it)
                    if inv.min_pass_rate is not None and wf.evaluation is not None:
                        wf.evaluation["min_pass_rate"] = inv.min_pass_rate
            finally:
                if scoring is not None:
                    await scoring.close()  # an interrupted run: its judges still asking are cancelled
                self._stop_display()  # on every way out, so the cursor is never left hidden
        finally:
            if self.interrupts is not None:
                self.interrupts.remove()
            await engine.shutdown()
            for log in logs:
                log.close()
            cache_store = self.clients.cache_store if self.clients is not None else None
            await close_states(engine.state, getattr(cache_store, "state", None))

    async def _check_state(self, engine: OrchestrationEngine, workflows: list[Workflow]) -> None:
        """Before anything runs: the shared state answers, and every budget scope named is set.

        Resuming a run that lost the state, what it spent meanwhile is booked
        into its scope first, so the shared ledger is whole again.
        """
        state = engine.state if self.inv.state else None
        await check_shared_state(state, self.clients.cache_store if self.clients else None, workflows)
        if state is not None and self.inv.resume is not None:
            from orchestrate.money.budget_scope import book_unsettled

            for scope, cost in await book_unsettled(state, self.inv.resume):
                self.notify(f"booked ${cost:.6f} spent while the shared state was lost into budget scope {scope!r}")

    def _keep_unsettled(self, engine: OrchestrationEngine, workflows: list[Workflow]) -> None:
        """Write what the lost state never booked next to each run's cost.json."""
        ledger = engine.cost_tracker.scopes
        if ledger is None or not ledger.unsettled or engine.state is None:
            return
        from orchestrate.money.budget_scope import write_unsettled

        for workflow, recorder in zip(workflows, self.recorders):
            entries = [e for e in ledger.unsettled if e["workflow_id"] == workflow.id]
            if entries:
                write_unsettled(recorder.run_dir, engine.state.url, entries)

    def _pause_display(self, paused: bool) -> None:
        """Stop the live table while the terminal asks for an approval, and start it again after."""
        display = self._live_display
        if display is not None:
            (display.stop if paused else display.start)()

    def _display(self, engine: OrchestrationEngine) -> Any:
        progress = self.inv.progress
        display: Any = None
        if progress == "live":
            from rich.console import Console

            from orchestrate.observe.progress import LiveTable

            display = LiveTable(Console(file=sys.stderr))
        elif progress in ("plain", "quiet"):
            from orchestrate.observe.progress import PlainLog

            display = PlainLog(sys.stderr, quiet=progress == "quiet")
        if display is not None:
            engine.add_sink(display)
        return display

    def _stop_display(self) -> None:
        display, self._live_display = self._live_display, None
        if display is not None:
            display.stop()

    def _print_resume_hints(self) -> None:
        for recorder in self.recorders:
            sys.stderr.write(f"to continue: orchestrate run --resume {shlex.quote(str(recorder.run_dir))}\n")
        sys.stderr.flush()

    def _write_html_reports(self) -> None:
        # After result.json and cost.json, from the folder itself: `orchestrate report` rebuilds the same page.
        from orchestrate.observe.html_report import write_run_report

        for recorder in self.recorders:
            write_run_report(recorder.run_dir)

    def _write_artefacts(self, documents: list[dict[str, Any]]) -> None:
        inv = self.inv
        if inv.junit is None and inv.summary is None:
            return
        from orchestrate.observe.ci_reports import write_junit, write_summary

        if inv.junit is not None:
            write_junit(inv.junit, documents)
        if inv.summary is not None:
            write_summary(inv.summary, documents)


class _DecisionKeeper:
    """Adds decisions made during the run (in the terminal) to the run folder's approvals.json."""

    def __init__(self, run_dir: Path, decisions: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.decisions = dict(decisions)

    def __call__(self, event: Event) -> None:
        from orchestrate.run.approvals import Decision, write_decisions
        from orchestrate.run.events import EventType

        if event.type is not EventType.APPROVAL_DECIDED or event.agent is None or event.agent in self.decisions:
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


def _scoring(engine: OrchestrationEngine, workflows: list[Workflow]) -> Any:
    """A `LiveScoring` told about each run with expectations; None (and no sink) when none has any."""
    from orchestrate.run.evaluation import Evaluator

    evaluators = [(wf, Evaluator.of(wf)) for wf in workflows]
    if all(evaluator is None for _wf, evaluator in evaluators):
        return None
    from orchestrate.run.live_scoring import LiveScoring

    scoring = LiveScoring(engine)
    for wf, evaluator in evaluators:
        if evaluator is not None:
            scoring.begin(wf, evaluator)
    return scoring


def _only(workflow_id: str, sink: Sink, *, tries: bool = False) -> Sink:
    """`sink`, told only the events of the run `workflow_id`; with `tries` (``--repeat K``), of
    its later tries' runs too (``ID.2``, ``ID.3``: see `orchestrate.run.events.try_id`)."""
    if tries:
        prefix = workflow_id + "."

        def forward_tries(event: Event) -> None:
            wid = event.workflow_id
            if wid == workflow_id or (wid is not None and wid.startswith(prefix) and wid[len(prefix) :].isdigit()):
                sink(event)

        return forward_tries

    def forward(event: Event) -> None:
        if event.workflow_id == workflow_id:
            sink(event)

    return forward
