"""``/{tenant}/oauth2/v2.0/logout`` and the v1 ``/{tenant}/oauth2/logout``: front-channel
sign-out (v2-protocols-oidc.md, "Send a sign-out request").

Entra ends its session and redirects to ``post_logout_redirect_uri`` (with ``state`` when
one was sent); without one it shows a "you signed out" page. The emulator keeps no
browser session, so only the answer is emulated. Only http(s) targets are followed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ._html import html_page

__all__ = ["logout"]

_PAGE = (
    "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>"
)


async def logout(request: Request) -> Response:
    params = dict(request.query_params)
    if request.method == "POST":  # a form body, parsed by hand (no python-multipart here)
        params |= dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    target = params.get("post_logout_redirect_uri", "")
    if urlsplit(target).scheme not in ("http", "https"):
        return html_page("Sign out", _PAGE)
    state = params.get("state")
    if state:
        target += ("&" if urlsplit(target).query else "?") + urlencode({"state": state})
    return RedirectResponse(target, status_code=302)
