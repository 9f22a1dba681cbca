"""What a run does for its auditor and its data-protection officer, set up in one place.

The CLI sessions (and the application layer) call these: `approver_identity` names
the person who approves, `protect_workflow` applies a workflow's ``data_protection:``
policy to its inputs before anything runs, `open_trail` starts ``audit.jsonl`` in a
run folder, and `close_trail` ends it with the run's totals.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrate.errors import JournalError, UserInputError
from orchestrate.observe.audit import (
    DEFAULT_RETENTION_DAYS,
    AuditTrail,
    endpoint_of,
    invocation,
    template_digests,
)
from orchestrate.observe.audit_chain import audit_key, digest
from orchestrate.run.protection import Policy, Protector
from orchestrate.run.pseudonym_key import (
    PSEUDONYMS_FILE,
    RunSecret,
    carried_secret,
    check_shared_key,
    input_check,
    keep_secret,
    new_secret,
    shard_salt,
    shard_secret,
)
from orchestrate.workflow.models import Workflow

__all__ = [
    "APPROVER_ENV",
    "approver_identity",
    "check_identity",
    "close_trail",
    "event_redactor",
    "keep_pseudonyms",
    "open_trail",
    "protect_workflow",
    "pseudonyms_for",
    "shard_pseudonym_salt",
    "shared_protection",
    "withheld_inputs",
]

APPROVER_ENV = "ORCHESTRATE_APPROVER"


def approver_identity(flag: str | None, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """Who approves, and where the name came from: --approver, ORCHESTRATE_APPROVER, the login name.

    Returns (None, "none") when no name can be found (a bare container without a user name).
    """
    env = os.environ if env is None else env
    if flag and flag.strip():
        return flag.strip(), "--approver"
    if env.get(APPROVER_ENV, "").strip():
        return env[APPROVER_ENV].strip(), APPROVER_ENV
    import getpass

    try:
        name = getpass.getuser()
    except Exception:  # no user name in a bare container: nobody, rather than a guess
        return None, "none"
    return (name, "login") if name else (None, "none")


def check_identity(workflow: Workflow, approver: str | None) -> None:
    """Refuse, before anything runs, a workflow whose approvals require a named approver when there is none.

    Raises:
        UserInputError: naming the agent and how to give a name (exit 2).
    """
    if approver:
        return
    for agent in workflow.agents:
        if (agent.approval or {}).get("require_identity"):
            raise UserInputError(
                f"agent {agent.name!r} of workflow {workflow.name!r} requires a named approver "
                f"(approval.require_identity): pass --approver NAME or set {APPROVER_ENV}"
            )


def protect_workflow(
    workflow: Workflow, *, no_content: bool = False, secret: RunSecret | None = None
) -> Protector | None:
    """Attach the workflow's policy (and a fresh vault) to it, and apply it to its bound inputs.

    Args:
        secret: What its pseudonyms are keyed by (`pseudonyms_for`): the same for every session
            of a run. None: a random key, for this process only.
    """
    policy = Policy.from_dict(workflow.data_protection, no_content=no_content)
    if not policy.declared:
        return None
    protector = Protector(policy, secret=secret.secret if secret is not None else None)
    workflow.protector = protector
    if workflow.input_values:
        workflow.input_values = protector.protect_values(workflow.input_values)
    return protector


def pseudonyms_for(
    workflow: Workflow, resumed: Path | None, *, shard: bytes | None = None, no_content: bool = False
) -> RunSecret | None:
    """The key of a workflow's pseudonyms: the resumed run's (same people, same tokens), else the
    one every shard of its dataset run shares (`shard`: `shard_pseudonym_salt`), else a new run's;
    None when the workflow has no policy and `no_content` (``--no-content``, a policy of its own
    whose inputs are withheld with keyed checks, `withheld_inputs`) is off
    (see `orchestrate.run.pseudonym_key`).

    Raises:
        UserInputError: The resumed run's pseudonyms were made with another master key.
    """
    if not workflow.data_protection and not no_content:
        return None
    carried = carried_secret(resumed) if resumed is not None else None
    if carried is not None:
        return carried
    return shard_secret(shard) if shard is not None else new_secret()


def shard_pseudonym_salt(
    workflow: Workflow, data: Path, shard: tuple[int, int] | None, source: str | None
) -> bytes | None:
    """What the shards of one dataset run key their pseudonyms with alike; None when not a shard or
    no policy. A platform's copies (`source`: ``--shard auto``) must share ``ORCHESTRATE_PSEUDONYM_KEY``.

    Raises:
        UserInputError: A platform's shard of a workflow that makes pseudonyms, without the shared key.
    """
    if shard is None or not workflow.data_protection:
        return None
    if source is not None and Policy.from_dict(workflow.data_protection).pseudonymizes:
        check_shared_key(source)
    from orchestrate.run.shards import dataset_sha256

    return shard_salt(workflow.name, dataset_sha256(data), shard[1])


def shared_protection(
    workflows: list[Workflow], inputs: Mapping[str, Any], carried: Mapping[str, str], *, no_content: bool = False
) -> dict[str, str]:
    """How the inputs of a run of several workflows are protected: each that a workflow's policy
    changes (its ``columns:`` rule, or ``pseudonymize`` for what its recognisers find in it), so
    that every workflow of the run protects it (`share_protection`); `carried`: a resumed run's.

    One workflow's protected input given to another with no policy was sent and kept in clear
    in that one's run folder (invocation.json, result.json, prompts, the trail's digests)."""
    rules = {name: action for name, action in carried.items() if name in inputs}
    for workflow in workflows:
        policy = Policy.from_dict(workflow.data_protection, no_content=no_content)
        if not policy.declared:
            continue
        probe = Protector(policy, secret=b"probe")  # which values it changes: no run's counts touched
        for name, value in inputs.items():
            action = policy.columns.get(name)
            if name in rules or action == "keep":
                continue
            if action is not None:
                rules[name] = action
            elif value is not None and probe.protect_values({name: value})[name] != value:
                rules[name] = "pseudonymize"
    return dict(sorted(rules.items()))


def share_protection(workflow: Workflow, rules: Mapping[str, str], inputs: Mapping[str, Any]) -> None:
    """Give `workflow` the `shared_protection` rules it lacks (its own protection of an input stays
    its own, unless it is ``keep``): the policy it then runs under, and the trail records, has them."""
    if not rules:
        return
    own = dict(workflow.data_protection or {})
    columns = dict(own.get("columns") or {})
    probe = Protector(Policy.from_dict(own), secret=b"probe") if own.get("detect") else None

    def lacks(name: str) -> bool:
        if name in columns:
            return columns[name] == "keep"
        return probe is None or probe.protect_values({name: inputs[name]})[name] == inputs[name]

    missing = {name: action for name, action in rules.items() if name in inputs and lacks(name)}
    if missing:
        own["columns"] = {**columns, **missing}
        workflow.data_protection = own


def withheld_inputs(workflow: Workflow, inputs: Mapping[str, Any], secret: RunSecret | None) -> dict[str, str]:
    """The inputs ``invocation.json`` must not keep (those the policy changes; every one when it keeps
    no content), each with its keyed check (`input_check`), for a resume given them again."""
    protector = workflow.protector
    if protector is None or secret is None or not inputs:
        return {}
    probe = Protector(protector.policy, secret=b"probe")  # the run's own counts stay as they are
    return {
        name: input_check(secret, name, value)
        for name, value in inputs.items()
        if not protector.policy.store_content or probe.protect_values({name: value})[name] != value
    }


def keep_pseudonyms(run_dir: Path, secret: RunSecret | None) -> None:
    """Write the run's ``pseudonyms.json`` (its salt and its key's id; never a key or a value).

    Raises:
        JournalError: When it cannot be written (before any call: a resume needs it).
    """
    if secret is None:
        return
    try:
        keep_secret(run_dir, secret)
    except OSError as exc:
        raise JournalError(f"{run_dir / PSEUDONYMS_FILE}: cannot be written: {exc.strerror or exc}") from None


def event_redactor(workflow: Workflow) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What events.jsonl passes its records through: content withheld when the policy keeps none."""
    protector = workflow.protector
    if protector is None or protector.policy.store_content:
        return None
    from orchestrate.run.protection import without_content

    return without_content


