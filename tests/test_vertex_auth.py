"""Vertex's token from Google's application default credentials (google-auth, orchestrate[gcp]),
here a service account's key file: taken at a loopback OAuth 2.0 token endpoint
(tests/fake_google_token.py, which checks the signed assertion), refreshed when it nears expiry
or is refused, and a refresh that fails is one clear line with no secret in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate.errors import AuthenticationError
from orchestrate.llm.compatible import VertexClient
from tests.fake_google_token import ACCOUNT, FakeGoogleToken
from tests.fake_provider import FakeProvider, Fault
from tests.needs import need

MODEL = "google/gemini-2.5-flash"


@pytest.fixture
def token_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleToken]:
    need("google.auth", "cryptography")  # orchestrate[gcp]'s library, and the token endpoint's RSA check
    with FakeGoogleToken() as fake:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.key_file(tmp_path)))
        yield fake


@pytest.fixture
def vertex() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def client(vertex: FakeProvider) -> VertexClient:
    path = "/v1/projects/acme/locations/europe-west4/endpoints/openapi"
    return VertexClient(project="acme", location="europe-west4", base_url=f"{vertex.url}{path}")


async def test_a_token_near_expiry_is_refreshed_before_the_call_and_a_fresh_one_is_kept(
    token_endpoint: FakeGoogleToken, vertex: FakeProvider
) -> None:
    token_endpoint.script(("ya29.short-lived", 60), ("ya29.for-an-hour", 3599))
    c = client(vertex)
    for _ in range(3):
        await c.complete("Hi", MODEL, None, 20)
    await c.aclose()
    sent = [r["headers"]["Authorization"] for r in vertex.requests]
    assert sent == ["Bearer ya29.short-lived", "Bearer ya29.for-an-hour", "Bearer ya29.for-an-hour"]
    assert len(token_endpoint.requests) == 2  # the hour-long token is not refreshed again
    assert token_endpoint.requests[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert token_endpoint.claims[0]["iss"] == ACCOUNT
    assert token_endpoint.claims[0]["scope"] == "https://www.googleapis.com/auth/cloud-platform"


async def test_a_token_refused_before_its_expiry_is_refreshed_once_and_the_call_made_again(
    token_endpoint: FakeGoogleToken, vertex: FakeProvider
) -> None:
    revoked = {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED",
        }
    }
    vertex.script(Fault(401, revoked))
    c = client(vertex)
    response = await c.complete("Hi", MODEL, None, 20)
    await c.aclose()
    assert response.content
    assert [r["headers"]["Authorization"] for r in vertex.requests] == ["Bearer ya29.fresh-1", "Bearer ya29.fresh-2"]


async def test_a_refused_refresh_is_one_line_naming_the_reason_without_secrets(
    token_endpoint: FakeGoogleToken, vertex: FakeProvider
) -> None:
    token_endpoint.script((400, "invalid_grant", "Invalid grant: account not found"))
    c = client(vertex)
    with pytest.raises(AuthenticationError) as caught:
        await c.complete("Hi", MODEL, None, 20)
    await c.aclose()
    text = str(caught.value)
    assert "\n" not in text
    assert f"vertex: Google credentials could not be refreshed at {token_endpoint.url}: invalid_grant" in text
    assert "gcloud auth application-default login" in text
    assert "PRIVATE KEY" not in text and token_endpoint.requests[0]["assertion"] not in text
    assert not caught.value.retriable
    assert vertex.requests == []  # no call to Vertex without a token


async def test_a_token_given_in_the_environment_is_sent_as_is_and_never_refreshed(
    token_endpoint: FakeGoogleToken, vertex: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEX_ACCESS_TOKEN", "ya29.given-SECRET")
    vertex.script(Fault(401, {"error": {"code": 401, "message": "expired", "status": "UNAUTHENTICATED"}}))
    c = client(vertex)
    with pytest.raises(AuthenticationError) as caught:
        await c.complete("Hi", MODEL, None, 20)
    await c.aclose()
    assert token_endpoint.requests == []
    assert "ya29.given-SECRET" not in str(caught.value)
