"""Every JSON document a run writes matches a schema the package ships in `schemas/`.

Runs each kind of run as a user does (simulated, so offline): a workflow run with expectations, a
dataset run with expectations, a run that waits for an approval and its resume once approved, a
resumed dataset run, a run under a data-protection policy, and a run through a provider batch API (against `tests/fake_batch.py`); then validates every JSON and JSON Lines file in every run folder against the
schema its name (and `kind`) calls for. A file no schema covers fails the test: a new file a run
writes needs its schema. (`unsettled_scope.json`, written only when Redis is lost mid-run, is checked
against its schema by the run that loses it, in `tests/test_spend_once.py`.) Every schema is shipped in
the package, the same bytes as in `schemas/`, and `orchestrate schema NAME` prints it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema

from tests.cli import orchestrate
from tests.fake_batch import FakeBatchProvider, FakeClock

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"

# file name -> schema (by name; result.json by its kind)
BY_NAME = {
    "invocation.json": "invocation",
    "cost.json": "cost",
    "evaluation.json": "evaluation",
    "baseline.json": "evaluation",
    "approvals.json": "approvals",
    "batches.json": "batches",
    "results.jsonl": "dataset_row",
    "rows.jsonl": "row_result",
    "calls.jsonl": "call",
    "events.jsonl": "event",
    "audit.jsonl": "audit_entry",
    "unsettled_scope.json": "unsettled_scope",
    "pseudonyms.json": "pseudonyms",
}


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def schema_for(path: Path, document: Any) -> str | None:
    if path.name == "result.json":
        return (
            "dataset_run"
            if isinstance(document, dict) and document.get("kind") in ("dataset_run", "batch")
            else "result"
        )
    if path.name.startswith("eval-") and path.suffix == ".json":
        return "evaluation"
    return BY_NAME.get(path.name)


def problems_in(folder: Path) -> tuple[list[str], set[str]]:
    found: list[str] = []
    seen: set[str] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".json", ".jsonl"):
            continue
        if path.suffix == ".json":
            documents = [(1, json.loads(path.read_text()))]
        else:
            documents = [
                (n, json.loads(line)) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()
            ]
        name = schema_for(path, documents[0][1] if documents else None)
        if path.suffix == ".json" and documents[0][1].get("kind") is None:
            found.append(f"{path}: no kind (every JSON document a run writes says what it is)")
        if name is None:
            found.append(f"{path}: no schema in schemas/ covers this file")
            continue
        seen.add(name)
        validator = jsonschema.Draft202012Validator(schema(name))
        for number, document in documents:
            for error in validator.iter_errors(document):
                where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                found.append(f"{path.name}:{number}: {name}.schema.json: {where}: {error.message[:200]}")
                break
    return found, seen


def test_every_json_file_of_every_kind_of_run_matches_its_schema(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    coding, data = "workflows/finance_invoice_coding.yaml", "workflows/data/invoice_coding.csv"
    answers = ["--answers", "workflows/data/invoice_coding_answers.json"]
    runs = tmp_path / "runs"

    def run(*args: str, expect: tuple[int, ...]) -> Path:
        before = set(runs.iterdir()) if runs.exists() else set()
        done = orchestrate("run", *args, "--simulate", "-o", str(runs), cwd=tmp_path)
        assert done.returncode in expect, done.stderr
        (made,) = set(runs.iterdir()) - before or {None}  # a resume continues its own folder
        return made if made is not None else Path(args[args.index("--resume") + 1])

    single = run(coding, *answers, expect=(0, 3, 5))
    dataset = run(coding, "--data", data, "--key", "invoice_id", *answers, expect=(0, 3, 5))
    waiting = run("workflows/finance_month_end_close.yaml", "--input", "post_to_ledger=true", expect=(4,))
    approved = orchestrate(
        "approve", str(waiting), "post_adjustments", "--by", "controller", "--note", "checked", cwd=tmp_path
    )
    assert approved.returncode == 0, approved.stderr
    resumed = orchestrate("run", "--resume", str(waiting), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    again = orchestrate("run", "--resume", str(dataset), cwd=tmp_path)
    assert again.returncode in (0, 3, 5), again.stderr
    protected = run("workflows/hr_onboarding.yaml", expect=(0,))
    assert (protected / "pseudonyms.json").exists()
    scored = orchestrate("eval", str(dataset), cwd=tmp_path)  # writes eval-TIME.json in the folder
    assert scored.returncode in (0, 5), scored.stderr
    assert list(dataset.glob("eval-*.json"))
    shards = [
        run(coding, "--data", data, "--key", "invoice_id", "--shard", k, *answers, expect=(0, 3, 5))
        for k in ("1/2", "2/2")
    ]
    merged = orchestrate("merge", *map(str, shards), "-o", str(runs / "merged"), cwd=tmp_path)
    assert merged.returncode in (0, 3), merged.stderr

    with FakeBatchProvider(FakeClock(), validate_s=0.0, process_s=0.0, finalize_s=0.0) as server:
        flow = tmp_path / "batch_invoices.yaml"
        flow.write_text(
            "name: batch_invoices\ndefaults:\n  module: Finance\n"
            f"  llm_config: {{model: gpt-4o-mini, base_url: '{server.url}/v1', max_tokens: 40}}\nagents:\n"
            "  - {name: extract, prompt_template: 'Extract the total of invoice 7.'}\n"
            "  - {name: check, dependencies: [extract], prompt_template: 'Check {extract.output}'}\n"
        )
        batched = orchestrate(
            "run", str(flow), "-o", str(runs), "--provider-batch", "--batch-window", "0.05", "--batch-poll-max", "0.2",
            cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test-schemas-0123456789"},
        )  # fmt: skip
        assert batched.returncode == 0, batched.stderr
        assert server.submissions == 2

    problems: list[str] = []
    covered: set[str] = set()
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        found, seen = problems_in(folder)
        problems += found
        covered |= seen
    assert problems == []
    assert single.exists() and waiting.exists()
    # Every kind of document was met at least once (so the mapping above is exercised, not vacuous).
    assert covered >= {
        "invocation", "result", "cost", "dataset_run", "evaluation", "dataset_row", "row_result", "call", "event",
        "audit_entry", "approvals", "batches", "pseudonyms",
    }  # fmt: skip


def test_the_package_ships_every_schema_and_schema_prints_each() -> None:
    from orchestrate.workflow.schema import schema_names, schema_text

    names = sorted(path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json"))
    assert schema_names() == names  # three of fifteen were shipped before
    for name in names:
        assert schema_text(name) == (SCHEMAS / f"{name}.schema.json").read_text(), name
        jsonschema.Draft202012Validator.check_schema(json.loads(schema_text(name)))
    listed = orchestrate("schema", "--list", cwd=ROOT)
    assert listed.returncode == 0 and listed.stdout.split() == names, listed.stderr
    printed = orchestrate("schema", "unsettled_scope", cwd=ROOT)
    assert printed.returncode == 0 and json.loads(printed.stdout) == schema("unsettled_scope"), printed.stderr
    wrong = orchestrate("schema", "resutl", cwd=ROOT)
    assert wrong.returncode == 2 and "no schema named 'resutl'; did you mean 'result'?" in wrong.stderr


def test_every_document_kind_that_a_run_folder_holds_is_required_in_its_schema() -> None:
    # A document (not a journal line) says what it is; result.json and cost.json of folders from
    # before kinds are still checked against their schemas by the readers, so theirs stay optional.
    for name in ("approvals", "unsettled_scope", "pseudonyms", "invocation", "dataset_run", "evaluation"):
        assert "kind" in schema(name)["required"], name


def test_a_rows_result_schema_is_a_runs_result_schema_plus_the_row() -> None:
    run, row = schema("result"), schema("row_result")
    assert {k: v for k, v in row["properties"].items() if k not in ("key", "row", "columns")} == run["properties"]
    assert row["required"] == [*run["required"], "key", "row"]
    assert {k: v for k, v in row.items() if k not in ("$id", "title", "description", "properties", "required")} == {
        k: v for k, v in run.items() if k not in ("$id", "title", "description", "properties", "required")
    }
