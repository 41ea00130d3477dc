"""Verify the user's Microsoft token before it is refreshed or sent as an assertion.

The token in the ``account`` row is not trustworthy by itself: better-auth-server's
ID-token sign-in (``POST /sign-in/social`` with ``idToken: {token, accessToken}``)
verifies the ID token and stores ``accessToken`` exactly as the client sent it. So a
user could plant someone else's token and have our client credential exchange it
(a confused deputy). Before anything is sent to Entra, the token's claims are
checked, in this order, and each failure names the check (``reason``):

- ``signature``: RS256 over the header and payload, with a key published by the
  configured authority (discovery, then ``jwks_uri``);
- ``issuer``: the discovery document's issuer for the token's version (v2:
  ``{authority}/{tid}/v2.0``; v1: ``https://sts.windows.net/{tid}/`` on the public
  cloud, whatever the authority's v1 document says elsewhere), ``{tenantid}`` replaced
  by the token's own ``tid``;
- ``tenant``: ``tid`` is a GUID and, for a single-tenant app, the configured tenant
  (a domain name is resolved to its GUID through the discovery document);
- ``audience``: this app's client id, ``api://<client id>`` or a configured App ID URI;
- ``subject``: the claim the provider keys accounts by (``oid`` by default) equals the
  Microsoft account row's ``accountId``: a token that belongs to someone else is
  refused, whatever else holds;
- ``expired`` / ``not_yet_valid``: ``exp`` and ``nbf`` against the clock
  (``nbf`` and ``iat`` with 5 minutes of skew, as Microsoft.IdentityModel allows).

Keys and metadata are cached per token version, refreshed every 12 hours, and
re-fetched when a token names an unknown ``kid``, at most once per 5 minutes
(Microsoft.IdentityModel's ``ConfigurationManager``: AutomaticRefreshInterval 12 h,
RefreshInterval 5 min). When a refresh fails, the last keys that were fetched keep
working; with no keys at all the call fails with ``EntraUnavailableError`` and nothing
is sent. A verdict is remembered per (token fingerprint, account), least recently used
out past 10,000, and its time checks are re-applied on every use, so a token is
verified once, not on every miss. Apps whose tokens Entra signs with app-specific keys
(claims mapping, the ``?appid=`` keys URL) are not supported: their tokens are refused
as ``signature``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from ._assertion import AssertionClaims, check_assertion, fingerprint, read_claims
from ._cache import cancel_all
from ._errors import (
    EntraUnavailableError,
    InvalidAssertionError,
    KeyRetiredError,
    Reason,
    ReauthenticationRequiredError,
)
from ._retry import NO_RETRY, RetryPolicy

__all__ = [
    "ANY_ACCOUNT",
    "CONSUMER_TENANT_ID",
    "MULTI_TENANT_ALIASES",
    "AssertionVerifier",
    "VerifiedToken",
    "is_guid",
]

logger = logging.getLogger("better_auth_obo")

MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
CONSUMER_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: Future-dated ``nbf`` / ``iat`` allowed (Microsoft.IdentityModel's default ClockSkew).
CLOCK_SKEW = 300.0
#: Keys and metadata are re-read at least this often.
AUTOMATIC_REFRESH = 12 * 3600.0
#: An unknown ``kid`` re-fetches the keys at most this often.
MIN_REFRESH_INTERVAL = 300.0
#: Verdicts remembered (per token fingerprint and account).
MAX_VERDICTS = 10_000
_MAX_METADATA_BYTES = 256 * 1024
_GUID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_PLACEHOLDER = "{tenantid}"


def is_guid(value: object) -> bool:
    """True for a lowercase-or-uppercase GUID, the only form a tenant id takes in a path."""
    return isinstance(value, str) and bool(_GUID.match(value.lower()))


@dataclass(frozen=True, slots=True)
class _AnyAccount:
    def __repr__(self) -> str:
        return "ANY_ACCOUNT"


#: ``verify(token, account_id=ANY_ACCOUNT)``: no account to compare the subject with (an
#: inbound bearer token); the token must still name its user.
ANY_ACCOUNT: Final = _AnyAccount()


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What verification established about a token (never the token itself)."""

    tid: str
    subject: str
    version: int
    expires_at: float
    claims: AssertionClaims = field(repr=False)


@dataclass(slots=True)
class _Keys:
    """One version's discovery document and published keys, as last fetched."""

    issuer: str
    keys: dict[str, tuple[Any, str | None]]  # kid -> (public key, the key's own issuer)
    fetched_at: float


