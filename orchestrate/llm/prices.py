"""The package's price table and how a model's price is found in it (or in a workflow's own `prices:`).

Prices belong with the providers' other facts (`capabilities`): the workflow checks
look a model up here to refuse one with no price, and `money` charges from it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from orchestrate.fsutil import package_text

__all__ = ["closest_model", "find_price", "price_table", "regional_uplift"]

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)\Z")


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The built-in price table: ``{"date", "currency", "unit", "models": {name: prices}}``."""
    return json.loads(package_text("prices.json"))


def _match(model: str, table: Mapping[str, Mapping[str, float]]) -> str | None:
    """`model` itself, else its family once a documented snapshot suffix is taken off.

    Only ``-YYYY-MM-DD``, ``-YYYYMMDD`` and ``-latest`` fall back: anything else
    (``gpt-4o-mnii``) is an unknown model, never priced as a model it starts with.
    """
    if model in table:
        return model
    family = _SNAPSHOT.sub("", model)
    if family != model and family in table:
        return family
    return None


def closest_model(model: str, overrides: Mapping[str, Any] | None = None) -> str | None:
    """The known model name nearest to `model` (for "did you mean ...?"), or None."""
    names = sorted({*price_table()["models"], *(overrides or {})})
    close = difflib.get_close_matches(model, names, n=1, cutoff=0.6)
    return close[0] if close else None


def find_price(model: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> Mapping[str, float] | None:
    """The prices of `model` (overrides first, then the built-in table), or None if unknown."""
    if overrides:
        name = _match(model, overrides)
        if name is not None:
            return overrides[name]
    models = price_table()["models"]
    name = _match(model, models)
    return models[name] if name is not None else None


def regional_uplift(provider: str, model: str, region: str) -> float:
    """What a call served in `region` costs over the list price: the table's ``regional``
    multiplier of `model` (its base name) for `provider`, for any region but ``global``; else 1."""
    if region in ("global", "local") or region.startswith("host:"):
        return 1.0
    rates = price_table().get("regional", {}).get(provider)
    if not isinstance(rates, Mapping):
        return 1.0
    name = _match(model, rates)
    rate = rates.get(name) if name is not None else None
    return float(rate) if isinstance(rate, (int, float)) and rate >= 1.0 else 1.0
