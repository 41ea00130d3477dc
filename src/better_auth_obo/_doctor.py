"""``better-auth-obo doctor``: check an Entra ID / Better Auth configuration, explain each problem.

Two inputs, one set of checks:

- the environment (``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``, ``AZURE_TENANT_ID``,
  ``AZURE_SCOPES``, ``OBO_APPLICATIONS`` as JSON, ``AZURE_CLIENT_CERTIFICATE_PATH``),
  read from a mapping the caller passes (never ``os.environ`` behind its back);
- an app's ``BetterAuth`` instance: its Microsoft provider and its ``OBOPlugin``,
  and with a user id, that user's stored Microsoft token (decoded, never printed).

Either way the credential in use is reported with its expiry (``_doctor_credentials``):
a certificate's notAfter, a federated token's ``exp``, a managed identity's reachability.

The checks themselves live where the plugin uses them (``_assertion``, ``_provider``):
the doctor reports what the plugin would warn about or refuse, before it does.

Example::

    report = check_environment({"AZURE_CLIENT_ID": "...", "AZURE_TENANT_ID": "common"}, now=now)
    report.ok          # False: the tenant is not specific
    print(render_text(report))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._assertion import application_scope_problems, provider_scope_warnings
from ._config import normalize_applications
from ._doctor_credentials import plugin_credential_findings, secretless_environment_findings
from ._doctor_report import Finding, Report
from ._doctor_token import certificate_findings, stored_token_findings
from ._errors import ConfigurationError
from ._provider import DEFAULT_AUTHORITY, MicrosoftSettings, read_microsoft_settings

if TYPE_CHECKING:
    from better_auth import BetterAuth

__all__ = [
    "HOST_DEFAULT_SCOPES",
    "application_findings",
    "check_auth",
    "check_environment",
    "find_obo_plugin",
    "provider_findings",
]

#: The host's default Microsoft scopes: what a provider without ``scopes`` asks for.
HOST_DEFAULT_SCOPES = ("openid", "profile", "email", "User.Read", "offline_access")
_PLACEHOLDER_CLIENT_ID = "<client-id>"


# --- inputs -------------------------------------------------------------------------------


def check_environment(environ: Mapping[str, str], *, now: float) -> Report:
    """Check the configuration given by environment variables (passed in as a mapping)."""
    report = Report(source="environment")
    client_id = environ.get("AZURE_CLIENT_ID", "").strip()
    if not client_id:
        report.findings.append(
            Finding(
                "client_id",
                "problem",
                "AZURE_CLIENT_ID is not set: give the app's "
                "Application (client) ID from its Entra ID app registration",
            )
        )
    raw_scopes = environ.get("AZURE_SCOPES", "").replace(",", " ").split()
    scopes = tuple(raw_scopes) if raw_scopes else HOST_DEFAULT_SCOPES
    settings = MicrosoftSettings(
        client_id or _PLACEHOLDER_CLIENT_ID,
        environ.get("AZURE_TENANT_ID", "").strip() or "common",
        (environ.get("AZURE_AUTHORITY_HOST", "").strip() or DEFAULT_AUTHORITY).rstrip("/"),
        scopes,
        None,
    )
    certificate = environ.get("AZURE_CLIENT_CERTIFICATE_PATH", "").strip() or None
    report.findings.append(_env_credentials(environ, certificate))
    report.findings.extend(provider_findings(settings, defaulted=not raw_scopes))
    report.findings.extend(certificate_findings(certificate, environ, now=now))
    report.findings.extend(secretless_environment_findings(environ, now=now))
    report.findings.extend(_env_applications(environ.get("OBO_APPLICATIONS")))
    return report


async def check_auth(
    auth: BetterAuth,
    *,
    user_id: str | None = None,
    certificate: str | None = None,
    environ: Mapping[str, str] | None = None,
    now: float,
) -> Report:
    """Check an app's BetterAuth instance; with ``user_id``, also that user's stored token."""
    report = Report(source="auth")
    report.findings.append(_auth_credentials(auth))
    provider = auth.social_providers.get("microsoft")
    settings = _settings_of(provider) if provider is not None else None
    if settings is not None:
        defaulted = settings.scopes == HOST_DEFAULT_SCOPES
        report.findings.extend(provider_findings(settings, defaulted=defaulted))
    report.findings.extend(certificate_findings(certificate, environ or {}, now=now))
    plugin = find_obo_plugin(auth)
    if plugin is None:
        report.findings.append(
            Finding(
                "plugin",
                "problem",
                "No OBOPlugin in this BetterAuth instance's plugins: add "
                "OBOPlugin(applications={...}) to BetterAuth(plugins=[...])",
            )
        )
    else:
        apps = {name: app.scope for name, app in plugin.applications.items()}
        report.findings.extend(application_findings(apps))
        report.findings.extend(await _plugin_credentials(plugin, now=now))
    if user_id is not None and settings is not None:
        await stored_token_findings(report, auth, user_id, settings, now=now)
    return report


def find_obo_plugin(auth: BetterAuth) -> Any:
    """The OBOPlugin among ``auth.plugins``, or None."""
    from ._plugin import OBOPlugin

    return next((p for p in auth.plugins if isinstance(p, OBOPlugin)), None)


# --- checks -------------------------------------------------------------------------------


def provider_findings(settings: MicrosoftSettings, *, defaulted: bool = False) -> list[Finding]:
    """Tenant and sign-in scopes of the Microsoft provider."""
    findings: list[Finding] = []
    if settings.multi_tenant:
        findings.append(
            Finding(
                "tenant",
                "problem",
                f"The tenant is {settings.tenant!r}, not a specific tenant: On-Behalf-Of "
                "must call your own tenant's token endpoint (guest users get a token from "
                "their home tenant otherwise, and multi-tenant sign-in cannot be pinned). "
                "Set tenant_id (AZURE_TENANT_ID) to your tenant's GUID",
            )
        )
    else:
        findings.append(Finding("tenant", "ok", f"tenant {settings.tenant}"))
    client_id = settings.client_id
    where = " (the provider's defaults: no scopes configured)" if defaulted else ""
    problems = provider_scope_warnings(settings.scopes, client_id=client_id)
    for problem in problems:
        findings.append(Finding("provider_scopes", "problem", problem + where))
    if not problems:
        findings.append(
            Finding("provider_scopes", "ok", "sign-in scopes " + " ".join(settings.scopes))
        )
    return findings


def application_findings(applications: Mapping[str, Sequence[str]]) -> list[Finding]:
    """Each OBO application's scopes: one resource, no '.default' mixed with named scopes."""
    findings: list[Finding] = []
    for name, scopes in applications.items():
        problems = application_scope_problems(scopes)
        for problem in problems:
            findings.append(Finding("application_scopes", "problem", problem, subject=name))
        if not problems:
            findings.append(Finding("application_scopes", "ok", " ".join(scopes), subject=name))
    return findings


