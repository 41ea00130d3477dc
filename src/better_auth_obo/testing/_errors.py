"""Entra ID's error catalogue and the one place errors become JSON bodies.

Handlers *raise* ``EntraError(code, **fields)``; ``render`` turns it into the body
Entra sends (reference-error-codes.md; shapes from recorded real responses):
``error``, ``error_description`` = ``AADSTS<n>: <message> Trace ID: … Correlation ID: …
Timestamp: …``, ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``,
``error_uri`` (most codes), ``suberror`` and ``claims`` (claims challenges).
``invalid_client`` answers 401, every other class 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._wire import entra_timestamp

__all__ = ["CATALOGUE", "CHALLENGE_CLAIMS", "EntraError", "ErrorSpec", "render"]


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One AADSTS code: its OAuth error class, message template and extras."""

    error: str
    template: str
    suberror: str | None = None
    error_uri: bool = True


_TENANT_NOT_FOUND = (
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
    "signing into the correct cloud. Check with your subscription administrator, this may "
    "happen if there are no active subscriptions for the tenant."
)
_NOT_INSTALLED = (
    "This can happen if the application has not been installed by the administrator of the "
    "tenant or consented to by any user in the tenant. You may have sent your authentication "
    "request to the wrong tenant."
)
_MFA = (
    "Due to a configuration change made by your administrator, or because you moved to a new "
    "location, you must {verb} multi-factor authentication to access '{resource}'."
)
_FIC_DOC = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_FIC_CHECK = (
    "Please check your federated identity credential Subject, Audience and Issuer against the "
    "presented assertion. " + _FIC_DOC
)

