"""The documents a run folder holds say what they are (`kind`): approvals.json, unsettled_scope.json and
pseudonyms.json have one since 2026-12. Their readers still take a file written before (no kind), and
refuse a document of another kind put in its place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrate.errors import UserInputError
from orchestrate.money.budget_scope import UNSETTLED_FILE, book_unsettled, write_unsettled
from orchestrate.money.reconcile import reconcile_scope
from orchestrate.run.approvals import APPROVALS_FILE, Decision, claim_approvals, read_decisions, write_decisions
from orchestrate.run.pseudonym_key import PSEUDONYMS_FILE, carried_secret, keep_secret, new_secret
from orchestrate.state.backends import state_from_url

KEY = {"ORCHESTRATE_PSEUDONYM_KEY": "a-master-key-of-at-least-thirty-two-characters"}
BEFORE_KINDS = {  # approvals.json as orchestrate wrote it before 2026-12
    "schema_version": 1,
    "decisions": {
        "post": {"agent": "post", "approved": True, "by": "ana", "at": "2026-11-30T10:00:00+00:00", "note": None,
                 "source": "approve", "decision": "approved"},
    },
}  # fmt: skip


def test_approvals_json_says_its_kind_and_one_from_before_is_read_and_given_one(tmp_path: Path) -> None:
    write_decisions(tmp_path, {"post": Decision.now("post", True, "ana")})
    assert json.loads((tmp_path / APPROVALS_FILE).read_text())["kind"] == "approvals"

    (tmp_path / APPROVALS_FILE).write_text(json.dumps(BEFORE_KINDS))
    assert read_decisions(tmp_path)["post"].approved is True
    claim_approvals(tmp_path, ["post"], tmp_path / "resumed")  # rewritten under the lock: given its kind
    document = json.loads((tmp_path / APPROVALS_FILE).read_text())
    assert document["kind"] == "approvals" and document["acted_on"]["post"]["run_dir"].endswith("resumed")


def test_another_kind_of_document_as_approvals_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / APPROVALS_FILE).write_text(json.dumps({**BEFORE_KINDS, "kind": "batches"}))
    with pytest.raises(UserInputError, match="approvals.json: not a valid approvals file .*kind 'batches'"):
        read_decisions(tmp_path)


async def test_unsettled_scope_json_says_its_kind_and_one_of_another_kind_is_refused(tmp_path: Path) -> None:
    write_unsettled(tmp_path, "redis://localhost:6379", [{"scope": "ap", "cost": 0.5, "booking": "b-1"}])
    document = json.loads((tmp_path / UNSETTLED_FILE).read_text())
    assert document["kind"] == "unsettled_scope"
    state = state_from_url("memory://")
    await state.budget_set("ap", 5.0)
    (tmp_path / "cost.json").write_text(json.dumps({"calls": [{"cost": 0.5}]}))
    found = await reconcile_scope(state, "ap", [tmp_path])  # reconcile reads it too
    assert found.unsettled == {str(tmp_path): 0.5}
    (tmp_path / UNSETTLED_FILE).write_text(json.dumps({**document, "kind": "approvals"}))
    with pytest.raises(UserInputError, match="unsettled_scope.json: cannot read the unsettled spend"):
        await book_unsettled(state, tmp_path)
    del document["kind"]  # a file from before kinds: booked as always (see also tests/test_spend_once.py)
    (tmp_path / UNSETTLED_FILE).write_text(json.dumps(document))
    assert await book_unsettled(state, tmp_path) == [("ap", 0.5)]


def test_pseudonyms_json_says_its_kind_and_one_from_before_resumes_with_the_same_salt(tmp_path: Path) -> None:
    secret = new_secret(KEY)
    keep_secret(tmp_path, secret)
    document = json.loads((tmp_path / PSEUDONYMS_FILE).read_text())
    assert document["kind"] == "pseudonyms" and document["schema_version"] == 1
    before = {k: v for k, v in document.items() if k not in ("kind", "schema_version")}  # as written before
    (tmp_path / PSEUDONYMS_FILE).write_text(json.dumps(before))
    carried = carried_secret(tmp_path, KEY)
    assert carried is not None and carried.salt == secret.salt
    (tmp_path / PSEUDONYMS_FILE).write_text(json.dumps({**document, "kind": "invocation"}))
    with pytest.raises(UserInputError, match="not a pseudonyms file this version can read"):
        carried_secret(tmp_path, KEY)
