"""`--input` values a data-protection policy covers are kept nowhere in the run folder in clear:
invocation.json names them with a keyed check only, and a resume is given them again (checked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrate.observe.audit_chain import digest
from tests.fake_provider import FakeProvider, Fault
from tests.test_personal_data import WORKFLOW, echo, without_outputs
from tests.test_pseudonym_resume import orchestrate

NAME = "Ottilie Brennan-Vasquez"
IBAN = "DE89370400440532013000"
NATIONAL_ID = "078-05-1120"
EMAIL = "ottilie.bv@example.org"
PHONE = "0049 30 7654321"
LETTER = f"Dear {NAME}, all is well."  # the declared output, restored: the only place the name may be
ORIGINALS = [NAME, "Brennan-Vasquez", IBAN, "0532013000", NATIONAL_ID, EMAIL, PHONE, "7654321"]
INPUTS = [
    f"employee_name={NAME}",
    f"iban={IBAN}",
    f"national_id={NATIONAL_ID}",
    "salary=51000",
    f"notes=reach her at {EMAIL} or {PHONE}",
]


def _args(inputs: list[str]) -> list[str]:
    return [part for value in inputs for part in ("--input", value)]


def _leaks(folder: Path) -> dict[str, list[str]]:
    """Every file of a run folder, searched for the originals (the declared outputs, restored, left out)."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        if path.suffix == ".json":
            text = json.dumps(without_outputs(json.loads(text)), ensure_ascii=False)
        elif path.suffix == ".jsonl":
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
            text = json.dumps(without_outputs(docs), ensure_ascii=False)
        else:  # the report shows the declared outputs, restored
            text = text.replace(LETTER, "")
        hits = [value for value in ORIGINALS if value in text]
        if hits:
            found[path.name] = hits
    return found


