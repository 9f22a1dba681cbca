"""Expectations: each kind passing and failing, what cannot be evaluated, and validate's problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrate.errors import WorkflowValidationError
from orchestrate.workflow.expectations import Context, compile_expectations, row_columns
from orchestrate.workflow.loader import load_workflow_text

ANSWER = {
    "text": '{"gl_account": "6100", "decision": "hold", "iban": "DE44500105175407324931", "total": 1190.0}',
    "json": {
        "gl_account": "6100",
        "decision": "hold",
        "iban": "DE44500105175407324931",
        "total": 1190.0,
        "note": "Held under policy clause 4.2",
        "lines": [{"qty": 2}, {"qty": 1}],
    },
}


def outcome(spec: dict[str, Any], *, output: Any = None, ctx: Context | None = None, base: Path | None = None) -> Any:
    (expectation,) = compile_expectations([spec], base_dir=base, owner="a")
    return expectation.check(ANSWER if output is None else output, ctx or Context(row={"expected": "6100"}))


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ({"equals": "{row.expected}", "path": "output.gl_account"}, "pass"),
        ({"equals": "6200", "path": "output.gl_account"}, "fail"),
        ({"equals": 6100, "path": "output.gl_account"}, "pass"),  # "6100" from a CSV equals the number
        ({"one_of": ["approve", "hold"], "path": "output.decision"}, "pass"),
        ({"one_of": ["approve", "reject"], "path": "output.decision"}, "fail"),
        ({"contains": "clause", "path": "output.note"}, "pass"),
        ({"contains": ["clause", "4.3"], "path": "output.note"}, "fail"),
        ({"icontains": "POLICY", "path": "output.note"}, "pass"),
        ({"icontains": "approved", "path": "output.note"}, "fail"),
        ({"not_contains": ["approved", "rejected"], "path": "output.note"}, "pass"),
        ({"not_contains": "Held", "path": "output.note"}, "fail"),
        ({"regex": "^[A-Z]{2}\\d{2}[A-Z0-9]{11,30}$", "path": "output.iban"}, "pass"),
        ({"regex": "^GB", "path": "output.iban"}, "fail"),
        ({"json_schema": {"type": "object", "required": ["gl_account"]}}, "pass"),
        ({"json_schema": {"type": "object", "required": ["cost_centre"]}}, "fail"),
        ({"approx": 1190.004, "path": "output.total", "tolerance": 0.01}, "pass"),
        ({"approx": 1200, "path": "output.total", "tolerance": 0.01}, "fail"),
        ({"approx": 1200, "path": "output.total", "tolerance": "1%"}, "pass"),
        ({"cel": "output.lines.all(l, l.qty > 0.0)"}, "pass"),
        ({"cel": "output.lines.exists(l, l.qty > 1.0) && output.decision == 'approve'"}, "fail"),
        ({"max_cost": 0.02}, "pass"),
        ({"max_cost": 0.001}, "fail"),
        ({"max_latency": 8}, "pass"),
        ({"max_latency": 1}, "fail"),
        ({"any": [{"equals": "x", "path": "output.decision"}, {"equals": "hold", "path": "output.decision"}]}, "pass"),
        ({"all": [{"equals": "x", "path": "output.decision"}, {"equals": "hold", "path": "output.decision"}]}, "fail"),
        ({"equals": "6100", "path": "output.text"}, "fail"),  # the raw text when the JSON has no 'text'
        ({"equals": 2, "path": "output.lines[0].qty"}, "pass"),
    ],
)
def test_each_kind_passes_and_fails(spec: dict[str, Any], status: str) -> None:
    found = outcome(spec, ctx=Context(row={"expected": "6100"}, cost=0.005, seconds=2.5))
    assert found.status == status, found


def test_a_failure_says_what_was_expected_and_what_came() -> None:
    found = outcome(
        {"equals": "{row.expected}", "path": "output.gl_account", "name": "account"},
        output={"json": {"gl_account": "6200"}},
    )
    assert (found.name, found.expected, found.got, found.reason) == ("account", "6100", "6200", "not equal")


def test_a_missing_path_or_row_column_is_an_error_not_a_pass() -> None:
    missing = outcome({"equals": "6100", "path": "output.cost_centre"})
    assert missing.status == "error" and "output.cost_centre" in missing.reason
    no_column = outcome({"equals": "{row.nothing}", "path": "output.gl_account"})
    assert no_column.status == "error" and "no column 'nothing'" in no_column.reason
    not_number = outcome({"approx": "{row.expected}", "path": "output.decision"})
    assert not_number.status == "fail" and not_number.reason == "not a number"


def test_a_text_answer_is_checked_as_text() -> None:
    text = {"text": "Hold: IBAN changed"}
    assert outcome({"contains": "IBAN"}, output=text).status == "pass"
    assert outcome({"equals": "Hold: IBAN changed"}, output=text).status == "pass"
    assert outcome({"json_schema": {"type": "object"}}, output=text).reason == "not JSON"


def test_json_schema_from_a_file_next_to_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "coding.json").write_text(json.dumps({"type": "object", "required": ["gl_account"]}))
    assert outcome({"json_schema": "coding.json"}, base=tmp_path).status == "pass"


def test_row_columns_are_those_expectations_read() -> None:
    doc = {
        "agents": [{"expect": [{"equals": "{row.expected_account}"}, {"cel": "output.x == row.limit"}]}],
        "expect": [{"any": [{"contains": "{row.word}"}]}],
    }
    assert row_columns(doc) == {"expected_account", "limit", "word"}


BASE = """\
name: t
inputs:
  vendor: {type: string, default: Acme}
agents:
  - name: code_invoice
    module: Finance
    llm_config: {model: gpt-4o-mini}
    prompt_template: "Code {vendor}"
    output_schema:
      type: object
      properties:
        gl_account: {type: string}
        decision: {type: string}
    expect:
