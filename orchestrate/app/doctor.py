"""`orchestrate doctor`: is this machine ready to run these workflows? One check a line, each problem with its fix.

What a newcomer trips on before the first real run: an old Python, a key not
exported, a base URL that does not answer (or answers that the key is wrong), a
Redis that is not there, a run folder that cannot be written, a model with no
price. Each check is a `Check`; `diagnose` makes them in a stable order and
never prints or returns a key: only the name of the variable that holds it.
Network checks make one cheap request each (list the models), with a short
time-out, and are skipped with ``offline``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate import __version__

__all__ = ["Check", "diagnose", "MIN_PYTHON"]

MIN_PYTHON = (3, 11)
OK, PROBLEM, WARNING, SKIPPED = "ok", "problem", "warning", "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's answer.

    Attributes:
        name: What was checked (``python``, ``openai key``, ``state``...).
        status: ``ok``, ``problem`` (the exit code says so), ``warning`` or ``skipped``.
        detail: What was found, never a secret.
        fix: For a problem or a warning, what to do about it.
    """

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def diagnose(
    workflows: Iterable[Path],
    *,
    state_url: str | None = None,
    output_dir: Path = Path("runs"),
    offline: bool = False,
    timeout: float = 5.0,
) -> list[Check]:
    """Every check, in the order they are printed.

    Args:
        workflows: Workflow files whose providers, keys, endpoints and prices are checked.
        state_url: The shared state (``--state`` / ``ORCHESTRATE_STATE_URL``), if any.
        output_dir: Where run folders would be written.
        offline: Make no network request (endpoints and state are skipped).
        timeout: Seconds each network check may take, connecting included.
    """
    checks = [_python(), Check("orchestrate", OK, f"orchestrate {__version__} ({Path(__file__).parent.parent})")]
    configs: list[dict[str, Any]] = []
    loaded: list[Any] = []
    for path in workflows:
        check, workflow = _workflow(path)
        checks.append(check)
        if workflow is not None:
            loaded.append(workflow)
            configs += [agent.llm_config for agent in workflow.agents if not agent.is_code_step]
    checks += asyncio.run(_providers(configs, offline=offline, timeout=timeout))
    checks += [_prices(workflow) for workflow in loaded]
    checks.append(asyncio.run(_state(state_url, offline=offline, timeout=timeout)))
    checks.append(_run_folder(output_dir))
    return checks


def _python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    where = f"Python {version} ({sys.executable})"
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(str(part) for part in MIN_PYTHON)
        return Check("python", PROBLEM, where, f"install Python {wanted} or newer and make the venv with it")
    return Check("python", OK, where)