def test_a_runs_inputs_under_the_policy_are_in_no_file_and_a_resume_is_given_them_again(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        (tmp_path / "letters.yaml").write_text(WORKFLOW % {"url": provider.url, "store": "true"})
        provider.script(Fault(), Fault(status=400, body={"error": {"message": "bad request", "type": "invalid"}}))
        failed = orchestrate("run", "letters.yaml", *_args(INPUTS), "-o", "runs", cwd=tmp_path)
        assert failed.returncode == 3, failed.stderr  # the letter failed: a resume has work to do
        (run_dir,) = (tmp_path / "runs").iterdir()
        assert _leaks(run_dir) == {}
        trail = (run_dir / "audit.jsonl").read_text()  # not even a digest a guess could be checked against
        assert digest(NAME) not in trail and digest(IBAN) not in trail and "employee_name=(withheld)" in trail
        record = json.loads((run_dir / "invocation.json").read_text())
        assert record["inputs"] == {"salary": "51000"}  # `keep`: kept as given
        assert sorted(record["withheld_inputs"]) == ["employee_name", "iban", "national_id", "notes"]
        assert all(check.startswith("hmac-sha256:") for check in record["withheld_inputs"].values())

        alone = orchestrate("run", "--resume", str(run_dir), "-o", "again", cwd=tmp_path)
        assert alone.returncode == 2 and "Traceback" not in alone.stderr
        assert (
            "employee_name, iban, national_id, notes are protected (the workflow's data_protection policy"
            in alone.stderr
        )
        assert f"--resume {run_dir} --input employee_name=... --input iban=..." in alone.stderr

        wrong = [*INPUTS[:4], "notes=reach her at someone.else@example.org"]
        other = orchestrate("run", "--resume", str(run_dir), *_args(wrong), "-o", "again", cwd=tmp_path)
        assert other.returncode == 2 and "--input notes=(not shown) (the run was started with another value)" in (
            other.stderr
        )
        assert "someone.else" not in other.stderr and len(provider.requests) == 2  # nothing ran

        resumed = orchestrate(
            "run", "--resume", str(run_dir), *_args(INPUTS), "-o", "again", "--format", "json", cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr
        assert len(provider.requests) == 3  # the review reused, the letter written
        sent = json.dumps(provider.requests)
    assert [value for value in ORIGINALS if value in sent] == []
    summary = json.loads(resumed.stdout)["runs"][0]
    assert summary["outputs"]["letter"] == LETTER  # restored from the inputs given again
    (second,) = (tmp_path / "again").iterdir()
    assert _leaks(second) == {}
    assert json.loads((second / "invocation.json").read_text())["withheld_inputs"] == record["withheld_inputs"]


def test_a_dataset_runs_shared_inputs_under_the_policy_are_in_no_file(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"employee_name": "Amelia Okonkwo", "iban": IBAN, "national_id": "123-45-6789", "salary": 1},
        {"employee_name": "Bogdan Lindqvist", "iban": IBAN, "national_id": "234-56-7890", "salary": 2},
    ]
    with FakeProvider(rewrite=echo) as provider:
        (tmp_path / "letters.yaml").write_text(WORKFLOW % {"url": provider.url, "store": "true"})
        (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        done = orchestrate(
            "run", "letters.yaml", "--data", "rows.jsonl", *_args([INPUTS[4]]), "-o", "runs", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        sent = json.dumps(provider.requests)
    assert EMAIL not in sent and PHONE not in sent and "EMAIL_" in sent and "PHONE_" in sent
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert _leaks(run_dir) == {}
    record = json.loads((run_dir / "invocation.json").read_text())
    assert record["inputs"] == {} and list(record["withheld_inputs"]) == ["notes"]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["inputs"]["notes"].startswith("reach her at EMAIL_")  # the protected form, as the rows saw it


def test_no_content_withholds_every_input_even_without_a_policy(tmp_path: Path) -> None:
    (tmp_path / "offer.yaml").write_text(
        "name: offer\ndefaults:\n  module: HR\n  llm_config: {model: gpt-4o-mini}\n"
        "inputs:\n  employee_name: {type: string}\n  grade: {type: string}\n"
        "agents:\n  - {name: review, prompt_template: 'Review the offer for {employee_name}, grade {grade}'}\n"
    )
    args = ["--input", f"employee_name={NAME}", "--input", "grade=B2"]
    done = orchestrate("run", "offer.yaml", "--simulate", "--no-content", *args, "-o", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert _leaks(run_dir) == {}
    record = json.loads((run_dir / "invocation.json").read_text())
    assert record["inputs"] == {} and sorted(record["withheld_inputs"]) == ["employee_name", "grade"]
    alone = orchestrate("run", "--resume", str(run_dir), "-o", "again", cwd=tmp_path)
    assert alone.returncode == 2 and "its input(s) employee_name, grade are protected" in alone.stderr
    again = orchestrate("run", "--resume", str(run_dir), *args, "-o", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


SUMMARY = """\
name: hr_payroll_check
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, base_url: "%(url)s/v1", max_tokens: 200}
inputs:
  employee_name: {type: string}
  iban: {type: string}
  national_id: {type: string}
  salary: {type: number}
  notes: {type: string}
agents:
  - name: check
    prompt_template: |
      Check the payroll of {employee_name}: {salary} EUR to {iban}, id {national_id}. Notes: {notes}
"""


def test_an_input_one_workflow_of_a_run_protects_is_protected_by_the_others_too(tmp_path: Path) -> None:
    with FakeProvider(rewrite=echo) as provider:
        (tmp_path / "letters.yaml").write_text(WORKFLOW % {"url": provider.url, "store": "true"})
        (tmp_path / "payroll.yaml").write_text(SUMMARY % {"url": provider.url})  # no data_protection of its own
        done = orchestrate("run", "letters.yaml", "payroll.yaml", *_args(INPUTS), "-o", "runs", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        sent = json.dumps(provider.requests)
        assert len(provider.requests) == 3
    assert [value for value in ORIGINALS if value in sent] == []  # the payroll check's prompt included
    assert "EMPLOYEE_NAME_" in sent and "DE89 **** **** **** 3000" in sent
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    for run_dir in folders:
        assert _leaks(run_dir) == {}, run_dir.name
        record = json.loads((run_dir / "invocation.json").read_text())
        assert record["inputs"] == {"salary": "51000"}, run_dir.name
        assert sorted(record["withheld_inputs"]) == ["employee_name", "iban", "national_id", "notes"]
        trail = (run_dir / "audit.jsonl").read_text()
        assert digest(NAME) not in trail and "employee_name=(withheld)" in trail
    (payroll,) = [d for d in folders if d.name.startswith("hr_payroll_check")]
    record = json.loads((payroll / "invocation.json").read_text())
    assert record["protected_inputs"] == {
        "employee_name": "pseudonymize",
        "iban": "mask",
        "national_id": "drop",
        "notes": "pseudonymize",
    }

    # A resume of the unprotected workflow's run alone protects them still, and is given them again.
    alone = orchestrate("run", "--resume", str(payroll), "-o", "again", cwd=tmp_path)
    assert alone.returncode == 2 and "its input(s) employee_name, iban, national_id, notes are protected" in (
        alone.stderr
    )
    again = orchestrate("run", "--resume", str(payroll), *_args(INPUTS), "-o", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (second,) = (tmp_path / "again").iterdir()
    assert _leaks(second) == {}
    assert json.loads((second / "invocation.json").read_text())["protected_inputs"] == record["protected_inputs"]


def test_no_content_turns_the_response_cache_off_as_it_would_keep_the_answers(tmp_path: Path) -> None:
    (tmp_path / "offer.yaml").write_text(
        "name: offer\ndefaults:\n  module: HR\n  llm_config: {model: gpt-4o-mini}\n"
        "inputs:\n  employee_name: {type: string}\n"
        "agents:\n  - {name: review, prompt_template: 'Review the offer for {employee_name}'}\n"
    )
    args = ["--input", f"employee_name={NAME}", "--cache", "answers", "-o", "runs"]
    done = orchestrate("run", "offer.yaml", "--simulate", "--no-content", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--cache ignored: the response cache keeps answers, and store_content is false" in done.stderr
    cache = tmp_path / "answers"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    kept = orchestrate("run", "offer.yaml", "--simulate", *args, cwd=tmp_path)  # with content: it is used
    assert kept.returncode == 0, kept.stderr
    assert any(p.is_file() for p in cache.rglob("*"))
