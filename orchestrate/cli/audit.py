"""`orchestrate audit verify|show|expired`: check, read and age the audit trails of run folders."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrate.cli.common import (
    check_format,
    fail,
    format_option_info,
    is_interactive,
    json_option_info,
    latest_run_dir,
    print_json,
)
from orchestrate.fsutil import NotRegularFileError, open_regular, read_regular_text

__all__ = ["app"]

app = typer.Typer(
    name="audit",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich" if is_interactive(sys.stderr) else None,
    help="Check (verify), read (show) and age (expired) the audit trails (audit.jsonl) of run folders.",
)

FORMATS = ("text", "json")
FormatChoice = Annotated[str, format_option_info(FORMATS)]
JsonAlias = Annotated[bool, json_option_info()]


def _run_dirs(paths: list[Path]) -> list[Path]:
    """Each path a run folder, or a folder of run folders (such as runs/)."""
    from orchestrate.observe.audit_chain import AUDIT_FILE

    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            fail(f"{path}: no such folder")
        if (path / AUDIT_FILE).exists() or (path / "result.json").exists():
            found.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if p.is_dir() and (p / AUDIT_FILE).exists())
        if not inner:
            fail(f"{path}: not a run folder, and holds none with an audit trail")
        found.extend(inner)
    return found


def _result_head(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = json.loads(read_regular_text(run_dir / "result.json"))
    except NotRegularFileError:
        raise  # a pipe or device put in its place: refused (exit 2), never waited on nor passed over
    except (OSError, ValueError):
        return []
    head = document.get("audit") if isinstance(document, dict) else None
    return [(str(run_dir / "result.json"), head)] if isinstance(head, dict) else []


@app.command("verify")
def verify(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="Run folders, or folders of them; latest: the newest in ./runs.",
            show_default=False,
            callback=latest_run_dir,
        ),
    ],
    audit_sink: Annotated[
        Path | None,
        typer.Option("--audit-sink", metavar="FILE", help="The append-only file the runs sent their heads to."),
    ] = None,
    fmt: FormatChoice = "text",
    json_output: JsonAlias = False,
) -> None:
    """Check every record of each trail, and its head against result.json (and --audit-sink).

    A changed, removed, reordered or inserted record is reported with its line; a cut
    tail through the head kept elsewhere. Set ORCHESTRATE_AUDIT_KEY to check the HMACs
    of keyed trails. Exit 0 only when every chain holds, else 1.

    \b
    Examples:
      orchestrate audit verify runs/hr_onboarding-20261203T101500Z
      ORCHESTRATE_AUDIT_KEY=... orchestrate audit verify runs/ --audit-sink /var/log/orchestrate-heads.jsonl
    """
    from orchestrate.observe.audit_chain import audit_key, sink_heads, verify_trail

    as_json = check_format(fmt, FORMATS, as_json=json_output) == "json"
    if audit_sink is not None and not audit_sink.is_file():
        fail(f"--audit-sink {audit_sink}: no such file")
    key = audit_key()
    reports = []
    for run_dir in _run_dirs(run_dirs):
        heads = _result_head(run_dir)
        if audit_sink is not None:
            heads += sink_heads(audit_sink, run_dir.name)
        reports.append(verify_trail(run_dir, key=key, heads=heads))
    if as_json:
        payload = [
            {
                "run_dir": str(r.path.parent),
                "holds": r.holds,
                "records": r.records,
                "head": r.head,
                "keyed": r.keyed,
                "hmac_checked": r.keyed and key is not None and r.holds,
                "problems": r.problems,
                "notes": r.notes,
            }
            for r in reports
        ]
        print_json("audit_verification", {"trails": payload})
    else:
        for r in reports:
            if r.holds:
                how = "HMAC-SHA-256 checked" if r.keyed and key is not None else "SHA-256 chain"
                sys.stdout.write(f"{r.path.parent}: ok, {r.records} records, head {(r.head or '')[:16]} ({how})\n")
            else:
                sys.stdout.write(f"{r.path.parent}: BROKEN, {len(r.problems)} problem(s)\n")
                for problem in r.problems:
                    sys.stdout.write(f"  {problem}\n")
            for note in r.notes:
                sys.stdout.write(f"  note: {note}\n")
    raise typer.Exit(0 if all(r.holds for r in reports) else 1)


@app.command("show")
def show(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="A run folder (latest: the newest in ./runs).",
            show_default=False,
            callback=latest_run_dir,
        ),
    ],
    fmt: FormatChoice = "text",
    json_output: JsonAlias = False,
) -> None:
    """Print a run's audit trail, a line a record (--format json: the records).

    \b
    Examples:
      orchestrate audit show runs/hr_onboarding-20261203T101500Z
      orchestrate audit show latest --format json
    """
    from orchestrate.observe.audit_chain import AUDIT_FILE

    as_json = check_format(fmt, FORMATS, as_json=json_output) == "json"
    path = run_dir / AUDIT_FILE
    if not path.is_file():
        fail(f"{run_dir}: no audit trail ({AUDIT_FILE})")
    records = []
    with open_regular(path) as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    if as_json:
        print_json("audit_trail", {"run_dir": str(run_dir), "records": records}, ensure_ascii=False)
        return
    from orchestrate.printable import printable

    for record in records:
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(record.get("time") or 0)))
        who = record.get("agent") or ""
        line = f"{record.get('seq', '?'):>5} {moment} {record.get('type', '?'):<14} {who:<24} {_brief(record)}"
        sys.stdout.write(printable(line.rstrip(), one_line=True) + "\n")


def _brief(record: dict[str, Any]) -> str:
    d = record.get("data") or {}
    kind = record.get("type")
    if kind == "run_started":
        who = d.get("approver") or {}
        return (
            f"{d.get('kind')} of {d.get('workflow')} ({d.get('workflow_digest', '')[:19]}), chain {d.get('chain')}, "
            f"approver {who.get('name')} ({who.get('source')}), retention {d.get('retention_days')} days"
        )
    if kind == "call":
        cached = ", cache hit" if d.get("cache_hit") else ""
        return (
            f"{d.get('provider')} {d.get('served_model') or d.get('model')} at {d.get('endpoint')}: "
            f"{d.get('input_tokens')} in, {d.get('output_tokens')} out, ${float(d.get('cost') or 0):.6f}{cached}"
        )
    if kind == "approval":
        note = f" ({d['note']})" if d.get("note") else ""
        return f"{d.get('decision')} by {d.get('approver')} at {d.get('at')}{note}"
    if kind == "tool_call":
        return f"{d.get('tool')} args {str(d.get('arguments'))[:19]}" + (
            f" error: {d['error']}" if d.get("error") else ""
        )
    if kind == "step_finished":
        return f"{d.get('status')}, ${float(d.get('cost') or 0):.6f}" + (" (code step)" if d.get("code_step") else "")
    if kind == "row_finished":
        return f"row {d.get('row')} key {d.get('key')}: {d.get('status')}"
    if kind == "run_finished":
        return f"{d.get('status')}, ${float(d.get('total_cost') or 0):.6f}, {d.get('total_tokens')} tokens"
    return ", ".join(f"{k}={v}" for k, v in d.items() if v is not None)[:160]


@app.command("expired")
def expired(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="The folder of run folders (default: runs).", show_default=False)
    ] = Path("runs"),
    fmt: FormatChoice = "text",
    json_output: JsonAlias = False,
) -> None:
    """List the run folders past the retention their trail records (retention_days); deletes nothing.

    \b
    Examples:
      orchestrate audit expired
      orchestrate audit expired /srv/orchestrate/runs --format json
    """
    from orchestrate.observe.audit_retention import expired_runs

    as_json = check_format(fmt, FORMATS, as_json=json_output) == "json"
    if not folder.is_dir():
        fail(f"{folder}: no such folder")
    found = expired_runs(folder, now=time.time())
    if as_json:
        print_json("expired_runs", {"folder": str(folder), "runs": found})
        return
    for item in found:
        sys.stdout.write(
            f"{item['run_dir']}  started {item['started'][:10]}, kept {item['retention_days']} days, "
            f"expired {item['days_past']} days ago\n"
        )
