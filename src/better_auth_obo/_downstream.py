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

from collections.abc import AsyncGenerator, Generator, Iterable
from typing import TYPE_CHECKING

import httpx

from ._assertion import resource_of
from ._claims import challenge_claims
from ._entra import LOOPBACK_HOSTS

if TYPE_CHECKING:
    from ._plugin import OBOPlugin

__all__ = ["OBOAuth", "scope_resource"]


def scope_resource(scope: str) -> str | None:
    """The resource a scope belongs to, lowercased for comparison (``resource_of``'s
    reading: a bare permission is Graph's, ``<guid>/x`` the app's, OpenID scopes none)."""
    resource = resource_of(scope)
    return resource.lower() if resource is not None else None


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

    def __init__(
        self,
        plugin: OBOPlugin,
        *,
        user_id: str,
        application_name: str,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        application = plugin._adapter_application(user_id, application_name)
        self._plugin = plugin
        self.user_id = user_id
        self.application_name = application_name
        if isinstance(allowed_hosts, str):
            allowed_hosts = [allowed_hosts]
        self.allowed_hosts = (
            frozenset(h.lower() for h in allowed_hosts)
            if allowed_hosts is not None
            else _resource_hosts(application.scope)
        )

    def __repr__(self) -> str:
        return f"OBOAuth(user_id={self.user_id!r}, application_name={self.application_name!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError(
            "OBOAuth is async (get_obo_token awaits the database and Entra ID): "
            "use it with httpx.AsyncClient"
        )

    def _check_destination(self, url: httpx.URL) -> None:
        # The token is the user's: never over plain http, and (when the application's
        # resource is an https URL, e.g. Graph) only to that resource's host.
        if url.host in LOOPBACK_HOSTS:
            return
        if url.scheme != "https":
            raise ValueError(
                f"OBOAuth sends the user's token over https only, not to {url.scheme}://{url.host}"
            )
        if self.allowed_hosts and url.host not in self.allowed_hosts:
            raise ValueError(
                f"OBOAuth for application {self.application_name!r} sends its token to "
                f"{sorted(self.allowed_hosts)} only, not to {url.host!r}; pass "
                "allowed_hosts=[...] to http_auth() if that host is the API's"
            )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._check_destination(request.url)
        # The token in memory is read, not copied (only its value is used); a miss goes
        # through get_obo_token.
        token = self._plugin._hit(self.user_id, self.application_name) or (
            await self._plugin.get_obo_token(
                user_id=self.user_id, application_name=self.application_name
            )
        )
        request.headers["Authorization"] = "Bearer " + token["accessToken"]
        response = yield request
        if response.status_code != 401 or not _same_origin(response.request.url, request.url):
            return  # (a 401 from a redirect target elsewhere never picks the claims we send)
        claims = challenge_claims(response.headers.get("www-authenticate", ""))
        if claims is None:  # a plain 401: a new token would be refused the same way
            return
        token = await self._plugin.get_obo_token(
            user_id=self.user_id, application_name=self.application_name, claims=claims
        )
        request.headers["Authorization"] = "Bearer " + token["accessToken"]
        yield request


def _resource_hosts(scopes: Iterable[str]) -> frozenset[str]:
    """The hosts of the application's resources when all are https URLs, else empty
    (``api://...`` or a client id names no host: any https host)."""
    hosts = set()
    for resource in filter(None, map(scope_resource, scopes)):
        url = httpx.URL(resource)
        if url.scheme != "https" or not url.host:
            return frozenset()
        hosts.add(url.host)
    return frozenset(hosts)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
