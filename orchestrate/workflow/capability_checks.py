"""What `validate` says about parameters a model refuses, at the line that sets them.

A parameter the model does not accept (temperature for Claude Opus 4.7, top_p
or stop for a reasoning model, temperature and top_p together for Claude
Sonnet 4.5) is never sent, so it is a warning, not an error: the workflow
runs, and the author learns that the line has no effect. Tools on a model
that takes none is an error: the agent could not work.
"""

from __future__ import annotations

from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.located import Located

__all__ = ["capability_problems"]


def capability_problems(located: Located) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) about what each agent's model accepts, per the capability table
    and the workflow's own ``capabilities:``."""
    from orchestrate.llm.capabilities import lookup, refused
    from orchestrate.llm.providers import PROVIDERS, infer_provider

    doc = located.value
    if not isinstance(doc, dict) or not isinstance(doc.get("agents"), list):
        return [], []
    defaults: dict[str, Any] = doc["defaults"] if isinstance(doc.get("defaults"), dict) else {}
    inherited: dict[str, Any] = defaults["llm_config"] if isinstance(defaults.get("llm_config"), dict) else {}
    written: dict[str, Any] = doc["capabilities"] if isinstance(doc.get("capabilities"), dict) else {}
    overrides = {k: v for k, v in written.items() if isinstance(v, dict)}
    errors: list[Problem] = []
    warnings: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()
    for i, agent in enumerate(doc["agents"]):
        if not isinstance(agent, dict):
            continue
        own: dict[str, Any] = agent["llm_config"] if isinstance(agent.get("llm_config"), dict) else {}
        llm = {**inherited, **own}
        model, provider = llm.get("model"), llm.get("provider") or infer_provider(str(llm.get("model") or ""))
        if not isinstance(model, str) or provider not in PROVIDERS or provider == "simulated":
            continue
        price_as = llm.get("price_as")
        priced = price_as if isinstance(price_as, str) else model
        caps = lookup(priced, provider, overrides)
        for key, message in refused(caps, llm):
            where = ("agents", i, "llm_config", key) if key in own else ("defaults", "llm_config", key)
            problem = located.at(where, f"agent {agent.get('name')!r}: {message}", key=True)
            problem = Problem(
                problem.file,
                problem.line,
                problem.column,
                problem.message,
                problem.path,
                severity="warning",
                length=problem.length,
            )
            if (problem.line, problem.column, message) not in seen:
                seen.add((problem.line, problem.column, message))
                warnings.append(problem)
        if agent.get("tools") and agent.get("output_schema") is not None and caps.tools and not caps.tools_with_schema:
            problem = located.at(
                ("agents", i, "output_schema"),
                f"agent {agent.get('name')!r}: {provider} refuses tools together with a native output schema; "
                "the schema will be sent in the prompt instead (checked on the answer as always)",
                key=True,
            )
            warnings.append(
                Problem(
                    problem.file,
                    problem.line,
                    problem.column,
                    problem.message,
                    problem.path,
                    severity="warning",
                    length=problem.length,
                )
            )
        if agent.get("tools") and not caps.tools:
            errors.append(
                located.at(("agents", i, "tools"), f"agent {agent.get('name')!r}: {model} does not accept tools")
            )
    return errors, warnings
