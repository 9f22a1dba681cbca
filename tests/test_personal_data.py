"""Personal data kept out: a 50-employee dataset run against the loopback provider, then every
request the provider received and every file the run wrote searched for the originals."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrate.run.protection import DROPPED, Policy, Protector
from orchestrate.run.recognizers import find, iban_ok, luhn_ok
from tests.fake_provider import FakeProvider
from tests.test_otel import Receiver

WORKFLOW = """\
name: hr_salary_letters
description: a letter to each employee about their salary review
defaults:
  module: HR
  llm_config: {model: gpt-4o-mini, base_url: "%(url)s/v1", max_tokens: 200}
rate_limits:  # the loopback server has no quota: the default 60 a minute would pace 102 calls over 100 s
  openai: {requests_per_minute: 100000}
inputs:
  employee_name: {type: string}
  iban: {type: string}
  national_id: {type: string}
  salary: {type: number}
  notes: {type: string}
data_protection:
  store_content: %(store)s
  columns:
    employee_name: pseudonymize
    iban: mask
    national_id: drop
    salary: keep
  detect: [email, phone, iban, credit_card, national_id]
  restore_in_outputs: true
outputs:
  letter: "{write_letter.output}"
agents:
  - name: review
    prompt_template: |
      Review the salary of {employee_name} ({salary} EUR, paid to {iban}, id {national_id}).
      HR notes: {notes}
  - name: write_letter
    dependencies: [review]
    prompt_template: |
      Write to {employee_name} about: {review.output}
"""

FIRST = ["Amelia", "Bogdan", "Chiara", "Dmitri", "Eleanor", "Farid", "Greta", "Hiroshi", "Ines", "Jonas"]
LAST = ["Okonkwo", "Lindqvist", "Moreau", "Castellano", "Nakamura"]


def iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    check = 98 - int(bban + "131400") % 97  # DE: D=13, E=14
    return f"DE{check:02d}{bban}"


def employees(n: int = 50) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        name = f"{FIRST[i % 10]} {LAST[i // 10]}"
        rows.append(
            {
                "employee_name": name,
                "iban": iban(rng),
                "national_id": f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                "salary": 40000 + i * 100,
                "notes": f"reach {name.split()[0].lower()}.{i}@example.org or +49 30 {rng.randint(1000000, 9999999)}",
            }
        )
    rows.append(dict(rows[3]))  # the same employee twice: the same pseudonym
    return rows


def echo(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The model's answer quotes the person's token, as a model writing to them would
    (JSON answers, asked for by a schema, are left as they are)."""
    try:
        json.loads(answer["choices"][0]["message"]["content"])
        return answer
    except ValueError:
        pass
    text = json.dumps(request.get("messages", []))
    tokens = re.findall(r"EMPLOYEE_NAME_[0-9a-f]{8}", text)
    answer["choices"][0]["message"]["content"] = f"Dear {tokens[0] if tokens else 'colleague'}, all is well."
    return answer


def run(tmp_path: Path, provider: FakeProvider, *args: str, store: str, env: dict[str, str] | None = None) -> Path:
    flow = tmp_path / "letters.yaml"
    flow.write_text(WORKFLOW % {"url": provider.url, "store": store})
    data = tmp_path / "employees.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in employees()))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update({"OPENAI_API_KEY": "sk-test", "CI": "true", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "run", str(flow), "--data", str(data), "-o", str(tmp_path / "runs")]
        + list(args),
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def originals() -> set[str]:
    found = set()
    for row in employees():
        found |= {row["employee_name"], row["iban"], row["national_id"], row["notes"].split()[1]}
        found.add(row["employee_name"].split()[1])  # a surname alone
    return found


def without_outputs(value: Any) -> Any:
    """A document with its declared outputs (the only place real values may come back) taken out."""
    if isinstance(value, dict):
        return {k: without_outputs(v) for k, v in value.items() if k != "outputs"}
    if isinstance(value, list):
        return [without_outputs(v) for v in value]
    return value


def leaks(text: str) -> list[str]:
    return sorted(value for value in originals() if value in text)


