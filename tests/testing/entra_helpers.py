"""Helpers shared by the emulator's tests (imported by name: pytest puts this
folder on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from better_auth_obo.testing import App, User

GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class Trio:
    api: App
    downstream: App
    user: User
    assertion: str

    def obo_form(self, scope: str = GRAPH_USER_READ, **extra: str) -> dict[str, str]:
        """An OBO request body; pass ``name="<omit>"`` to leave a field out."""
        form = {
            "grant_type": JWT_BEARER,
            "client_id": self.api.client_id,
            "client_secret": self.api.client_secret or "",
            "assertion": self.assertion,
            "scope": scope,
            "requested_token_use": "on_behalf_of",
        }
        form.update(extra)
        return {k: v for k, v in form.items() if v != "<omit>"}


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


REDIRECT_URI = "http://localhost:5000/callback"
VERIFIER = "a-verifier-that-is-long-enough-to-satisfy-rfc-7636-xxxxxxxxxxxxx"


def challenge(verifier: str = VERIFIER) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(app: App, scope: str, **extra: str) -> dict[str, str]:
    params = {
        "client_id": app.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "st4te",
        "nonce": "n0nce",
        "code_challenge": challenge(),
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def redirect_query(location: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(location).query))


def code_form(app: App, code: str, **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret or "",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER,
    }
    form.update(extra)
    return form
