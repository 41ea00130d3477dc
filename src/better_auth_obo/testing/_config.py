"""The standalone emulator's world: what the TOML config file declares, validated.

The state file keeps the same shape as JSON, with every generated id, secret and
certificate filled in, so one reader serves both and a restart rebuilds the same world.
Nothing here talks to the emulator: ``_standalone`` applies a ``World`` to one.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ._wire import new_guid, opaque

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "DEFAULT_WORLD",
    "AppDecl",
    "ConfigError",
    "World",
    "load_config",
    "merge",
    "world_from_mapping",
    "world_to_dict",
]

T = TypeVar("T")


class ConfigError(Exception):
    """The config (or state) file cannot be used; the message names the file and key."""


# -- the declarations ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TenantDecl:
    domain: str
    id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertPem:
    """A client certificate kept as PEM; the key never shows in a repr."""

    certificate_pem: str
    private_key_pem: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDecl:
    name: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    public_client: bool = False
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    multi_tenant: bool = False
    app_id_uri: str | None = None
    access_token_version: int = 2
    tenant: str | None = None
    certificates: int = 0
    certificate_pems: tuple[CertPem, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDecl:
    display_name: str
    upn: str
    oid: str | None = None
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    tenant: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestDecl:
    user: str  # the member's UPN in its home tenant
    tenant: str  # the inviting tenant's domain
    oid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentDecl:
    app: str
    scopes: tuple[str, ...]
    user: str | None = None
    tenant: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MfaDecl:
    user: str | None = None
    resource: str | None = None
    error_code: int = 50076


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockDecl:
    user: str | None = None
    app: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LifetimeDecl:
    seconds: int
    resource: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Policies:
    token_lifetime: int = 3600
    require_mfa: tuple[MfaDecl, ...] = ()
    block: tuple[BlockDecl, ...] = ()
    token_lifetimes: tuple[LifetimeDecl, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    tenant: TenantDecl
    tenants: tuple[TenantDecl, ...] = ()
    apps: tuple[AppDecl, ...] = ()
    users: tuple[UserDecl, ...] = ()
    guests: tuple[GuestDecl, ...] = ()
    consents: tuple[ConsentDecl, ...] = ()
    policies: Policies = Policies()
    #: False: the sign-in page; True: the login_hint user or the first; a UPN: that user.
    auto_sign_in: bool | str = False


_DOMAIN = "contoso.onmicrosoft.com"
#: Without a config: one middle-tier API allowed to call Graph's User.Read, two users.
DEFAULT_WORLD = World(
    tenant=TenantDecl(domain=_DOMAIN),
    apps=(AppDecl(name="middle-tier", scopes=("access_as_user",)),),
    users=(
        UserDecl(display_name="Ada Lovelace", upn=f"ada@{_DOMAIN}"),
        UserDecl(display_name="Grace Hopper", upn=f"grace@{_DOMAIN}"),
    ),
    consents=(ConsentDecl(app="middle-tier", scopes=("https://graph.microsoft.com/User.Read",)),),
)


# -- reading ---------------------------------------------------------------------------------
def load_config(path: Path) -> World:
    """Read and validate a TOML config file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return world_from_mapping(data, str(path))


