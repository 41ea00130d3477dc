"""The emulator's directory: tenants, users, app registrations, credentials,
consent grants, policies, issued codes and refresh tokens, and the request log.

Everything is guarded by one lock: the server thread and the test thread (or event
loop) share it, and every operation is short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._federation import ExternalIssuer, FederatedCredential, ManagedIdentity
from ._keys import make_certificate
from ._models import App, Certificate, Tenant, TokenRequest, User
from ._wire import new_guid, opaque

__all__ = ["CodeGrant", "DeviceGrant", "Directory", "RefreshGrant"]

ADMIN = "*"  # consent principal for tenant-wide (admin) consent


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeGrant:
    client_id: str
    redirect_uri: str
    user_oid: str
    tenant_id: str
    scopes: tuple[str, ...]
    nonce: str | None
    challenge: str | None
    challenge_method: str
    expires_at: float
    mfa: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshGrant:
    client_id: str
    user_oid: str
    tenant_id: str
    issued_at: float
    expires_at: float
    mfa: bool
    scope: str
    auth_time: float | None = None  # the sign-in behind it (CAE ``nbf``); None: issued_at


@dataclass(slots=True, kw_only=True)
class DeviceGrant:
    """A device-code sign-in: pending until a user approves it on ``/devicelogin``."""

    client_id: str
    tenant_id: str
    scope: str
    user_code: str
    expires_at: float
    user_oid: str | None = None
    redeemed: bool = False


class Directory:
    """Mutable emulator state behind one lock."""

    def __init__(self, *, clock: Callable[[], float], tenant_id: str, domain: str) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._default = Tenant(tenant_id=tenant_id, domain=domain, display_name="Contoso")
        #: ``(iss, kid) -> public key`` for tokens the tenant itself issued (managed
        #: identities as federated credentials); set by the running emulator.
        self.tenant_keys: Callable[[str, str], Any] = lambda iss, kid: None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.tenants: dict[str, Tenant] = {self._default.tenant_id: self._default}
            self.users: dict[str, User] = {}
            self.apps: dict[str, App] = {}
            self._secrets: dict[str, dict[str, bool]] = {}  # client_id -> {secret: expired}
            self._certs: dict[str, list[tuple[Certificate, RSAPublicKey]]] = {}
            self._federated: dict[str, list[FederatedCredential]] = {}
            self._external: dict[str, ExternalIssuer] = {}
            self._identities: dict[str, ManagedIdentity] = {}
            self._consents: set[tuple[str, str, str, str, str]] = set()
            self._mfa: list[tuple[str | None, str | None, int]] = []
            self._blocked: list[tuple[str | None, str | None]] = []
            self._lifetimes: dict[str | None, int] = {}
            self._revoked_before: dict[str, float] = {}
            self._cae_events: dict[str, float] = {}  # user oid -> last critical event
            self._codes: dict[str, CodeGrant] = {}
            self._redeemed: set[str] = set()
            self._refresh: dict[str, RefreshGrant] = {}
            self._devices: dict[str, DeviceGrant] = {}
            self._user_codes: dict[str, str] = {}
            self._log: list[TokenRequest] = []
            self.auto_user: str | None = None
            self.auto_any = False

    @property
    def default_tenant(self) -> Tenant:
        return self._default

    # -- tenants and users -------------------------------------------------------------------
    def add_tenant(self, domain: str, display_name: str, *, tenant_id: str | None = None) -> Tenant:
        tenant = Tenant(tenant_id=tenant_id or new_guid(), domain=domain, display_name=display_name)
        with self._lock:
            if tenant.tenant_id in self.tenants:
                raise ValueError(f"a tenant with id {tenant.tenant_id!r} already exists")
            self.tenants[tenant.tenant_id] = tenant
        return tenant

    def find_tenant(self, segment: str) -> Tenant | None:
        """A tenant by GUID or verified domain (case-insensitive)."""
        key = segment.lower()
        with self._lock:
            return next(
                (t for t in self.tenants.values() if key in (t.tenant_id, t.domain.lower())), None
            )

    def add_user(self, user: User) -> User:
        with self._lock:
            if any(u.upn.lower() == user.upn.lower() for u in self.users.values()):
                raise ValueError(f"a user with UPN {user.upn!r} already exists")
            self.users[user.oid] = user
        return user

    def user_by_upn(self, upn: str) -> User | None:
        key = upn.lower()
        with self._lock:
            return next((u for u in self.users.values() if u.upn.lower() == key), None)

    def users_in(self, tenant_id: str | None) -> list[User]:
        with self._lock:
            return [u for u in self.users.values() if tenant_id in (None, u.tenant_id)]

    # -- applications and credentials -------------------------------------------------------
    def add_app(self, app: App) -> App:
        app = replace(app, _directory=self)
        with self._lock:
            if any(a.name == app.name and a.tenant_id == app.tenant_id for a in self.apps.values()):
                raise ValueError(f"an app named {app.name!r} is already registered")
            self.apps[app.client_id] = app
            self._secrets[app.client_id] = (
                {} if app.client_secret is None else {app.client_secret: False}
            )
            self._certs[app.client_id] = []
        return app

    def add_certificate(self, client_id: str) -> Certificate:
        cert, public_key = make_certificate(f"CN={self.apps[client_id].name}")
        with self._lock:
            self._certs[client_id].append((cert, public_key))
        return cert

    def register_certificate(self, client_id: str, cert: Certificate) -> None:
        """Register an existing certificate (kept by the standalone server's state)."""
        public_key = x509.load_pem_x509_certificate(cert.certificate_pem.encode()).public_key()
        if not isinstance(public_key, RSAPublicKey):
            raise ValueError("a client certificate must hold an RSA key")
        with self._lock:
            self._certs[client_id].append((cert, public_key))

    def certificate_key(self, client_id: str, *, x5t: str | None, x5t_s256: str | None) -> Any:
        """The public key of the registered certificate with that thumbprint, or None."""
        with self._lock:
            for cert, key in self._certs.get(client_id, []):
                if (x5t and x5t == cert.x5t) or (x5t_s256 and x5t_s256 == cert.x5t_s256):
                    return key
        return None

    def remove_certificate(self, client_id: str, cert: Certificate) -> None:
        with self._lock:
            kept = [(c, k) for c, k in self._certs[client_id] if c.x5t != cert.x5t]
            if len(kept) == len(self._certs[client_id]):
                raise ValueError("that certificate is not registered on the app")
            self._certs[client_id] = kept

    # -- workload identity federation --------------------------------------------------------
    def add_federated_credential(self, client_id: str, credential: FederatedCredential) -> None:
        with self._lock:
            existing = self._federated.setdefault(client_id, [])
            if any(c.name == credential.name for c in existing):
                raise ValueError(f"a federated credential named {credential.name!r} exists")
            existing.append(credential)

    def federated_credentials(self, client_id: str) -> list[FederatedCredential]:
        with self._lock:
            return list(self._federated.get(client_id, ()))

    def add_external_issuer(self, issuer: ExternalIssuer) -> None:
        with self._lock:
            self._external[issuer.issuer] = issuer

    def external_issuer(self, url: str) -> ExternalIssuer | None:
        with self._lock:
            return self._external.get(url)

    def add_managed_identity(self, identity: ManagedIdentity) -> None:
        with self._lock:
            self._identities[identity.client_id] = identity

    def managed_identity(self, client_id: str) -> ManagedIdentity | None:
        with self._lock:
            return self._identities.get(client_id)

    def federation_key(self, iss: str, kid: str) -> Any:
        """The key that signed a federated token of ``iss``, or None: an external issuer's
        own key, or the tenant's (managed identity tokens)."""
        external = self.external_issuer(iss)
        return external.key(kid) if external is not None else self.tenant_keys(iss, kid)

    def add_secret(self, client_id: str) -> str:
        secret = opaque("emu~")
        with self._lock:
            self._secrets[client_id][secret] = False
        return secret

    def expire_secret(self, client_id: str, secret: str | None) -> None:
        with self._lock:
            secrets = self._secrets[client_id]
            for value in [secret] if secret else list(secrets):
                if value not in secrets:
                    raise ValueError("that secret is not registered on the app")
                secrets[value] = True

    def secret_state(self, client_id: str, secret: str) -> str:
        """``"valid"``, ``"expired"`` or ``"wrong"``."""
        with self._lock:
            expired = self._secrets.get(client_id, {}).get(secret)
        if expired is None:
            return "wrong"
        return "expired" if expired else "valid"

    def has_credentials(self, client_id: str) -> bool:
        with self._lock:
            return bool(
                self._secrets.get(client_id)
                or self._certs.get(client_id)
                or self._federated.get(client_id)
            )

    # -- consent -----------------------------------------------------------------------------
    def grant(
        self, tenant: str, client: str, principal: str, resource: str, perms: Iterable[str]
    ) -> None:
        with self._lock:
            self._consents.update((tenant, client, principal, resource, p) for p in perms)

    def revoke(self, client: str, *, resource: str | None, perms: Iterable[str] | None) -> None:
        wanted = set(perms) if perms is not None else None
        with self._lock:
            self._consents = {
                c
                for c in self._consents
                if not (
                    c[1] == client
                    and resource in (None, c[3])
                    and (wanted is None or c[4] in wanted)
                )
            }

    def consented(self, tenant: str, client: str, user: str | None, resource: str) -> set[str]:
        """Permissions on ``resource`` consented for ``client`` (admin, or this user)."""
        principals = {ADMIN, user}
        with self._lock:
            return {
                c[4]
                for c in self._consents
                if c[0] == tenant and c[1] == client and c[2] in principals and c[3] == resource
            }

    # -- policies ----------------------------------------------------------------------------
    def require_mfa(self, user: str | None, resource: str | None, code: int) -> None:
        with self._lock:
            self._mfa.append((user, resource, code))

    def mfa_code(self, user: str, resource: str) -> int | None:
        with self._lock:
            return next(
                (c for u, r, c in self._mfa if u in (None, user) and r in (None, resource)), None
            )

    def block(self, user: str | None, client: str | None) -> None:
        with self._lock:
            self._blocked.append((user, client))

    def is_blocked(self, user: str, client: str) -> bool:
        with self._lock:
            return any(u in (None, user) and c in (None, client) for u, c in self._blocked)

    def set_lifetime(self, resource: str | None, seconds: int) -> None:
        with self._lock:
            self._lifetimes[resource] = seconds

    def lifetime(self, resource: str, default: int) -> int:
        with self._lock:
            return self._lifetimes.get(resource, self._lifetimes.get(None, default))

    def revoke_sessions(self, user: str) -> None:
        with self._lock:
            self._revoked_before[user] = self._cae_events[user] = self.clock()

    def cae_event(self, user: str) -> float:
        """Record a CAE critical event for ``user`` now; returns its instant."""
        with self._lock:
            self._cae_events[user] = now = self.clock()
        return now

    def cae_event_time(self, user: str) -> float | None:
        with self._lock:
            return self._cae_events.get(user)

    # -- codes and refresh tokens -------------------------------------------------------------
    def issue_device_code(self, grant: DeviceGrant) -> str:
        device_code = opaque("1.emu-device.")
        with self._lock:
            self._devices[device_code] = grant
            self._user_codes[grant.user_code] = device_code
        return device_code

    def redeem_device(self, device_code: str, client_id: str, now: float) -> DeviceGrant | str:
        """The approved grant (now redeemed), or why not: ``unknown``, ``expired``,
        ``pending``."""
        with self._lock:
            grant = self._devices.get(device_code)
            if grant is None or grant.client_id != client_id or grant.redeemed:
                return "unknown"
            if grant.expires_at <= now:
                return "expired"
            if grant.user_oid is None:
                return "pending"
            grant.redeemed = True
            return grant

    def approve_device(self, user_code: str, user_oid: str) -> bool:
        """Sign the user in on the device code ``user_code``; False if there is none."""
        with self._lock:
            grant = self._devices.get(self._user_codes.get(user_code.strip().upper(), ""))
            if grant is None or grant.redeemed:
                return False
            grant.user_oid = user_oid
            return True

    def issue_code(self, grant: CodeGrant) -> str:
        code = opaque("1.emu-code.")
        with self._lock:
            self._codes[code] = grant
        return code

    def code_user(self, code: str) -> str | None:
        with self._lock:
            grant = self._codes.get(code)
        return grant.user_oid if grant else None

    def redeem_code(self, code: str) -> tuple[CodeGrant | None, bool]:
        """The grant (None if unknown) and whether it had been redeemed before."""
        with self._lock:
            grant = self._codes.get(code)
            again = code in self._redeemed
            self._redeemed.add(code)
        return grant, again

    def issue_refresh(self, grant: RefreshGrant) -> str:
        token = opaque("1.emu-rt.")
        with self._lock:
            self._refresh[token] = grant
        return token

    def refresh_grant(self, token: str) -> tuple[RefreshGrant | None, bool]:
        """The grant (None if unknown) and whether the user's sessions were revoked since."""
        with self._lock:
            grant = self._refresh.get(token)
            revoked = grant is not None and grant.issued_at <= self._revoked_before.get(
                grant.user_oid, float("-inf")
            )
        return grant, revoked

    # -- request log -------------------------------------------------------------------------
    def log(self, entry: TokenRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def log_entries(self) -> tuple[TokenRequest, ...]:
        with self._lock:
            return tuple(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
