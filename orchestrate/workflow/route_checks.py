"""What `validate` says about an agent's routes: fallbacks that lack what the agent uses, and
endpoints outside the workflow's residency.

A fallback stands in for the agent's model in the middle of its work, so it must
take what the agent sends: tools when the agent has tools, a native output
schema when the agent's own model has one (a fallback that can only be asked in
the prompt is named, or chosen, with its own ``response_format``), and a
context window at least as large. Every route (the agent's model and each
fallback) must serve in the workflow's ``residency``. Each problem is an error
at the line of the model or fallback it is about.
"""

from __future__ import annotations

from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.located import Located

__all__ = ["route_problems"]


def route_problems(located: Located) -> list[Problem]:
    """Errors about each agent's fallbacks and about endpoints outside the residency."""
    from orchestrate.llm.capabilities import lookup
    from orchestrate.llm.fallbacks import chain_of
    from orchestrate.llm.providers import PROVIDERS, infer_provider
    from orchestrate.llm.residency import RESIDENCIES, outside

    doc = located.value
    if not isinstance(doc, dict) or not isinstance(doc.get("agents"), list):
        return []
    defaults: dict[str, Any] = doc["defaults"] if isinstance(doc.get("defaults"), dict) else {}
    inherited: dict[str, Any] = defaults["llm_config"] if isinstance(defaults.get("llm_config"), dict) else {}
    residency = doc.get("residency") or defaults.get("residency")
    residency = residency if residency in RESIDENCIES else None
    overrides = {k: v for k, v in (doc.get("capabilities") or {}).items() if isinstance(v, dict)}
    prices = {k: v for k, v in (doc.get("prices") or {}).items() if isinstance(v, dict)}
    problems: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()

    def report(path: tuple[Any, ...], message: str) -> None:
        problem = located.at(path, message)
        if (problem.line, problem.column, message) not in seen:
            seen.add((problem.line, problem.column, message))
            problems.append(problem)

    for i, agent in enumerate(doc["agents"]):
        if not isinstance(agent, dict) or agent.get("function"):
            continue
        own: dict[str, Any] = agent["llm_config"] if isinstance(agent.get("llm_config"), dict) else {}
        llm = {**inherited, **own}
        if not isinstance(llm.get("model"), str):
            continue
        where = ("agents", i, "llm_config") if "fallbacks" in own else ("defaults", "llm_config")
        name = agent.get("name")
        routes = chain_of(llm)
        described: list[tuple[str, Any]] = []
        for route in routes:
            provider = route.get("provider") or infer_provider(str(route.get("model") or ""))
            caps = (
                lookup(str(route.get("price_as") or route["model"]), str(provider), overrides)
                if provider in PROVIDERS and provider != "simulated"
                else None
            )
            described.append((str(provider), caps))
        for n, (route, (provider, caps)) in enumerate(zip(routes, described, strict=True)):
            path = (
                (*where, "fallbacks", n - 1, "model")
                if n
                else (("agents", i, "llm_config", "model") if "model" in own else ("defaults", "llm_config", "model"))
            )
            if residency is not None and provider != "simulated":
                why = outside(residency, provider, route)
                if why is not None:
                    report(path, f"agent {name!r}: {why}")
            if n and provider != "simulated" and not _priced(route, provider, prices):
                report(
                    path,
                    f"agent {name!r}: no price known for fallback {route['model']!r}; add it under 'prices:' "
                    "(USD per 1K tokens: input, output)",
                )
            if n == 0 or caps is None or described[0][1] is None:
                continue
            first = described[0][1]
            model = route["model"]
            if agent.get("tools") and not caps.tools:
                report(path, f"agent {name!r}: fallback {model} does not accept tools, and the agent uses tools")
            native = (llm.get("response_format") or first.response_format) == "json_schema"
            chosen = route.get("response_format") or caps.response_format
            if (
                agent.get("output_schema") is not None
                and native
                and chosen != "json_schema"
                and "response_format" not in route
            ):
                report(
                    path,
                    f"agent {name!r}: fallback {model} has no native structured output, and the agent's "
                    f"{llm['model']} does; set its response_format (json_object or prompt) to accept that",
                )
            if caps.context_window and first.context_window and caps.context_window < first.context_window:
                report(
                    path,
                    f"agent {name!r}: fallback {model} holds {caps.context_window:,} tokens, fewer than the "
                    f"{first.context_window:,} of {llm['model']}: a prompt that fits the one may not fit the other",
                )
    return problems


def _priced(route: dict[str, Any], provider: str, prices: dict[str, Any]) -> bool:
    """Whether the price table (or the workflow's `prices:`) knows what a route is priced as."""
    from orchestrate.llm.presets import base_model
    from orchestrate.llm.prices import find_price

    name = str(route.get("price_as") or route["model"])
    return find_price(name, prices) is not None or find_price(base_model(provider, name), prices) is not None