@pytest.fixture
def provider() -> Any:
    with FakeProvider(rewrite=echo) as server:
        yield server


def test_fifty_employees_no_original_reaches_the_provider_or_any_file_but_the_restored_outputs(
    tmp_path: Path, provider: FakeProvider
) -> None:
    receiver = Receiver()
    try:
        run_dir = run(
            tmp_path,
            provider,
            "--otel",
            "--otel-content",  # asked for, and refused by store_content: false
            store="false",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
        )
        traces = b"".join(request.SerializeToString() for _, _, request in receiver.requests)
    finally:
        receiver.close()
    assert len(provider.requests) == 102  # 51 rows, two calls each
    sent = json.dumps(provider.requests)
    assert leaks(sent) == []
    assert "DE" in sent and "**** **** ****" in sent  # the IBAN masked, not dropped
    assert DROPPED in sent  # the national id never sent
    assert receiver.requests and leaks(traces.decode("utf-8", "replace")) == []
    assert b"Dear EMPLOYEE_NAME_" not in traces  # no content in traces either
    for path in sorted(run_dir.rglob("*")):
        if path.is_dir():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".json", ".jsonl"):
            docs = (
                [json.loads(line) for line in text.splitlines() if line.strip()]
                if path.suffix == ".jsonl"
                else [json.loads(text)]
            )
            text = json.dumps(without_outputs(docs), ensure_ascii=False)
        assert leaks(text) == [], path.name
        assert "Dear EMPLOYEE_NAME_" not in text, path.name  # store_content: false: no answers either
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    letters = {r["row"]: r["outputs"]["letter"] for r in results}
    rows = employees()
    for line, row in enumerate(rows, 1):
        assert letters[line] == f"Dear {row['employee_name']}, all is well."  # restored in the outputs
    # Stable: the same person has the same token in every request (rows 4 and 51 are the same employee).
    tokens = [re.findall(r"EMPLOYEE_NAME_[0-9a-f]{8}", json.dumps(r))[0] for r in provider.requests]
    assert len(set(tokens)) == 50
    result = json.loads((run_dir / "result.json").read_text())
    assert result["audit"]["seq"] > 100
    assert "not kept" in (run_dir / "report.html").read_text()


def test_with_content_kept_the_files_hold_pseudonyms_stable_across_rows(tmp_path: Path, provider: FakeProvider) -> None:
    run_dir = run(tmp_path, provider, store="true")
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    prompt = {r["row"]: r["agents"][0]["metadata"]["prompt"] for r in rows}
    token = re.findall(r"EMPLOYEE_NAME_[0-9a-f]{8}", prompt[4])[0]
    assert token in prompt[51]  # the same employee, the same token
    assert token not in prompt[5]
    for path in run_dir.rglob("*.json*"):
        docs = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else [json.loads(path.read_text())]
        )
        assert leaks(json.dumps(without_outputs(docs), ensure_ascii=False)) == [], path.name
    assert leaks((run_dir / "report.html").read_text()) == []


def test_recognisers_need_their_checksums() -> None:
    good = "DE89370400440532013000"
    assert iban_ok(good) and not iban_ok("DE89370400440532013001")
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    text = f"pay {good} by card 4111-1111-1111-1111, not order 1234-5678-9012-3456; mail a.b@x.io; +44 20 7946 0958"
    kinds = [(text[s:e], k) for s, e, k in find(text, ("email", "phone", "iban", "credit_card", "national_id"))]
    assert kinds == [
        (good, "iban"),
        ("4111-1111-1111-1111", "credit_card"),
        ("a.b@x.io", "email"),
        ("+44 20 7946 0958", "phone"),
    ]
    assert [k for _, _, k in find("SSN 078-05-1120, not 000-12-3456; DNI 12345678Z", ("national_id",))] == [
        "national_id",
        "national_id",
    ]
    # A phone needs 8 to 15 digits after its + or 00: an invoice number with leading zeros is not one.
    assert list(find("INV-0012345, PO 00493", ("phone",))) == []
    assert [k for _, _, k in find("call +49 30 1234567 or 0044 20 7946 0958", ("phone",))] == ["phone", "phone"]


