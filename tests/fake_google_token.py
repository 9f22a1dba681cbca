"""A Google OAuth 2.0 token endpoint on 127.0.0.1, for Vertex's default credentials.

``POST /token`` takes what Google's endpoint takes from a service account (RFC 7523):
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an ``assertion``, a JWT
signed RS256 with the account's private key whose claims name the account (``iss``),
the token endpoint (``aud``), the scopes and a lifetime of at most an hour. The signature
is checked with the account's public key. It answers ``{"access_token", "expires_in",
"token_type": "Bearer"}``, or Google's error shape (``{"error": "invalid_grant",
"error_description": ...}``, 400). `key_file` writes the account's JSON key file (its
``token_uri`` pointing here), which ``GOOGLE_APPLICATION_CREDENTIALS`` names.
(google-auth pins a user's ``authorized_user`` credentials to Google's own endpoint,
so a service account is the kind a test can point at a loopback server.)
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.loopback import LoopbackServer

__all__ = ["ACCOUNT", "FakeGoogleToken"]

ACCOUNT = "orchestrate-ci@acme-erp.iam.gserviceaccount.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"  # the audience Google's endpoint expects


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class FakeGoogleToken(LoopbackServer):
    """The server; `script(answer, ...)`: ``("ya29.token", expires_in)`` or ``(400, error, description)``.
    Unscripted requests get ``ya29.fresh-N`` for an hour. `requests` holds each form received,
    `claims` each assertion's checked claims."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.claims: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []
        self._script: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._listen(self._handler())
        self.url = f"{self.origin}/token"

    def script(self, *answers: tuple[Any, ...]) -> None:
        with self._lock:
            self._script.extend(answers)

    def key_file(self, folder: Path) -> Path:
        """The service account's JSON key file, its ``token_uri`` this server."""
        path = folder / "service-account.json"
        info = {
            "type": "service_account",
            "project_id": "acme-erp",
            "private_key_id": "0f1e2d3c4b5a",
            "private_key": self.private_pem,
            "client_email": ACCOUNT,
            "client_id": "104711",
            "token_uri": self.url,
        }
        path.write_text(json.dumps(info))
        return path

    def check_assertion(self, assertion: str) -> str | None:
        """Why Google would refuse this JWT (signature, issuer, audience, scope, lifetime), or None."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            header, payload, signature = assertion.split(".")
            self._key.public_key().verify(
                _b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = json.loads(_b64(payload))
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        if json.loads(_b64(header)).get("alg") != "RS256":
            return "Invalid JWT: alg"
        self.claims.append(claims)
        now = time.time()
        if claims.get("iss") != ACCOUNT or claims.get("aud") not in (self.url, GOOGLE_AUDIENCE):
            return "Invalid JWT: iss or aud"
        if "cloud-platform" not in str(claims.get("scope")):
            return "Invalid JWT: scope"
        if not claims["iat"] - 300 <= now <= claims["exp"] or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                form = {key: values[0] for key, values in parse_qs(raw).items()}
                with fake._lock:
                    fake.requests.append(form)
                    answer = fake._script.popleft() if fake._script else None
                    count = len(fake.requests)
                refused = fake.check_assertion(form.get("assertion", ""))
                if self.path != "/token" or form.get("grant_type") != JWT_BEARER:
                    status, data = 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
                elif refused is not None:
                    status, data = 400, {"error": "invalid_grant", "error_description": refused}
                elif answer is not None and isinstance(answer[0], int):
                    status, data = answer[0], {"error": answer[1], "error_description": answer[2]}
                else:
                    token, expires = answer if answer is not None else (f"ya29.fresh-{count}", 3599)
                    status = 200
                    data = {
                        "access_token": token,
                        "expires_in": expires,
                        "token_type": "Bearer",
                    }
                out = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler
