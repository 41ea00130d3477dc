"""Baseline: the MSAL Python pattern for OBO with one ``ConfidentialClientApplication``.

The app's token cache holds N users' OBO results (filled by real
``acquire_token_on_behalf_of`` calls against a fake ``http_client``); a "hit" is
``get_accounts()``, find the user's account, ``acquire_token_silent(scopes, account)``
(the lookup fastmcp-obo uses and MSAL-Py#265 recommends).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import msal

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
SCOPES = ["api://downstream/Files.Read"]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status_code = 200
        self.text = json.dumps(body)
        self.headers: dict[str, str] = {"content-type": "application/json"}

    def raise_for_status(self) -> None:
        return None


class FakeEntraHTTP:
    """The ``http_client`` MSAL is given: discovery and the OBO grant, no network."""

    def __init__(self) -> None:
        self.posts = 0

    def get(self, url: str, **_: Any) -> _Response:
        base = f"{AUTHORITY}/oauth2/v2.0"
        return _Response(
            {
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                "device_authorization_endpoint": f"{base}/devicecode",
            }
        )

    def post(self, url: str, data: Any = None, **_: Any) -> _Response:
        self.posts += 1
        form = data if isinstance(data, dict) else parse_qs(str(data))
        assertion = form.get("assertion")
        oid = _user_of(assertion[0] if isinstance(assertion, list) else str(assertion))
        now = int(time.time())
        claims = {
            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "aud": CLIENT_ID,
            "tid": TENANT,
            "oid": oid,
            "sub": oid,
            "preferred_username": f"{oid}@contoso.example",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        return _Response(
            {
                "token_type": "Bearer",
                "scope": " ".join(SCOPES),
                "expires_in": 3600,
                "access_token": f"obo.{oid}.{'x' * 1200}",
                "refresh_token": f"rt-{oid}",
                "id_token": f"{_b64({'alg': 'none'})}.{_b64(claims)}.",
                "client_info": _b64({"uid": oid, "utid": TENANT}),
            }
        )

    def close(self) -> None:
        return None


def user_assertion(oid: str) -> str:
    """A delegated token for the middle tier (MSAL never decodes it)."""
    return f"{_b64({'alg': 'none'})}.{_b64({'oid': oid, 'aud': CLIENT_ID})}.sig"


def _user_of(assertion: str) -> str:
    payload = assertion.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"])


def msal_app(users: int) -> tuple[msal.ConfidentialClientApplication, list[str]]:
    """A CCA whose cache holds ``users`` users' OBO results; returns it and their oids."""
    http = FakeEntraHTTP()
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential="benchmark-secret",
        authority=AUTHORITY,
        http_client=http,
        instance_discovery=False,
    )
    oids = [str(uuid.UUID(int=i + 1)) for i in range(users)]
    for oid in oids:
        result = app.acquire_token_on_behalf_of(user_assertion(oid), SCOPES)
        if "access_token" not in result:
            raise RuntimeError(f"MSAL refused the fake OBO answer: {result.get('error')}")
    return app, oids


def msal_hit(app: msal.ConfidentialClientApplication, oid: str) -> str:
    """One cache hit the MSAL way: scan the accounts, then a silent acquisition."""
    account = next(a for a in app.get_accounts() if a["local_account_id"] == oid)
    result = app.acquire_token_silent(SCOPES, account=account)
    if not result or "access_token" not in result:
        raise RuntimeError("MSAL missed a token it holds")
    return str(result["access_token"])
