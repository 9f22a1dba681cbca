"""How one agent reads in every view: why it did not complete, and a code step as the call it made.

`reason` is the one line that explains a status: the error of a failed agent,
the condition that skipped one (``when 'inputs.post_to_ledger' was false``), the
question an approval waits on. `code_call` shows a code step as what it is,
``finance_tools:adjustment_summary(bank=..., accruals=...)``, never as a model
call whose prompt was not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrate.observe.answer import inline

__all__ = ["code_call", "is_code_step", "reason"]


def reason(agent: Mapping[str, Any]) -> str | None:
    """Why the agent has its status (None for a completed one with nothing to say)."""
    if agent.get("error"):
        return str(agent["error"])
    meta = agent.get("metadata") or {}
    if agent.get("status") == "skipped" and meta.get("skipped"):
        return f"skipped: {meta['skipped']}"
    approval = meta.get("approval") or {}
    if agent.get("status") == "waiting_approval" and approval.get("message"):
        return f"waiting for approval: {approval['message']}"
    return None


def is_code_step(agent: Mapping[str, Any]) -> bool:
    """True for a code step (a Python function, no model)."""
    return bool((agent.get("metadata") or {}).get("function"))


def code_call(agent: Mapping[str, Any], *, limit: int | None = None) -> str | None:
    """``module:function(name=value, ...)`` for a code step (None for a model's agent), cut at `limit`."""
    meta = agent.get("metadata") or {}
    function = meta.get("function")
    if not function:
        return None
    arguments = meta.get("arguments")
    if isinstance(arguments, Mapping) and not arguments.get("withheld"):
        inner = ", ".join(f"{name}={inline(value)}" for name, value in arguments.items())
    elif arguments is None:
        inner = ""
    else:
        inner = "…"
    call = f"{function}({inner})"
    if limit is not None and len(call) > limit:
        call = call[: max(limit - 2, 1)] + "…)"
    return call
