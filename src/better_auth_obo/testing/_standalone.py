"""The emulator as a server of its own: ``better-auth-obo emulator`` and
``python -m better_auth_obo.testing``.

It builds an ``EntraEmulator`` from a TOML config (or a default world), keeps what it
generated (ids, secrets, certificates, signing keys, TLS CA, port) in a state file so a
restart serves the same world, prints how to point clients at it, and serves until
Ctrl-C or SIGTERM.

Secrets are printed on purpose (to stdout and the ``--ready-file``): this is a local
development tool whose user needs them. They never go to a log line or an error message.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import (
    CertPem,
    ConfigError,
    World,
    _Table,
    complete,
    load_config,
    merge,
    world_from_mapping,
    world_to_dict,
)

if TYPE_CHECKING:
    import trustme

    from ._emulator import EntraEmulator
    from ._keys import SigningKey
    from ._models import App, Tenant, User

__all__ = ["DEFAULT_PORT", "add_arguments", "run"]

#: The default port (TLS): fixed, so a dev stack's configuration can name it; 7443 is
#: not a port a common dev server takes. ``--port 0`` asks for a free one.
DEFAULT_PORT = 7443
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATE_FORMAT = "better-auth-obo emulator state"
STATE_VERSION = 1


# -- command line ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; anything else "
        "prints a warning)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="N",
        help=f"port (default {DEFAULT_PORT}; 0: a free one). With --state the port is kept: "
        "a restart without --port N reuses it, so the issuer in tokens stays the same",
    )
    parser.add_argument(
        "--url-host",
        metavar="NAME",
        help="host name clients use in URLs, e.g. a compose service name (default: --host, "
        "or 127.0.0.1 for 0.0.0.0); it is also put in the TLS certificate",
    )
    parser.add_argument(
        "--no-tls", action="store_true", help="serve plain http (MSAL and azure-identity refuse it)"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file declaring tenant, apps, users, consents..."
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep ids, secrets, keys, CA and port here (JSON, mode 0600) across restarts",
    )
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="when serving, write a JSON summary there (authority, CA file, apps with their "
        "secrets, users; mode 0600): for scripts and tests",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C / SIGTERM; the exit status."""
    prog = "better-auth-obo emulator"
    if args.port is not None and not 0 <= args.port <= 65535:
        print(f"{prog}: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _stop_signals() as stop, _files_dir(args.state) as files:
            return _run(args, files, stop)
    except KeyboardInterrupt:  # Ctrl-C before the server was up: a normal stop too
        return EXIT_OK
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- the state file ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Kept:
    """What a state file holds besides the world: TLS CA, signing keys and port."""

    world: World
    ca_pem: tuple[bytes, bytes] | None  # (certificate, private key)
    signing_keys: tuple[tuple[bytes, bytes], ...]  # (private key, certificate), oldest first
    port: int | None

    def __repr__(self) -> str:  # never the keys
        return f"<Kept port={self.port} keys={len(self.signing_keys)}>"


def read_state(path: Path) -> Kept | None:
    """The state file's content, or None when there is none yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the state file ({exc})") from None
    top = _Table(str(path), "", data, ("format", "version", "port", "ca", "signing_keys", "world"))
    if top.data.get("format") != STATE_FORMAT or top.data.get("version") != STATE_VERSION:
        raise ConfigError(
            f"{path}: not a better-auth-obo emulator state file (version {STATE_VERSION}); "
            "move it away or choose another --state"
        )
    ca = _Table(str(path), "ca", top.data.get("ca", {}), ("certificate_pem", "private_key_pem"))
    keys = [
        _Table(str(path), where, item, ("private_key_pem", "certificate_pem"))
        for where, item in top.tables("signing_keys")
    ]
    port = top.data.get("port")
    return Kept(
        world=world_from_mapping(top.data.get("world", {}), f"{path} (world)"),
        ca_pem=(ca.required("certificate_pem").encode(), ca.required("private_key_pem").encode())
        if ca.data
        else None,
        signing_keys=tuple(
            (k.required("private_key_pem").encode(), k.required("certificate_pem").encode())
            for k in keys
        ),
        port=port if isinstance(port, int) and 0 < port <= 65535 else None,
    )


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read (it holds private
    keys and secrets): a crash mid-write leaves the old file, never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp: mode 0600 already
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _state_text(world: World, ca: trustme.CA, keys: list[SigningKey], port: int) -> str:
    pems = [key.to_pem() for key in keys]
    return json.dumps(
        {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "port": port,
            "ca": {
                "certificate_pem": ca.cert_pem.bytes().decode(),
                "private_key_pem": ca.private_key_pem.bytes().decode(),
            },
            "signing_keys": [
                {"private_key_pem": private.decode(), "certificate_pem": cert.decode()}
                for private, cert in pems
            ],
            "world": world_to_dict(world),
        },
        indent=2,
    )


# -- building and serving ------------------------------------------------------------------------
@contextlib.contextmanager
def _files_dir(state: str | None) -> Iterator[Path]:
    """Where the CA and certificate files go: beside the state file (so they survive a
    restart and clients keep trusting the same path), else a temporary folder."""
    if state is not None:
        yield Path(state).resolve().parent
        return
    with tempfile.TemporaryDirectory(prefix="entra-emulator-") as tmp:
        yield Path(tmp)


def _run(args: argparse.Namespace, files: Path, stop: threading.Event) -> int:
    started = time.monotonic()
    state = Path(args.state) if args.state else None
    kept = read_state(state) if state else None
    declared = load_config(Path(args.config)) if args.config else None
    world = complete(merge(declared, kept.world if kept else None), _new_certificate)
    ca, keys = _trust_material(kept)
    port = _port(args.port, kept)
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}, not only on this machine: anyone who can "
            "reach this port gets tokens from an identity provider with known secrets. "
            "Use it on a trusted network only.",
            file=sys.stderr,
        )
    entra = _emulator(args, world, ca, keys, port)
    try:
        source = args.config or args.state or "the default world"
        _populate(entra, world, source)
        _start(entra, args.host, port, kept_port=bool(kept and kept.port == port))
        prefix = f"{state.stem}-" if state else ""
        summary = _summary(entra, world, files, prefix, state)
        if state is not None:
            write_private(state, _state_text(world, ca, keys, _port_of(entra)))
        print(_render(summary, time.monotonic() - started), flush=True)
        if args.ready_file:
            write_private(Path(args.ready_file), json.dumps(summary, indent=2))
        while not stop.wait(0.5):  # a timeout keeps the main thread responsive everywhere
            pass
    finally:
        entra.stop()
    print("Entra ID emulator stopped.", flush=True)
    return EXIT_OK


def _start(entra: EntraEmulator, host: str, port: int, *, kept_port: bool) -> None:
    try:
        entra.start()
    except OSError as exc:
        hint = (
            " (the port kept in the state file: pass --port N for another one; the "
            "authority and the issuer of new tokens change with it)"
            if kept_port
            else ""
        )
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


def _new_certificate(app_name: str) -> CertPem:
    from ._keys import make_certificate

    record, _ = make_certificate(f"CN={app_name}")
    return CertPem(certificate_pem=record.certificate_pem, private_key_pem=record.private_key_pem)


def _trust_material(kept: Kept | None) -> tuple[trustme.CA, list[SigningKey]]:
    """The kept TLS CA and signing keys, or new ones."""
    import trustme

    from ._keys import SigningKey

    try:
        ca = (
            trustme.CA.from_pem(*kept.ca_pem)
            if kept and kept.ca_pem
            else trustme.CA(organization_name="better-auth-obo Entra emulator")
        )
        keys = [SigningKey.from_pem(*pem) for pem in kept.signing_keys] if kept else []
    except ValueError as exc:
        raise ConfigError(f"the state file holds an unusable key or certificate ({exc})") from None
    return ca, keys or [SigningKey.generate()]


def _port(asked: int | None, kept: Kept | None) -> int:
    """``--port N`` wins; else (or with 0) the kept port, so the authority and the issuer in
    tokens stay the same across restarts; else the default (or a free one for 0)."""
    if asked:
        return asked
    if kept is not None and kept.port is not None:
        return kept.port
    return DEFAULT_PORT if asked is None else 0


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _emulator(
    args: argparse.Namespace,
    world: World,
    ca: trustme.CA,
    keys: list[SigningKey],
    port: int,
) -> EntraEmulator:
    from ._emulator import EntraEmulator

    return EntraEmulator(
        tls=not args.no_tls,
        tenant_id=world.tenant.id,
        tenant_domain=world.tenant.domain,
        token_lifetime=world.policies.token_lifetime,
        host=args.host,
        port=port,
        url_host=args.url_host,
        server_ca=ca,
        signing_keys=keys,
    )


def _port_of(entra: EntraEmulator) -> int:
    return int(entra.authority.rsplit(":", 1)[1])


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT (Ctrl-C) or SIGTERM: both are a normal stop (exit status 0).
    Installed first, so a SIGTERM during start-up also stops cleanly."""
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# -- the world into the emulator -----------------------------------------------------------------
class _Names:
    """Objects by the names the config uses for them, with clear errors for unknown ones."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[str, App] = {}
        self.users: dict[str, User] = {}

    def find(self, kind: str, table: dict[str, Any], name: str | None, where: str) -> Any:
        if name is None:
            return None
        found = table.get(name.lower() if kind != "app" else name)
        if found is None:
            known = ", ".join(sorted(table)) or "none"
            raise ConfigError(f"{self.source}: {where}: no {kind} {name!r} (declared: {known})")
        return found


def _populate(entra: EntraEmulator, world: World, source: str) -> None:
    """Register the world's objects through the emulator's public methods."""
    names = _Names(source)
    names.tenants[world.tenant.domain.lower()] = entra.tenant
    for i, tenant in enumerate(world.tenants):
        with _at(source, f"tenants[{i}]"):
            names.tenants[tenant.domain.lower()] = entra.add_tenant(
                tenant.domain, tenant_id=tenant.id
            )
    for i, app in enumerate(world.apps):
        with _at(source, f"apps[{i}]"):
            names.apps[app.name] = _register(entra, names, app, f"apps[{i}]")
    for i, user in enumerate(world.users):
        with _at(source, f"users[{i}]"):
            names.users[user.upn.lower()] = entra.add_user(
                user.display_name,
                user.upn,
                tenant=names.find("tenant", names.tenants, user.tenant, f"users[{i}].tenant"),
                mail=user.mail,
                oid=user.oid,
                given_name=user.given_name,
                surname=user.surname,
            )
    _guests_and_consents(entra, world, names)
    _policies(entra, world, names)


def _register(entra: EntraEmulator, names: _Names, app: Any, where: str) -> App:
    from ._keys import load_certificate

    registered = entra.register_app(
        app.name,
        scopes=app.scopes,
        roles=app.roles,
        redirect_uris=app.redirect_uris,
        public_client=app.public_client,
        multi_tenant=app.multi_tenant,
        app_id_uri=app.app_id_uri,
        tenant=names.find("tenant", names.tenants, app.tenant, f"{where}.tenant"),
        access_token_version=app.access_token_version,
        client_id=app.client_id,
        client_secret=app.client_secret,
    )
    for pem in app.certificate_pems:
        entra.register_certificate(
            registered, load_certificate(pem.certificate_pem, pem.private_key_pem)
        )
    return registered


def _guests_and_consents(entra: EntraEmulator, world: World, names: _Names) -> None:
    for i, guest in enumerate(world.guests):
        where = f"guests[{i}]"
        with _at(names.source, where):
            member = names.find("user", names.users, guest.user, f"{where}.user")
            tenant = names.find("tenant", names.tenants, guest.tenant, f"{where}.tenant")
            invited = entra.invite(member, tenant, oid=guest.oid)
            names.users[invited.upn.lower()] = invited
    for i, consent in enumerate(world.consents):
        where = f"consents[{i}]"
        with _at(names.source, where):
            entra.grant_consent(
                names.find("app", names.apps, consent.app, f"{where}.app"),
                *consent.scopes,
                user=names.find("user", names.users, consent.user, f"{where}.user"),
                tenant=names.find("tenant", names.tenants, consent.tenant, f"{where}.tenant"),
            )


def _policies(entra: EntraEmulator, world: World, names: _Names) -> None:
    policies = world.policies

    def user(upn: str | None, where: str) -> User | None:
        return names.find("user", names.users, upn, where)  # type: ignore[no-any-return]

    def resource(name: str | None) -> App | str | None:
        return names.apps.get(name, name) if name else None  # an app's name, or a URI

    for i, mfa in enumerate(policies.require_mfa):
        where = f"policies.require_mfa[{i}]"
        with _at(names.source, where):
            entra.require_mfa(
                user(mfa.user, f"{where}.user"),
                resource=resource(mfa.resource),
                error_code=mfa.error_code,
            )
    for i, block in enumerate(policies.block):
        where = f"policies.block[{i}]"
        with _at(names.source, where):
            app = names.find("app", names.apps, block.app, f"{where}.app")
            entra.block(user(block.user, f"{where}.user"), app=app)
    for i, life in enumerate(policies.token_lifetimes):
        with _at(names.source, f"policies.token_lifetimes[{i}]"):
            entra.set_token_lifetime(life.seconds, resource=resource(life.resource))
    auto = world.auto_sign_in
    if auto is True:
        entra.auto_sign_in()
    elif isinstance(auto, str):
        entra.auto_sign_in(user(auto, "sign_in.auto"))


@contextlib.contextmanager
def _at(source: str, where: str) -> Iterator[None]:
    """The emulator's own refusals (a duplicate UPN, an unknown scope) as config errors."""
    try:
        yield
    except (ValueError, KeyError) as exc:
        detail = exc.args[0] if exc.args else exc
        raise ConfigError(f"{source}: {where}: {detail}") from None


# -- what to print -------------------------------------------------------------------------------
def _summary(
    entra: EntraEmulator, world: World, files: Path, prefix: str, state: Path | None
) -> dict[str, Any]:
    """Everything a client needs, as JSON (``--ready-file``) and as the printed banner."""
    ca_file = None
    if not entra.authority.startswith("http://"):
        ca_file = files / f"{prefix}ca.pem"
        ca_file.write_text(Path(entra.ca_file).read_text(encoding="ascii"), encoding="ascii")
    apps = [_app_summary(entra, decl, files, prefix) for decl in world.apps]
    return {
        "authority": entra.authority,
        "tenant_id": entra.tenant_id,
        "tenant_domain": entra.tenant.domain,
        "issuer": entra.issuer(),
        "discovery_url": entra.discovery_url(),
        "token_endpoint": entra.token_endpoint(),
        "graph_url": entra.graph_url,
        "ca_file": str(ca_file) if ca_file else None,
        "state_file": str(state.resolve()) if state else None,
        "pid": os.getpid(),
        "apps": apps,
        "users": [
            {
                "display_name": u.display_name,
                "upn": u.upn,
                "oid": u.oid,
                "tenant_id": u.tenant_id,
                "guest": u.is_guest,
            }
            for u in entra.users.values()
        ],
        "auto_sign_in": world.auto_sign_in,
    }


def _app_summary(entra: EntraEmulator, decl: Any, files: Path, prefix: str) -> dict[str, Any]:
    from ._keys import load_certificate

    app = entra.apps[decl.client_id]
    certificates = []
    for n, pem in enumerate(decl.certificate_pems, start=1):
        cert = load_certificate(pem.certificate_pem, pem.private_key_pem)
        path = files / f"{prefix}{_safe(app.name)}-cert{n}.pem"
        write_private(path, cert.pem_bundle.decode())
        certificates.append({"thumbprint": cert.thumbprint, "pem_file": str(path)})
    return {
        "name": app.name,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "tenant_id": app.tenant_id,
        "app_id_uri": app.app_id_uri,
        "scopes": [app.scope(s) for s in app.scopes],
        "roles": list(app.roles),
        "redirect_uris": list(app.redirect_uris),
        "access_token_version": app.access_token_version,
        "certificates": certificates,
    }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "app"


def _render(summary: dict[str, Any], seconds: float) -> str:
    authority, tenant = summary["authority"], summary["tenant_id"]
    lines = [
        f"Entra ID emulator (better-auth-obo), ready in {seconds:.2f} s. Local development "
        "only: the secrets below are printed on purpose.",
        "",
        f"  authority      {authority}",
        f"  tenant         {tenant} ({summary['tenant_domain']})",
        f"  issuer (v2)    {summary['issuer']}",
        f"  discovery      {summary['discovery_url']}",
        f"  Graph          {summary['graph_url']}",
    ]
    lines += _trust_lines(summary["ca_file"])
    if summary["state_file"]:
        lines.append(f"  state          {summary['state_file']} (keeps this world across restarts)")
    for app in summary["apps"]:
        lines += _app_lines(app)
    lines += ["", "users"]
    lines += [
        f"  {u['upn']}  oid {u['oid']}  {u['display_name']}{' (guest)' if u['guest'] else ''}"
        for u in summary["users"]
    ]
    auto = summary["auto_sign_in"]
    lines += [
        "",
        "sign-in        "
        + (
            "automatic (login_hint user, else the first)"
            if auto is True
            else f"automatic as {auto}"
            if auto
            else "a page with one button per user"
        ),
    ]
    lines += _client_hints(summary)
    lines += ["", "Serving; Ctrl-C to stop."]
    return "\n".join(lines)


def _trust_lines(ca_file: str | None) -> list[str]:
    if ca_file is None:
        return ["  TLS            off (plain http; MSAL and azure-identity refuse it)"]
    return [
        f"  CA file        {ca_file}",
        "  trust it       (Python requests: MSAL, azure-identity)",
        f"                 export REQUESTS_CA_BUNDLE={ca_file}",
        "                 (Python ssl: httpx, aiohttp, urllib)",
        f"                 export SSL_CERT_FILE={ca_file}",
        "                 (Node: MSAL Node, Better Auth)",
        f"                 export NODE_EXTRA_CA_CERTS={ca_file}",
        "                 The first two replace the system CAs for that process; Node's adds.",
    ]


def _app_lines(app: dict[str, Any]) -> list[str]:
    redirects = ", ".join(app["redirect_uris"]) or "any http(s) URI (none registered)"
    lines = [
        "",
        f"app {app['name']}",
        f"  client id      {app['client_id']}",
        f"  client secret  {app['client_secret'] or '(public client: none)'}",
        f"  scopes         {', '.join(app['scopes']) or '(none)'}",
        *_sign_in_scopes(app),
        f"  redirect URIs  {redirects}",
        f"  access tokens  v{app['access_token_version']}",
    ]
    if app["roles"]:
        lines.append(f"  app roles      {', '.join(app['roles'])}")
    lines += [
        f"  certificate    thumbprint {c['thumbprint']}, key + certificate in {c['pem_file']}"
        for c in app["certificates"]
    ]
    return lines


def _client_hints(summary: dict[str, Any]) -> list[str]:
    confidential = [a for a in summary["apps"] if a["client_secret"]]
    if not confidential:
        return []
    app, authority = confidential[0], summary["authority"]
    tenant = summary["tenant_id"]
    return [
        "",
        f"MSAL Python    ConfidentialClientApplication('{app['client_id']}', "
        f"client_credential='<secret>', authority='{authority}/{tenant}', "
        "instance_discovery=False)",
        f"azure-identity ClientSecretCredential('{tenant}', '{app['client_id']}', '<secret>', "
        f"authority='{authority}', disable_instance_discovery=True)",
        f"Better Auth    microsoft provider: client_id '{app['client_id']}', tenant_id "
        f"'{tenant}', authority '{authority}'",
    ]


def _sign_in_scopes(app: dict[str, Any]) -> list[str]:
    """The GUID form a Better Auth / MSAL sign-in for this app's own API should request:
    the ``api://`` form fails at the refresh of the stored token (AADSTS90009)."""
    names = [str(s).rsplit("/", 1)[-1] for s in app["scopes"]]
    if not names:
        return []
    own = ", ".join(f"{app['client_id']}/{name}" for name in names)
    return [f"  sign-in scopes {own}  (this app's own API: the GUID form)"]
