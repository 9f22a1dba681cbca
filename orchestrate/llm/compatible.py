"""OpenAI-compatible providers: the presets (Gemini, Mistral, Ollama, vLLM, OpenRouter) and Vertex.

Each preset is the OpenAI client with the preset's name, base URL and key
variable (`orchestrate.llm.presets`). Vertex serves Gemini through an
OpenAI-compatible endpoint of a project and location::

    https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/openapi

(``aiplatform.googleapis.com`` for the ``global`` location), authenticated by a
short-lived OAuth token from Google's default credentials (the optional extra
``orchestrate[gcp]``, google-auth), or by ``$VERTEX_ACCESS_TOKEN`` when set.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from typing import Any

from orchestrate.errors import AuthenticationError, LLMConnectionError, UserInputError
from orchestrate.llm.openai import OpenAIClient
from orchestrate.llm.presets import PRESETS, ollama_base_url
from orchestrate.redaction import remember

__all__ = ["CompatibleClient", "VertexClient", "vertex_base_url"]


class CompatibleClient(OpenAIClient):
    """The OpenAI client under a preset's name, base URL and key.

    Args:
        preset: A name of `orchestrate.llm.presets.PRESETS`.
        api_key: Defaults to the preset's variable (none needed for local servers).
        base_url: Defaults to the preset's variable, else its default URL.
    """

    def __init__(self, preset: str, api_key: str | None = None, base_url: str | None = None, **options: Any) -> None:
        spec = PRESETS[preset]
        self.provider = spec.name
        self.key_env, self.url_env, self.default_url = spec.key_env, spec.url_env, spec.base_url
        if base_url is None and spec.name == "ollama" and os.environ.get("OLLAMA_HOST"):
            base_url = ollama_base_url(os.environ["OLLAMA_HOST"])
        super().__init__(api_key, base_url, **options)
        self.organization = None


GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def vertex_base_url(project: str, location: str) -> str:
    """The OpenAI-compatible endpoint of a Vertex project and location (the region is in the host)."""
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return f"https://{host}/v1/projects/{project}/locations/{location}/endpoints/openapi"


class VertexClient(OpenAIClient):
    """Gemini on Vertex AI through its OpenAI-compatible endpoint.

    Args:
        project: The Google Cloud project; defaults to ``$GOOGLE_CLOUD_PROJECT``.
        location: ``europe-west4``, ``us-central1``, ``global``...; defaults to
            ``$GOOGLE_CLOUD_LOCATION``, else ``global``.
        base_url: Another endpoint (a proxy, a test server); the region is then whatever it serves.
        access_token: A token to send as is; defaults to ``$VERTEX_ACCESS_TOKEN``, else one is
            taken (and refreshed before it expires) from Google's default credentials.
    """

    provider = "vertex"
    key_env, url_env, default_url = "VERTEX_ACCESS_TOKEN", "VERTEX_BASE_URL", ""

    def __init__(
        self,
        *,
        project: str | None = None,
        location: str | None = None,
        base_url: str | None = None,
        access_token: str | None = None,
        **options: Any,
    ) -> None:
        self.project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
        self.location = location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global"
        if not base_url and not os.environ.get(self.url_env):
            if not self.project:
                raise UserInputError("vertex: no project; set GOOGLE_CLOUD_PROJECT or llm_config.project")
            base_url = vertex_base_url(self.project, self.location)
        super().__init__(access_token, base_url, **options)
        self.organization = None
        self._credentials: Any = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def refresh_token(self, *, force: bool = False) -> None:
        """Take a fresh token from Google's default credentials when the one held is near expiry
        (or at once with `force`); AuthenticationError, one line and no secret, when refused."""
        if self.api_key and self._credentials is None:
            return  # given (argument or $VERTEX_ACCESS_TOKEN): sent as is
        async with self._lock:
            if self.api_key and not force and time.time() < self._expires - 300:
                return
            self._credentials = self._credentials or _default_credentials()
            await asyncio.to_thread(_refresh, self._credentials)
            self.api_key = str(self._credentials.token)
            self._http._secret = self.api_key
            remember(self.api_key)
            expiry = getattr(self._credentials, "expiry", None)
            if expiry is not None and expiry.tzinfo is None:  # google-auth keeps naive UTC times
                expiry = expiry.replace(tzinfo=datetime.UTC)
            self._expires = expiry.timestamp() if expiry is not None else time.time() + 3000

    async def exchange(self, url: str, body: dict[str, Any], model: str, *, timeout: float | None = None) -> Any:
        await self.refresh_token()
        sent_with = self.api_key
        try:
            return await super().exchange(url, body, model, timeout=timeout)
        except AuthenticationError as exc:
            if self._credentials is None or exc.status_code != 401:
                raise
            # A token refused before its expiry (revoked, clock skew): one fresh token, one more try.
            if self.api_key == sent_with:
                await self.refresh_token(force=True)
            return await super().exchange(url, body, model, timeout=timeout)


def _default_credentials() -> Any:
    """Google's application default credentials (google-auth, the extra ``orchestrate[gcp]``)."""
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise UserInputError(
            "vertex: no VERTEX_ACCESS_TOKEN, and google-auth is not installed to find Google's default "
            "credentials; pip install 'orchestrate[gcp]'"
        ) from None
    try:
        credentials, _project = google.auth.default(scopes=[GOOGLE_SCOPE])
    except DefaultCredentialsError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(
            f"vertex: no Google credentials found ({first}); run 'gcloud auth application-default login'"
        ) from None
    return credentials


def _refresh(credentials: Any) -> None:
    """Refresh `credentials` at their token endpoint; google-auth's errors become one line without secrets."""
    from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
    from google.auth.transport.requests import Request

    where = getattr(credentials, "token_uri", None) or getattr(credentials, "_token_uri", None) or "Google"
    try:
        credentials.refresh(Request())
    except RefreshError as exc:
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
        for name in ("refresh_token", "client_secret", "token"):
            secret = getattr(credentials, name, None)
            if isinstance(secret, str) and len(secret) >= 4:
                reason = reason.replace(secret, "***")  # a token endpoint that echoes what it was sent
        raise AuthenticationError(
            f"vertex: Google credentials could not be refreshed at {where}: {_one_line(reason)}; "
            "run 'gcloud auth application-default login' or check the service account",
            provider="vertex",
        ) from None
    except (TransportError, GoogleAuthError) as exc:
        raise LLMConnectionError(
            f"vertex: the token endpoint {where} could not be reached ({type(exc).__name__})", provider="vertex"
        ) from None


def _one_line(text: str, limit: int = 200) -> str:
    """The provider's reason on one line, control characters and long tails cut."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
