"""What a run says at its end about the promises it kept by failing closed or going on.

- A journal that could not be written stopped every new call (`OrchestrationEngine.journal_failed`):
  the run exits 1 naming the file and the error, never ``completed`` with a short journal.
- A sink that failed (the live display, a trace exporter) did not stop the run: each is named once
  with its first error.
- Worker threads still running a function past its timeout are counted
  (`orchestrate.run.workers`).
"""

from __future__ import annotations

from typing import Any

from orchestrate.run.workers import stuck_line

__all__ = ["closing_warnings", "fail_closed", "halt_message"]


def halt_message(engine: Any) -> str | None:
    """The error line of a run stopped because a journal could not be written, or None."""
    halted = getattr(engine, "halted", None)
    if halted is None:
        return None
    return (
        f"{halted}; no call was started after it, calls in flight finished and were recorded where "
        "they could be; the run folder is incomplete"
    )


def fail_closed(engine: Any, workflows: list[Any]) -> str | None:
    """Mark the runs of a halted engine failed, with the reason (their journals are short);
    returns `halt_message`, or None when no journal failed."""
    halted = getattr(engine, "halted", None)
    if halted is None:
        return None
    from orchestrate.workflow.models import WorkflowStatus

    for workflow in workflows:
        if workflow.status is not WorkflowStatus.CANCELLED:
            workflow.status = WorkflowStatus.FAILED
        workflow.error = halted
    return halt_message(engine)


def closing_warnings(engine: Any) -> list[str]:
    """Lines for stderr: each failed sink once, then threads left running a timed-out function."""
    lines = [
        f"warning: {name} failed ({error}); the run went on without it"
        for name, error in getattr(engine, "sink_failures", {}).items()
    ]
    workers = getattr(engine, "workers", None)
    line = stuck_line(workers) if workers is not None else None
    if line:
        lines.append(line)
    return lines
