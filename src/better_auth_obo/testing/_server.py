"""The HTTP side: the Starlette routes and a uvicorn server in a daemon thread,
with TLS from a throw-away CA (trustme) because MSAL and azure-identity refuse
plain-http authorities.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._authorize import authorize, authorize_v1
from ._device import device_login, devicecode
from ._discovery import error_page, instance_discovery, jwks, openid_configuration
from ._faults import Faults
from ._federation import external_discovery, external_jwks, managed_identity_token
from ._graph import downstream_whoami, graph_me, graph_user_by_id, graph_userinfo
from ._logout import logout
from ._token_endpoint import token_endpoint, token_endpoint_v1
from ._tokens import TokenIssuer

__all__ = ["ServerThread", "build_app"]

STARTUP_TIMEOUT = 10.0
#: Addresses that mean "every interface": not a name a client can put in a URL.
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognising, not binding


def build_app(issuer: TokenIssuer, faults: Faults) -> ASGIApp:
    routes = [
        Route("/error", error_page),
        Route("/common/discovery/instance", instance_discovery),
        Route("/graph/v1.0/me", graph_me),
        Route("/graph/v1.0/users/{user_id}", graph_user_by_id),
        Route("/graph/oidc/userinfo", graph_userinfo),
        Route("/api/{client_id}/whoami", downstream_whoami),
        Route("/external/{issuer_id}/.well-known/openid-configuration", external_discovery),
        Route("/external/{issuer_id}/openid/v1/jwks", external_jwks),
        Route("/msi/{identity_id}/token", managed_identity_token),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", jwks),
        Route("/{tenant}/discovery/keys", jwks),
        Route("/{tenant}/oauth2/v2.0/token", token_endpoint, methods=["POST"]),
        Route("/{tenant}/oauth2/token", token_endpoint_v1, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/authorize", authorize_v1, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/devicecode", devicecode, methods=["POST"]),
        Route("/devicelogin", device_login, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/logout", logout, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.issuer = issuer
    app.state.faults = faults

    async def capture_send(scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette wraps ``send``; keep uvicorn's own for drop_connection faults.
        scope["emulator.raw_send"] = send
        await app(scope, receive, send)

    return capture_send


class ServerThread:
    """Binds (127.0.0.1:0 by default) at construction, so the URL is known; serves on
    ``start``."""

    def __init__(
        self,
        *,
        tls: bool,
        host: str = "127.0.0.1",
        port: int = 0,
        ca: trustme.CA | None = None,
        url_host: str | None = None,
    ) -> None:
        """``host``/``port``: where to listen (port 0: a free one). ``ca``: a kept CA (the
        standalone server's state) instead of a new one. ``url_host``: the name clients
        use in the URL (default: ``host``, or 127.0.0.1 for a wildcard address)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="entra-emulator-")
        self.ca_file: str | None = None
        self._cert_file: str | None = None
        self._ca: trustme.CA | None = None
        name = url_host or (host if host not in _WILDCARDS else "127.0.0.1")
        if tls:
            self._ca = ca or trustme.CA(organization_name="better-auth-obo Entra emulator")
            leaf = self._ca.issue_cert(*dict.fromkeys(["127.0.0.1", "localhost", name]))
            self.ca_file = str(Path(self._tmp.name, "ca.pem"))
            self._cert_file = str(Path(self._tmp.name, "server.pem"))
            self._ca.cert_pem.write_to_path(self.ca_file)
            leaf.private_key_and_cert_chain_pem.write_to_path(self._cert_file)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY only on sockets whose
        # ``proto`` is TCP (``base_events._set_nodelay``), and accepted sockets inherit the
        # listener's. With proto 0, Nagle + delayed ACK put a ~40 ms floor under every
        # request on a kept-alive connection.
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            self._tmp.cleanup()
            raise
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        shown = f"[{name}]" if ":" in name else name
        self.url = f"{'https' if tls else 'http'}://{shown}:{self.port}"
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            ssl_certfile=self._cert_file,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(server),), name="entra-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Entra emulator's server did not start")
            time.sleep(0.002)

    async def _serve(self, server: uvicorn.Server) -> None:
        self._loop = asyncio.get_running_loop()
        await server.serve(sockets=[self._sock])
        self._abort_connections()
        await asyncio.sleep(0)  # let the aborted transports close their sockets

    def _abort_connections(self) -> None:
        """Close every client connection now. uvicorn's graceful close of a TLS
        connection waits for the peer's close_notify, which a pooled client connection
        may never send: the socket would outlive the loop (ResourceWarning)."""
        server = self._server
        for connection in list(server.server_state.connections if server else ()):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    def configure_trust(self, context: Any) -> None:
        if self._ca is not None:
            self._ca.configure_trust(context)

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close meanwhile
                self._loop.call_soon_threadsafe(self._abort_connections)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
        self._tmp.cleanup()
        self._server = self._thread = None
