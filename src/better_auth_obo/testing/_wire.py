"""Wire strings and small encoders shared by the emulator's modules.

Each constant is the exact string Entra ID puts on (or expects from) the wire,
defined once. Sources: Microsoft identity platform docs (v2-oauth2-*.md,
access-token-claims-reference.md) as summarised in the project's protocol notes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

#: Host part of every v1.0 token's ``iss``: ``https://sts.windows.net/{tid}/`` whatever
#: the authority (access-token-claims-reference.md). The emulator keeps it verbatim.
V1_ISSUER_HOST = "https://sts.windows.net"

#: OpenID Connect scopes: never part of a resource's permissions.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
#: Tenant aliases accepted in the path instead of a tenant id or domain.
TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
#: Fixed tenant id of personal Microsoft accounts (access-token-claims-reference.md).
CONSUMER_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

#: Delegated permissions the fake Microsoft Graph exposes.
GRAPH_SCOPES = frozenset(
    {
        "User.Read",
        "User.ReadWrite",
        "User.ReadBasic.All",
        "User.Read.All",
        "Directory.Read.All",
        "Mail.Read",
        "Mail.Send",
        "Calendars.Read",
        "Files.Read",
        "Files.Read.All",
        "Files.ReadWrite",
        "Sites.Read.All",
        "Group.Read.All",
        "email",
        "openid",
        "profile",
        "offline_access",
    }
)
#: Application permissions (app roles) the fake Microsoft Graph exposes.
GRAPH_ROLES = frozenset(
    {"User.Read.All", "Directory.Read.All", "Mail.Read", "Files.Read.All", "Group.Read.All"}
)
#: Graph scopes that let a caller read the signed-in user's profile (`GET /me`).
GRAPH_ME_SCOPES = frozenset(
    {"User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "Directory.Read.All"}
)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def new_guid() -> str:
    return str(uuid.uuid4())


def opaque(prefix: str = "") -> str:
    """A random opaque value (codes, refresh tokens, `uti`)."""
    return prefix + b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)


def pairwise_sub(oid: str, client_id: str) -> str:
    """`sub` is pairwise: unique per user and application (id-token-claims-reference.md)."""
    return b64url(hashlib.sha256(f"{oid}:{client_id}".encode()).digest())


def entra_timestamp(now: float) -> str:
    """Entra's error timestamp format: ``2024-06-20 11:53:16Z``."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))


def iso_timestamp(now: float) -> str:
    """ISO 8601 with 7 fractional digits, as in Entra's AADSTS500133 message."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{whole}.{int((now % 1) * 10_000_000):07d}Z"