@pytest.mark.parametrize(
    "phone",
    [
        "+49 30 1234567",
        "0049 30 1234567",
        "+49 (0)30 1234567",
        "(030) 123 4567",
        "+1 415-555-0100",
        "+1 (415) 555-0100",
        "+44 20 7946 0958",
        "030/1234567",
        "0171 / 1234 567",
        "(415) 555-0100",
    ],
)
def test_phone_numbers_in_their_usual_formats_are_found_whole(phone: str) -> None:
    every = ("email", "phone", "iban", "credit_card", "national_id")
    text = f"Ruf an: {phone}, danke."
    for kinds in (every, ("phone",)):
        assert [(text[s:e], k) for s, e, k in find(text, kinds)] == [(phone, "phone")], kinds
    guard = Protector(Policy.from_dict({"detect": list(every)}), secret=b"k")
    scanned = guard.protect_values({"note": text})["note"]
    assert phone not in scanned and scanned.startswith("Ruf an: PHONE_") and scanned.endswith(", danke.")


@pytest.mark.parametrize(
    "other",
    [
        "1,234,567.00",
        "1.234.567,00",
        "INV-2026-000123",
        "INV-0012345",
        "PO-2026/0012345",
        "ORD-0049301234567",
        "ORD-415-555-0100",
        "0049301234567",
        "00123456789",
        "2026-12-03",
        "03.12.2026",
        "01/12/2026",
        "DE89 3704 0044 0532 0130 00",
    ],
)
def test_amounts_ids_dates_and_ibans_are_not_taken_for_phones(other: str) -> None:
    text = f"ref {other} ok"
    assert list(find(text, ("phone",))) == []
    assert [k for _, _, k in find(text, ("phone", "national_id", "credit_card"))] == []
    guard = Protector(Policy.from_dict({"detect": ["phone", "national_id"]}), secret=b"k")
    assert guard.protect_values({"note": text})["note"] == text


def test_a_number_that_fails_one_check_is_still_tried_as_the_kinds_after_it() -> None:
    # 13 digits: a card candidate first (it fails Luhn), then a phone at the same place.
    text = "Tel 0049 30 1234567 oder 12 0049 30 1234567"
    kinds = ("credit_card", "national_id", "phone")
    assert [(text[s:e], k) for s, e, k in find(text, kinds)] == [
        ("0049 30 1234567", "phone"),
        ("0049 30 1234567", "phone"),
    ]


def test_pseudonyms_are_stable_masks_keep_the_ends_and_restore_only_what_the_vault_holds() -> None:
    policy = Policy.from_dict(
        {"columns": {"name": "pseudonymize", "iban": "mask", "ssn": "drop", "pay": "keep"}, "detect": ["email"]}
    )
    guard = Protector(policy, secret=b"k")
    one = guard.protect_values(
        {"name": "Ana Ruiz", "iban": "DE89 3704 0044 0532 0130 00", "ssn": "1", "pay": 5, "x": "ana@r.es"}
    )
    two = guard.protect_values({"name": "Ana Ruiz", "iban": None, "ssn": "2", "pay": 6, "x": "hi"})
    assert one["name"] == two["name"] and one["name"].startswith("NAME_") and "Ana" not in one["name"]
    assert one["iban"] == "DE89 **** **** **** 3000"
    assert one["ssn"] == DROPPED and one["pay"] == 5
    assert one["x"].startswith("EMAIL_")
    assert guard.restore({"a": [f"Hello {one['name']} at {one['x']}", "NAME_0000ffff"]}) == {
        "a": ["Hello Ana Ruiz at ana@r.es", "NAME_0000ffff"]
    }
    assert "Ana" not in repr(guard)
    # Scanning picks its recognisers by the digits and "@" a text has: each text alike is still scanned.
    every = Protector(Policy.from_dict({"detect": ["email", "phone", "iban", "national_id"]}), secret=b"k")
    texts = ["a@b.io", "no digits", "+44 20 7946 0958", "DE89370400440532013000", "1234567", "x@y.org 4111111111111111"]
    scanned = [every.protect_values({"x": text, "n": 7})["x"] for text in texts]
    assert scanned[1] == "no digits" and scanned[4] == "1234567"
    assert [s.split("_")[0] for i, s in enumerate(scanned) if i not in (1, 4)] == ["EMAIL", "PHONE", "IBAN", "EMAIL"]
    assert scanned[5].endswith(" 4111111111111111")  # cards are not in its `detect:`
    assert guard.protect_values({"x": "mail ana@r.es"})["x"] == f"mail {one['x']}"  # same text kind, same token
    other = Protector(policy, secret=b"other")
    assert other.protect_values({"name": "Ana Ruiz"})["name"] != one["name"]  # per run


