"""What `validate` says about prompts whose shared text the provider cannot cache.

A provider caches a request's prefix: what comes before the first byte that
differs from the last call. The prompt template's static text counts only up
to its first placeholder, so a row value near the top of a long template
leaves the rest to be paid in full on every call; a value that changes on
every call (a time, an id) anywhere in that stretch does the same even
when the rows share everything else. Both are warnings at the placeholder's
line: the workflow runs, and costs more than it needs to.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.located import Located

__all__ = ["LONG_STATIC_TAIL", "cache_warnings"]

# The shortest prefix any model caches is 512 tokens, about 2,048 characters: less static
# text after a placeholder is not worth a warning.
LONG_STATIC_TAIL = 2048
_VOLATILE = re.compile(
    r"(?:^|_)(?:now|today|time|timestamp|datetime|date|uuid|guid|nonce|random|run_id|request_id)$|_at$"
)


def cache_warnings(located: Located) -> list[Problem]:
    """Warnings for agents whose prompt_template puts a placeholder before a long static tail."""
    from orchestrate.workflow.templates import TemplateError, references

    doc = located.value
    if not isinstance(doc, dict) or not isinstance(doc.get("agents"), list):
        return []
    warnings: list[Problem] = []
    for i, agent in enumerate(doc["agents"]):
        if not isinstance(agent, dict) or not isinstance(agent.get("prompt_template"), str):
            continue
        cache = agent.get("cache")
        if isinstance(cache, dict) and cache.get("prefix") == "off":
            continue
        template: str = agent["prompt_template"]
        try:
            refs = references(template)
        except TemplateError:
            continue  # reported as an error by the template checks
        for k, ref in enumerate(refs):
            # The static characters after this placeholder: the rest, less the placeholders in it.
            after = len(template) - ref.offset - sum(len(r.text) + 2 for r in refs[k:])
            if after < LONG_STATIC_TAIL:
                break
            shown = ref.describe()
            last = ref.path[-1] if ref.path else ref.name
            volatile = bool(_VOLATILE.search(str(last).lower()))
            if k > 0 and not volatile:
                continue
            if volatile:
                message = (
                    f"agent {agent.get('name')!r}: prompt_template: {shown} looks like a value that changes on "
                    f"every call (a time, an id) before {after:,} static characters: no two calls share that prefix"
                )
            else:
                message = (
                    f"agent {agent.get('name')!r}: prompt_template: row variable {shown} before {after:,} static "
                    "characters: the provider caches only what comes before it"
                )
            warnings.append(_warning(located, i, shown, message, agent))
    return warnings


def _warning(located: Located, i: int, needle: str, message: str, agent: dict[str, Any]) -> Problem:
    span = str(agent["prompt_template"]).count("\n") + 3
    found = located.within(
        ("agents", i, "prompt_template"),
        needle,
        message,
        span,
        hint="move it to the end (or the shared text into the system prompt) to cache the text after it",
    )
    return Problem(
        found.file,
        found.line,
        found.column,
        found.message,
        found.path,
        severity="warning",
        hint=found.hint,
        length=found.length,
    )
