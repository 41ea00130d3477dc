"""Minting and checking the emulator's tokens.

Claim sets follow access-token-claims-reference.md and id-token-claims-reference.md:
v2 access tokens carry ``aud`` (the resource's client id), ``iss``
(``{authority}/{tid}/v2.0``), ``iat``/``nbf``/``exp``, ``azp``/``azpacr``, ``name``,
``oid``, ``preferred_username``, ``scp`` or ``roles``, ``sub``, ``tid``, ``uti``,
``ver``. v1 tokens (Microsoft Graph's, and those of apps registered with
``access_token_version=1``) carry ``iss`` = ``https://sts.windows.net/{tid}/`` as the
real ones do whatever the authority, ``appid``/``appidacr``, ``upn``,
``unique_name``, and ``aud`` = the App ID URI or the client id, following how the
scope named the resource. Graph tokens carry a ``nonce`` header as the real ones do.
Whether MFA was performed: ``amr`` in v1 tokens (Entra documents ``amr`` as v1-only),
and the emulator's own marker in the opaque ``aio`` claim of v2 tokens (where Entra keeps
its own session data). ID tokens are always v2.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ._keys import KeySet
from ._models import App, User
from ._scopes import Resource
from ._state import Directory
from ._wire import GRAPH_APP_ID, V1_ISSUER_HOST, b64url, b64url_json, opaque, pairwise_sub

__all__ = ["BadToken", "Grant", "TokenIssuer", "issued_instant", "performed_mfa"]

ID_TOKEN_LIFETIME = 3600
#: Default lifetime of CAE tokens: "long-lived, up to 28 hours"
#: (concept-continuous-access-evaluation.md, "Token lifetime").
CAE_TOKEN_LIFETIME = 24 * 3600


_AIO_MFA, _AIO_PASSWORD = "AWQAm/8", "AVQAq/8"


def _aio(mfa: bool) -> str:
    """An opaque-looking ``aio`` whose first characters say whether MFA was performed."""
    return (_AIO_MFA if mfa else _AIO_PASSWORD) + opaque()[:48]


def performed_mfa(claims: dict[str, Any]) -> bool:
    """Whether the token's sign-in performed MFA (``amr`` in v1, the ``aio`` marker in v2)."""
    if "mfa" in (claims.get("amr") or []):
        return True
    return str(claims.get("aio", "")).startswith(_AIO_MFA)


def _uti(instant: float) -> str:
    """An opaque 22-character ``uti`` that also carries the exact issue instant (JWT
    times are whole seconds; CAE needs to order a token and an event within one)."""
    return b64url(struct.pack(">d", instant) + os.urandom(8))


def issued_instant(claims: Mapping[str, Any]) -> float:
    """When a token this emulator minted was issued, to the microsecond (from its
    ``uti``); ``iat`` for any other token."""
    iat = float(claims.get("iat", 0))
    try:
        raw = base64.urlsafe_b64decode(str(claims.get("uti", "")) + "==")
    except (binascii.Error, ValueError):
        return iat
    if len(raw) != 16:
        return iat
    (instant,) = struct.unpack(">d", raw[:8])
    # A forged or foreign uti cannot move the token out of its own second.
    return instant if iat <= instant < iat + 1 else iat


def guest_idp(user: User, tenant_id: str) -> dict[str, str]:
    """``idp`` for a guest: the home tenant's STS URI (Entra omits it for members, whose
    identity provider is the issuer; libraries tell guests by ``idp`` != ``iss``)."""
    home = user.home_tenant_id
    if home is None or home == tenant_id:
        return {}
    return {"idp": f"{V1_ISSUER_HOST}/{home}/"}


