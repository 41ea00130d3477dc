"""What every example shares: configuration, BetterAuth + OBOPlugin, and the error mapping.

Each framework file (``fastapi_app.py``, ``litestar_app.py``, ``flask_app.py``,
``django_app.py``) mounts better-auth and adds one route, ``GET /api/tasks``, that
calls a downstream API with an OBO token. Configure with environment variables for a
real tenant (see ``ExampleConfig.from_env``) or pass an ``ExampleConfig`` (the tests
point it at the emulator).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from better_auth import APIError, BetterAuth
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.ext.asyncio import create_async_engine

from better_auth_obo import (
    OBO_ERROR_CODES,
    OBOPlugin,
    claims_challenge,
    sign_in_again,
    www_authenticate,
)

__all__ = ["ExampleConfig", "build_auth", "call_downstream", "close", "error_response"]


@dataclass(frozen=True, kw_only=True)
class ExampleConfig:
    """The app registration, the downstream API, and where the app runs."""

    client_id: str
    client_secret: str
    tenant_id: str
    api_scope: str  # e.g. "api://<downstream-app-id>/Tasks.Read"
    api_url: str  # the downstream endpoint the route calls
    base_url: str = "http://localhost:8000"
    database_url: str = "sqlite+aiosqlite:///example.db"
    secret: str = "change-me-to-32-or-more-random-characters"
    authority: str | None = None  # None: https://login.microsoftonline.com
    http_client: httpx.AsyncClient | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ExampleConfig:
        """AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, API_SCOPE, API_URL,
        and optionally BASE_URL, DATABASE_URL, BETTER_AUTH_SECRET."""
        return cls(
            client_id=environ["AZURE_CLIENT_ID"],
            client_secret=environ["AZURE_CLIENT_SECRET"],
            tenant_id=environ["AZURE_TENANT_ID"],
            api_scope=environ["API_SCOPE"],
            api_url=environ["API_URL"],
            base_url=environ.get("BASE_URL", cls.base_url),
            database_url=environ.get("DATABASE_URL", cls.database_url),
            secret=environ.get("BETTER_AUTH_SECRET", cls.secret),
        )


def build_auth(config: ExampleConfig) -> tuple[BetterAuth, OBOPlugin]:
    """BetterAuth with the Microsoft provider set up for OBO, and the plugin."""
    obo = OBOPlugin(applications={"tasks": {"scope": [config.api_scope]}})
    microsoft: dict[str, Any] = {
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "tenant_id": config.tenant_id,  # a specific tenant, never "common"
        # The app's own scope in GUID form and no User.Read: the stored token must be
        # for this app to be an OBO assertion (api://... fails at refresh: AADSTS90009).
        "scopes": [
            "openid",
            "profile",
            "email",
            "offline_access",
            f"{config.client_id}/access_as_user",
        ],
        "disable_profile_photo": True,
    }
    if config.authority:
        microsoft["authority"] = config.authority
    auth = BetterAuth(
        secret=config.secret,
        base_url=config.base_url,
        adapter=SQLAlchemyAdapter(create_async_engine(config.database_url)),
        social_providers={"microsoft": microsoft},
        plugins=[obo],
        http_client=config.http_client,
    )
    return auth, obo


async def close(auth: BetterAuth) -> None:
    """Release the database engine (at shutdown)."""
    await auth.adapter.engine.dispose()  # type: ignore[attr-defined]


async def call_downstream(
    auth: BetterAuth, obo: OBOPlugin, config: ExampleConfig, user_id: str
) -> dict[str, Any]:
    """Call the API as the user: ``http_auth`` attaches the OBO token (cached, else
    exchanged) and answers a CAE claims challenge from the API with one new exchange."""
    as_user = obo.http_auth(user_id=user_id, application_name="tasks")
    response = await auth.http.get(config.api_url, auth=as_user)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def error_response(exc: APIError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for one of the plugin's errors.

    A claims challenge (Conditional Access, MFA) becomes 401 with
    ``WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64>"``: the
    client sends the user back to ``/sign-in/social`` with
    ``additionalParams={"claims": body["claims"]}``.
    """
    extra = exc.extra or {}
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    sign_in = sign_in_again(exc)  # the /sign-in/social body that sends the user back
    if sign_in is not None:
        body["signIn"] = sign_in
    claims = claims_challenge(exc)
    challenge = www_authenticate(exc)
    if claims is not None and challenge is not None:
        body["claims"] = claims
        return 401, body, {"WWW-Authenticate": challenge}
    codes = OBO_ERROR_CODES
    if exc.code in (
        codes["MICROSOFT_REAUTHENTICATION_REQUIRED"].code,
        codes["MICROSOFT_ACCOUNT_NOT_FOUND"].code,
    ):
        return 401, body, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if exc.code == codes["ENTRA_UNAVAILABLE"].code and extra.get("retryAfter"):
        return 503, body, {"Retry-After": str(int(extra["retryAfter"]))}
    return exc.status, body, {}