CATALOGUE: dict[int, ErrorSpec] = {
    50011: ErrorSpec(
        "invalid_request",
        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
        "URIs configured for the application '{client_id}'. Make sure the redirect URI sent in "
        "the request matches one added to your application in the Azure portal.",
    ),
    50013: ErrorSpec("invalid_grant", "Assertion failed signature validation. [Reason - {reason}]"),
    50020: ErrorSpec(
        "invalid_grant",
        "User account '{upn}' from identity provider '{idp}' does not exist in tenant '{tenant}' "
        "and cannot access the application '{client_id}'({app_name}) in that tenant. The account "
        "needs to be added as an external user in the tenant first.",
    ),
    50027: ErrorSpec("invalid_request", "JWT token is invalid or malformed."),
    50048: ErrorSpec(
        "invalid_client",
        "Subject mismatches Issuer claim in the client assertion for application '{client_id}'.",
    ),
    50058: ErrorSpec(
        "login_required", "A silent sign-in request was sent but no user is signed in."
    ),
    50076: ErrorSpec(
        "interaction_required", _MFA.replace("{verb}", "use"), "basic_action", error_uri=False
    ),
    50079: ErrorSpec(
        "interaction_required", _MFA.replace("{verb}", "enroll in"), "basic_action", False
    ),
    50173: ErrorSpec(
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password.",
    ),
    50194: ErrorSpec(
        "invalid_request",
        "Application '{client_id}'({app_name}) is not configured as a multi-tenant application. "
        "Usage of the /common endpoint is not supported for such applications created after "
        "'10/15/2018'. Use a tenant-specific endpoint or configure the application to be "
        "multi-tenant.",
    ),
    53003: ErrorSpec(
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
    ),
    54005: ErrorSpec(
        "invalid_grant",
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
        "use an existing refresh token.",
    ),
    65001: ErrorSpec(
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named '{app_name}'. Send an interactive authorization request for this "
        "user and resource.",
        "consent_required",
        error_uri=False,
    ),
    65004: ErrorSpec("access_denied", "User declined to consent to access the app."),
    70000: ErrorSpec("invalid_grant", "Provided grant is invalid or malformed. {reason}"),
    70016: ErrorSpec(
        "authorization_pending",
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    ),
    70020: ErrorSpec(
        "expired_token",
        "The provided value for the input parameter 'device_code' is not valid. This device "
        "code has expired.",
    ),
    # Workload identity federation (bodies quoted in Azure/azure-workload-identity #616, #1200).
    70021: ErrorSpec(
        "invalid_client",
        "No matching federated identity record found for presented assertion. Assertion "
        "Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. "
        + _FIC_DOC,
    ),
    700211: ErrorSpec(
        "invalid_client",
        "No matching federated identity record found for presented assertion issuer "
        "'{issuer}'. " + _FIC_CHECK,
    ),
    700212: ErrorSpec(
        "invalid_client",
        "No matching federated identity record found for presented assertion audience "
        "'{audience}'. " + _FIC_CHECK,
    ),
    700213: ErrorSpec(
        "invalid_client",
        "No matching federated identity record found for presented assertion subject "
        "'{subject}'. " + _FIC_CHECK,
    ),
    70003: ErrorSpec(
        "unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'."
    ),
    70008: ErrorSpec(
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send a "
        "new interactive authorization request for this user and resource.",
    ),
    70011: ErrorSpec(
        "invalid_scope",
        "The provided value for the input parameter 'scope' isn't valid. The scope {scope} "
        "isn't valid.",
    ),
    90002: ErrorSpec("invalid_request", _TENANT_NOT_FOUND),
    90009: ErrorSpec(
        "invalid_request",
        "Application '{client_id}'({app_name}) is requesting a token for itself. This scenario "
        "is supported only if resource is specified using the GUID based App Identifier.",
    ),
    90100: ErrorSpec(
        "invalid_request", "The parameter '{parameter}' is empty or not valid. {reason}"
    ),
    240002: ErrorSpec(
        "invalid_grant",
        "Input id_token cannot be used as 'urn:ietf:params:oauth:grant-type:jwt-bearer' grant.",
    ),
    500011: ErrorSpec(
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named {tenant}. "
        + _NOT_INSTALLED,
    ),
    500131: ErrorSpec(
        "invalid_grant",
        "Assertion audience does not match the Client app presenting the assertion. The "
        "audience in the assertion was '{audience}' and the expected audience is '{client_id}' "
        "or one of the Application Id URIs of this client app.",
    ),
    500133: ErrorSpec(
        "invalid_grant",
        "Assertion is not within its valid time range. Ensure that the access token is not "
        "expired before using it for user assertion, or request a new token. Current time: "
        "{now}, expiry time of assertion {exp}.",
    ),
    501481: ErrorSpec(
        "invalid_grant",
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    ),
    700016: ErrorSpec(
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        + _NOT_INSTALLED,
    ),
    700022: ErrorSpec(
        "invalid_scope",
        "The provided value for the input parameter scope is not valid because it contains more "
        "than one resource. Scope {scope} is not valid.",
    ),
    700023: ErrorSpec(
        "invalid_client",
        "Client assertion audience claim does not match Realm issuer. Review the documentation "
        "at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    700024: ErrorSpec(
        "invalid_client",
        "Client assertion is not within its valid time range. Current time: {now}, assertion "
        "valid from {nbf}, expiry time of assertion {exp}. Review the documentation at "
        "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    700025: ErrorSpec(
        "invalid_client",
        "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    ),
    700027: ErrorSpec(
        "invalid_client",
        "Client assertion failed signature validation. [Reason - {reason}, Thumbprint of key "
        "used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or "
        "directly use MS Graph to see configured keys for app Id '{client_id}'.]",
    ),
    900144: ErrorSpec(
        "invalid_request", "The request body must contain the following parameter: '{parameter}'."
    ),
    1002012: ErrorSpec(
        "invalid_scope",
        "The provided value for scope {scope} is not valid. Client credential flows must have a "
        "scope value with /.default suffixed to the resource identifier (application ID URI).",
    ),
    7000215: ErrorSpec(
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
    ),
    7000218: ErrorSpec(
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    7000222: ErrorSpec(
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure "
        "portal to create new keys for your app, or consider using certificate credentials for "
        "added security.",
    ),
    9002313: ErrorSpec("invalid_grant", "Invalid request. Request is malformed or invalid."),
}


#: A Conditional Access claims challenge (claims-challenge.md): a JSON *string* the
#: client passes back as ``claims`` on its next interactive request.
CHALLENGE_CLAIMS = (
    '{"access_token":{"capolids":{"essential":true,"values":'
    '["9ab03e19-ed42-4168-b6b7-7001fb3e933a"]}}}'
)


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "unknown"


class EntraError(Exception):
    """An AADSTS error raised by a handler; ``render`` turns it into Entra's body."""

    def __init__(
        self,
        code: int,
        *,
        error: str | None = None,
        claims: str | None = None,
        suberror: str | None = None,
        **fields: object,
    ) -> None:
        spec = CATALOGUE[code]
        self.code = code
        self.spec = spec
        self.error = error or spec.error
        self.suberror = suberror or spec.suberror
        if claims is None and self.suberror == "basic_action":
            claims = CHALLENGE_CLAIMS
        self.claims = claims
        self.message = spec.template.format_map(_Fields(fields)).strip()
        super().__init__(f"AADSTS{code}: {self.message}")

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400


def render(
    exc: EntraError, *, authority: str, trace_id: str, correlation_id: str, now: float
) -> dict[str, Any]:
    """Entra's JSON error body for ``exc``."""
    stamp = entra_timestamp(now)
    body: dict[str, Any] = {
        "error": exc.error,
        "error_description": (
            f"AADSTS{exc.code}: {exc.message} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    if exc.spec.error_uri:
        body["error_uri"] = f"{authority}/error?code={exc.code}"
    if exc.suberror:
        body["suberror"] = exc.suberror
    if exc.claims is not None:
        body["claims"] = exc.claims
    return body
