"""``EntraEmulator``: the public face of the emulator."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING

from ._faults import Faults
from ._federation import ExternalIssuer, ManagedIdentity
from ._keys import KeySet, SigningKey
from ._models import App, Certificate, Tenant, TokenRequest, User
from ._scopes import GRAPH, Resource, named_permissions, resolve_audience
from ._server import ServerThread, build_app
from ._state import ADMIN, Directory
from ._tokens import Grant, TokenIssuer
from ._wire import new_guid, opaque

if TYPE_CHECKING:
    import trustme

__all__ = ["EntraEmulator"]


class EntraEmulator:
    """A local Microsoft Entra ID (v2.0 endpoints) on 127.0.0.1, with TLS.

    Example::

        with EntraEmulator() as entra:
            api = entra.register_app("middle-tier", scopes=["access_as_user"])
            entra.grant_consent(api, "https://graph.microsoft.com/User.Read")
            user = entra.add_user("Ada Lovelace", "ada@contoso.example")
            assertion = entra.issue_token(user, audience=api, scopes=["access_as_user"])
            # POST entra.token_endpoint() with the OBO grant, trusting entra.ca_file

    Use it from sync code (``with``) or inside a running event loop (``async with``):
    the server runs in its own thread, and every other method is a quick call.
    """

    def __init__(
        self,
        *,
        tls: bool = True,
        tenant_id: str | None = None,
        tenant_domain: str = "contoso.onmicrosoft.com",
        auto_sign_in: bool = False,
        token_lifetime: int = 3600,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        url_host: str | None = None,
        server_ca: trustme.CA | None = None,
        signing_keys: Sequence[SigningKey] = (),
        cae_token_lifetime: int = 24 * 3600,
    ) -> None:
        """``host``/``port``/``url_host``/``server_ca``/``signing_keys`` are for the
        standalone server (``better-auth-obo emulator``): where to listen, the name in the
        URL, and a kept TLS CA and signing keys (oldest first) so that clients and tokens
        from before a restart still work. The defaults suit tests: 127.0.0.1, a free
        port, a new CA and key."""
        if token_lifetime <= 0:
            raise ValueError("token_lifetime must be positive")
        if cae_token_lifetime <= 0:
            raise ValueError("cae_token_lifetime must be positive")
        # Lifetime of CAE tokens (the client declared cp1); lifetime policies don't apply.
        self._cae_token_lifetime = cae_token_lifetime
        self._tls = tls
        self._auto_any = auto_sign_in
        self._token_lifetime = token_lifetime
        self._directory = Directory(
            clock=clock, tenant_id=tenant_id or new_guid(), domain=tenant_domain
        )
        self._directory.auto_any = auto_sign_in
        self._keys = KeySet(signing_keys)
        self._listen = (host, port, url_host, server_ca)
        self.faults = Faults()
        self._server: ServerThread | None = None
        self._ssl_contexts: dict[int, tuple[ServerThread, ssl.SSLContext]] = {}
        self._issuer: TokenIssuer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EntraEmulator:
        """Bind an ephemeral port and serve; returns once the server accepts connections."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        host, port, url_host, ca = self._listen
        server = ServerThread(tls=self._tls, host=host, port=port, ca=ca, url_host=url_host)
        self._issuer = TokenIssuer(
            authority=server.url,
            keys=self._keys,
            directory=self._directory,
            default_lifetime=lambda: self._token_lifetime,
            cae_lifetime=lambda: self._cae_token_lifetime,
        )
        self._directory.tenant_keys = self._tenant_key
        server.start(build_app(self._issuer, self.faults))
        self._server = server
        return self

    def _tenant_key(self, iss: str, kid: str) -> object:
        """The signing key of a token a tenant of this emulator issued (v2 issuer)."""
        issuer = self._issuer
        if issuer is None or not any(
            iss == issuer.issuer(tid, 2) for tid in list(self._directory.tenants)
        ):
            return None
        found = self._keys.find(kid)
        return None if found is None else found.public_key

    def stop(self) -> None:
        """Shut the server down and remove its certificate files."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> EntraEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> EntraEmulator:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def reset(self) -> None:
        """Back to a fresh state (same server, tenant id and CA): no apps, users, consent,
        policies, faults, log, rotated keys or auto sign-in beyond the constructor's."""
        self._directory.reset()
        self._directory.auto_any = self._auto_any
        self._keys.reset()
        self.faults.clear()

    def __repr__(self) -> str:
        where = self._server.url if self._server else "stopped"
        return f"<EntraEmulator {where} tenant_id={self.tenant_id!r}>"

    # -- where things are --------------------------------------------------------------------
    @property
    def _running(self) -> tuple[ServerThread, TokenIssuer]:
        if self._server is None or self._issuer is None:
            raise RuntimeError("the emulator is not running: use `with EntraEmulator() as entra:`")
        return self._server, self._issuer

    @property
    def authority(self) -> str:
        """``https://127.0.0.1:PORT``: the Microsoft provider's / MSAL's authority host."""
        return self._running[0].url

    @property
    def tenant(self) -> Tenant:
        return self._directory.default_tenant

    @property
    def tenant_id(self) -> str:
        return self._directory.default_tenant.tenant_id

    @property
    def ca_file(self) -> str:
        """Path of the PEM of the CA that signed the server certificate."""
        ca_file = self._running[0].ca_file
        if ca_file is None:
            raise RuntimeError("this emulator serves plain http (tls=False): no CA")
        return ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the emulator (and the system's CAs), e.g.
        ``httpx.AsyncClient(verify=...)``. One per running server, shared by every caller
        (loading the system's CAs costs ~40 ms a context): use it, don't modify it."""
        server = self._running[0]
        cached = self._ssl_contexts.get(id(server))
        if cached is None or cached[0] is not server:
            context = ssl.create_default_context()
            server.configure_trust(context)
            self._ssl_contexts = {id(server): (server, context)}
            return context
        return cached[1]

    def _segment(self, tenant: Tenant | str | None) -> str:
        return tenant.tenant_id if isinstance(tenant, Tenant) else (tenant or self.tenant_id)

    def token_endpoint(self, tenant: Tenant | str | None = None) -> str:
        return f"{self.authority}/{self._segment(tenant)}/oauth2/v2.0/token"

    def authorize_endpoint(self, tenant: Tenant | str | None = None) -> str:
        return f"{self.authority}/{self._segment(tenant)}/oauth2/v2.0/authorize"

    def approve_device_code(self, user_code: str, user: User) -> None:
        """Sign ``user`` in on a device code (what the user does on ``/devicelogin``)."""
        if not self._directory.approve_device(user_code, user.oid):
            raise ValueError(f"no pending device code {user_code!r}")

    def discovery_url(self, tenant: Tenant | str | None = None) -> str:
        """The tenant's OpenID Connect discovery document (v2)."""
        return f"{self.authority}/{self._segment(tenant)}/v2.0/.well-known/openid-configuration"

    def jwks_uri(self, tenant: Tenant | str | None = None) -> str:
        return f"{self.authority}/{self._segment(tenant)}/discovery/v2.0/keys"

    def issuer(self, tenant: Tenant | str | None = None, *, version: int = 2) -> str:
        """The ``iss`` of tokens issued in ``tenant`` (default: the default tenant):
        ``{authority}/{tid}/v2.0`` for v2 tokens (and every ID token),
        ``https://sts.windows.net/{tid}/`` for v1 access tokens (Microsoft Graph's, and
        those of apps registered with ``access_token_version=1``)."""
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        return self._running[1].issuer(self._segment(tenant), version)

    @property
    def graph_url(self) -> str:
        """Fake Microsoft Graph base URL: ``f"{entra.graph_url}/v1.0/me"``."""
        return self._running[1].graph_url

    def api_url(self, app: App) -> str:
        """Base URL of ``app`` as a protected API: ``GET {api_url}/whoami``."""
        return f"{self.authority}/api/{app.client_id}"

    # -- directory ---------------------------------------------------------------------------
    @property
    def tenants(self) -> Mapping[str, Tenant]:
        return MappingProxyType(dict(self._directory.tenants))

    @property
    def users(self) -> Mapping[str, User]:
        """Users by ``oid``."""
        return MappingProxyType(dict(self._directory.users))

    @property
    def apps(self) -> Mapping[str, App]:
        """App registrations by client id."""
        return MappingProxyType(dict(self._directory.apps))

    def add_tenant(
        self, domain: str, *, display_name: str | None = None, tenant_id: str | None = None
    ) -> Tenant:
        """Another tenant; ``tenant_id`` defaults to a new GUID."""
        return self._directory.add_tenant(
            domain, display_name or domain.split(".")[0].title(), tenant_id=tenant_id
        )

    def add_user(
        self,
        display_name: str,
        upn: str,
        *,
        tenant: Tenant | None = None,
        mail: str | None = None,
        oid: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
    ) -> User:
        """A member user; ``given_name``/``surname`` default to the display name's words,
        ``oid`` to a new GUID."""
        given, _, last = display_name.partition(" ")
        return self._directory.add_user(
            User(
                oid=oid or new_guid(),
                upn=upn,
                display_name=display_name,
                tenant_id=(tenant or self.tenant).tenant_id,
                given_name=given_name or given or None,
                surname=surname or last or None,
                mail=mail or upn,
            )
        )

    def invite(self, user: User, tenant: Tenant, *, oid: str | None = None) -> User:
        """Add ``user`` to ``tenant`` as a guest: a new object with its own ``oid``
        (default: a new GUID)."""
        home_domain = tenant.domain
        upn = f"{user.upn.replace('@', '_')}#EXT#@{home_domain}"
        return self._directory.add_user(
            User(
                oid=oid or new_guid(),
                upn=upn,
                display_name=user.display_name,
                tenant_id=tenant.tenant_id,
                given_name=user.given_name,
                surname=user.surname,
                mail=user.mail,
                home_tenant_id=user.home_tenant_id or user.tenant_id,
                home_oid=user.home_oid or user.oid,
            )
        )

    def register_app(
        self,
        name: str,
        *,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        redirect_uris: Iterable[str] = (),
        public_client: bool = False,
        multi_tenant: bool = False,
        app_id_uri: str | None = None,
        tenant: Tenant | None = None,
        access_token_version: int = 2,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> App:
        """Register an app (and its service principal) with a client secret.

        ``scopes`` are the delegated permissions it exposes, ``roles`` its app roles;
        ``app_id_uri`` defaults to ``api://<client_id>``. With ``redirect_uris`` the
        authorize endpoint accepts only those (else any http(s) URI). ``client_id`` and
        ``client_secret`` default to a new GUID and a new random secret.
        """
        if access_token_version not in (1, 2):
            raise ValueError("access_token_version must be 1 or 2")
        if public_client and client_secret is not None:
            raise ValueError("a public client has no client secret")
        client_id = client_id or new_guid()
        return self._directory.add_app(
            App(
                name=name,
                client_id=client_id,
                client_secret=None if public_client else client_secret or opaque("emu~"),
                app_id_uri=app_id_uri or f"api://{client_id}",
                tenant_id=(tenant or self.tenant).tenant_id,
                scopes=tuple(scopes),
                roles=tuple(roles),
                redirect_uris=tuple(redirect_uris),
                multi_tenant=multi_tenant,
                access_token_version=access_token_version,
                service_principal_id=new_guid(),
            )
        )

    def register_certificate(self, app: App, certificate: Certificate) -> None:
        """Register an existing certificate on ``app`` (e.g. one from an earlier run;
        ``app.add_certificate()`` makes a new one)."""
        self._directory.register_certificate(app.client_id, certificate)

    def add_secret(self, app: App) -> str:
        """Another client secret for ``app``."""
        return self._directory.add_secret(app.client_id)

    def expire_secret(self, app: App, secret: str | None = None) -> None:
        """Make ``secret`` (default: all of the app's secrets) expired: AADSTS7000222."""
        self._directory.expire_secret(app.client_id, secret)

    # -- workload identity federation --------------------------------------------------------
    def add_external_issuer(self) -> ExternalIssuer:
        """An external OIDC issuer (like a Kubernetes cluster's service-account issuer)
        served by this emulator, with its own discovery, JWKS and signing key. Its tokens
        authenticate an app that has a matching ``app.add_federated_credential(...)``."""
        url = f"{self.authority}/external/{new_guid()}"
        issuer = ExternalIssuer(issuer=url, clock=self._directory.clock)
        self._directory.add_external_issuer(issuer)
        return issuer

    def add_managed_identity(self, name: str, *, tenant: Tenant | None = None) -> ManagedIdentity:
        """A user-assigned managed identity and the App Service / Container Apps token
        endpoint of a resource it is assigned to (``identity_endpoint``,
        ``identity_header``: set them as ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``). Its
        tokens carry ``iss`` = ``.issuer`` (the tenant's v2 issuer) and ``sub`` =
        ``.subject`` (its object id): what a federated credential trusting it names."""
        tenant_id = (tenant or self.tenant).tenant_id
        client_id = new_guid()
        identity = ManagedIdentity(
            name=name,
            client_id=client_id,
            object_id=new_guid(),
            tenant_id=tenant_id,
            issuer=self.issuer(tenant_id),
            identity_endpoint=f"{self.authority}/msi/{client_id}/token",
            identity_header=opaque("emu-mi~"),
        )
        self._directory.add_managed_identity(identity)
        return identity

    # -- consent and policies ----------------------------------------------------------------
    def grant_consent(
        self, client: App, *scopes: str, user: User | None = None, tenant: Tenant | None = None
    ) -> None:
        """Admin consent (or ``user``'s consent) for ``client`` to call downstream scopes,
        e.g. ``grant_consent(api, "https://graph.microsoft.com/User.Read")`` or
        ``grant_consent(api, downstream.scope("Files.Read"))``. App roles granted this
        way appear in client-credentials tokens; ``{resource}/.default`` grants all."""
        tenant = tenant or self._directory.tenants[client.tenant_id]
        for scope in scopes:
            resource, perms = named_permissions(self._directory, scope, tenant.tenant_id)
            principal = user.oid if user else ADMIN
            self._directory.grant(
                tenant.tenant_id, client.client_id, principal, resource.client_id, perms
            )

    def revoke_consent(self, client: App, *scopes: str) -> None:
        """Withdraw consent for ``scopes`` (none given: everything ``client`` was granted)."""
        if not scopes:
            self._directory.revoke(client.client_id, resource=None, perms=None)
        for scope in scopes:
            resource, perms = named_permissions(self._directory, scope, client.tenant_id)
            self._directory.revoke(client.client_id, resource=resource.client_id, perms=perms)

    def require_mfa(
        self,
        user: User | None = None,
        *,
        resource: App | str | None = None,
        error_code: int = 50076,
    ) -> None:
        """Conditional Access: tokens for ``user`` (default: everyone) and ``resource``
        (default: any) need MFA. Non-interactive grants without it get a claims challenge
        (``interaction_required``, 50076 or 50079); interactive sign-in satisfies it."""
        if error_code not in (50076, 50079):
            raise ValueError("error_code must be 50076 or 50079")
        target = None if resource is None else self._resource(resource).client_id
        self._directory.require_mfa(user.oid if user else None, target, error_code)

    def block(self, user: User | None = None, *, app: App | None = None) -> None:
        """Conditional Access blocks ``user`` (default: all) for ``app`` (default: all): 53003."""
        self._directory.block(user.oid if user else None, app.client_id if app else None)

    def set_token_lifetime(self, seconds: int, *, resource: App | str | None = None) -> None:
        """Lifetime of access tokens for ``resource`` (default: all resources)."""
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self._directory.set_lifetime(
            None if resource is None else self._resource(resource).client_id, seconds
        )

    def revoke_sessions(self, user: User) -> None:
        """Invalidate ``user``'s refresh tokens (AADSTS50173 on their next use). Also a
        CAE critical event (see ``cae_event``)."""
        self._directory.revoke_sessions(user.oid)

    def cae_event(self, user: User) -> float:
        """A Continuous Access Evaluation critical event for ``user`` (password reset,
        account disabled, risk, ...), now; returns its time. The emulated Graph and APIs
        then answer CAE tokens (``xms_cc`` cp1) issued before it with a 401 claims
        challenge; other tokens live out their lifetime. Refresh tokens stay valid, but a
        token request replaying the challenge (``nbf``) fails when the user's sign-in
        predates the event (AADSTS50173): the user must sign in again."""
        return self._directory.cae_event(user.oid)

    def auto_sign_in(self, user: User | None = None, *, enabled: bool = True) -> None:
        """Answer /authorize without a page: as ``user``, or (no user) as the ``login_hint``
        user or the first user. ``enabled=False`` brings the page back."""
        self._directory.auto_user = user.oid if (user and enabled) else None
        self._directory.auto_any = enabled and user is None

    # -- tokens ------------------------------------------------------------------------------
    def _resource(self, audience: App | str) -> Resource:
        return resolve_audience(self._directory, audience, self.tenant_id)

    def issue_token(
        self,
        user: User,
        *,
        audience: App | str,
        scopes: Iterable[str] | None = None,
        lifetime: int | None = None,
        client: App | None = None,
        mfa: bool = False,
        issued_at: float | None = None,
    ) -> str:
        """A user access token as Entra would issue it to ``client`` (default: the
        audience app itself) for ``audience`` (an App, or ``"https://graph.microsoft.com"``).
        For an app registered with ``access_token_version=1`` the token's ``aud`` is
        its client id, or its App ID URI when ``audience`` is that URI (as when the scope
        was requested as ``api://.../scope``). ``issued_at`` in the past with a short
        ``lifetime`` gives an expired token."""
        resource = self._resource(audience)
        default = ["User.Read"] if resource is GRAPH else list(resource.scopes)
        names = default if scopes is None else list(scopes)
        unknown = [s for s in names if resource.knows(s) is None]
        if unknown:
            raise ValueError(f"{resource.display} exposes no scope {unknown}")
        grant = Grant(
            client=client or self._client_for(resource),
            resource=resource,
            tenant_id=user.tenant_id,
            user=user,
            permissions=tuple(names),
            azpacr="1",
            mfa=mfa,
            by_uri=_by_uri(audience, resource),
        )
        return self._running[1].access_token(grant, lifetime=lifetime, issued_at=issued_at)[0]

    def issue_app_token(
        self,
        client: App,
        *,
        audience: App | str,
        roles: Iterable[str] = (),
        lifetime: int | None = None,
    ) -> str:
        """An app-only (client credentials) access token."""
        resource = self._resource(audience)
        grant = Grant(
            client=client,
            resource=resource,
            tenant_id=client.tenant_id,
            user=None,
            permissions=tuple(roles),
            azpacr="1",
            by_uri=_by_uri(audience, resource),
        )
        return self._running[1].access_token(grant, lifetime=lifetime)[0]

    def issue_id_token(
        self,
        user: User,
        *,
        client: App,
        nonce: str | None = None,
        tenant: Tenant | str | None = None,
        issued_at: float | None = None,
    ) -> str:
        """A signed ID token for ``user`` signing in to ``client``, as the token endpoint
        returns it: v2, ``aud`` = the client id, ``iss`` = ``{authority}/{tid}/v2.0``,
        lifetime 3600 s, ``email``, and ``nonce`` when given. Verifiable against
        ``jwks_uri()``. ``tenant`` (a Tenant, GUID or domain) sets ``tid``/``iss``
        (default: the user's tenant; for a guest pass the object from ``invite``);
        ``issued_at`` in the past gives an old token. For better-auth-server's ID-token
        sign-in: ``POST /sign-in/social`` with ``{"provider": "microsoft", "idToken":
        {"token": ..., "accessToken": ...}}``."""
        if tenant is None:
            tenant_id = user.tenant_id
        else:
            found = self._directory.find_tenant(self._segment(tenant))
            if found is None:
                raise ValueError(f"unknown tenant {tenant!r}")
            tenant_id = found.tenant_id
        return self._running[1].id_token(
            user=user,
            client=client,
            tenant_id=tenant_id,
            nonce=nonce,
            email=True,
            issued_at=issued_at,
        )

    def _client_for(self, resource: Resource) -> App:
        if resource.app is not None:
            return resource.app
        raise ValueError("pass client= when the audience is Microsoft Graph")

    def rotate_keys(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on; returns its ``kid``. Without ``keep_previous``
        the old keys leave the JWKS, so tokens they signed stop validating."""
        return self._keys.rotate(keep_previous=keep_previous).kid

    @property
    def signing_kid(self) -> str:
        return self._keys.current.kid

    @property
    def token_requests(self) -> tuple[TokenRequest, ...]:
        """Every token-endpoint request so far, oldest first (no secrets or tokens)."""
        return self._directory.log_entries()

    def clear_token_requests(self) -> None:
        self._directory.clear_log()


def _by_uri(audience: App | str, resource: Resource) -> bool:
    """Whether ``audience`` names the resource by App ID URI rather than client id (the
    ``aud`` of v1 tokens follows it; an ``App`` counts as its client id)."""
    return isinstance(audience, str) and audience.rstrip("/").lower() != resource.client_id.lower()