def _workflow(path: Path) -> tuple[Check, Any]:
    from orchestrate.errors import OrchestrateError
    from orchestrate.workflow.loader import load_workflow, validate_file

    errors = [p for p in validate_file(path) if getattr(p, "severity", "error") != "warning"]
    if errors:
        first = errors[0]
        where = f"{path}:{first.line}:{first.column}" if getattr(first, "line", 0) else str(path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Check("workflow", PROBLEM, f"{where}: {first.message}{more}", f"orchestrate validate {path}"), None
    try:
        workflow = load_workflow(path, bind=False)
    except OrchestrateError as exc:
        return Check("workflow", PROBLEM, f"{path}: {exc}", f"orchestrate validate {path}"), None
    steps = sum(1 for agent in workflow.agents if agent.is_code_step)
    called = len(workflow.agents) - steps
    detail = f"{path}: valid, {called} model call{'s' if called != 1 else ''}"
    if steps:
        detail += f", {steps} code step{'s' if steps != 1 else ''}"
    return Check("workflow", OK, detail), workflow


async def _providers(configs: list[dict[str, Any]], *, offline: bool, timeout: float) -> list[Check]:
    """A key check and an endpoint check for each distinct route (provider, base URL, key variable)."""
    from orchestrate.errors import MissingAPIKeyError, UserInputError
    from orchestrate.llm.fallbacks import chain_of
    from orchestrate.llm.providers import ENV_KEYS, ClientPool

    pool = ClientPool(timeout=timeout, connect_timeout=timeout)
    routes: dict[tuple[str, str, str], dict[str, Any]] = {}
    for config in configs:
        for llm in chain_of(config):
            try:
                provider = pool.provider_of(llm)
            except UserInputError:
                continue  # the workflow check has said so already
            if provider == "simulated":
                continue
            key = (provider, str(llm.get("base_url") or ""), str(llm.get("api_key_env") or ""))
            routes.setdefault(key, llm)
    checks: list[Check] = []
    try:
        for (provider, _, named), llm in routes.items():
            variable = named or ENV_KEYS.get(provider, "")
            label = provider if not named else f"{provider}/{named}"
            try:
                pool.check_keys([llm])
            except MissingAPIKeyError as exc:
                fix = f"export {exc.env_var}=... (docs/providers.md), or try offline first: orchestrate run FILE --simulate"
                checks.append(Check(f"{label} key", PROBLEM, f"{exc.env_var} is not set", fix))
                continue
            except UserInputError as exc:
                checks.append(Check(f"{label} key", PROBLEM, str(exc), "see docs/providers.md"))
                continue
            if variable and os.environ.get(variable):
                checks.append(Check(f"{label} key", OK, f"{variable} is set"))
            else:
                checks.append(Check(f"{label} key", OK, "none needed"))
            checks.append(await _endpoint(pool, label, variable, llm, offline=offline, timeout=timeout))
    finally:
        await pool.aclose()
    return checks


async def _endpoint(
    pool: Any, label: str, variable: str, llm: dict[str, Any], *, offline: bool, timeout: float
) -> Check:
    from orchestrate.errors import AuthenticationError, LLMConnectionError, LLMError, LLMTimeoutError, OrchestrateError

    name = f"{label} endpoint"
    try:
        client = pool.get(llm)
    except OrchestrateError as exc:
        return Check(name, PROBLEM, str(exc), "see docs/providers.md")
    probe = getattr(client, "probe", None)
    if probe is None:
        return Check(name, SKIPPED, "this client makes no HTTP requests")
    url = client.probe_url()
    if offline:
        return Check(name, SKIPPED, f"{url} (not asked: --offline)")
    started = asyncio.get_running_loop().time()
    try:
        _, status = await probe(timeout=timeout)
    except AuthenticationError as exc:
        if not client.probe_checks_key:
            return Check(name, OK, f"{url} answers (HTTP {exc.status_code})")
        fix = f"check {variable}: it is set, but {url} does not accept it" if variable else "check the key"
        return Check(name, PROBLEM, f"{url} refused the key: {exc}", fix)
    except LLMTimeoutError:
        return Check(name, PROBLEM, f"{url} did not answer in {timeout:g}s", _REACH_FIX)
    except LLMConnectionError as exc:
        return Check(name, PROBLEM, str(exc), _REACH_FIX)
    except LLMError as exc:  # it answered: the server is there, whatever it thinks of a model list
        code = getattr(exc, "status_code", None)
        return Check(name, OK, f"{url} answers (HTTP {code})" if code else f"{url} answers ({exc})")
    seconds = asyncio.get_running_loop().time() - started
    return Check(name, OK, f"{url} answers (HTTP {status}, {seconds:.2f}s)")


_REACH_FIX = "check the network and proxy, or the base URL (llm_config.base_url, or the provider's *_BASE_URL variable)"


def _prices(workflow: Any) -> Check:
    from orchestrate.llm.presets import LOCAL_PROVIDERS, base_model
    from orchestrate.llm.providers import infer_provider
    from orchestrate.money.costs import CostConfig, CostTracker

    tracker = CostTracker(CostConfig())
    known: set[str] = set()
    missing: set[str] = set()
    for agent in workflow.agents:
        llm = agent.llm_config
        model = llm.get("model")
        if agent.is_code_step or not isinstance(model, str):
            continue
        provider = str(llm.get("provider") or infer_provider(model))
        price_as = llm.get("price_as")
        if provider in LOCAL_PROVIDERS and not isinstance(price_as, str):
            continue
        priced = price_as if isinstance(price_as, str) else model
        found = tracker.has_price(priced, workflow.prices) or tracker.has_price(
            base_model(provider, priced), workflow.prices
        )
        (known if found else missing).add(priced)
    name = "prices"
    if missing:
        return Check(
            name,
            PROBLEM,
            f"{workflow.name}: no price for " + ", ".join(sorted(missing)),
            "add each under the workflow's 'prices:' (USD per 1K tokens: input, output); `orchestrate models` lists the known ones",
        )
    if not known:
        return Check(name, OK, f"{workflow.name}: no priced model (code steps or local servers only)")
    return Check(name, OK, f"{workflow.name}: known for " + ", ".join(sorted(known)))


async def _state(url: str | None, *, offline: bool, timeout: float) -> Check:
    from orchestrate.errors import OrchestrateError
    from orchestrate.state.backends import state_from_url
    from orchestrate.state.base import scrub_url

    if not url or url.startswith("memory:"):
        return Check("state", OK, "this process only (no --state / ORCHESTRATE_STATE_URL)")
    shown = scrub_url(url)
    try:
        state = state_from_url(url)
    except OrchestrateError as exc:
        return Check("state", PROBLEM, str(exc), "fix --state or ORCHESTRATE_STATE_URL (docs/shared-state.md)")
    if offline:
        await state.aclose()
        return Check("state", SKIPPED, f"{shown} (not asked: --offline)")
    try:
        await asyncio.wait_for(state.connect(), timeout)
    except (TimeoutError, OrchestrateError, OSError) as exc:
        detail = str(exc) or f"no answer in {timeout:g}s"
        return Check(
            "state",
            PROBLEM,
            detail if shown in detail else f"{shown} does not answer: {detail}",
            "start Redis there, or fix --state / ORCHESTRATE_STATE_URL (docs/shared-state.md)",
        )
    finally:
        await state.aclose()
    return Check("state", OK, f"{shown} answers")


def _run_folder(folder: Path) -> Check:
    """Whether run folders can be written in `folder` (or, when it does not exist yet, made there)."""
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    name = "run folder"
    if not target.is_dir():
        return Check(name, PROBLEM, f"{target} is not a folder", "pass --output-dir DIR")
    try:
        handle, probe = tempfile.mkstemp(prefix=".orchestrate-doctor-", dir=target)
    except OSError as exc:
        return Check(name, PROBLEM, f"{target}: cannot write: {exc.strerror or exc}", "pass --output-dir DIR")
    os.close(handle)
    os.unlink(probe)
    if target != folder:
        return Check(name, OK, f"{folder}/ will be made in {target}/ (writable)")
    return Check(name, OK, f"{folder}/ is writable")
