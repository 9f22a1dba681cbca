"""AWS Signature Version 4 for Bedrock requests, and where its credentials come from.

The signature is computed here with the standard library (``hmac``, ``hashlib``), as
AWS documents it: a canonical request (method, the path URI-encoded once more, the
sorted query, the lower-cased signed headers with their values trimmed, the SHA-256
of the body), a string to sign over it and the credential scope
(``date/region/service/aws4_request``), and an HMAC chain from ``AWS4`` + the secret
key. ``X-Amz-Date`` and, for temporary credentials, ``X-Amz-Security-Token`` are
signed with the request. ``tests/test_sigv4.py`` checks every header against
botocore's own ``SigV4Auth`` for the same request, time and credentials.

Credentials, first found: ``$AWS_ACCESS_KEY_ID`` and ``$AWS_SECRET_ACCESS_KEY`` (with
``$AWS_SESSION_TOKEN`` when set); otherwise the rest of the AWS credential chain
(``~/.aws`` profiles, SSO, instance and task roles, refreshed as they expire) through
botocore, the optional extra ``orchestrate[aws]``, imported here only.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from orchestrate.errors import UserInputError

__all__ = ["AwsCredentials", "CredentialChain", "sign"]

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers a proxy or the HTTP client may change on the way: never signed (botocore's list).
_UNSIGNED = frozenset(
    (
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    )
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class AwsCredentials:
    """An access key, its secret and, for temporary credentials, the session token."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # never print the secret or the token
        return (
            f"AwsCredentials(access_key={self.access_key!r}, secret_key='***', token={'***' if self.token else None})"
        )


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_path(path: str) -> str:
    """The path without empty or dot segments, URI-encoded once more (every service but S3)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(normalized, safe="/~")


def _canonical_query(query: str) -> str:
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&")) if query else []
    return "&".join(f"{key}={value}" for key, value in pairs)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: AwsCredentials,
    *,
    region: str,
    service: str,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """The request's headers with ``X-Amz-Date``, ``X-Amz-Security-Token`` (if any) and ``Authorization``.

    Args:
        method: The HTTP method.
        url: The full URL the request goes to (its path as it will be sent, already encoded).
        headers: The headers to send (all but the unsigned ones are signed, ``Host`` added).
        body: The exact bytes of the body.
        credentials: Who signs.
        region: The AWS region of the endpoint (``eu-central-1``).
        service: The signing name of the service (``bedrock``).
        now: The signing time; defaults to the current UTC time.
    """
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    sent = {
        k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date", "x-amz-security-token")
    }
    sent["X-Amz-Date"] = stamp
    if credentials.token:
        sent["X-Amz-Security-Token"] = credentials.token
    signed: dict[str, list[str]] = {}
    for name, value in sent.items():
        if name.lower() not in _UNSIGNED:
            signed.setdefault(name.lower(), []).append(" ".join(str(value).split()))
    signed.setdefault("host", [_host(url)])
    names = sorted(signed)
    parts = urlsplit(url)
    canonical = "\n".join(
        (
            method.upper(),
            _canonical_path(parts.path),
            _canonical_query(parts.query),
            "".join(f"{name}:{','.join(signed[name])}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join((ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), day)
    for step in (region, service, "aws4_request"):
        key = _hmac(key, step)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    sent["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    return sent


class CredentialChain:
    """The AWS credentials of this process: the environment's, else botocore's chain (refreshed)."""

    def __init__(self, error_prefix: str = "bedrock") -> None:
        self._prefix = error_prefix
        self._botocore: Any = None

    def get(self) -> AwsCredentials:
        """The current credentials; UserInputError (naming what to set or install) when there are none."""
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if access and secret:
            return AwsCredentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
        if self._botocore is None:
            self._botocore = self._from_botocore()
        frozen = self._botocore.get_frozen_credentials()  # refreshes role and SSO credentials near expiry
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    def _from_botocore(self) -> Any:
        try:
            from botocore.session import Session
        except ImportError:
            raise UserInputError(
                f"{self._prefix}: no AWS_BEARER_TOKEN_BEDROCK and no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; "
                "set one, or pip install 'orchestrate[aws]' to use your AWS profile or role"
            ) from None
        credentials = Session().get_credentials()
        if credentials is None:
            raise UserInputError(
                f"{self._prefix}: no AWS_BEARER_TOKEN_BEDROCK and no AWS credentials found "
                "(environment, ~/.aws, instance role)"
            )
        return credentials
