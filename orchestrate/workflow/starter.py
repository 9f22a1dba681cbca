"""The starter workflow `orchestrate init` writes: commented, valid, and runnable offline.

One template, filled per ERP module with a two-agent example that shows the
parts a newcomer needs first: inputs with defaults, defaults shared by every
agent, an output_schema, a dependency, and a placeholder reading a field of
the upstream agent's JSON answer. With `tools`, a tool module is written next
to it and the first agent is given its function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrate.errors import UserInputError
from orchestrate.workflow.models import MODULES

__all__ = ["Starter", "module_named", "starter_files"]


@dataclass(frozen=True)
class _Example:
    input_name: str
    input_default: str
    input_help: str
    first: str
    first_prompt: str
    field: str
    field_help: str
    second: str
    second_prompt: str
    tool: str
    tool_help: str


_EXAMPLES = {
    "Finance": _Example(
        "invoice",
        "INV-2026-0042: Globex GmbH, 3 x consulting days at EUR 1,200, due 2026-12-15",
        "The invoice to check",
        "extract_invoice",
        "Extract the supplier, the total amount and the due date of this invoice: {invoice}",
        "total",
        "the invoice total",
        "approval_note",
        "Write a two-line approval note for an invoice of {extract_invoice.output.total} "
        "from {extract_invoice.output.supplier}, due {extract_invoice.output.due_date}.",
        "lookup_supplier",
        "Look up a supplier in the vendor master",
    ),
    "HR": _Example(
        "employee",
        "Dana Smith, starts 2026-12-01 as a payroll analyst in Berlin",
        "The new hire",
        "onboarding_facts",
        "List the start date, the role and the location of this new hire: {employee}",
        "role",
        "the role",
        "welcome_plan",
        "Write a first-week plan for a new {onboarding_facts.output.role} "
        "starting {onboarding_facts.output.start_date} in {onboarding_facts.output.location}.",
        "lookup_employee",
        "Look up an employee record",
    ),
    "Inventory": _Example(
        "item",
        "SKU 10-442 hydraulic filter: 14 on hand, 9 a week used, lead time 3 weeks",
        "The stock item",
        "stock_position",
        "Give the stock on hand, the weekly usage and the lead time in weeks of: {item}",
        "on_hand",
        "units on hand",
        "reorder_advice",
        "With {stock_position.output.on_hand} on hand, {stock_position.output.weekly_usage} used a week "
        "and a lead time of {stock_position.output.lead_time_weeks} weeks, say whether to reorder and how many.",
        "lookup_item",
        "Look up an item in the item master",
    ),
    "Compliance": _Example(
        "vendor",
        "Initech Ltd, UK, software licences, annual spend GBP 250,000",
        "The vendor to screen",
        "vendor_profile",
        "Give the country, the sector and the yearly spend of this vendor: {vendor}",
        "country",
        "the vendor's country",
        "risk_memo",
        "Write a three-line due-diligence memo for a {vendor_profile.output.sector} vendor in "
        "{vendor_profile.output.country} with a yearly spend of {vendor_profile.output.spend}.",
        "lookup_vendor",
        "Look up a vendor in the vendor master",
    ),
    "General": _Example(
        "request",
        "Move the quarterly ops review from Thursday to Friday 10:00 and invite the CFO",
        "The request to handle",
        "request_facts",
        "List the action, the day and the people concerned by this request: {request}",
        "action",
        "the action asked for",
        "reply",
        "Write a short, polite reply confirming: {request_facts.output.action} on {request_facts.output.day}.",
        "lookup_calendar",
        "Look up a calendar",
    ),
}

_FIELDS = {
    "Finance": ("supplier", "string"),
    "HR": ("start_date", "string"),
    "Inventory": ("weekly_usage", "number"),
    "Compliance": ("sector", "string"),
    "General": ("day", "string"),
}
_THIRD = {
    "Finance": ("due_date", "string"),
    "HR": ("location", "string"),
    "Inventory": ("lead_time_weeks", "number"),
    "Compliance": ("spend", "string"),
    "General": None,
}
_MAIN_TYPE = {"total": "number", "role": "string", "on_hand": "number", "country": "string", "action": "string"}


@dataclass(frozen=True)
class Starter:
    """What `init` writes: the workflow file's text and, if asked, the tool module's."""

    workflow_file: str
    workflow_text: str
    tools_file: str | None = None
    tools_text: str | None = None


def module_named(text: str) -> str:
    """The ERP module spelled as the format spells it (`finance` -> `Finance`)."""
    for module in MODULES:
        if module.lower() == text.strip().lower():
            return module
    raise UserInputError(f"--module {text!r}: choose one of {', '.join(MODULES)}")


def starter_files(name: str, module: str = "General", *, tools: bool = False) -> Starter:
    """The starter workflow called `name` for `module` (and its tool module with `tools`)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or len(name) > 80:
        raise UserInputError(
            f"{name!r} is not a usable workflow name: use letters, digits and "
            "underscores, starting with a letter (e.g. invoice_check)"
        )
    module = module_named(module)
    ex = _EXAMPLES[module]
    tools_module = f"{name}_tools"
    third = _THIRD[module]
    fields = [(ex.field, _MAIN_TYPE[ex.field]), _FIELDS[module]] + ([third] if third else [])
    properties = "\n".join(f"        {f}: {{type: {t}}}" for f, t in fields)
    required = ", ".join(f for f, _ in fields)
    tool_block = ""
    if tools:
        tool_block = f"""
    # A Python function the model may call, imported as module:function. It lives in
    # {tools_module}.py next to this file: run with that folder on the import path
    # (PYTHONPATH=.). `parameters` is the JSON Schema of its arguments.
    tools:
      - function: "{tools_module}:{ex.tool}"
        name: {ex.tool}
        description: {ex.tool_help}
        parameters:
          type: object
          required: [query]
          properties:
            query: {{type: string}}"""
    text = f"""\
# A starter workflow written by `orchestrate init`. Check it, preview it, run it offline:
#
#   orchestrate validate {name}.yaml
#   orchestrate plan {name}.yaml
#   orchestrate run {name}.yaml --simulate
#
# For completion and checks in your editor, write the schema next to this file (the line
# below points at it): orchestrate schema > workflow.schema.json
# yaml-language-server: $schema=workflow.schema.json

name: {name}
description: A two-step {module} workflow to start from; replace the prompts with your own.
max_parallel_agents: 2        # at most this many calls in flight at once
cost_budget: 0.50             # USD; a hard ceiling: a call that could pass it is not made
allow_partial_completion: false

# Values supplied at run time: --input {ex.input_name}="..." (the default is used otherwise).
inputs:
  {ex.input_name}:
    type: string
    default: "{ex.input_default}"
    description: {ex.input_help}

# Inherited by every agent; an agent's own keys win.
defaults:
  module: {module}
  llm_config:
    model: gpt-4o-mini        # a model with a known price: orchestrate models lists them
    temperature: 0.2
    max_tokens: 400           # keeps the worst case, and so the budget check, small
  retry: {{strategy: exponential_backoff, base_delay: 2, max_delay: 30}}

agents:
  - name: {ex.first}
    description: Pull the facts out of the input, as JSON
    priority: 8               # 1-10: among ready agents, higher goes first
    # {{{ex.input_name}}} is replaced by the input. Literal braces are written {{{{ and }}}}.
    prompt_template: "{ex.first_prompt}"
    # The answer must be JSON satisfying this schema; if not, it is sent back to be corrected.
    output_schema:
      type: object
      required: [{required}]
      properties:
{properties}{tool_block}

  - name: {ex.second}
    description: Use the first agent's answer
    dependencies: [{ex.first}]   # runs after {ex.first} completes; cancelled if it fails
    # {{{ex.first}.output.{ex.field}}} is {ex.field_help} from {ex.first}'s JSON answer.
    prompt_template: "{ex.second_prompt}"
"""
    if not tools:
        return Starter(f"{name}.yaml", text)
    tool_text = f'''"""Tools of the {name} workflow: plain Python functions the model may call.

Each gets the arguments the model chose (checked against `parameters` in
{name}.yaml) and returns something JSON can hold. An exception is sent back to
the model as an error instead of ending the run.

A plain (sync) function runs in a worker thread, so a slow one holds up no
other agent; the agent's `timeout:` ends the agent but cannot stop the function,
so give every call it makes to another system a timeout of its own (or write
it as `async def` with an async client).
"""

from __future__ import annotations


def {ex.tool}(query: str) -> dict[str, object]:
    """{ex.tool_help}: replace this with a call to your ERP system."""
    return {{"query": query, "found": False, "note": "connect {name}_tools.{ex.tool} to your ERP"}}
'''
    return Starter(f"{name}.yaml", text, f"{tools_module}.py", tool_text)