class _KeySource:
    """Discovery + JWKS for one token version at one authority path; refreshed lazily."""

    def __init__(
        self,
        *,
        discovery_url: str,
        origin: str,
        fetch: Callable[[str], Awaitable[dict[str, Any]]],
        clock: Callable[[], float],
    ) -> None:
        self._discovery_url = discovery_url
        self._origin = origin
        self._fetch = fetch
        self._clock = clock
        self._current: _Keys | None = None
        self._inflight: asyncio.Task[_Keys] | None = None
        self._last_attempt = -math.inf

    async def metadata(self) -> _Keys:
        """The keys; fetched when there are none yet or they are older than 12 hours."""
        current, now = self._current, self._clock()
        if current is None:
            return await self._refresh(stale=None)
        if now - current.fetched_at >= AUTOMATIC_REFRESH and self._may_refetch(now):
            return await self._refresh(stale=current)
        return current

    async def key(self, kid: str) -> tuple[Any, str | None] | None:
        """The key with this ``kid`` and its own issuer, or None; an unknown ``kid``
        re-fetches the keys at most every 5 minutes."""
        current = await self.metadata()
        found = current.keys.get(kid)
        if found is None and self._may_refetch(self._clock()):
            found = (await self._refresh(stale=current)).keys.get(kid)
        return found

    async def aclose(self) -> None:
        """Cancel a fetch in flight."""
        if self._inflight is not None:
            await cancel_all([self._inflight])

    def _may_refetch(self, now: float) -> bool:
        # Also after a failed attempt: during an outage the last keys serve, without
        # every miss waiting on another round of retries.
        return now - self._last_attempt >= MIN_REFRESH_INTERVAL

    async def _refresh(self, *, stale: _Keys | None) -> _Keys:
        # One fetch at a time; concurrent callers share it (shielded from their cancellation).
        if self._inflight is None or self._inflight.done():
            self._last_attempt = self._clock()
            self._inflight = asyncio.ensure_future(self._load())
        try:
            keys = await asyncio.shield(self._inflight)
        except EntraUnavailableError:
            if stale is None:
                raise
            logger.warning(
                "could not refresh Entra ID's signing keys; the last ones fetched stay in use"
            )
            return stale
        self._current = keys
        return keys

    async def _load(self) -> _Keys:
        document = await self._fetch(self._discovery_url)
        issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
        if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str):
            raise EntraUnavailableError(
                f"Entra ID's discovery document at {self._discovery_url} has no issuer or "
                "jwks_uri; signing keys unavailable, nothing was sent"
            )
        if _origin(jwks_uri) != self._origin:
            # Keys come from the authority we were configured with, never from elsewhere.
            raise EntraUnavailableError(
                f"Entra ID's discovery document names keys on another host ({_origin(jwks_uri)}); "
                "refused: keys must come from the configured authority"
            )
        keys = _parse_jwks(await self._fetch(jwks_uri))
        if not keys:
            raise EntraUnavailableError(
                f"Entra ID published no usable RSA signing key at {jwks_uri}; nothing was sent"
            )
        return _Keys(issuer=issuer, keys=keys, fetched_at=self._clock())


