"""`orchestrate approve`: decide on an agent waiting for approval; and the terminal's y/N question."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrate.cli.common import latest_run_dir

if TYPE_CHECKING:
    from orchestrate.run.approvals import Decision
    from orchestrate.workflow.models import Agent, Workflow

__all__ = ["TerminalApprover", "approve"]


def approve(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="The run folder of a run that ended 'waiting' (latest: the newest in ./runs).",
            show_default=False,
            callback=latest_run_dir,
        ),
    ],
    agent: Annotated[str, typer.Argument(metavar="AGENT", help="The agent waiting for approval.", show_default=False)],
    reject: Annotated[
        bool, typer.Option("--reject", help="Reject instead of approve: the agent ends 'rejected'.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", metavar="TEXT", help="Why; kept with the decision.")] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            "--approver",
            metavar="NAME",
            help="Who decides (default: ORCHESTRATE_APPROVER, else the login name).",
        ),
    ] = None,
) -> None:
    """Record a decision (who, when, note) in RUN_DIR; then `orchestrate run --resume RUN_DIR`.

    \b
    Examples:
      orchestrate approve runs/finance_month_end_close-20261125T101500Z post_adjustments --by controller
      orchestrate approve runs/finance_month_end_close-20261125T101500Z post_adjustments --reject --note "wrong period"
    """
    from orchestrate.observe.compliance import approver_identity
    from orchestrate.run.approvals import Decision, record_decision

    name, _ = approver_identity(by)
    decision = Decision.now(agent, not reject, name or "unknown", note=note, source="approve")
    record_decision(run_dir, decision)
    verb = "rejected" if reject else "approved"
    from orchestrate.observe.approval_view import when_decided

    sys.stdout.write(
        f"{agent}: {verb} by {decision.by} at {when_decided(decision.at)}\n"
        f"continue with: orchestrate run --resume {shlex.quote(str(run_dir))}\n"
    )


class TerminalApprover:
    """Asks in the terminal, one question at a time, as `terraform apply` does: only y/yes approves.

    End of input (Ctrl-D) leaves the agent waiting, to be decided later with `orchestrate approve`.
    """

    def __init__(
        self, *, by: str, pause: Callable[[bool], None] | None = None, read: Callable[[], str] | None = None
    ) -> None:
        self.by = by
        self.pause = pause
        self.read = read or sys.stdin.readline
        self.lock = asyncio.Lock()

    async def __call__(self, workflow: Workflow, agent: Agent, message: str) -> Decision | None:
        from orchestrate.run.approvals import Decision

        async with self.lock:
            if self.pause is not None:
                self.pause(True)
            try:
                sys.stderr.write(
                    f"\n{workflow.name}/{agent.name} needs approval: {message}\n"
                    "Approve? Only 'y' or 'yes' approves [y/N]: "
                )
                sys.stderr.flush()
                answer = await asyncio.to_thread(self.read)
            finally:
                if self.pause is not None:
                    self.pause(False)
        if answer == "":  # end of input: nobody to ask
            return None
        approved = answer.strip().lower() in ("y", "yes")
        return Decision.now(agent.name, approved, self.by, source="terminal")