class BadToken(Exception):
    """A token failed a check: ``reason`` says which (``malformed``, ``signature``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """What a successful token request issues an access token for."""

    client: App
    resource: Resource
    tenant_id: str
    user: User | None  # None: app-only (client credentials)
    permissions: tuple[str, ...]
    azpacr: str
    mfa: bool = False
    by_uri: bool = False  # the scope named the resource by App ID URI (v1 ``aud``)
    cae: bool = False  # the client declared cp1: ``xms_cc`` and the CAE lifetime
    acrs: tuple[str, ...] = ()  # satisfied authentication contexts


class TokenIssuer:
    """Signs tokens with the emulator's keys; knows the issuer URLs."""

    def __init__(
        self,
        *,
        authority: str,
        keys: KeySet,
        directory: Directory,
        default_lifetime: Callable[[], int],
        cae_lifetime: Callable[[], int] = lambda: CAE_TOKEN_LIFETIME,
    ) -> None:
        self.authority = authority
        self.keys = keys
        self.directory = directory
        self._default_lifetime = default_lifetime
        self._cae_lifetime = cae_lifetime

    @property
    def clock(self) -> Callable[[], float]:
        return self.directory.clock

    @property
    def graph_url(self) -> str:
        return f"{self.authority}/graph"

    def clock_iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock()))

    def issuer(self, tenant_id: str, version: int = 2) -> str:
        """``iss`` of a token of that version: ``{authority}/{tid}/v2.0`` (v2) or
        ``https://sts.windows.net/{tid}/`` (v1, trailing slash, any authority)."""
        if version == 2:
            return f"{self.authority}/{tenant_id}/v2.0"
        return f"{V1_ISSUER_HOST}/{tenant_id}/"

    def lifetime(self, resource: Resource, *, cae: bool = False) -> int:
        # CAE sessions ignore token lifetime policies (concept-continuous-access-evaluation.md).
        if cae:
            return self._cae_lifetime()
        return self.directory.lifetime(resource.client_id, self._default_lifetime())

    # -- minting -----------------------------------------------------------------------------
    def access_token(
        self, grant: Grant, *, lifetime: int | None = None, issued_at: float | None = None
    ) -> tuple[str, int]:
        """The signed access token and its lifetime in seconds."""
        seconds = self.lifetime(grant.resource, cae=grant.cae) if lifetime is None else lifetime
        instant = self.clock() if issued_at is None else issued_at
        now = int(instant)
        version = grant.resource.version
        claims: dict[str, Any] = {
            "aud": grant.resource.audience(by_uri=grant.by_uri),
            "iss": self.issuer(grant.tenant_id, version),
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "tid": grant.tenant_id,
            "uti": _uti(instant),
            "ver": f"{version}.0",
        }
        if grant.cae:
            claims["xms_cc"] = ["cp1"]
        if grant.acrs:
            claims["acrs"] = list(grant.acrs)
        if version == 2:
            claims |= {"azp": grant.client.client_id, "azpacr": grant.azpacr}
        else:
            claims |= {"appid": grant.client.client_id, "appidacr": grant.azpacr}
            claims["app_displayname"] = grant.client.name
        claims |= self._subject_claims(grant, version)
        headers = {"nonce": opaque()} if grant.resource.client_id == GRAPH_APP_ID else None
        return self.keys.sign(claims, extra_headers=headers), seconds

    def _subject_claims(self, grant: Grant, version: int) -> dict[str, Any]:
        user = grant.user
        if user is None:
            principal = grant.client.service_principal_id
            claims: dict[str, Any] = {"oid": principal, "sub": principal, "idtyp": "app"}
            if grant.permissions:
                claims["roles"] = list(grant.permissions)
            return claims
        claims = {
            "oid": user.oid,
            "sub": pairwise_sub(user.oid, grant.resource.client_id),
            "name": user.display_name,
            "scp": " ".join(grant.permissions),
        }
        if version == 2:
            claims |= {"preferred_username": user.upn, "aio": _aio(grant.mfa)}
        else:
            claims["amr"] = ["pwd", "mfa"] if grant.mfa else ["pwd"]
            claims |= {"upn": user.upn, "unique_name": user.upn, "idtyp": "user"}
            claims |= {"given_name": user.given_name, "family_name": user.surname}
        claims |= guest_idp(user, grant.tenant_id)
        return claims

    def id_token(
        self,
        *,
        user: User,
        client: App,
        tenant_id: str,
        nonce: str | None,
        email: bool,
        issued_at: float | None = None,
    ) -> str:
        now = int(self.clock() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "aud": client.client_id,
            "iss": self.issuer(tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.upn,
            "sub": pairwise_sub(user.oid, client.client_id),
            "tid": tenant_id,
            "uti": opaque()[:22],
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if email and (user.mail or user.upn):
            claims["email"] = user.mail or user.upn
        claims |= guest_idp(user, tenant_id)
        return self.keys.sign(claims)

    @staticmethod
    def client_info(user: User) -> str:
        """``base64url({"uid": oid, "utid": tid})`` (MSAL's home account id)."""
        return b64url_json(
            {"uid": user.home_oid or user.oid, "utid": user.home_tenant_id or user.tenant_id}
        )

    # -- checking ----------------------------------------------------------------------------
    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token this emulator signed, signature checked (not times, not aud).

        One parse on the way that succeeds; a token that fails is parsed again without
        its signature only to tell malformed (50027) from badly signed (50013).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise BadToken("malformed", "JWT token is invalid or malformed.") from exc
        key = self.keys.find(str(header.get("kid", "")))
        if key is None or header.get("alg") != "RS256":
            _readable(token)
            raise BadToken("signature", f"Key was not found. kid: '{header.get('kid')}'")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.PyJWTError as exc:
            _readable(token)
            raise BadToken("signature", "Signature validation failed.") from exc
        tid = str(claims.get("tid", ""))
        if claims.get("iss") not in (self.issuer(tid, 2), self.issuer(tid, 1)):
            raise BadToken("signature", f"Issuer '{claims.get('iss')}' is not valid.")
        return claims


def _readable(token: str) -> None:
    """Raise ``BadToken("malformed")`` unless the token's segments and payload decode."""
    try:
        jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise BadToken("malformed", "JWT token is invalid or malformed.") from exc