"""


def problems(expect_yaml: str, tail: str = "") -> list[str]:
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow_text(BASE + expect_yaml + tail, file="wf.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("expect_yaml", "where", "words"),
    [
        ("      - equals: 1\n        contains: x\n", "wf.yaml:16:9", "one kind per expectation"),
        ("      - name: nothing\n", "wf.yaml:15:9", "has no kind"),
        ("      - equals: 1\n        path: output.decison\n", "wf.yaml:16:15", "did you mean 'decision'"),
        ("      - equals: 1\n        path: output.lines.count()\n", "wf.yaml:16:15", "not a field path"),
        ('      - regex: "[unclosed"\n', "wf.yaml:15:16", "unterminated character set"),
        ('      - contains: "{nobody}"\n', "wf.yaml:15:20", "names no input, agent or row column"),
        ('      - equals: "{row}"\n', "wf.yaml:15:18", "say which column"),
        ('      - cel: "output.total > 0.0 && foo"\n', "wf.yaml:15:14", "'foo' names nothing"),
        ('      - cel: "output.total >"\n', "wf.yaml:15:14", "syntax error"),
        (
            "      - rubric: Good?\n        judge: {model: gpt-4o-mnii}\n",
            "wf.yaml:16:24",
            "no price known for judge model",
        ),
        ("      - approx: 3\n        tolerance: x%\n", "wf.yaml:16:20", "give a number (0.01) or a percentage"),
        ("      - max_cost: 0.1\n        threshold: 0.3\n", "wf.yaml:16:9", "'threshold' belongs to rubric"),
        ("      - json_schema: missing.json\n", "wf.yaml:15:22", "json_schema: cannot read"),
        ("      - json_schema: {type: wrong}\n", "wf.yaml:15:22", "not a valid JSON Schema"),
        ("      - rubric: Good?\n        threshold: 2\n", "wf.yaml:16:20", "must be at most 1"),
        ("      - bogus: 1\n", "wf.yaml:15:9", "bogus"),
    ],
)
def test_validate_points_at_each_problem(expect_yaml: str, where: str, words: str) -> None:
    found = problems(expect_yaml)
    assert any(p.startswith(where) and words in p for p in found), found


def test_workflow_level_expectations_name_declared_outputs() -> None:
    tail = "      - contains: x\noutputs:\n  decision: '{code_invoice.output.decision}'\nexpect:\n  - equals: hold\n    path: output.decison\n"
    found = problems("", tail)
    assert any(p.startswith("wf.yaml:20:11") and "declares no output 'decison'" in p for p in found), found


def test_a_valid_expect_list_loads_onto_the_agent_and_the_workflow() -> None:
    text = (
        BASE
        + "      - equals: '{row.expected}'\n        path: output.gl_account\n"
        + "      - rubric: Cites the policy\n        threshold: 0.7\n        judge: {model: claude-haiku-4-5}\n"
        + "outputs:\n  decision: '{code_invoice.output.decision}'\nexpect:\n  - one_of: [approve, hold]\n    path: output.decision\n"
    )
    workflow = load_workflow_text(text, file="wf.yaml")
    assert [e.get("rubric") for e in workflow.agents[0].expect] == [None, "Cites the policy"]
    assert workflow.expect == [{"one_of": ["approve", "hold"], "path": "output.decision"}]
    assert workflow.to_dict()["expect"] == workflow.expect


def test_an_agent_named_outputs_is_refused_when_the_workflow_has_expectations() -> None:
    # The workflow's outcomes are reported as agent "outputs" and its judge booked as "outputs.judge":
    # an agent of that name would share both.
    text = BASE.replace("name: code_invoice", "name: outputs") + "      - contains: x\n"
    tail = "outputs:\n  decision: '{outputs.output.decision}'\nexpect:\n  - contains: hold\n"
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow_text(text + tail, file="wf.yaml")
    found = [str(p) for p in caught.value.problems]
    assert any(p.startswith("wf.yaml:5:11") and "agent name 'outputs' is taken" in p for p in found), found
    load_workflow_text(text, file="wf.yaml")  # without workflow-level expectations the name is free


@pytest.mark.parametrize(
    ("spec", "got", "status"),
    [
        ({"one_of": [" hold ", "approve"]}, "hold", "pass"),  # constant choices, compared stripped
        ({"one_of": ["hold", "approve"]}, " approve\n", "pass"),
        ({"one_of": ["hold", "approve"]}, "Hold", "fail"),
        ({"one_of": ["1", "2"]}, 2, "pass"),  # a number answer still equals a text choice
        ({"one_of": ["{row.expected}", "approve"]}, "6100", "pass"),  # a placeholder among the choices
    ],
)
def test_one_of_with_constant_or_placeholder_choices(spec: dict[str, Any], got: Any, status: str) -> None:
    found = outcome(spec, output={"json": got})
    assert found.status == status, found
    if status == "fail":
        assert found.expected == ["hold", "approve"] and found.reason == "not one of the choices"


def test_cel_reads_the_answer_the_row_inputs_and_other_agents() -> None:
    ctx = Context(
        row={"limit": 5000},
        inputs={"region": "EU", "row": "an input named row"},
        outputs={"extract": {"json": {"total": 1190.0}}, "skipped_one": None},
    )
    spec = {"cel": "output.total == extract.output.total && region == inputs.region && row.limit > output.total"}
    assert outcome(spec, ctx=ctx).status == "pass"
    assert outcome({"cel": "skipped_one.output == null"}, ctx=ctx).status == "pass"
    missing = outcome({"cel": "nobody.output.total > 0.0"}, ctx=ctx)
    assert missing.status == "error" and "nobody" in missing.reason
