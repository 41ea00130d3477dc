"""Doctor checks on credentials and tokens: certificate expiry, a user's stored token.

The stored token is decoded (``_assertion.read_claims``) and judged exactly as the
plugin would judge it (``check_assertion``); only its claims and a short fingerprint
leave this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from ._assertion import check_assertion, fingerprint, read_claims
from ._doctor_report import CachedSummary, Finding, Report, TokenSummary
from ._errors import InvalidAssertionError
from ._store import OBOStore

if TYPE_CHECKING:
    from better_auth import BetterAuth

    from ._provider import MicrosoftSettings

__all__ = ["RENEW_WITHIN_DAYS", "certificate_findings", "stored_token_findings"]

#: A certificate expiring within this many days is reported as a problem: rotate it now.
RENEW_WITHIN_DAYS = 30
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


# --- certificate --------------------------------------------------------------------------


def certificate_findings(
    path: str | None, environ: Mapping[str, str], *, now: float
) -> list[Finding]:
    """The client certificate's expiry (PEM, DER or PFX), when a certificate file is given."""
    if not path:
        return []
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [Finding("certificate", "problem", f"Cannot read {path}: {exc.strerror}")]
    try:
        cert = _load_certificate(path, data, environ.get("AZURE_CLIENT_CERTIFICATE_PASSWORD"))
    except ValueError:
        return [
            Finding(
                "certificate",
                "problem",
                f"{path} holds no readable X.509 certificate (PEM, DER or PFX; for a protected "
                "PFX set AZURE_CLIENT_CERTIFICATE_PASSWORD)",
            )
        ]
    expires = cert.not_valid_after_utc
    days = (expires.timestamp() - now) / 86400
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:
        message = (
            f"The client certificate expired on {when}: Entra ID refuses it (AADSTS700027). "
            "Upload a new certificate to the app registration and point to it"
        )
        return [Finding("certificate", "problem", message)]
    if days < RENEW_WITHIN_DAYS:
        message = (
            f"The client certificate expires on {when}, in {int(days)} day(s): upload its "
            "successor to the app registration now and switch to it before that date"
        )
        return [Finding("certificate", "problem", message)]
    return [Finding("certificate", "ok", f"certificate valid until {when}")]


def _load_certificate(path: str, data: bytes, password: str | None) -> x509.Certificate:
    if path.lower().endswith((".pfx", ".p12")):
        secret = password.encode() if password else None
        _, cert, _ = pkcs12.load_key_and_certificates(data, secret)
        if cert is None:
            raise ValueError("no certificate in the PFX")
        return cert
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


# --- the user's stored Microsoft token -------------------------------------------------------


async def stored_token_findings(
    report: Report, auth: BetterAuth, user_id: str, settings: MicrosoftSettings, *, now: float
) -> None:
    """Decode ``user_id``'s stored Microsoft token into ``report`` and judge it."""
    store = OBOStore(auth)
    account = await store.microsoft_account(user_id)
    if account is None:
        report.findings.append(
            Finding(
                "stored_token",
                "problem",
                f"User {user_id!r} has no Microsoft account holding an access token: they must "
                "sign in with Microsoft first (MICROSOFT_ACCOUNT_NOT_FOUND)",
            )
        )
        return
    token = store.decrypt(account.get("accessToken")) or ""
    try:
        claims = read_claims(token)
    except InvalidAssertionError as exc:
        report.findings.append(Finding("stored_token", "problem", exc.message))
        return
    remaining = claims.remaining(now)
    report.token = TokenSummary(
        audience=claims.aud,
        scopes=claims.scopes,
        tenant_id=claims.tid,
        expires_at=_iso(claims.expires_at),
        remaining_seconds=None if remaining is None else int(remaining),
        fingerprint=fingerprint(token),
    )
    report.findings.append(_assertion_finding(claims, settings))
    report.findings.extend(_tenant_findings(claims.tid, settings))
    report.findings.append(_lifetime_finding(remaining, bool(account.get("refreshToken"))))
    report.cached.extend(await _cached(auth, store, user_id, fingerprint(token)))


def _assertion_finding(claims: Any, settings: MicrosoftSettings) -> Finding:
    try:
        check_assertion(claims, client_id=settings.client_id)
    except InvalidAssertionError as exc:
        return Finding("stored_token", "problem", exc.message)
    return Finding(
        "stored_token",
        "ok",
        f"the stored token is a delegated token for this app (aud {claims.aud}): "
        "a valid On-Behalf-Of assertion",
    )


def _tenant_findings(tid: str | None, settings: MicrosoftSettings) -> list[Finding]:
    if tid is None or not _GUID.match(settings.tenant) or tid.lower() == settings.tenant.lower():
        return []
    return [
        Finding(
            "stored_token",
            "problem",
            f"The stored token was issued by tenant {tid}, but the provider is configured for "
            f"tenant {settings.tenant}: Entra ID refuses an assertion from another tenant. The "
            "user must sign in again through your tenant (guests: sign in as a guest of it)",
        )
    ]


def _lifetime_finding(remaining: float | None, has_refresh_token: bool) -> Finding:
    if not has_refresh_token:
        return Finding(
            "stored_token",
            "problem",
            "No refresh token is stored: once the token expires the user must sign in again. "
            "Add 'offline_access' to the Microsoft provider's scopes",
        )
    if remaining is not None and remaining <= 0:
        return Finding(
            "stored_token",
            "info",
            "the stored token has expired; the plugin refreshes it with the stored refresh "
            "token on the next get_obo_token",
        )
    return Finding("stored_token", "ok", "a refresh token is stored")


async def _cached(
    auth: BetterAuth, store: OBOStore, user_id: str, current: str
) -> list[CachedSummary]:
    summaries = []
    for listed in await store.list(user_id):
        try:
            audience = read_claims(listed.access_token).aud
        except InvalidAssertionError:
            audience = None
        expires = listed.expires_at
        summaries.append(
            CachedSummary(
                application=listed.application,
                audience=audience,
                scopes=listed.scopes,
                expires_at=_iso(expires.timestamp() if expires else None),
                bound_to_current_sign_in=listed.bound_to == current,
            )
        )
    return summaries


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
