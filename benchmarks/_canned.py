"""A canned Entra token endpoint in a process of its own, for the fair miss benchmark.

``python -m benchmarks._canned`` reads one JSON line of configuration on stdin, serves
plain HTTP and TLS on two loopback ports (asyncio streams, HTTP/1.1 keep-alive, no
framework), prints ``{"http": port, "https": port}`` on stdout, and stops when stdin
closes. It answers, for any tenant path:

- ``POST …/oauth2/v2.0/token`` with an On-Behalf-Of grant: one fixed JSON body (a
  ~1.2 KB access token, ``expires_in`` 3600, ``scope``), counted;
- ``GET …/v2.0/.well-known/openid-configuration`` and ``…/.well-known/openid-configuration``:
  discovery documents (the issuer the configuration names, keys and endpoints on the
  origin asked), what the plugin's verifier and MSAL's authority look-up read;
- ``GET …/keys``: the JWKS the configuration holds (the tests' signing key);
- ``GET /_stats``: what it has counted (not counted itself), and its own CPU time;
  ``GET /_touch``: the same, on a client's connection (counted as a connection only).

Only the standard library is imported here, so the server starts fast and its work per
request stays small and steady; it runs apart from the measured client process, whose
CPU (``time.process_time``) is then the client's alone. ``CannedEntra`` in
``_fair_miss.py`` starts and stops it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any

OBO_GRANT = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        "Cache-Control: no-store, no-cache\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def token_body(scope: str) -> bytes:
    """The one answer to every OBO grant: an opaque token about the size of Entra's."""
    return json.dumps(
        {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "x" * 1160,
        }
    ).encode()


class Stats:
    def __init__(self) -> None:
        self.obo = 0  # POSTs carrying the OBO grant
        self.other_posts = 0
        self.metadata = 0  # discovery documents and keys
        self.connections = 0

    def snapshot(self) -> bytes:
        data = dict(vars(self), cpu=time.process_time())
        return json.dumps(data).encode()


class Site:
    """The canned answers of one origin (scheme, host and port)."""

    def __init__(self, origin: str, config: dict[str, Any], stats: Stats) -> None:
        self.stats = stats
        self.token = _response(200, token_body(config["scope"]))
        self.keys = _response(200, json.dumps(config["jwks"]).encode())
        self.origin = origin
        self.issuer_v2 = config["issuer_v2"]
        self.issuer_v1 = config["issuer_v1"]
        self._documents: dict[tuple[str, int], bytes] = {}

    def discovery(self, tenant: str, version: int) -> bytes:
        answer = self._documents.get((tenant, version))
        if answer is None:
            base = f"{self.origin}/{tenant}"
            v2 = "/v2.0" if version == 2 else ""
            document = {
                "issuer": self.issuer_v2 if version == 2 else self.issuer_v1,
                "jwks_uri": f"{base}/discovery{v2}/keys",
                "token_endpoint": f"{base}/oauth2{v2}/token",
                "authorization_endpoint": f"{base}/oauth2{v2}/authorize",
                "device_authorization_endpoint": f"{base}/oauth2{v2}/devicecode",
                "end_session_endpoint": f"{base}/oauth2{v2}/logout",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "subject_types_supported": ["pairwise"],
            }
            answer = _response(200, json.dumps(document).encode())
            self._documents[(tenant, version)] = answer
        return answer

    def answer(self, method: bytes, path: str, body: bytes) -> bytes:
        stats = self.stats
        if method == b"POST":
            if path.endswith("/oauth2/v2.0/token") and OBO_GRANT in body:
                stats.obo += 1
                return self.token
            stats.other_posts += 1
            return _response(400, b'{"error":"unsupported_grant_type"}')
        if path in ("/_stats", "/_touch"):  # /_touch: a client's connection, kept warm
            return _response(200, stats.snapshot())
        stats.metadata += 1
        tenant = path.split("/")[1] if path.count("/") > 1 else "common"
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            return self.discovery(tenant, 2)
        if path.endswith("/.well-known/openid-configuration"):
            return self.discovery(tenant, 1)
        if path.endswith("/keys"):
            return self.keys
        return _response(404, b'{"error":"not_found"}')

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = False  # a connection that asks only for /_stats is not a client's
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, target, _version = line.split(b" ", 2)
                length, close, chunked = 0, False, False
                for header in rest.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                    elif name == b"transfer-encoding":
                        chunked = True
                if chunked:  # no client here sends a chunked form
                    writer.write(_response(411, b'{"error":"length_required"}', close=True))
                    break
                body = await reader.readexactly(length) if length else b""
                path = target.decode("latin-1").split("?", 1)[0]
                if not counted and path != "/_stats":
                    counted = True
                    self.stats.connections += 1
                writer.write(self.answer(method, path, body))
                if close:
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def main(config: dict[str, Any]) -> None:
    stats = Stats()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(config["cert_chain"], config["cert_key"])
    plain_site = Site("", config, stats)
    tls_site = Site("", config, stats)
    plain = await asyncio.start_server(plain_site.serve, "127.0.0.1", 0)
    secure = await asyncio.start_server(tls_site.serve, "127.0.0.1", 0, ssl=tls)
    ports = {
        "http": plain.sockets[0].getsockname()[1],
        "https": secure.sockets[0].getsockname()[1],
    }
    plain_site.origin = f"http://127.0.0.1:{ports['http']}"
    tls_site.origin = f"https://127.0.0.1:{ports['https']}"
    print(json.dumps(ports), flush=True)
    # stdin closing (the parent exiting or stopping us) ends the server
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    plain.close()
    secure.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.stdin.readline())))
