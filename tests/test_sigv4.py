"""SigV4 for Bedrock (orchestrate/llm/sigv4.py) against botocore's own signer, the oracle, and a
Bedrock runtime on 127.0.0.1 that checks signatures as AWS does (tests/fake_bedrock.py)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate.errors import AuthenticationError
from orchestrate.llm.bedrock import BedrockClient
from orchestrate.llm.providers import ClientPool
from orchestrate.llm.sigv4 import AwsCredentials, sign
from tests.fake_bedrock import FakeBedrock
from tests.needs import need

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-SECRET"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-session-TOKEN//+=="
PROFILE = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
WHEN = datetime.datetime(2026, 12, 3, 17, 4, 59, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _botocore() -> None:
    need("botocore")  # the oracle, and the fake runtime's signature check


def botocore_headers(
    url: str, headers: dict[str, str], body: bytes, credentials: Any, region: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """What botocore's SigV4Auth sends for the same request at the same time."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, "bedrock", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term keys", "session token"])
@pytest.mark.parametrize(
    "url",
    [
        f"https://bedrock-runtime.eu-central-1.amazonaws.com/model/{PROFILE.replace(':', '%3A')}/converse",
        "http://127.0.0.1:8123/model/amazon.nova-pro-v1%3A0/converse?b=2&a=1",
        "https://bedrock-runtime.eu-central-1.amazonaws.com:443//model/./x/../amazon.titan/converse",
    ],
    ids=["profile with a colon", "port and query", "default port and dot segments"],
)
def test_every_header_equals_botocores_for_the_same_request_time_and_credentials(
    url: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "orchestrate"}
    body = '{"messages":[{"role":"user","content":[{"text":"Grüße  aus   Köln"}]}]}'.encode()
    ours = sign(
        "POST",
        url,
        headers,
        body,
        AwsCredentials(ACCESS, SECRET, token),
        region="eu-central-1",
        service="bedrock",
        now=WHEN,
    )
    from botocore.credentials import Credentials

    theirs = botocore_headers(url, headers, body, Credentials(ACCESS, SECRET, token), "eu-central-1", monkeypatch)
    assert ours == theirs
    assert ours["X-Amz-Date"] == "20261203T170459Z"
    assert ("X-Amz-Security-Token" in ours) is (token is not None)
    assert "user-agent" not in ours["Authorization"].split("SignedHeaders=")[1].split(",")[0]


def test_a_changed_body_or_secret_changes_the_signature() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
    base = sign("POST", url, {}, b"{}", AwsCredentials(ACCESS, SECRET), region="us-east-1", service="bedrock", now=WHEN)
    body = sign(
        "POST", url, {}, b"{ }", AwsCredentials(ACCESS, SECRET), region="us-east-1", service="bedrock", now=WHEN
    )
    key = sign(
        "POST", url, {}, b"{}", AwsCredentials(ACCESS, SECRET + "x"), region="us-east-1", service="bedrock", now=WHEN
    )
    assert len({base["Authorization"], body["Authorization"], key["Authorization"]}) == 3
    assert SECRET not in repr(AwsCredentials(ACCESS, SECRET, TOKEN))
    assert TOKEN not in repr(AwsCredentials(ACCESS, SECRET, TOKEN))


@pytest.fixture
def runtime() -> Iterator[FakeBedrock]:
    with FakeBedrock(keys={ACCESS: SECRET}) as fake:
        yield fake


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term keys", "session token"])
async def test_bedrock_without_an_api_key_signs_with_the_environments_keys(
    runtime: FakeBedrock, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    pool = ClientPool()
    llm = {"model": PROFILE, "provider": "bedrock", "region": "eu-central-1"}
    pool.check_keys([llm])
    client = BedrockClient(api_key="", base_url=runtime.url, region="eu-central-1")
    response = await client.complete("Reconcile the statement", PROFILE, None, 50)
    await client.aclose()
    sent = runtime.requests[0]["headers"]
    assert response.content
    assert sent["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS}/")
    assert "/eu-central-1/bedrock/aws4_request" in sent["Authorization"]
    assert sent.get("X-Amz-Security-Token") == token


async def test_a_wrong_secret_is_refused_by_the_runtime_and_never_printed(
    runtime: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-SECRET-at-all")
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    client = BedrockClient(api_key="", base_url=runtime.url, region="eu-central-1")
    with pytest.raises(AuthenticationError) as caught:
        await client.complete("Hi", PROFILE, None, 10)
    await client.aclose()
    text = str(caught.value)
    assert "InvalidSignatureException" in text
    assert "not-the-SECRET-at-all" not in text and TOKEN not in text
    assert len(runtime.requests) == 1  # a 403 is not retried


async def test_without_environment_keys_the_profile_file_signs_through_botocore(
    runtime: FakeBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[erp]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "erp")
    client = BedrockClient(api_key="", base_url=runtime.url, region="eu-west-1")
    response = await client.complete("Hi", "eu.amazon.nova-pro-v1:0", None, 10)
    await client.aclose()
    assert response.content
    assert "/eu-west-1/bedrock/aws4_request" in runtime.requests[0]["headers"]["Authorization"]
