"""`orchestrate merge SHARD_DIR... -o DIR`: the shard folders of one dataset run as one result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrate.cli.common import check_format, format_option_info, json_option_info, print_json

__all__ = ["merge"]

FORMATS = ("text", "json")


def merge(
    shard_dirs: Annotated[
        list[Path],
        typer.Argument(metavar="SHARD_DIR...", help="The run folder of each shard.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="DIR", help="The folder to write the merged run to (new).", show_default=False
        ),
    ],
    fmt: Annotated[str, format_option_info(FORMATS)] = "text",
    as_json: Annotated[bool, json_option_info()] = False,
) -> None:
    """Merge the run folders of a sharded dataset run into one: results, cost.json, report.html.

    The merged result.json counts rows across shards and names what is missing:
    shards no folder was given for, and per shard the rows that did not
    complete or never ran. Exit code 0 when every shard is there and every row
    completed, 3 otherwise.

    \b
    Examples:
      orchestrate merge runs/invoice_review-*-shard-*-of-8 -o runs/invoice_review-merged
      orchestrate merge out1/inv-* out2/inv-* -o merged --format json
    """
    from orchestrate.observe.dataset_merge import merge_shards

    output_format = check_format(fmt, FORMATS, as_json=as_json)
    merged = merge_shards(shard_dirs, output)
    d = merged.document
    if output_format == "json":
        payload = {
            k: d[k] for k in ("name", "status", "rows", "counts", "total_cost", "total_tokens", "shards", "error")
        }
        payload["run_dir"] = str(merged.run_dir)
        print_json("dataset_run", payload)
    else:
        shards = d["shards"]
        counts = ", ".join(f"{n} {status}" for status, n in d["counts"].items()) or "no rows"
        sys.stdout.write(
            f"{d['name']}: {d['status']} - {len(shards['merged'])}/{shards['count']} shard(s), "
            f"{d['rows']} rows ({counts}), ${d['total_cost']:.6f}\n"
        )
        if d["error"]:
            sys.stdout.write(f"missing: {d['error']}\n")
        sys.stdout.write(f"run folder: {merged.run_dir}\n")
    raise typer.Exit(0 if merged.complete else 3)
