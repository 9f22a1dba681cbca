"""What `validate` says about an HR workflow that reads personal data without a policy for it.

An input (a dataset's column is an input too) whose name suggests personal data
(a name, a salary, an IBAN, a national id, a birth date, ...) in a workflow of the
HR module, with no ``data_protection.columns`` entry for it, is a warning at the
input's line: the value would reach the provider, the run folder and the report
as it is. Saying ``keep`` for it silences the warning: a decision was made.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrate.errors import Problem
from orchestrate.workflow.located import Located

__all__ = ["PERSONAL", "personal_data_warnings"]

PERSONAL = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|salary|pay|wage|compensation|iban|bic|bank|account_?number|"
    r"ssn|national_?id|nino|tax_?id|passport|birth|dob|date_of_birth|age|gender|address|street|postcode|zip|"
    r"email|e_?mail|phone|mobile|health|medical|sick|religion|ethnic|nationality)($|_)",
    re.IGNORECASE,
)


def personal_data_warnings(located: Located) -> list[Problem]:
    """Warnings for the personal-looking inputs of an HR workflow that its policy does not name."""
    doc = located.value
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
        return []
    defaults: dict[str, Any] = doc["defaults"] if isinstance(doc.get("defaults"), dict) else {}
    modules = {defaults.get("module")}
    for agent in doc.get("agents") or ():
        if isinstance(agent, dict):
            modules.add(agent.get("module", defaults.get("module")))
    if "HR" not in modules:
        return []
    policy = doc.get("data_protection") or defaults.get("data_protection") or {}
    named = set(policy.get("columns") or {}) if isinstance(policy, dict) else set()
    warnings = []
    for name in doc["inputs"]:
        if not isinstance(name, str) or name in named or not PERSONAL.search(name):
            continue
        problem = located.at(
            ("inputs", name),
            f"input {name!r} looks like personal data and this HR workflow has no data_protection policy "
            f"for it: it reaches the provider, the run folder and the report as it is",
            key=True,
            hint=f"add data_protection: {{columns: {{{name}: pseudonymize}}}} (or mask, drop, keep)",
        )
        warnings.append(
            Problem(
                problem.file,
                problem.line,
                problem.column,
                problem.message,
                problem.path,
                severity="warning",
                hint=problem.hint,
                length=problem.length,
            )
        )
    return warnings
