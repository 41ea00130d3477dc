"""Wire-level doubles for the plugin's unit tests (``httpx.MockTransport``).

``WireEntra`` answers the token endpoint the way Entra does for the two grants the
plugin sends, records every request, and can be told to fail. End-to-end behaviour is
tested against the real emulator (``better_auth_obo.testing``) over sockets instead.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from better_auth import BetterAuth
from cryptography.hazmat.primitives.asymmetric import rsa
from tests._leaks import register

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "wire-secret-value-123"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUTHORITY = "https://login.example.test"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
register(CLIENT_SECRET)


def register_value(value: str) -> str:
    register(value)
    return value


def make_jwt(**claims: Any) -> str:
    """An RS256 JWT (not verified by the plugin; the emulator signs real ones)."""
    now = int(time.time())
    body = {"iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0", "tid": TENANT_ID}
    body["uti"] = uuid.uuid4().hex  # every token distinct, even for concurrent requests
    body.update(claims)
    token = jwt.encode(body, _KEY, algorithm="RS256", headers={"kid": "k1"})
    register(token)
    return token


def user_token(*, aud: str = CLIENT_ID, exp: float | None = None, **claims: Any) -> str:
    """A delegated access token as Better Auth stores it after sign-in."""
    claims.setdefault("scp", "access_as_user")
    claims.setdefault("oid", str(uuid.uuid4()))
    claims.setdefault("uti", uuid.uuid4().hex)
    if exp is not None:
        claims["exp"] = int(exp)
    return make_jwt(aud=aud, **claims)


def provider(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT_ID,
        "authority": AUTHORITY,
        "disable_profile_photo": True,
        "scopes": ["openid", "profile", "email", "offline_access", f"{CLIENT_ID}/access_as_user"],
    }
    config.update(overrides)
    return config


@dataclass
class WireEntra:
    """A programmable token endpoint; ``requests`` holds every form it received."""

    lifetime: int = 3600
    delay: float = 0.0
    clock: Callable[[], float] = time.time
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.failures.append((status, body, headers or {}))

    def grants(self, grant_type: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["form"].get("grant_type") == grant_type]

    @property
    def exchanges(self) -> list[dict[str, Any]]:
        return self.grants("urn:ietf:params:oauth:grant-type:jwt-bearer")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append({"url": str(request.url), "headers": request.headers, "form": form})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            status, body, headers = self.failures.pop(0)
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            return httpx.Response(status, content=content, headers=headers)
        grant = form.get("grant_type", "")
        if grant.endswith("jwt-bearer"):
            scopes = form["scope"].split()
            token = make_jwt(aud=scopes[0].rsplit("/", 1)[0], scp="User.Read", n=len(self.requests))
            body = {"token_type": "Bearer", "scope": form["scope"], "access_token": token}
        elif grant == "refresh_token":
            token = user_token(exp=self.clock() + self.lifetime, n=len(self.requests))
            body = {
                "token_type": "Bearer",
                "access_token": token,
                "refresh_token": register_value(f"rt-{uuid.uuid4()}"),
            }
        else:
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        body["expires_in"] = self.lifetime
        return httpx.Response(200, json=body)


async def seed_user(
    auth: BetterAuth,
    *,
    token: str | None = None,
    refresh_token: str | None = "stored-refresh-token",
    expires_at: float | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    """A user with a Microsoft account row, as Better Auth leaves it after sign-in."""
    user = await auth.internal.create_user(
        {"email": email or f"{uuid.uuid4().hex[:8]}@contoso.example", "name": "Ada"}
    )
    assert user is not None
    token = token or user_token()
    register(token, refresh_token)
    expires = expires_at if expires_at is not None else time.time() + 3600
    encrypt = auth.account.encrypt_oauth_tokens
    from better_auth.crypto import symmetric_encrypt

    def enc(value: str | None) -> str | None:
        return symmetric_encrypt(auth.secret, value) if (value and encrypt) else value

    await auth.internal.create_account(
        {
            "userId": user["id"],
            "providerId": "microsoft",
            "accountId": str(uuid.uuid4()),
            "accessToken": enc(token),
            "refreshToken": enc(refresh_token),
            "accessTokenExpiresAt": datetime.fromtimestamp(expires, timezone.utc),
            "scope": "openid,profile,email,offline_access",
        }
    )
    return user