def _kind(value: object) -> str:
    """The TOML word for a value's type, for error messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class _Table:
    """One TOML table being read: rejects unknown keys, checks each value's type."""

    def __init__(self, source: str, where: str, data: object, allowed: tuple[str, ...]) -> None:
        self.source, self.where = source, where
        if not isinstance(data, dict):
            raise self.error(f"must be a table (got {_kind(data)})")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.error(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        self.data: dict[str, Any] = data

    def error(self, message: str, key: str | None = None) -> ConfigError:
        at = f"{self.where}.{key}" if key and self.where else key or self.where
        return ConfigError(f"{self.source}: {at}: {message}" if at else f"{self.source}: {message}")

    def _get(self, key: str, check: Callable[[Any], bool], expected: str, default: T) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if not check(value):
            raise self.error(f"must be {expected} (got {_kind(value)})", key)
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key, lambda v: isinstance(v, str) and v != "", "a non-empty string", None)
        return default if value is None else str(value)

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.error("is required (a non-empty string)", key)
        return value

    def guid(self, key: str) -> str | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise self.error(f"must be a GUID, e.g. {new_guid()!r}", key) from None

    def flag(self, key: str, default: bool = False) -> bool:
        return bool(self._get(key, lambda v: isinstance(v, bool), "true or false", default))

    def integer(self, key: str, default: int | None, allowed: tuple[int, ...] | None = None) -> int:
        """An integer (positive unless ``allowed`` lists the values); required if no
        ``default``."""
        if default is None and key not in self.data:
            raise self.error("is required (an integer)", key)
        value = int(self._get(key, _is_int, "an integer", default))
        if allowed is not None and value not in allowed:
            raise self.error(f"must be one of {', '.join(map(str, allowed))} (got {value})", key)
        if allowed is None and value <= 0:
            raise self.error(f"must be a positive integer (got {value})", key)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key, _is_texts, "an array of strings", [])
        return tuple(value)

    def tables(self, key: str) -> list[tuple[str, object]]:
        """An array of tables (``[[key]]``), each with its place for messages."""
        value = self._get(key, lambda v: isinstance(v, list), "an array of tables", [])
        prefix = f"{self.where}." if self.where else ""
        return [(f"{prefix}{key}[{i}]", item) for i, item in enumerate(value)]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


_TOP = ("tenant", "tenants", "apps", "users", "guests", "consents", "policies", "sign_in")
_APP = (
    "name",
    "client_id",
    "client_secret",
    "public_client",
    "scopes",
    "roles",
    "redirect_uris",
    "multi_tenant",
    "app_id_uri",
    "access_token_version",
    "tenant",
    "certificates",
)


def world_from_mapping(data: Mapping[str, Any], source: str) -> World:
    """Validate a parsed config (or the ``world`` of a state file)."""
    top = _Table(source, "", dict(data), _TOP)
    main = _Table(source, "tenant", top.data.get("tenant", {}), ("id", "domain"))
    tenant = TenantDecl(domain=main.text("domain", _DOMAIN) or _DOMAIN, id=main.guid("id"))
    policies = _Table(
        source, "policies", top.data.get("policies", {}),
        ("token_lifetime", "require_mfa", "block", "token_lifetimes"),
    )  # fmt: skip
    sign_in = _Table(source, "sign_in", top.data.get("sign_in", {}), ("auto",))
    auto = sign_in._get("auto", lambda v: isinstance(v, bool | str), "true, false or a UPN", False)
    return World(
        tenant=tenant,
        tenants=tuple(
            _tenant(_Table(source, w, d, ("id", "domain"))) for w, d in top.tables("tenants")
        ),
        apps=tuple(_app(_Table(source, w, d, _APP)) for w, d in top.tables("apps")),
        users=tuple(_user(_Table(source, w, d, _USER)) for w, d in top.tables("users")),
        guests=tuple(
            _guest(_Table(source, w, d, ("user", "tenant", "oid"))) for w, d in top.tables("guests")
        ),
        consents=tuple(
            _consent(_Table(source, w, d, ("app", "scopes", "user", "tenant")))
            for w, d in top.tables("consents")
        ),
        policies=_policies(policies),
        auto_sign_in=auto,
    )


_USER = ("display_name", "upn", "oid", "given_name", "surname", "mail", "tenant")


def _tenant(table: _Table) -> TenantDecl:
    return TenantDecl(domain=table.required("domain"), id=table.guid("id"))


def _app(table: _Table) -> AppDecl:
    public = table.flag("public_client")
    secret = table.text("client_secret")
    if public and secret is not None:
        raise table.error("a public client has no secret: drop one of the two", "client_secret")
    count, pems = _certificates(table)
    return AppDecl(
        name=table.required("name"),
        client_id=table.guid("client_id"),
        client_secret=secret,
        public_client=public,
        scopes=table.texts("scopes"),
        roles=table.texts("roles"),
        redirect_uris=table.texts("redirect_uris"),
        multi_tenant=table.flag("multi_tenant"),
        app_id_uri=table.text("app_id_uri"),
        access_token_version=table.integer("access_token_version", 2, (1, 2)),
        tenant=table.text("tenant"),
        certificates=count,
        certificate_pems=pems,
    )


