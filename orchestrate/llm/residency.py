"""Keeping a run's data in a region: which provider endpoints each residency allows.

``residency: eu`` (or ``us``) on a workflow, in its defaults, or ``--residency``:
every endpoint the run may call (agents, their fallbacks, judges, batches) must be on
the region's allow-list, else `validate` and the run refuse it, naming it.

=====================================  ==========================================  ==========================================
endpoint                               eu                                          us
=====================================  ==========================================  ==========================================
OpenAI                                 ``base_url: https://eu.api.openai.com/v1``  ``https://us.api.openai.com/v1``
Azure OpenAI                           ``region:`` of a Data Zone / regional       same, a US zone or region
                                       deployment in the EU (``eu``, ``westeurope``,
                                       ``swedencentral``...)
Bedrock                                an ``eu.*`` profile or an in-Region model   a ``us.*`` profile or model in ``us-*``
                                       id, the runtime in an ``eu-*`` region
Vertex                                 a ``europe-*`` location                     a ``us-*`` location
Mistral (La Plateforme)                its default endpoint (served in the EU)     -
Ollama, vLLM, simulated                local servers (loopback)                    local servers (loopback)
any OpenAI-compatible ``base_url``     when its ``region:`` is declared in it      same
=====================================  ==========================================  ==========================================

Global routing (OpenAI's and Anthropic's default endpoints, Bedrock ``global.*``
profiles, Vertex ``global``, Gemini's API, OpenRouter) is allowed by neither.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrate.llm.presets import region_of

__all__ = ["RESIDENCIES", "apply_residency", "endpoint_of", "outside"]

RESIDENCIES = ("eu", "us")
_AZURE_EU = (
    "westeurope",
    "northeurope",
    "francecentral",
    "germanywestcentral",
    "swedencentral",
    "italynorth",
    "polandcentral",
    "spaincentral",
    "norwayeast",
    "switzerlandnorth",
    "uksouth",
)
_AZURE_US = ("eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus")


def _in(residency: str, region: str) -> bool:
    """Whether a region as `region_of` spells it lies in `residency`."""
    if region == "local":
        return True
    if ":" in region:  # a Bedrock geographic profile: the profile's geography and the runtime's region
        scope, _, aws = region.partition(":")
        return scope == residency and _in(residency, aws)
    if residency == "eu":
        return region == "eu" or region.startswith(("eu-", "europe-")) or region in _AZURE_EU
    return region == "us" or region.startswith("us-") or region in _AZURE_US


def endpoint_of(provider: str, llm_config: Mapping[str, Any]) -> str:
    """The endpoint a route calls, as a person would name it in a message."""
    model = llm_config.get("model")
    base_url = llm_config.get("base_url")
    where = f" at {base_url}" if base_url else ""
    region = llm_config.get("region")
    return f"{provider} {model}{where}" + (f" (region {region})" if region and not base_url else "")


def outside(residency: str, provider: str, llm_config: Mapping[str, Any]) -> str | None:
    """Why the route breaks `residency` (naming its endpoint and where it serves), or None."""
    region = region_of(provider, llm_config)
    declared = llm_config.get("region")
    if region.startswith("host:") and isinstance(declared, str):
        region = declared  # an OpenAI-compatible server, placed by its own configuration
    if _in(residency, region):
        return None
    said = {"global": "routed globally", "azure": "an Azure resource with no region: declared"}.get(
        region, f"served in {region}"
    )
    return f"{endpoint_of(provider, llm_config)} is {said}, outside residency {residency}"


def apply_residency(
    workflow: Any, residency: str | None = None, *, judges: Iterable[tuple[str, Mapping[str, Any]]] = ()
) -> None:
    """Set a workflow's residency (``--residency`` wins) and refuse, before any call, a route
    of any agent (its model or a fallback) or judge outside it: UserInputError naming the endpoint.

    Args:
        workflow: The loaded workflow.
        residency: ``--residency``, when given.
        judges: ``(who, llm_config)`` of each judge the run may ask (``orchestrate.run.evaluation``).
    """
    from orchestrate.errors import UserInputError
    from orchestrate.llm.fallbacks import chain_of
    from orchestrate.llm.providers import resolve_provider

    if residency is not None:
        if residency not in RESIDENCIES:
            raise UserInputError(f"--residency {residency!r}: expected one of {', '.join(RESIDENCIES)}")
        workflow.residency = residency
    if not workflow.residency:
        return
    callers = [(f"agent {a.name!r}", a.llm_config) for a in workflow.agents if not a.is_code_step]
    for who, llm in [*callers, *judges]:
        for route in chain_of(llm):
            provider = resolve_provider(route)
            why = outside(workflow.residency, provider, route) if provider != "simulated" else None
            if why is not None:
                raise UserInputError(f"{who}: {why}; refused before any call")
