"""`orchestrate approve`: decide on an agent waiting for approval; and the terminal's y/N question."""

from __future__ import annotations

import asyncio
import os
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
    The answer is read as the terminal hands it over (the event loop watches standard input), not
    in a thread: a run stopped by Ctrl-C while asking leaves at once, never waiting for Enter.

    Args:
        by: Who decides.
        pause: Told True while a question is asked (the live table stops), False after.
        read: Reads a line (tests); by default standard input is watched.
    """

    def __init__(
        self, *, by: str, pause: Callable[[bool], None] | None = None, read: Callable[[], str] | None = None
    ) -> None:
        self.by = by
        self.pause = pause
        self.read = read
        self.lock = asyncio.Lock()
        self.asking = False  # a question is on the screen, its line not yet ended

    def end_question(self) -> None:
        """End the open question's line, so that a notice printed now (Ctrl-C's) starts a line of its own."""
        if self.asking:
            self.asking = False
            sys.stderr.write("\n")
            sys.stderr.flush()

    async def _line(self) -> str:
        """A line of standard input; "" at its end."""
        if self.read is not None:
            return await asyncio.to_thread(self.read)
        loop = asyncio.get_running_loop()
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # no real standard input: nobody to ask
            return ""
        answer: asyncio.Future[str] = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)  # a terminal hands over a whole line
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not answer.done():
                answer.set_result(data.decode(errors="replace"))

        try:
            loop.add_reader(fd, readable)
        except (OSError, ValueError, NotImplementedError):  # a regular file: reading it never blocks
            return sys.stdin.readline()
        try:
            return await answer
        finally:
            loop.remove_reader(fd)

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
                self.asking = True
                answer = await self._line()
                self.asking = False  # the terminal echoed the line's end
            finally:
                if self.pause is not None:
                    self.pause(False)
        if answer == "":  # end of input: nobody to ask
            return None
        approved = answer.strip().lower() in ("y", "yes")
        return Decision.now(agent.name, approved, self.by, source="terminal")
