"""The emulator's sign-in pages over plain HTTP on loopback, for a normal browser.

The emulator serves HTTPS with a CA made at start, which no browser trusts: the first
click of ``--serve`` would land on "Your connection is not private". So in serve mode the
browser goes through this front door instead: a small pass-through on another loopback
port that forwards only the pages a person sees (``/authorize`` and ``/logout``, v2 and
v1) to the emulator over TLS. Everything server-side (the Microsoft provider's code
redemption and refresh, the plugin's OBO exchanges, Graph, the JWKS) keeps talking to
the emulator's HTTPS authority, verified against its CA, as it would in production.
"""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

__all__ = ["front_door"]

_BROWSER_PAGES = re.compile(r"^/[^/]+/oauth2/(v2\.0/)?(authorize|logout)$")
_KEPT_HEADERS = ("content-type", "location", "cache-control")


def front_door(authority: str, http: httpx.AsyncClient) -> Starlette:
    """An ASGI app forwarding the browser-facing pages to ``authority`` with ``http``."""

    async def forward(request: Request) -> Response:
        if not _BROWSER_PAGES.match(request.url.path):
            return HTMLResponse(
                "<!doctype html><meta charset='utf-8'><title>Not here</title>"
                "<p>Only the Entra ID emulator's sign-in pages are served on this port. "
                f"Its other endpoints are at {authority} (HTTPS).</p>",
                404,
            )
        headers = {}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        query = f"?{request.url.query}" if request.url.query else ""
        answer = await http.request(
            request.method,
            f"{authority}{request.url.path}{query}",
            content=await request.body(),
            headers=headers,
            follow_redirects=False,
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT_HEADERS}
        return Response(answer.content, answer.status_code, headers=kept)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])
