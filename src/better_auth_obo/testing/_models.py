"""Frozen records the emulator hands out: tenants, users, app registrations,
certificates and token-request log entries.

Reprs never show a secret, a private key or a token: those fields are excluded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._federation import FederatedCredential
    from ._state import Directory

__all__ = ["App", "Certificate", "Tenant", "TokenRequest", "User"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A directory: its GUID and its verified domain."""

    tenant_id: str
    domain: str
    display_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A user object in one tenant. ``oid`` is Microsoft Graph's ``id``.

    A guest (see ``EntraEmulator.invite``) is its own object in the resource tenant,
    with its own ``oid``; ``home_tenant_id``/``home_oid`` point at the original.
    """

    oid: str
    upn: str
    display_name: str
    tenant_id: str
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    home_tenant_id: str | None = None
    home_oid: str | None = None

    @property
    def is_guest(self) -> bool:
        return self.home_tenant_id is not None and self.home_tenant_id != self.tenant_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """A certificate credential registered on an app.

    ``private_key_pem`` and ``certificate_pem`` are what MSAL and azure-identity take;
    ``thumbprint`` is the SHA-1 hex digest MSAL's ``{"thumbprint": ...}`` form wants.
    """

    certificate_pem: str
    private_key_pem: str = field(repr=False)
    thumbprint: str
    thumbprint_sha256: str
    x5t: str
    x5t_s256: str

    @property
    def pem_bundle(self) -> bytes:
        """Key and certificate in one PEM, as azure-identity's ``client_certificate``."""
        return (self.private_key_pem + self.certificate_pem).encode()

    def msal_credential(self, *, sha256: bool = False) -> dict[str, str]:
        """MSAL's ``client_credential``: RS256 + ``x5t``; with ``sha256``, PS256 + ``x5t#S256``."""
        if sha256:
            return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}
        return {"private_key": self.private_key_pem, "thumbprint": self.thumbprint}


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    """An app registration (and its service principal).

    ``client_secret`` is ``None`` for a public client. ``scopes`` are the delegated
    permissions it exposes (``api://<client_id>/<scope>``), ``roles`` its app roles.
    """

    name: str
    client_id: str
    client_secret: str | None = field(repr=False)
    app_id_uri: str
    tenant_id: str
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    multi_tenant: bool = False
    access_token_version: int = 2
    service_principal_id: str = ""
    _directory: Directory | None = field(default=None, repr=False, compare=False)

    @property
    def public_client(self) -> bool:
        return self.client_secret is None

    def scope(self, name: str) -> str:
        """The full scope string another app asks for: ``api://<client_id>/<name>``."""
        return f"{self.app_id_uri}/{name}"

    def add_certificate(self) -> Certificate:
        """Generate a key pair and self-signed certificate and register it on this app."""
        if self._directory is None:
            raise RuntimeError("this App is not attached to an emulator")
        return self._directory.add_certificate(self.client_id)

    def remove_certificate(self, certificate: Certificate) -> None:
        """Delete a certificate from this app: assertions it signs get AADSTS700027."""
        self._attached().remove_certificate(self.client_id, certificate)

    def add_federated_credential(
        self,
        *,
        issuer: str,
        subject: str,
        audiences: Iterable[str] = ("api://AzureADTokenExchange",),
        name: str | None = None,
    ) -> FederatedCredential:
        """Trust tokens of ``issuer`` about ``subject`` (exact, case-sensitive) whose ``aud``
        is one of ``audiences`` as this app's client assertion (workload identity
        federation). For a managed identity: its ``.issuer`` and ``.subject``."""
        from ._federation import FederatedCredential

        credential = FederatedCredential(
            name=name or f"fic-{len(self._attached().federated_credentials(self.client_id))}",
            issuer=issuer,
            subject=subject,
            audiences=tuple(audiences),
        )
        if not (issuer and subject and credential.audiences):
            raise ValueError("issuer, subject and at least one audience are required")
        self._attached().add_federated_credential(self.client_id, credential)
        return credential

    def _attached(self) -> Directory:
        if self._directory is None:
            raise RuntimeError("this App is not attached to an emulator")
        return self._directory


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRequest:
    """One token-endpoint request as the emulator saw it. Never holds a secret,
    an assertion, a code or a token."""

    timestamp: float
    tenant: str
    grant_type: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    user_oid: str | None
    auth_method: str | None
    status: int
    error_code: int | None
    correlation_id: str
    fault: str | None = None
    claims: str | None = None  # a well-formed ``claims`` parameter, as sent
