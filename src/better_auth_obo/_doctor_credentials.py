"""Doctor checks of the credentials OBO authenticates with: which one, and until when.

- a secret: its expiry when known; a certificate: its notAfter (and its file for
  ``ClientCertificate.from_path``);
- a federated token: its issuer, subject and ``exp``, decoded and never printed (an expired
  token in a file means it is no longer renewed: Entra answers AADSTS700024);
- a managed identity: whether its endpoint answers, and the issuer / subject its token
  carries (what the app's federated identity credential must name).

From the environment (``AZURE_FEDERATED_TOKEN_FILE``, ``IDENTITY_ENDPOINT`` +
``IDENTITY_HEADER``) or from the plugin's ``credentials=[...]`` (``--auth``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from ._credentials import (
    CertificateFile,
    ClientCertificate,
    ClientSecret,
    FederatedAssertion,
    ManagedIdentityAssertion,
    credential_expiry_warnings,
)
from ._doctor_report import Finding
from ._errors import OBOError
from ._secretless import FEDERATED_TOKEN_FILE_ENV, HttpSource, unverified_claims

__all__ = ["plugin_credential_findings", "secretless_environment_findings"]

#: How long the doctor waits for a managed identity endpoint.
PROBE_TIMEOUT = 5.0
_CHECK = "credential"


# --- the environment ------------------------------------------------------------------------


def secretless_environment_findings(environ: Mapping[str, str], *, now: float) -> list[Finding]:
    """The federated token file and the App Service managed identity the environment names."""
    findings: list[Finding] = []
    path = environ.get(FEDERATED_TOKEN_FILE_ENV, "").strip()
    if path:
        findings.append(_federated_file(path, now))
    if environ.get("IDENTITY_ENDPOINT", "").strip() and environ.get("IDENTITY_HEADER", "").strip():
        findings.append(_probe_sync(ManagedIdentityAssertion(environ=environ), now))
    return findings


def _federated_file(path: str, now: float) -> Finding:
    try:
        token = Path(path).read_text("ascii", "replace").strip()
    except OSError as exc:
        return Finding(
            _CHECK, "problem", f"The federated token file {path} cannot be read: {exc.strerror}"
        )
    return _federated_finding(token, f"file {path}", now, subject=None)


def _probe_sync(identity: ManagedIdentityAssertion, now: float) -> Finding:
    params, headers = identity.request_parts()
    try:
        # Never through a proxy: the endpoint is on localhost (App Service) or link-local.
        with httpx.Client(trust_env=False, timeout=PROBE_TIMEOUT) as client:
            response = client.get(identity.endpoint, params=params, headers=headers)
        answer = identity.read_answer(response)
    except httpx.HTTPError as exc:
        return _unreachable(identity, f"{type(exc).__name__}", None)
    except OBOError as exc:
        return _unreachable(identity, exc.message, None)
    return _reachable(identity, answer.token, answer.expires_at, now, None)


# --- the plugin's credentials ---------------------------------------------------------------


async def plugin_credential_findings(
    credentials: Sequence[tuple[str, Any]], *, now: float, http: HttpSource | None
) -> list[Finding]:
    """One finding per credential of the plugin (``(label, credential)`` pairs)."""
    findings: list[Finding] = []
    for label, credential in credentials:
        findings.append(await _credential_finding(label, credential, now, http))
    return findings


async def _credential_finding(
    label: str, credential: Any, now: float, http: HttpSource | None
) -> Finding:
    if isinstance(credential, (ClientSecret, ClientCertificate, CertificateFile)):
        return _dated(label, credential, now)
    if isinstance(credential, FederatedAssertion):
        try:
            token = await credential.assertion()
        except OBOError as exc:
            return Finding(_CHECK, "problem", exc.message, subject=label)
        return _federated_finding(token, credential.source, now, subject=label)
    if isinstance(credential, ManagedIdentityAssertion):
        try:
            token = await asyncio.wait_for(credential.assertion(http), PROBE_TIMEOUT)
        except (OBOError, asyncio.TimeoutError) as exc:
            why = exc.message if isinstance(exc, OBOError) else "no answer in time"
            return _unreachable(credential, why, label)
        expires = credential.expires_at
        at = expires.timestamp() if expires is not None else None
        return _reachable(credential, token, at, now, label)
    return Finding(_CHECK, "info", f"a {type(credential).__name__}", subject=label)


def _dated(label: str, credential: Any, now: float) -> Finding:
    stamp = datetime.fromtimestamp(now, timezone.utc)
    warnings = credential_expiry_warnings([(label, credential)], now=stamp)
    if warnings:
        return Finding(_CHECK, "problem", warnings[0], subject=label)
    if isinstance(credential, ClientSecret):
        until = f", expires {_day(credential.expires_at)}" if credential.expires_at else ""
        return Finding(_CHECK, "ok", f"client secret{until}", subject=label)
    where = f", file {credential.path}" if isinstance(credential, CertificateFile) else ""
    message = (
        f"certificate SHA-1 {credential.thumbprint_sha1} ({credential.subject}), "
        f"valid until {_day(credential.not_after)}{where}"
    )
    return Finding(_CHECK, "ok", message, subject=label)


# --- shared -----------------------------------------------------------------------------------


def _federated_finding(token: str, source: str, now: float, *, subject: str | None) -> Finding:
    """Judge a federated token by its claims; the token itself never leaves here."""
    claims = unverified_claims(token)
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        message = f"The federated token ({source}) is not a JWT with an expiry (exp)"
        return Finding(_CHECK, "problem", message, subject=subject)
    who = f"issuer {claims.get('iss')}, subject {claims.get('sub')}, audience {claims.get('aud')}"
    when = _stamp(float(exp))
    if exp <= now:
        message = (
            f"The federated token ({source}; {who}) expired at {when}: Entra ID refuses it "
            "(AADSTS700024). Its source no longer renews it: on Kubernetes check the pod's "
            "workload identity label and service account (the token is projected hourly)"
        )
        return Finding(_CHECK, "problem", message, subject=subject)
    minutes = int((exp - now) // 60)
    message = f"federated token ({source}): {who}; expires {when} (in {minutes} min)"
    return Finding(_CHECK, "ok", message, subject=subject)


def _reachable(
    identity: ManagedIdentityAssertion,
    token: str,
    expires_at: float | None,
    now: float,
    subject: str | None,
) -> Finding:
    claims = unverified_claims(token)
    until = f"valid until {_stamp(expires_at)}" if expires_at is not None else "no expiry given"
    message = (
        f"managed identity via {_where(identity)}: reachable, token for {identity.resource} "
        f"{until}; the app's federated identity credential must name issuer "
        f"{claims.get('iss')} and subject {claims.get('sub')}"
    )
    return Finding(_CHECK, "ok", message, subject=subject)


def _unreachable(identity: ManagedIdentityAssertion, why: str, subject: str | None) -> Finding:
    message = (
        f"The managed identity via {_where(identity)} gave no token: {why}. Assign a managed "
        "identity to this App Service / Container App / VM (and pass client_id= for a "
        "user-assigned one)"
    )
    return Finding(_CHECK, "problem", message, subject=subject)


def _where(identity: ManagedIdentityAssertion) -> str:
    if identity.protocol == "app_service":
        return f"IDENTITY_ENDPOINT {identity.endpoint}"
    return f"IMDS {identity.endpoint}"


def _stamp(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # exp of 1e20 or Infinity: say so, no crash
        return f"an impossible time ({epoch!r})"


def _day(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d") if value is not None else "-"
