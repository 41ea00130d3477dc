"""What the plugin takes from better-auth-server's Microsoft provider.

Client id, tenant, authority (so sovereign clouds and the local emulator work alike)
and the provider's own client authentication (secret post / basic, or
``client_assertion`` private_key_jwt), applied with the host's
``apply_token_endpoint_auth`` so both send exactly the same credentials.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from better_auth.oauth.machinery import (
    OAuthFetchError,
    apply_token_endpoint_auth,
    get_primary_client_id,
)

from ._assertion import provider_scope_warnings
from ._entra import ClientAuthenticator
from ._errors import ConfigurationError, OBOConfigurationWarning
from ._verify import MULTI_TENANT_ALIASES

if TYPE_CHECKING:
    from better_auth import BetterAuth

__all__ = [
    "MULTI_TENANT_ALIASES",
    "MicrosoftSettings",
    "configuration_warnings",
    "id_token_sign_in_notice",
    "read_microsoft_settings",
    "warn",
]

logger = logging.getLogger("better_auth_obo")

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


@dataclass(frozen=True, slots=True)
class MicrosoftSettings:
    """The Microsoft provider's settings as the exchange needs them (no secret in repr)."""

    client_id: str
    tenant: str
    authority: str
    scopes: tuple[str, ...]
    provider: Any  # the MicrosoftEntraId instance; its credentials stay there
    #: The claim the provider keys Microsoft accounts by (``account.accountId``).
    account_id_claim: str = "oid"
    #: True while the provider accepts ID-token sign-in (``POST /sign-in/social`` with
    #: ``idToken``), which stores the access token the client sent, unverified.
    id_token_sign_in: bool = False

    def __repr__(self) -> str:
        return (
            f"MicrosoftSettings(client_id={self.client_id!r}, tenant={self.tenant!r}, "
            f"authority={self.authority!r})"
        )

    @property
    def multi_tenant(self) -> bool:
        return self.tenant.lower() in MULTI_TENANT_ALIASES

    def authenticator(self, token_endpoint: str) -> ClientAuthenticator:
        """Client authentication for requests to ``token_endpoint``, as the provider does it."""
        provider = self.provider

        async def authenticate(body: dict[str, str], headers: dict[str, str], grant: str) -> None:
            try:
                await apply_token_endpoint_auth(
                    body,
                    headers,
                    client_id=provider.client_id,
                    client_secret=provider.client_secret,
                    token_endpoint=token_endpoint,
                    grant_type=grant,
                    token_endpoint_auth=provider.token_endpoint_auth,
                    authentication=provider.authentication,
                )
            except OAuthFetchError as exc:
                raise ConfigurationError(
                    f"The Microsoft provider's client authentication is misconfigured: {exc}"
                ) from None

        return authenticate


def read_microsoft_settings(auth: BetterAuth) -> MicrosoftSettings:
    """Settings from ``auth.social_providers['microsoft']``; ConfigurationError if unusable."""
    provider = auth.social_providers.get("microsoft")
    if provider is None:
        raise ConfigurationError(
            "No Microsoft provider: add social_providers={'microsoft': {'client_id': ..., "
            "'client_secret': ..., 'tenant_id': '<tenant GUID>'}} to BetterAuth"
        )
    client_id = get_primary_client_id(getattr(provider, "client_id", "") or "")
    if not client_id:
        raise ConfigurationError("The Microsoft provider has no client_id")
    has_secret = bool(getattr(provider, "client_secret", ""))
    auth_method = getattr(getattr(provider, "token_endpoint_auth", None), "method", None)
    if not has_secret and auth_method in (None, "none"):
        raise ConfigurationError(
            "The Microsoft provider has neither a client_secret nor a client_assertion: "
            "Entra ID allows On-Behalf-Of only for confidential clients; set one of them"
        )
    authority = (getattr(provider, "authority", None) or DEFAULT_AUTHORITY).rstrip("/")
    tenant = getattr(provider, "tenant_id", None) or "common"
    scopes: list[str] = [] if provider.disable_default_scope else list(provider.scopes or [])
    return MicrosoftSettings(
        client_id,
        tenant,
        authority,
        tuple(scopes),
        provider,
        account_id_claim=str(getattr(provider, "account_id_claim", None) or "oid"),
        id_token_sign_in=not getattr(provider, "disable_id_token_sign_in", False),
    )


def configuration_warnings(settings: MicrosoftSettings) -> list[str]:
    """Everything about the provider that will make OBO fail or misbehave, with the fix."""
    problems: list[str] = []
    if settings.multi_tenant:
        problems.append(
            f"The Microsoft provider's tenant is {settings.tenant!r}: On-Behalf-Of needs a "
            "specific tenant (guest users get their home tenant's token otherwise). Set "
            "tenant_id to your tenant's GUID; until then each exchange goes to the tenant "
            "in the user's token"
        )
    problems.extend(provider_scope_warnings(settings.scopes, client_id=settings.client_id))
    return problems


def id_token_sign_in_notice(settings: MicrosoftSettings) -> str | None:
    """Start-up advice when the provider accepts ID-token sign-in (logged, not a warning
    category: it is the host's default and, with the verification, not a fault)."""
    if not settings.id_token_sign_in:
        return None
    return (
        "The Microsoft provider accepts ID-token sign-in (POST /sign-in/social with "
        "idToken), which stores whatever access token the client sends. better-auth-obo "
        "verifies that token before every exchange (signature, issuer, audience, tenant, "
        f"and that its {settings.account_id_claim} is the signed-in account's), so a "
        "planted token is refused; if your app does not use ID-token sign-in, set "
        "disable_id_token_sign_in=True on the provider"
    )


def warn(problems: list[str]) -> None:
    """Log each problem and issue it as an OBOConfigurationWarning."""
    for problem in problems:
        logger.warning("better-auth-obo configuration: %s", problem)
        warnings.warn(problem, OBOConfigurationWarning, stacklevel=4)
