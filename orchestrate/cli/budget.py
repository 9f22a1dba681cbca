"""`orchestrate budget show|set|reset|reconcile SCOPE`: budgets shared by name in the shared state."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import (
    NamespaceOption,
    StateOption,
    check_format,
    fail,
    format_option_info,
    is_interactive,
    json_option_info,
    print_json,
)

__all__ = ["app"]

app = typer.Typer(
    name="budget",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich" if is_interactive(sys.stderr) else None,
    help="Show, set, reset or reconcile a budget scope shared by every run using the same --state.",
)

ScopeArgument = Annotated[
    str, typer.Argument(metavar="SCOPE", show_default=False, help="The scope's name, as in a workflow's budget_scope.")
]
FORMATS = ("text", "json")
FormatChoice = Annotated[str, format_option_info(FORMATS)]
JsonAlias = Annotated[bool, json_option_info()]


def _with_state(url: str | None, namespace: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from orchestrate.state.backends import state_from_url

    if not url:
        fail("budget scopes live in the shared state: pass --state redis://HOST:PORT/DB or set ORCHESTRATE_STATE_URL")
    state = state_from_url(url, namespace=namespace)

    async def go() -> Any:
        try:
            await state.connect()
            return await work(state)
        finally:
            await state.aclose()

    return asyncio.run(go())


MAX_BUDGET_USD = 1e9  # a ceiling beyond any department's spend is a typo, not a budget


def _print(found: Any, fmt: str, as_json: bool) -> None:
    data = found.to_dict()
    if check_format(fmt, FORMATS, as_json=as_json) == "json":
        print_json("budget_scope", data, sort_keys=True)
        return
    from orchestrate.money.amounts import usd as money

    def usd(amount: float) -> str:  # a real spend of $0.00002 reads as such, never as $0.0000
        return "$0.0000" if amount == 0 else money(amount)

    limit = "not set" if data["limit"] is None else usd(data["limit"])
    remaining = "-" if data["remaining"] is None else usd(data["remaining"])
    sys.stdout.write(
        f"{data['scope']}: limit {limit}, spent {usd(data['spent'])}, "
        f"reserved {usd(data['reserved'])} ({data['open_reservations']} open), "
        f"remaining {remaining}\n"
    )


def _check_scope(scope: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", scope):
        fail(f"budget scope {scope!r}: use letters, digits, '.', '_', ':' and '-' (at most 128)")


@app.command("show")
def show(
    scope: ScopeArgument,
    state: StateOption = None,
    state_namespace: NamespaceOption = "orchestrate",
    fmt: FormatChoice = "text",
    as_json: JsonAlias = False,
) -> None:
    """Print a scope's ceiling, spend, open reservations and what remains.

    \b
    Examples:
      orchestrate budget show finance-2026-11 --state redis://redis:6379/0
      ORCHESTRATE_STATE_URL=redis://redis:6379/0 orchestrate budget show finance-2026-11 --format json
    """
    _check_scope(scope)
    _print(_with_state(state, state_namespace, lambda s: s.budget_get(scope)), fmt, as_json)


@app.command("set")
def set_(
    scope: ScopeArgument,
    usd: Annotated[float, typer.Argument(metavar="USD", help="The ceiling in USD.", show_default=False)],
    state: StateOption = None,
    state_namespace: NamespaceOption = "orchestrate",
    fmt: FormatChoice = "text",
    as_json: JsonAlias = False,
) -> None:
    """Set (or change) a scope's ceiling in USD; what it has spent stays.

    \b
    Examples:
      orchestrate budget set finance-2026-11 250 --state redis://redis:6379/0
    """
    _check_scope(scope)
    if not math.isfinite(usd) or usd < 0 or usd > MAX_BUDGET_USD:
        fail(f"budget {usd!r}: must be a number of USD from 0 to {MAX_BUDGET_USD:,.0f}")
    _print(_with_state(state, state_namespace, lambda s: s.budget_set(scope, usd)), fmt, as_json)


@app.command("reset")
def reset(
    scope: ScopeArgument,
    state: StateOption = None,
    state_namespace: NamespaceOption = "orchestrate",
    fmt: FormatChoice = "text",
    as_json: JsonAlias = False,
) -> None:
    """Forget what a scope has spent (a new month); its ceiling stays.

    \b
    Examples:
      orchestrate budget reset finance-2026-11 --state redis://redis:6379/0
    """
    _check_scope(scope)
    _print(_with_state(state, state_namespace, lambda s: s.budget_reset(scope)), fmt, as_json)


@app.command("reconcile")
def reconcile(
    scope: ScopeArgument,
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="Every run folder (each shard's, each resumed one's) that spent in the scope.",
            show_default=False,
        ),
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Set the scope's spend to the sum of the folders' calls.")
    ] = False,
    state: StateOption = None,
    state_namespace: NamespaceOption = "orchestrate",
    fmt: FormatChoice = "text",
    as_json: JsonAlias = False,
) -> None:
    """Recompute a scope's spend from the cost.json of the runs that used it; show (and --apply) the difference.

    Run it once those runs have finished: the scope's spend should equal the
    sum of their calls (calls carried over from an earlier session count once).

    \b
    Examples:
      orchestrate budget reconcile finance-2026-11 runs/invoices-* --state redis://redis:6379/0
      orchestrate budget reconcile finance-2026-11 runs/invoices-* --apply --state redis://redis:6379/0
    """
    from orchestrate.errors import UserInputError
    from orchestrate.money.reconcile import reconcile_scope

    _check_scope(scope)
    output = check_format(fmt, FORMATS, as_json=as_json)
    try:
        found = _with_state(state, state_namespace, lambda s: reconcile_scope(s, scope, run_dirs, apply=apply))
    except UserInputError as exc:
        fail(str(exc))
    data = found.to_dict()
    if output == "json":
        print_json("budget_reconciliation", data, sort_keys=True)
        return
    lines = [f"{scope}: stored spend ${data['stored_spent']:.6f}, calls of {len(data['runs'])} run folder(s) "]
    lines[0] += f"${data['expected_spent']:.6f}, difference ${data['drift']:+.6f}"
    for name, cost in data["runs"].items():
        note = f" (${data['unsettled'][name]:.6f} of it not booked yet)" if name in data["unsettled"] else ""
        lines.append(f"  {name}: ${cost:.6f}{note}")
    if found.applied is not None:
        lines.append(f"applied: spend set to ${data['spent_now']:.6f}")
    elif abs(found.drift) > 1e-9:
        lines.append("run again with --apply to set the scope's spend to the sum of the calls")
    else:
        lines.append("in agreement")
    sys.stdout.write("\n".join(lines) + "\n")