def _certificates(table: _Table) -> tuple[int, tuple[CertPem, ...]]:
    """``certificates = N`` (generate N) or, as the state keeps them, an array of
    ``{certificate_pem, private_key_pem}`` tables."""
    value = table.data.get("certificates", 0)
    if _is_int(value) and 0 <= value <= 10:
        return int(value), ()
    if not isinstance(value, list):
        raise table.error(
            f"must be a number of certificates to generate, 0 to 10 (got {value!r})"
            if _is_int(value)
            else f"must be an integer (how many to generate; got {_kind(value)})",
            "certificates",
        )
    pems = []
    for where, item in table.tables("certificates"):
        cert = _Table(table.source, where, item, ("certificate_pem", "private_key_pem"))
        pems.append(
            CertPem(
                certificate_pem=cert.required("certificate_pem"),
                private_key_pem=cert.required("private_key_pem"),
            )
        )
    return len(pems), tuple(pems)


def _user(table: _Table) -> UserDecl:
    return UserDecl(
        display_name=table.required("display_name"),
        upn=table.required("upn"),
        oid=table.guid("oid"),
        given_name=table.text("given_name"),
        surname=table.text("surname"),
        mail=table.text("mail"),
        tenant=table.text("tenant"),
    )


def _guest(table: _Table) -> GuestDecl:
    return GuestDecl(
        user=table.required("user"), tenant=table.required("tenant"), oid=table.guid("oid")
    )


def _consent(table: _Table) -> ConsentDecl:
    scopes = table.texts("scopes")
    if not scopes:
        raise table.error(
            "is required (an array of scopes, e.g. 'https://graph.microsoft.com/User.Read')",
            "scopes",
        )
    return ConsentDecl(
        app=table.required("app"),
        scopes=scopes,
        user=table.text("user"),
        tenant=table.text("tenant"),
    )


def _policies(table: _Table) -> Policies:
    source = table.source
    return Policies(
        token_lifetime=table.integer("token_lifetime", 3600),
        require_mfa=tuple(
            MfaDecl(
                user=t.text("user"),
                resource=t.text("resource"),
                error_code=t.integer("error_code", 50076, (50076, 50079)),
            )
            for t in (
                _Table(source, w, d, ("user", "resource", "error_code"))
                for w, d in table.tables("require_mfa")
            )
        ),
        block=tuple(
            BlockDecl(user=t.text("user"), app=t.text("app"))
            for t in (_Table(source, w, d, ("user", "app")) for w, d in table.tables("block"))
        ),
        token_lifetimes=tuple(
            LifetimeDecl(seconds=t.integer("seconds", None), resource=t.text("resource"))
            for t in (
                _Table(source, w, d, ("seconds", "resource"))
                for w, d in table.tables("token_lifetimes")
            )
        ),
    )


# -- config + state --------------------------------------------------------------------------
def merge(declared: World | None, kept: World | None) -> World:
    """The world to run: the config's declarations, with the ids, secrets and certificates
    the state generated for the same objects before (an explicit value in the config wins),
    plus the tenants, apps, users and guests only the state knows. Consents, policies
    and sign-in come from the config when there is one."""
    if declared is None:
        return kept or DEFAULT_WORLD
    if kept is None:
        return declared
    apps = {a.name: a for a in kept.apps}
    users = {u.upn.lower(): u for u in kept.users}
    tenants = {t.domain.lower(): t for t in kept.tenants}
    guests = {(g.user.lower(), g.tenant.lower()): g for g in kept.guests}
    merged = replace(
        declared,
        tenant=replace(declared.tenant, id=declared.tenant.id or kept.tenant.id),
        tenants=tuple(
            replace(t, id=t.id or _id(tenants.pop(t.domain.lower(), None)))
            for t in declared.tenants
        ),
        apps=tuple(_keep_app(a, apps.pop(a.name, None)) for a in declared.apps),
        users=tuple(_keep_user(u, users.pop(u.upn.lower(), None)) for u in declared.users),
        guests=tuple(
            replace(g, oid=g.oid or _oid(guests.pop((g.user.lower(), g.tenant.lower()), None)))
            for g in declared.guests
        ),
    )
    return _with_leftovers(merged, tenants, apps, users, guests)


