"""What the API and the MCP server examples share: configuration, Graph as the caller,
and how ``OBOClient``'s errors become HTTP answers.

No Better Auth here: the client (a SPA, a mobile app, an MCP client) sends the user's
access token for this API as ``Authorization: Bearer``; ``OBOClient`` verifies it and
exchanges it for a Graph token (On-Behalf-Of). Configure with environment variables for
a real tenant (see ``ApiConfig.from_env``) or pass an ``ApiConfig`` (the tests point it
at the emulator).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from better_auth_obo import (
    ClientSecret,
    EntraError,
    EntraUnavailableError,
    InvalidAssertionError,
    OBOClient,
    OBOError,
    ReauthenticationRequiredError,
    claims_challenge,
    www_authenticate,
)

__all__ = ["ApiConfig", "GraphAsCaller", "GraphError", "error_response"]

GRAPH = "https://graph.microsoft.com"


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """This API's app registration, the scope its clients must hold, and Graph."""

    client_id: str
    client_secret: str
    tenant_id: str
    required_scope: str = "access_as_user"  # the scope this API exposes to its clients
    graph_scope: str = f"{GRAPH}/User.Read"
    graph_url: str = GRAPH
    authority: str | None = None  # None: https://login.microsoftonline.com
    http_client: httpx.AsyncClient | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiConfig:
        """AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, and optionally
        API_REQUIRED_SCOPE (default ``access_as_user``)."""
        return cls(
            client_id=environ["AZURE_CLIENT_ID"],
            client_secret=environ["AZURE_CLIENT_SECRET"],
            tenant_id=environ["AZURE_TENANT_ID"],
            required_scope=environ.get("API_REQUIRED_SCOPE", cls.required_scope),
        )

    @property
    def authorize_endpoint(self) -> str:
        """Where the client gets a token with the claims of a claims challenge."""
        authority = (self.authority or "https://login.microsoftonline.com").rstrip("/")
        return f"{authority}/{self.tenant_id}/oauth2/v2.0/authorize"


class GraphError(Exception):
    """Graph answered the OBO token with an error (status kept, body not echoed)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"Microsoft Graph answered {status_code}")
        self.status_code = status_code


class GraphAsCaller:
    """One ``OBOClient`` and one HTTP client for the app's lifetime (open them in its lifespan).

    ``async with GraphAsCaller(config) as graph: ...`` then ``await graph.profile(token)``.
    """

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._http: httpx.AsyncClient | None = None
        self._obo: OBOClient | None = None

    @property
    def obo(self) -> OBOClient:
        if self._obo is None:
            raise RuntimeError("GraphAsCaller is not open: use it in the app's lifespan")
        return self._obo

    async def __aenter__(self) -> GraphAsCaller:
        config = self.config
        self._http = config.http_client or httpx.AsyncClient(timeout=10)
        options: dict[str, Any] = {}
        if config.authority:
            options["authority"] = config.authority
        self._obo = OBOClient(
            client_id=config.client_id,
            tenant_id=config.tenant_id,  # a specific tenant, never "common"
            credentials=[ClientSecret(config.client_secret)],
            applications={"graph": {"scope": [config.graph_scope]}},
            http_client=self._http,
            **options,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._obo is not None:
            await self._obo.aclose()
        if self._http is not None and self.config.http_client is None:
            await self._http.aclose()  # only the client this class made
        self._obo = self._http = None

    async def exchange(self, assertion: str) -> str:
        """The ``Authorization`` value for Graph, as the inbound token's user.

        ``OBOClient`` verifies the token (signature, issuer, audience, tenant, time, the
        required scope) before any request to Entra ID, and caches the result per token.
        """
        token = await self.obo.exchange(
            assertion=assertion,
            application_name="graph",
            required_scopes=[self.config.required_scope],
        )
        return token.authorization

    async def profile(self, assertion: str) -> dict[str, Any]:
        """Graph ``/me`` as the inbound token's user."""
        authorization = await self.exchange(assertion)
        assert self._http is not None
        response = await self._http.get(
            f"{self.config.graph_url}/v1.0/me", headers={"Authorization": authorization}
        )
        if response.status_code != 200:
            raise GraphError(response.status_code)
        body: dict[str, Any] = response.json()
        return body


# RFC 6750 §3: error_description is restricted to %x20-21 / %x23-5B / %x5D-7E.
_UNQUOTABLE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _description(text: str) -> str:
    return _UNQUOTABLE.sub("'", text)[:300]


def error_response(exc: OBOError, config: ApiConfig) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers answering the API's client for one of OBOClient's errors.

    | error                                   | answer                                         |
    |-----------------------------------------|------------------------------------------------|
    | InvalidAssertionError, reason ``scope`` | 403 ``Bearer error="insufficient_scope"``      |
    | InvalidAssertionError (other reasons)   | 401 ``Bearer error="invalid_token"``           |
    | a claims challenge (MFA, CA, CAE)       | 401 ``Bearer ... error="insufficient_claims",  |
    |                                         | claims="<base64>"``: get a token with claims   |
    | ReauthenticationRequiredError, or Entra | 401 ``Bearer error="invalid_token"``           |
    | refusing the token (``assertion_invalid``)|                                              |
    | EntraError, ``consent_required`` or     | 403 (the caller may not; retrying cannot help) |
    | ``blocked_by_policy``                   |                                                |
    | EntraUnavailableError                   | 503, ``Retry-After`` when Entra sent one       |
    | EntraError (this API's configuration)   | 502                                            |
    """
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    reason = exc.to_extra().get("reason")
    if reason:
        body["reason"] = reason
    # Microsoft's format for APIs: the client acquires a new token for this API with
    # these claims (MSAL: .WithClaims / claims=...) and calls again.
    challenge = www_authenticate(exc, authorization_uri=config.authorize_endpoint)
    if challenge is not None:
        body["claims"] = claims_challenge(exc)
        return 401, body, {"WWW-Authenticate": challenge}
    description = _description(exc.message)
    if isinstance(exc, InvalidAssertionError) and exc.reason == "scope":
        header = (
            f'Bearer error="insufficient_scope", scope="{config.required_scope}", '
            f'error_description="{description}"'
        )
        return 403, body, {"WWW-Authenticate": header}
    # Entra refusing the caller's own token (revoked session, expired, wrong audience) is
    # the client's to fix, like a token we refused: 401, not a 5xx that invites retries.
    refused = isinstance(exc, EntraError) and reason == "assertion_invalid"
    if refused or isinstance(exc, (InvalidAssertionError, ReauthenticationRequiredError)):
        header = f'Bearer error="invalid_token", error_description="{description}"'
        return 401, body, {"WWW-Authenticate": header}
    if isinstance(exc, EntraUnavailableError):
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return 503, body, headers
    if isinstance(exc, EntraError) and reason in ("consent_required", "blocked_by_policy"):
        return 403, body, {}
    if isinstance(exc, EntraError):
        return 502, body, {}
    return exc.status, body, {}