class AssertionVerifier:
    """Checks a user's Microsoft token against the authority's keys and this app.

    Example::

        verifier = AssertionVerifier(http=http, authority=authority, tenant=tenant_guid,
                                     client_id=client_id)
        verified = await verifier.verify(token, account_id=row["accountId"])
        verified.tid  # a GUID, from a verified token
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        authority: str,
        tenant: str,
        client_id: str,
        app_id_uris: Iterable[str] = (),
        subject_claim: str = "oid",
        clock: Callable[[], float],
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = 10.0,
        max_verdicts: int = MAX_VERDICTS,
    ) -> None:
        self._http = http
        self._authority = authority.rstrip("/")
        self._tenant = tenant
        self._multi_tenant = tenant.lower() in MULTI_TENANT_ALIASES
        self._client_id = client_id
        accepted = {client_id, f"api://{client_id}", *app_id_uris}
        self._audiences = frozenset(_normalize(a) for a in accepted)
        self._subject_claim = subject_claim or "oid"
        self._clock = clock
        self._retry = retry or NO_RETRY
        self._sleep = sleep
        self._timeout = timeout
        self._max_verdicts = max_verdicts
        self._verdicts: OrderedDict[tuple[str, str], VerifiedToken] = OrderedDict()
        origin = _origin(self._authority)
        base = f"{self._authority}/{tenant}"
        self._sources = {
            2: _KeySource(
                discovery_url=f"{base}/v2.0/.well-known/openid-configuration",
                origin=origin,
                fetch=self._get_json,
                clock=clock,
            ),
            1: _KeySource(
                discovery_url=f"{base}/.well-known/openid-configuration",
                origin=origin,
                fetch=self._get_json,
                clock=clock,
            ),
        }

    def __repr__(self) -> str:
        return f"AssertionVerifier(authority={self._authority!r}, tenant={self._tenant!r})"

    async def aclose(self) -> None:
        """Cancel key fetches in flight (``OBOPlugin.aclose``)."""
        for source in self._sources.values():
            await source.aclose()

    async def verify(
        self, token: str, *, account_id: object, require_current: bool = True
    ) -> VerifiedToken:
        """Verify ``token`` for the account keyed ``account_id``; raise if any check fails.

        ``require_current=False`` skips the expiry check (the token is about to be
        refreshed: who it belongs to still matters, whether it expired does not).
        """
        claims = read_claims(token)
        check_assertion(claims, client_id=self._client_id)  # Graph tokens: refused with the fix
        if account_id is ANY_ACCOUNT:  # OBOClient: an inbound token, whoever's it is
            account_id = ""
        elif not isinstance(account_id, str) or not account_id:
            raise _refused("subject", "the Microsoft account row has no accountId to compare")
        memo = (fingerprint(token), account_id)
        verified = self._verdicts.get(memo)
        if verified is None:
            verified = await self._verify_fully(token, claims, account_id, require_current)
            self._remember(memo, verified)
        if require_current:
            self._check_time(verified.claims)
        return verified

    async def _verify_fully(
        self, token: str, claims: AssertionClaims, account_id: str, require_current: bool
    ) -> VerifiedToken:
        version = _version(claims)
        if claims.expires_at is None:
            raise _refused("expired", "it has no exp claim")
        payload = await self._verified_payload(token, version, claims, require_current)
        # From here on every claim is authentic.
        tid = payload.get("tid")
        if not is_guid(tid):
            raise _refused("tenant", "its tid claim is missing or not a tenant GUID")
        keys = await self._sources[version].metadata()
        self._check_tenant(str(tid), keys.issuer)
        expected = keys.issuer.replace(_PLACEHOLDER, str(tid))
        if payload.get("iss") != expected:
            raise _refused("issuer", f"its issuer is not {expected!r}")
        self._check_audience(payload.get("aud"))
        # The provider's claim when the token carries it, else oid (the rule; Entra
        # puts both in every delegated token, so the fallback only serves odd claim names).
        subject = payload.get(self._subject_claim, payload.get("oid"))
        if not isinstance(subject, str) or not subject:
            raise _refused("subject", f"it has no {self._subject_claim} claim naming the user")
        if account_id and subject != account_id:
            raise _refused(
                "subject",
                f"its {self._subject_claim} claim is not the Microsoft account this user signed "
                "in with: it belongs to someone else",
            )
        return VerifiedToken(str(tid), subject, version, claims.expires_at, claims)

    async def _verified_payload(
        self, token: str, version: int, claims: AssertionClaims, require_current: bool
    ) -> dict[str, Any]:
        # The header decoded here, once: PyJWT's get_unverified_header re-scans the whole
        # token character by character before jwt.decode does it again (a miss's CPU).
        # read_claims has already required unpadded base64url segments.
        segment = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error):
            raise _refused("malformed", "its header cannot be read") from None
        if not isinstance(header, dict):
            raise _refused("malformed", "its header is not a JSON object")
        if header.get("alg") != "RS256":
            raise _refused("signature", "it is not signed with RS256, as Entra ID signs")
        kid = header.get("kid") or header.get("x5t")
        if not isinstance(kid, str) or not kid:
            raise _refused("signature", "its header names no signing key (kid)")
        found = await self._sources[version].key(kid)
        if found is None:
            expired = claims.expires_at is not None and claims.expires_at <= self._clock()
            if expired and not require_current:
                # A long-expired token whose key Entra has since retired: only a refresh
                # (verified in turn) or a new sign-in replaces it.
                raise KeyRetiredError(
                    "The user's stored Microsoft token is too old to verify (Entra ID no longer "
                    "publishes the key that signed it); the user must sign in with Microsoft again"
                )
            raise _refused("signature", "it is not signed by any key Entra ID publishes")
        public_key, key_issuer = found
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,  # times are checked against our own clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError:
            raise _refused("signature", "its signature does not verify") from None
        tid = payload.get("tid")
        # A key scoped to one issuer signs only that issuer's tokens (access-tokens doc).
        scoped = key_issuer is not None and version == 2 and is_guid(tid)
        if scoped and str(key_issuer).replace(_PLACEHOLDER, str(tid)) != payload.get("iss"):
            raise _refused("signature", "the key that signed it is not valid for its issuer")
        return payload

    def _check_tenant(self, tid: str, document_issuer: str) -> None:
        if self._multi_tenant:
            alias = self._tenant.lower()
            if alias == "organizations" and tid == CONSUMER_TENANT_ID:
                raise _refused("tenant", "it is from a personal Microsoft account")
            if alias == "consumers" and tid != CONSUMER_TENANT_ID:
                raise _refused("tenant", "it is not from a personal Microsoft account")
            return
        if _PLACEHOLDER in document_issuer:
            raise _refused("tenant", "the configured tenant's issuer is not tenant-specific")
        # The discovery issuer names the configured tenant's GUID, also when it is configured
        # by domain name: the token must come from exactly that tenant.
        if f"/{tid}/" not in f"{document_issuer}/":
            raise _refused("tenant", "it is from another tenant than the configured one")

    def _check_audience(self, aud: object) -> None:
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        if not isinstance(aud, str) or _normalize(aud) not in self._audiences:
            raise _refused(
                "audience",
                f"it was issued for {str(aud)[:100]!r}, not for this app ({self._client_id}); "
                f"sign users in with '{self._client_id}/access_as_user' (the app's own scope)",
            )

    def _check_time(self, claims: AssertionClaims) -> None:
        now = self._clock()
        if claims.expires_at is None:
            raise _refused("expired", "it has no exp claim")
        if claims.expires_at <= now:
            raise ReauthenticationRequiredError(
                "The user's Microsoft token has expired and could not be refreshed; the user "
                "must sign in with Microsoft again",
                reason="expired",
            )
        for started in (claims.not_before, claims.issued_at):
            if started is not None and started > now + CLOCK_SKEW:
                raise _refused("not_yet_valid", "it is not valid yet (nbf / iat in the future)")

    def _remember(self, memo: tuple[str, str], verified: VerifiedToken) -> None:
        self._verdicts[memo] = verified
        while len(self._verdicts) > self._max_verdicts:
            self._verdicts.popitem(last=False)

    async def _get_json(self, url: str) -> dict[str, Any]:
        """GET a metadata document with the retry policy; ``EntraUnavailableError`` if it fails."""
        began = self._clock()
        attempt = 1
        while True:
            try:
                return await self._get_once(url)
            except EntraUnavailableError as exc:
                delay = self._retry.delay(
                    attempt=attempt, retry_after=exc.retry_after, elapsed=self._clock() - began
                )
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def _get_once(self, url: str) -> dict[str, Any]:
        client = self._http() if callable(self._http) else self._http
        try:
            response = await client.get(
                url,
                headers={"accept": "application/json"},
                timeout=self._timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise EntraUnavailableError(
                f"Could not fetch Entra ID's signing keys from {url} ({type(exc).__name__}); "
                "nothing was sent, try again later"
            ) from None
        status = response.status_code
        if status != 200:
            raise EntraUnavailableError(
                f"Entra ID answered HTTP {status} for {url}; signing keys unavailable, nothing "
                "was sent",
                status_code=status,
            )
        try:
            if len(response.content) > _MAX_METADATA_BYTES:
                raise ValueError("too large")
            document = json.loads(response.content)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise EntraUnavailableError(
                f"Entra ID's answer from {url} is not a JSON object; signing keys unavailable",
                status_code=status,
            )
        return document


def _parse_jwks(document: dict[str, Any]) -> dict[str, tuple[Any, str | None]]:
    keys: dict[str, tuple[Any, str | None]] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("use") not in (None, "sig"):
            continue
        kid = entry.get("kid") or entry.get("x5t")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            public_key = RSAAlgorithm.from_jwk(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # a key we cannot read signs nothing we accept
        issuer = entry.get("issuer")
        keys[kid] = (public_key, issuer if isinstance(issuer, str) and issuer else None)
    return keys


def _version(claims: AssertionClaims) -> int:
    if claims.ver == "2.0":
        return 2
    if claims.ver == "1.0":
        return 1
    raise _refused("issuer", "its ver claim is neither 1.0 nor 2.0 (not an Entra ID token)")


def _refused(reason: Reason, why: str) -> InvalidAssertionError:
    return InvalidAssertionError(
        f"The user's stored Microsoft token was refused before any request to Entra ID: {why} "
        f"(check: {reason})",
        reason=reason,
    )


def _normalize(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