def _env_credentials(environ: Mapping[str, str], certificate: str | None) -> Finding:
    if environ.get("AZURE_CLIENT_SECRET"):
        return Finding("credentials", "ok", "client secret (AZURE_CLIENT_SECRET)")
    if certificate:
        return Finding("credentials", "ok", "certificate (AZURE_CLIENT_CERTIFICATE_PATH)")
    if environ.get("AZURE_FEDERATED_TOKEN_FILE"):
        return Finding("credentials", "ok", "federated credential (AZURE_FEDERATED_TOKEN_FILE)")
    if environ.get("IDENTITY_ENDPOINT") and environ.get("IDENTITY_HEADER"):
        return Finding(
            "credentials", "ok", "managed identity as a federated credential (IDENTITY_ENDPOINT)"
        )
    return Finding(
        "credentials",
        "problem",
        "No client credential: Entra ID allows On-Behalf-Of only for confidential clients. "
        "Set AZURE_CLIENT_SECRET (a secret from 'Certificates & secrets'), or "
        "AZURE_CLIENT_CERTIFICATE_PATH, or a federated credential (AZURE_FEDERATED_TOKEN_FILE, "
        "or a managed identity: IDENTITY_ENDPOINT and IDENTITY_HEADER)",
    )


def _auth_credentials(auth: BetterAuth) -> Finding:
    try:
        settings = read_microsoft_settings(auth)
    except ConfigurationError as exc:
        return Finding("credentials", "problem", exc.message)
    method = getattr(getattr(settings.provider, "token_endpoint_auth", None), "method", None)
    if method and method not in ("client_secret_post", "client_secret_basic"):
        return Finding("credentials", "ok", f"client authentication {method}")
    return Finding("credentials", "ok", "client secret")


async def _plugin_credentials(plugin: Any, *, now: float) -> list[Finding]:
    """The plugin's own ``credentials=[...]``, each with its expiry or reachability. A
    managed identity is probed with a client of its own, closed at once (the app's client
    would keep a connection open past this one-shot event loop)."""
    labelled = getattr(plugin, "_credentials", None) or []
    return await plugin_credential_findings(labelled, now=now, http=None)


def _settings_of(provider: Any) -> MicrosoftSettings:
    """The provider's settings, even when its credentials are missing (to check the rest)."""
    client_id = provider.client_id
    if isinstance(client_id, list):
        client_id = client_id[0] if client_id else ""
    scopes = () if provider.disable_default_scope else tuple(provider.scopes or ())
    return MicrosoftSettings(
        client_id or _PLACEHOLDER_CLIENT_ID,
        provider.tenant_id or "common",
        (provider.authority or DEFAULT_AUTHORITY).rstrip("/"),
        scopes,
        provider,
    )


def _env_applications(raw: str | None) -> list[Finding]:
    if not raw or not raw.strip():
        return [
            Finding("applications", "info", "OBO_APPLICATIONS is not set: no application checked")
        ]
    try:
        parsed = json.loads(raw)
        apps = normalize_applications(parsed)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return [Finding("applications", "problem", f"OBO_APPLICATIONS is not usable: {exc}")]
    except TypeError as exc:
        return [Finding("applications", "problem", f"OBO_APPLICATIONS is not usable: {exc}")]
    return application_findings({name: app.scope for name, app in apps.items()})
