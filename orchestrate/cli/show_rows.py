"""`orchestrate show DATASET_RUN --format table|csv|jsonl` and `--by OUTPUT_PATH`: a dataset run's rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrate.cli.common import fail, is_interactive, print_json

__all__ = ["show_rows"]


def show_rows(run_dir: Path, fmt: str, by: str | None) -> None:
    """Print each row key's latest state (`fmt` table, csv or jsonl), or the counts of rows `by` an output."""
    from orchestrate.observe.dataset_results import export_rows, output_paths

    folder = run_dir if run_dir.is_dir() else run_dir.parent
    if by is not None:
        paths = output_paths(folder)
        if by not in paths:
            import difflib

            close = difflib.get_close_matches(by, paths, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the outputs are: {', '.join(paths) or 'none'}"
            fail(f"--by {by}: no row of {folder} has that output; {hint}")
        _counts(folder, by, fmt)
        return
    if fmt in ("csv", "jsonl"):
        export_rows(folder, fmt, sys.stdout)
        return
    _table(folder)


def _counts(folder: Path, path: str, fmt: str) -> None:
    from orchestrate.observe.dataset_results import count_by

    outcomes = count_by(folder, path, examples=5)
    total = sum(o.rows for o in outcomes)
    if fmt == "json":
        payload = {
            "run_dir": str(folder),
            "by": path,
            "rows": total,
            "outcomes": [{"value": o.value, "rows": o.rows, "keys": [e["key"] for e in o.examples]} for o in outcomes],
        }
        print_json("outcomes", payload, ensure_ascii=False)
        return
    if fmt in ("csv", "jsonl"):
        import csv

        if fmt == "jsonl":
            for o in outcomes:
                sys.stdout.write(json.dumps({"value": o.value, "rows": o.rows}, ensure_ascii=False) + "\n")
            return
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([path, "rows"])
        from orchestrate.cells import formula_safe

        writer.writerows([formula_safe(o.value), o.rows] for o in outcomes)
        return
    from orchestrate.observe.tables import Column, build_table, plain_console

    console = plain_console(sys.stdout, interactive=is_interactive(sys.stdout))
    rows = [
        [
            o.value,
            f"{o.rows:,}",
            f"{o.rows / total * 100:.0f}%" if total else "",
            ", ".join(e["key"] for e in o.examples),
        ]
        for o in outcomes
    ]
    columns = (
        Column(path),
        Column("rows", "right", "number"),
        Column("share", "right", "number"),
        Column("first rows", kind="text", drop=1),
    )
    console.print(f"{folder}: {total:,} rows by {path}")
    console.print(build_table(columns, rows, width=console.width if is_interactive(sys.stdout) else None))


def _table(folder: Path) -> None:
    from orchestrate.money.amounts import usd
    from orchestrate.observe.answer import flatten, inline
    from orchestrate.observe.dataset_results import latest_rows, output_paths
    from orchestrate.observe.tables import Column, build_table, plain_console

    paths = output_paths(folder)
    columns = (
        Column("key"),
        Column("status"),
        *(Column(path, kind="text") for path in paths),
        Column("cost", "right", "number", drop=2),
        Column("why", kind="text", drop=1),
    )
    rows = []
    for row in latest_rows(folder):
        flat = flatten(row["outputs"])
        rows.append(
            [
                str(row["key"]),
                str(row["status"]).replace("_", " "),
                *("" if flat.get(p) is None else inline(flat[p]) for p in paths),
                usd(float(row["cost"] or 0)) if row["cost"] else "",
                str(row["error"] or "").splitlines()[0] if row["error"] else "",
            ]
        )
    interactive = is_interactive(sys.stdout)
    console = plain_console(sys.stdout, interactive=interactive)
    console.print(build_table(columns, rows, width=console.width if interactive else None))