def _id(tenant: TenantDecl | None) -> str | None:
    return tenant.id if tenant else None


def _oid(guest: GuestDecl | None) -> str | None:
    return guest.oid if guest else None


def _keep_app(app: AppDecl, kept: AppDecl | None) -> AppDecl:
    if kept is None:
        return app
    secret = app.client_secret or (None if app.public_client else kept.client_secret)
    pems = app.certificate_pems or kept.certificate_pems[: app.certificates]
    return replace(
        app, client_id=app.client_id or kept.client_id, client_secret=secret, certificate_pems=pems
    )


def _keep_user(user: UserDecl, kept: UserDecl | None) -> UserDecl:
    return replace(user, oid=user.oid or (kept.oid if kept else None))


def _with_leftovers(
    world: World,
    tenants: dict[str, TenantDecl],
    apps: dict[str, AppDecl],
    users: dict[str, UserDecl],
    guests: dict[tuple[str, str], GuestDecl],
) -> World:
    """Add what only the state knows, unless its ids clash with the config's."""
    taken_ids = {a.client_id for a in world.apps} | {t.id for t in world.tenants}
    taken_ids |= {u.oid for u in world.users} | {world.tenant.id}
    return replace(
        world,
        tenants=world.tenants + tuple(t for t in tenants.values() if t.id not in taken_ids),
        apps=world.apps + tuple(a for a in apps.values() if a.client_id not in taken_ids),
        users=world.users + tuple(u for u in users.values() if u.oid not in taken_ids),
        guests=world.guests + tuple(guests.values()),
    )


def complete(world: World, new_certificate: Callable[[str], CertPem]) -> World:
    """Fill in every id, secret and certificate still missing (new ones)."""

    def app(a: AppDecl) -> AppDecl:
        pems = a.certificate_pems + tuple(
            new_certificate(a.name) for _ in range(a.certificates - len(a.certificate_pems))
        )
        secret = None if a.public_client else a.client_secret or opaque("emu~")
        return replace(
            a, client_id=a.client_id or new_guid(), client_secret=secret, certificate_pems=pems,
            certificates=len(pems),
        )  # fmt: skip

    return replace(
        world,
        tenant=replace(world.tenant, id=world.tenant.id or new_guid()),
        tenants=tuple(replace(t, id=t.id or new_guid()) for t in world.tenants),
        apps=tuple(app(a) for a in world.apps),
        users=tuple(replace(u, oid=u.oid or new_guid()) for u in world.users),
        guests=tuple(replace(g, oid=g.oid or new_guid()) for g in world.guests),
    )


# -- writing (the state file's ``world``) ------------------------------------------------------
def world_to_dict(world: World) -> dict[str, Any]:
    """The config-file shape of ``world`` (None values left out), for the state file."""

    def clean(decl: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        out = {}
        for name in decl.__dataclass_fields__:
            value = getattr(decl, name)
            if value is not None and name not in drop:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def app(a: AppDecl) -> dict[str, Any]:
        certs = [clean(c) for c in a.certificate_pems]
        return {**clean(a, ("certificates", "certificate_pems")), "certificates": certs}

    policies = world.policies
    return {
        "tenant": clean(world.tenant),
        "tenants": [clean(t) for t in world.tenants],
        "apps": [app(a) for a in world.apps],
        "users": [clean(u) for u in world.users],
        "guests": [clean(g) for g in world.guests],
        "consents": [clean(c) for c in world.consents],
        "policies": {
            "token_lifetime": policies.token_lifetime,
            "require_mfa": [clean(m) for m in policies.require_mfa],
            "block": [clean(b) for b in policies.block],
            "token_lifetimes": [clean(t) for t in policies.token_lifetimes],
        },
        "sign_in": {"auto": world.auto_sign_in},
    }
