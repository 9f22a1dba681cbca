"""`orchestrate models [WORKFLOW]`: the models orchestrate knows, their prices and what they accept."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import check_format, fail, format_option, is_interactive, json_alias, print_json

__all__ = ["models"]

FORMATS = ("table", "json")


def models(
    workflow: Annotated[
        Path | None,
        typer.Argument(
            metavar="WORKFLOW", show_default=False, help="Also the models of this workflow's own prices: table."
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option("--provider", metavar="NAME", help="Only this provider's models (openai, anthropic, ...)."),
    ] = None,
    fmt: format_option(FORMATS) = "table",  # type: ignore[valid-type]
    as_json: json_alias() = False,  # type: ignore[valid-type]
) -> None:
    """List the models with a known price: provider, USD per million tokens (input, cached input,
    output), the share a provider batch API charges, and what each accepts (structured output,
    tools, sampling parameters, context window).

    Prices come from the package's dated table, plus WORKFLOW's own `prices:` (which win).

    \b
    Examples:
      orchestrate models
      orchestrate models --provider anthropic
      orchestrate models workflows/finance_month_end_close.yaml --format json
    """
    fmt = check_format(fmt, FORMATS, as_json=as_json)
    entries = _entries(workflow)
    if provider is not None:
        entries = [e for e in entries if e["provider"] == provider]
        if not entries:
            fail(f"--provider {provider}: no model of that provider has a price")
    if fmt == "json":
        print_json("models", {"models": entries})
        return
    from orchestrate.observe.tables import Column, build_table, plain_console

    columns = (
        Column("model"),
        Column("provider", drop=6),
        Column("input $/1M", "right", "number"),
        Column("cached $/1M", "right", "number", drop=3),
        Column("output $/1M", "right", "number"),
        Column("batch", "right", "number", drop=4),
        Column("structured output", drop=2),
        Column("tools", drop=5),
        Column("sampling", kind="text", drop=1),
    )
    rows = [
        [
            e["model"] + (" (workflow)" if e["source"] == "workflow" else ""),
            e["provider"],
            _per_million(e["prices"].get("input")),
            _per_million(e["prices"].get("cached_input")),
            _per_million(e["prices"].get("output")),
            f"{e['batch_share'] * 100:.0f}%" if e["batch_share"] is not None else "-",
            str(e["capabilities"].get("response_format")),
            "yes" if e["capabilities"].get("tools") else "no",
            _sampling(e["capabilities"]),
        ]
        for e in entries
    ]
    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    console.print(build_table(columns, rows, width=console.width if interactive else None))
    table_date = _table()["date"]
    console.print(f"prices of {table_date} in USD per million tokens; a workflow's prices: override them")


def _table() -> dict[str, Any]:
    from orchestrate.llm.prices import price_table

    return price_table()


def _entries(workflow: Path | None) -> list[dict[str, Any]]:
    from orchestrate.llm.capabilities import lookup

    table = _table()
    shares = table.get("batch") or {}
    found: dict[str, dict[str, Any]] = {}
    for model, price in (table.get("models") or {}).items():
        found[model] = {"model": model, "source": "package", **_price_entry(price)}
    for model, price in _workflow_prices(workflow).items():
        base = found.get(model, {}).get("prices", {})
        found[model] = {"model": model, "source": "workflow", **_price_entry({**base, **price})}
    entries = []
    for model, entry in found.items():
        provider = str(entry["provider"])
        share = shares.get(provider)
        caps = lookup(model, provider if provider != "unknown" else "openai").to_dict()
        entries.append(
            {
                **entry,
                "batch_share": float(share) if isinstance(share, (int, float)) else None,
                "capabilities": {
                    k: caps[k]
                    for k in ("response_format", "tools", "temperature", "top_p", "stop", "context_window")
                    if k in caps
                },
            }
        )
    return sorted(entries, key=lambda e: (e["provider"], e["model"]))


def _price_entry(price: dict[str, Any]) -> dict[str, Any]:
    prices = {k: float(v) for k, v in price.items() if k != "provider" and isinstance(v, (int, float))}
    provider = price.get("provider") or ("anthropic" if str(price.get("model", "")).startswith("claude") else None)
    return {"provider": str(provider or "unknown"), "prices": prices, "unit": "USD per 1K tokens"}


def _workflow_prices(workflow: Path | None) -> dict[str, dict[str, Any]]:
    if workflow is None:
        return {}
    import yaml

    try:
        document = yaml.safe_load(workflow.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        fail(f"{workflow}: cannot read: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{workflow}: not valid YAML ({exc}); orchestrate validate {workflow} points at it")
    prices = document.get("prices") if isinstance(document, dict) else None
    return {str(k): dict(v) for k, v in (prices or {}).items() if isinstance(v, dict)}


def _per_million(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    amount = float(value) * 1000
    return f"{amount:.2f}" if amount >= 0.1 else f"{amount:.4f}".rstrip("0")


def _sampling(caps: dict[str, Any]) -> str:
    taken = [name for name in ("temperature", "top_p", "stop") if caps.get(name)]
    return ", ".join(taken) if taken else "none"