def _workflow_digest(workflow: Workflow) -> str:
    if workflow.source:
        try:
            return digest(Path(workflow.source).read_bytes())
        except OSError:
            pass
    return digest(workflow.to_dict())


def open_trail(
    run_dir: Path,
    workflow: Workflow,
    *,
    kind: str,
    argv: list[str],
    approver: tuple[str | None, str],
    sink: str | None,
    on_failure: Callable[[str], None] | None,
    extra: Mapping[str, Any] | None = None,
    commit: Any = None,
    tries: bool = False,
) -> AuditTrail:
    """Start (or, for a resumed dataset run, continue) ``run_dir/audit.jsonl``.

    Raises:
        UserInputError: When the trail or the sink cannot be written: no run without its trail.
    """
    from orchestrate import __version__
    from orchestrate.llm.providers import resolve_provider

    protector = workflow.protector
    policy = protector.policy if protector is not None else Policy()
    start: dict[str, Any] = {
        "kind": kind,
        "run_id": run_dir.name,
        "workflow": workflow.name,
        "source": workflow.source,
        "workflow_digest": _workflow_digest(workflow),
        "invocation": invocation(argv, withhold=policy.active),
        "inputs": {k: digest(v) for k, v in sorted(workflow.input_values.items())},
        "approver": {"name": approver[0], "source": approver[1]},
        "retention_days": int(workflow.audit.get("retention_days", DEFAULT_RETENTION_DAYS)),
        "residency": getattr(workflow, "residency", None),
        "data_protection": policy.summary(),
        "orchestrate": __version__,
        **(extra or {}),
    }
    from orchestrate.llm.fallbacks import chain_of

    endpoints = {
        (a.name, str(route.get("model"))): endpoint_of(route, resolve_provider(route))
        for a in workflow.agents
        if not a.is_code_step
        for route in chain_of(a.llm_config)
    }
    try:
        trail = AuditTrail(
            run_dir,
            start=start,
            key=audit_key(),
            templates=template_digests(workflow.agents),
            endpoints=endpoints,
            content=policy.store_content,
            sink=sink,
            on_failure=on_failure,
            commit=commit,
            tries=tries,
        )
    except OSError as exc:  # the disk, not the user: exit 1, like any journal that cannot be written
        raise JournalError(f"{run_dir}: cannot write the audit trail: {exc.strerror or exc}") from None
    if trail.failed is not None:  # before any call: nothing runs without its trail
        raise JournalError(trail.failed)
    return trail


def close_trail(trail: AuditTrail, document: Mapping[str, Any], protector: Protector | None) -> dict[str, Any]:
    """End the trail with the run's totals (and what the policy did); returns its head."""
    totals = {
        k: document.get(k)
        for k in ("status", "total_cost", "total_tokens", "retries", "rows", "counts", "duration_seconds", "error")
        if k in document
    }
    if protector is not None:
        totals["data_protection"] = protector.summary()
    return trail.finish(totals)
