"""Calling a downstream API as the user: an ``httpx.Auth`` backed by ``get_obo_token``.

The token is attached as ``Authorization: Bearer``. A resource that enforces Continuous
Access Evaluation or an authentication context answers ``401`` with
``WWW-Authenticate: Bearer ..., error="insufficient_claims", claims="<base64>"``
(claims-challenge.md, "Claims challenge header format"); the auth then asks for a new
token with those claims once and replays the request. When Entra needs the user for
that (a revoked session, MFA not done), ``get_obo_token`` raises the step-up
``APIError`` (``sign_in_again`` turns it into the sign-in the app sends the user to).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from ._claims import challenge_claims

if TYPE_CHECKING:
    from ._plugin import OBOPlugin

__all__ = ["OBOAuth"]


class OBOAuth(httpx.Auth):
    """``httpx.Auth`` that sends ``user_id``'s token for ``application_name``.

    Example::

        auth = obo.http_auth(user_id=uid, application_name="graph")
        async with httpx.AsyncClient(auth=auth) as client:
            me = (await client.get("https://graph.microsoft.com/v1.0/me")).json()
    """

    # The body is read before the first send so the request can be replayed after a
    # claims challenge (httpx reads it once; a streamed upload cannot be sent twice).
    requires_request_body = True

    def __init__(self, plugin: OBOPlugin, *, user_id: str, application_name: str) -> None:
        if not isinstance(user_id, str) or not user_id:
            raise TypeError("user_id must be a non-empty Better Auth user id")
        if application_name not in plugin.applications:
            known = ", ".join(repr(n) for n in plugin.applications)
            raise ValueError(
                f"Unknown OBO application {str(application_name)[:64]!r}; "
                f"configured applications: {known}"
            )
        self._plugin = plugin
        self.user_id = user_id
        self.application_name = application_name

    def __repr__(self) -> str:
        return f"OBOAuth(user_id={self.user_id!r}, application_name={self.application_name!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError(
            "OBOAuth is async (get_obo_token awaits the database and Entra ID): "
            "use it with httpx.AsyncClient"
        )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # The token in memory is read, not copied (only its value is used); a miss goes
        # through get_obo_token.
        token = self._plugin._hit(self.user_id, self.application_name) or (
            await self._plugin.get_obo_token(
                user_id=self.user_id, application_name=self.application_name
            )
        )
        request.headers["Authorization"] = "Bearer " + token["accessToken"]
        response = yield request
        if response.status_code != 401:
            return
        claims = challenge_claims(response.headers.get("www-authenticate", ""))
        if claims is None:  # a plain 401: a new token would be refused the same way
            return
        token = await self._plugin.get_obo_token(
            user_id=self.user_id, application_name=self.application_name, claims=claims
        )
        request.headers["Authorization"] = "Bearer " + token["accessToken"]
        yield request
