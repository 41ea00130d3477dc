"""Wire-level doubles for the plugin's unit tests (``httpx.MockTransport``).

``WireEntra`` answers the token endpoint the way Entra does for the two grants the
plugin sends, and the discovery documents and keys the plugin verifies tokens with;
it records every token request, and can be told to fail. Tokens are signed with one
key (``kid`` k1) and carry the issuer of ``TENANT_ID`` at ``AUTHORITY``. End-to-end
behaviour is tested against the real emulator (``better_auth_obo.testing``) over
sockets instead.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from tests._leaks import register

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "wire-secret-value-123"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUTHORITY = "https://login.example.test"
_KEY_VARIABLE = "OBO_TEST_SIGNING_KEY_PEM"


def _signing_key() -> rsa.RSAPrivateKey:
    """One test signing key for this run, shared with worker processes (through the
    environment they inherit), so a token made here verifies in a worker too."""
    pem = os.environ.get(_KEY_VARIABLE)
    if pem:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ[_KEY_VARIABLE] = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key


_KEY = _signing_key()
KID = "k1"
ISSUER_V2 = f"{AUTHORITY}/{TENANT_ID}/v2.0"
ISSUER_V1 = f"https://sts.windows.net/{TENANT_ID}/"
register(CLIENT_SECRET)


def jwks() -> dict[str, Any]:
    """The keys WireEntra publishes (v1 and v2 alike)."""
    key = json.loads(RSAAlgorithm.to_jwk(_KEY.public_key()))
    return {"keys": [{**key, "kid": KID, "use": "sig"}]}


_ALIASES = ("common", "organizations", "consumers")


def discovery(version: int = 2, tenant: str = TENANT_ID) -> dict[str, Any]:
    """The tenant's discovery document as WireEntra serves it (for a multi-tenant alias,
    the issuer keeps Entra's literal ``{tenantid}`` placeholder)."""
    tid = "{tenantid}" if tenant in _ALIASES else TENANT_ID
    if version == 2:
        return {
            "issuer": f"{AUTHORITY}/{tid}/v2.0",
            "jwks_uri": f"{AUTHORITY}/{tenant}/discovery/v2.0/keys",
        }
    return {
        "issuer": f"https://sts.windows.net/{tid}/",
        "jwks_uri": f"{AUTHORITY}/{tenant}/discovery/keys",
    }


def metadata_answer(request: httpx.Request) -> httpx.Response | None:
    """The answer to a GET for discovery or keys (any tenant path), else None."""
    if request.method != "GET":
        return None
    path = request.url.path
    tenant = path.split("/")[1]
    if path.endswith("/v2.0/.well-known/openid-configuration"):
        return httpx.Response(200, json=discovery(2, tenant))
    if path.endswith("/.well-known/openid-configuration"):
        return httpx.Response(200, json=discovery(1, tenant))
    if path.endswith("/keys"):
        return httpx.Response(200, json=jwks())
    return httpx.Response(404, json={"error": "not_found"})


def register_value(value: str) -> str:
    register(value)
    return value


def make_jwt(**claims: Any) -> str:
    """An RS256 JWT (not verified by the plugin; the emulator signs real ones)."""
    now = int(time.time())
    body = {"iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0", "tid": TENANT_ID}
    body["uti"] = uuid.uuid4().hex  # every token distinct, even for concurrent requests
    body.update(claims)
    if "iss" not in claims:
        body["iss"] = ISSUER_V1 if body["ver"] == "1.0" else ISSUER_V2
    token = jwt.encode(body, _KEY, algorithm="RS256", headers={"kid": KID})
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
    #: GETs for discovery documents and keys (kept apart from the token requests).
    metadata_requests: list[str] = field(default_factory=list)

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
        metadata = metadata_answer(request)
        if metadata is not None:
            self.metadata_requests.append(str(request.url))
            return metadata
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
            oid = refresh_token_owner(form.get("refresh_token", ""))
            token = user_token(exp=self.clock() + self.lifetime, n=len(self.requests), oid=oid)
            body = {
                "token_type": "Bearer",
                "access_token": token,
                "refresh_token": register_value(f"rt~{oid}~{uuid.uuid4().hex}"),
            }
        else:
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        body["expires_in"] = self.lifetime
        return httpx.Response(200, json=body)


def refresh_token_owner(refresh_token: str) -> str:
    """The oid a WireEntra refresh token was issued for (``rt~<oid>~...``), else a new one."""
    parts = refresh_token.split("~")
    return parts[1] if len(parts) == 3 and parts[0] == "rt" else str(uuid.uuid4())


def token_oid(token: str) -> str:
    """The ``oid`` claim of a token (unverified), or a new GUID when it has none."""
    try:
        oid = jwt.decode(token, options={"verify_signature": False}).get("oid")
    except jwt.PyJWTError:
        oid = None
    return oid if isinstance(oid, str) and oid else str(uuid.uuid4())


_DEFAULT_REFRESH = "stored-refresh-token"


async def seed_user(
    auth: BetterAuth,
    *,
    token: str | None = None,
    refresh_token: str | None = _DEFAULT_REFRESH,
    expires_at: float | None = None,
    email: str | None = None,
    account_id: str | None = None,
) -> dict[str, Any]:
    """A user with a Microsoft account row, as Better Auth leaves it after sign-in.

    ``accountId`` is the token's ``oid`` (what the host stores), unless ``account_id``
    says otherwise; the default refresh token redeems, at WireEntra, for that oid.
    """
    user = await auth.internal.create_user(
        {"email": email or f"{uuid.uuid4().hex[:8]}@contoso.example", "name": "Ada"}
    )
    assert user is not None
    token = token or user_token()
    oid = token_oid(token)
    if refresh_token == _DEFAULT_REFRESH:
        refresh_token = f"rt~{oid}~{uuid.uuid4().hex}"
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
            "accountId": account_id if account_id is not None else oid,
            "accessToken": enc(token),
            "refreshToken": enc(refresh_token),
            "accessTokenExpiresAt": datetime.fromtimestamp(expires, timezone.utc),
            "scope": "openid,profile,email,offline_access",
        }
    )
    return user
