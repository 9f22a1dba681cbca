"""Looking at a finished run: what `orchestrate show` prints, from a result document.

Everything here takes the loaded result.json (a dict), not a path, so any
result-shaped document (a run, or one row of a dataset run) is shown the
same way. `run_renderables` gives the run's overview (status, counts, a row
per agent with its reason), `agent_renderables` one agent in full (its
rendered prompts, its answer, its attempts' errors, its tool calls), and
`agent_document` / `run_summary` the same for `--format json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import MAX_RESULT_BYTES, read_bytes_capped
from orchestrate.money.amounts import budget_usd, usd
from orchestrate.observe.answer import agent_answer, answer_lines, input_lines, run_answer
from orchestrate.observe.approval_view import approval_lines, decided, pending
from orchestrate.observe.dataset_view import readable_time
from orchestrate.observe.step_view import code_call, reason
from orchestrate.observe.summary import failure_lines, outcome_counts, plural
from orchestrate.observe.tables import Column, build_table

__all__ = ["agent_document", "agent_renderables", "find_agent", "load_result", "run_renderables", "run_summary"]

_COLUMNS = (
    Column("agent"),
    Column("status"),
    Column("module", drop=5),
    Column("model", drop=3),
    Column("tries", "right", "number", drop=4),
    Column("tokens", "right", "number"),
    Column("cost", "right", "number"),
    Column("time", "right", "number", drop=2),
    Column("why", kind="text", drop=1),
)


def load_result(path: Path) -> dict[str, Any]:
    """The result.json of a run folder (or the file itself), as a dict."""
    file = path / "result.json" if path.is_dir() else path
    if not file.exists():
        where = "no result.json in this folder" if path.is_dir() else "no such run folder or file"
        raise UserInputError(f"{path}: {where}")
    try:
        document = json.loads(read_bytes_capped(file, MAX_RESULT_BYTES, special=False).decode("utf-8"))
    except OSError as exc:
        raise UserInputError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UserInputError(f"{file}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("agents"), list):
        raise UserInputError(f"{file}: not a run result (no 'agents' list)")
    return document


def find_agent(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The agent called `name`; an error naming the agents there are (and the closest one)."""
    import difflib

    agents = {str(a.get("name")): a for a in document.get("agents", [])}
    if name in agents:
        return dict(agents[name])
    close = difflib.get_close_matches(name, list(agents), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; agents: {', '.join(agents)}"
    raise UserInputError(f"no agent {name!r} in run {document.get('run_id') or document.get('name')}{hint}")


def _headline(document: Mapping[str, Any]) -> str:
    agents = document.get("agents", [])
    label = " (simulated)" if document.get("simulated") else ""
    return (
        f"{document.get('status')}{label} - {outcome_counts([str(a.get('status')) for a in agents])}; "
        f"{usd(float(document.get('total_cost') or 0))}, "
        f"{plural(int(document.get('total_tokens') or 0), 'token')}, "
        f"{plural(int(document.get('retries') or 0), 'retry')}, "
        f"{float(document.get('duration_seconds') or 0):.2f}s"
    )


def run_summary(document: Mapping[str, Any]) -> dict[str, Any]:
    """The run and each agent's outcome, for `--format json` (prompts and answers left out)."""
    keep = (
        "run_id",
        "name",
        "status",
        "simulated",
        "total_cost",
        "total_tokens",
        "retries",
        "duration_seconds",
        "started_at",
        "completed_at",
        "cost_budget",
        "inputs",
        "error",
        "resumed_from",
        "reused_agents",
        "source",
    )
    kind, answers = run_answer(document)
    return {
        **{k: document.get(k) for k in keep},
        "outputs": {a.name: a.value for a in answers} if kind == "outputs" else None,
        "approvals": {"waiting": pending(document), "decided": decided(document)},
        "answers": {a.name: a.value for a in answers if a.status == "completed"} if kind == "answers" else None,
        "agents": [
            {
                k: a.get(k)
                for k in (
                    "name",
                    "status",
                    "error",
                    "module",
                    "model",
                    "provider",
                    "tokens_used",
                    "cost",
                    "execution_time",
                    "retry_count",
                    "dependencies",
                )
            }
            | {"why": reason(a)}  # the one line that explains the status (a skip: its condition and value)
            for a in document.get("agents", [])
        ],
    }


def agent_document(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One agent in full, for `--format json`: its result, prompts, answer and attempts."""
    agent = find_agent(document, name)
    meta = agent.get("metadata") or {}
    return {
        "run_id": document.get("run_id"),
        "workflow": document.get("name"),
        **agent,
        "prompt": meta.get("prompt"),
        "system_prompt": meta.get("system_prompt"),
        "attempt_errors": meta.get("errors", []),
        "tool_log": meta.get("tool_log", []),
    }


def run_renderables(
    document: Mapping[str, Any], *, width: int | None, title: str | None = None, show: str | None = None
) -> list[Any]:
    """The overview of a run: headline, facts, a table row per agent, and the reasons."""
    from rich.text import Text

    parts: list[Any] = [
        Text(title or str(document.get("run_id") or document.get("name")), style="bold"),
        Text(f"{document.get('name')}: {_headline(document)}"),
    ]
    if document.get("description"):
        parts.append(Text(" ".join(str(document["description"]).split()), style="dim"))
    blocks = (
        input_lines(document, width=width),
        answer_lines(document, show, width=width),
        approval_lines(document, title, width=width),
    )
    for block in blocks:
        if block:
            parts.append(Text(block[0], style="bold"))
            parts.extend(Text(line) for line in block[1:])
    facts = []
    if document.get("started_at"):
        facts.append(f"started {readable_time(document['started_at'])}")
    if document.get("cost_budget") is not None:
        facts.append(f"budget {budget_usd(float(document['cost_budget']))}")
    kept = document.get("content_kept") is not False
    if document.get("resumed_from"):
        facts.append(f"resumed from {document['resumed_from']}")
    if facts:
        parts.append(Text(" | ".join(facts), style="dim"))
    if not kept:
        parts.append(
            Text(
                "content not kept (data_protection store_content: false): prompts, answers and "
                "tool arguments were recorded as digests and sizes only"
            )
        )
    rows = []
    for agent in document.get("agents", []):
        meta = agent.get("metadata") or {}
        status = str(agent.get("status"))
        reused = " (reused)" if meta.get("reused") else ""
        error = reason(agent) if status != "completed" else None
        rows.append(
            [
                str(agent.get("name")),
                status.replace("_", " ") + reused,
                str(agent.get("module") or ""),
                str(agent.get("model") or code_call(agent, limit=40) or "")
                + (f" -> {meta['served_model']}" if meta.get("served_model") else ""),
                str(meta.get("attempts") or ""),
                f"{agent.get('tokens_used') or 0:,}" if agent.get("tokens_used") else "",
                usd(float(agent.get("cost") or 0)) if agent.get("cost") else "",
                f"{float(agent.get('execution_time') or 0):.2f}s" if agent.get("started_at") else "",
                str(error).splitlines()[0] if error else "",
            ]
        )
    parts.append(build_table(_COLUMNS, rows, width=width))
    failures = failure_lines(document)
    if failures:
        parts.append(Text("why:", style="bold"))
        parts.extend(Text(line) for line in failures)
    return parts


def agent_renderables(document: Mapping[str, Any], name: str) -> list[Any]:
    """One agent in full: status, reason, attempts' errors, system prompt, prompt, answer, tools."""
    from rich.text import Text

    agent = find_agent(document, name)
    meta = agent.get("metadata") or {}
    status = str(agent.get("status"))
    parts: list[Any] = [
        Text(f"{document.get('name')} / {agent.get('name')}", style="bold"),
        Text(
            f"{status}{' (reused from an earlier run)' if meta.get('reused') else ''} - "
            f"{plural(int(meta.get('attempts') or 0), 'attempt')}, "
            f"{plural(int(agent.get('tokens_used') or 0), 'token')}, "
            f"{usd(float(agent.get('cost') or 0))}, {float(agent.get('execution_time') or 0):.2f}s"
        ),
        Text(" | ".join(_where(agent, meta)), style="dim"),
    ]

    def section(heading: str, body: str) -> None:
        parts.append(Text(""))
        parts.append(Text(heading, style="bold"))
        parts.append(Text(_indent(body)))

    for move in meta.get("fallbacks") or []:
        parts.append(
            Text(
                f"fell back: {move.get('from_model')} -> {move.get('to_model')} ({move.get('reason')}): "
                f"{move.get('error')}",
                style="yellow",
            )
        )
    why = reason(agent)
    if why and status != "completed":
        section("why", why)
    errors = meta.get("errors") or []
    if errors:
        section("failed attempts", "\n".join(f"{i}. {e}" for i, e in enumerate(errors, 1)))
    if meta.get("system_prompt"):
        section("system prompt", str(meta["system_prompt"]))
    if meta.get("function"):
        section("call", code_call(agent) or str(meta["function"]))
    elif meta.get("prompt") is not None:
        section("prompt", str(meta["prompt"]))
    elif status not in ("cancelled", "pending", "skipped"):
        section("prompt", "(not recorded: this run was made before prompts were kept)")
    output = agent.get("output")
    if output:
        answer = agent_answer(agent)
        body = answer if isinstance(answer, str) else json.dumps(answer, indent=2, ensure_ascii=False)
        section("result" if meta.get("function") else "answer", body)
    tools = meta.get("tool_log") or []
    if tools:
        section(
            "tool calls",
            "\n".join(
                f"{t.get('tool')}({_inline(t.get('arguments'))})"
                + (f" -> error: {t['error']}" if t.get("error") else " -> ok")
                for t in tools
            ),
        )
    return parts


def _inline(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else "" for line in text.splitlines()) or "  (empty)"


def _where(agent: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """Module, what answered (a code step's function, or provider / model), what it ran after.

    An agent that never ran (skipped, cancelled before its start) may have no provider or model:
    only what is known is said, never ``? / None``.
    """
    parts = [str(agent.get("module"))]
    if meta.get("function"):
        parts.append(f"code step {meta['function']}")
    elif agent.get("provider") or agent.get("model"):  # a skipped agent has its model, not yet a provider
        parts.append(" / ".join(str(v) for v in (agent.get("provider"), agent.get("model")) if v))
    if agent.get("dependencies"):
        parts.append(f"after {', '.join(agent['dependencies'])}")
    return parts