def test_no_content_keeps_digests_everywhere_and_show_says_so(tmp_path: Path) -> None:
    flow = tmp_path / "note.yaml"
    flow.write_text(
        "name: note\ndefaults: {module: Finance, llm_config: {model: gpt-4o-mini, max_tokens: 40}}\n"
        "inputs: {vendor: {type: string, default: Quillfeather Supplies}}\n"
        "agents:\n  - name: a\n    prompt_template: 'Summarise the dispute with {vendor}'\n"
    )
    environment = {**os.environ, "CI": "true"}
    args = [sys.executable, "-m", "orchestrate"]
    proc = subprocess.run(
        [*args, "run", str(flow), "--simulate", "--no-content", "-o", str(tmp_path / "runs")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    for path in run_dir.iterdir():
        text = path.read_text()
        assert "Quillfeather" not in text and "Response to" not in text, path.name
    result = json.loads((run_dir / "result.json").read_text())
    assert result["content_kept"] is False and result["agents"][0]["output"]["text"]["chars"] > 0
    shown = subprocess.run([*args, "show", str(run_dir)], env=environment, capture_output=True, text=True, timeout=60)
    assert "content not kept" in shown.stdout


def test_validate_warns_of_personal_inputs_in_an_hr_workflow_without_a_policy(tmp_path: Path) -> None:
    from orchestrate.workflow.loader import validate_file

    flow = tmp_path / "hr.yaml"
    text = (
        "name: payroll\ndefaults: {module: HR, llm_config: {model: gpt-4o-mini}}\n"
        "inputs:\n  employee_name: {type: string}\n  salary: {type: number}\n  period: {type: string}\n"
        "agents:\n  - name: a\n    prompt_template: '{employee_name} {salary} {period}'\n"
    )
    flow.write_text(text)
    found = [(p.line, p.severity, p.message.split(" looks")[0]) for p in validate_file(flow)]
    assert found == [(4, "warning", "input 'employee_name'"), (5, "warning", "input 'salary'")]
    flow.write_text(text + "data_protection: {columns: {employee_name: pseudonymize, salary: keep}}\n")
    assert validate_file(flow) == []
    flow.write_text(text.replace("module: HR", "module: Finance"))
    assert validate_file(flow) == []


def test_the_hr_onboarding_example_sends_no_name_and_restores_it_in_its_welcome_email(
    tmp_path: Path, provider: FakeProvider
) -> None:
    root = Path(__file__).resolve().parents[1]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{provider.url}/v1", "CI": "true"})
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrate", "run", str(root / "workflows" / "hr_onboarding.yaml")]
        + ["--input", "employee_name=Wilhelmina Okafor-Brandt", "--input", "country=DE", "-o", str(tmp_path / "runs")]
        + ["--format", "json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(provider.requests) == 5 and "Okafor" not in json.dumps(provider.requests)
    summary = json.loads(proc.stdout)["runs"][0]
    assert summary["outputs"]["welcome_email"].startswith("Dear Wilhelmina Okafor-Brandt,")  # restored
    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in ("events.jsonl", "audit.jsonl", "cost.json"):
        assert "Okafor" not in (run_dir / name).read_text(), name
    result = json.loads((run_dir / "result.json").read_text())
    assert "Okafor" not in json.dumps(without_outputs(result))
    assert result["data_protection"]["applied"]["pseudonymized"] >= 1
