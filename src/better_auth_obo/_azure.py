"""An Azure SDK credential backed by ``get_obo_token`` (``pip install "better-auth-obo[azure]"``).

Every Azure SDK client (and the Microsoft Graph SDK) takes ``credential=``: an object
with azure-core's ``AsyncTokenCredential.get_token`` and ``AsyncSupportsTokenInfo.
get_token_info``. The SDK's ``AsyncBearerTokenCredentialPolicy`` keeps the token it got
and asks again near expiry, or with ``claims`` when the service answers a CAE claims
challenge; those claims go to a new exchange (``get_obo_token(claims=...)``).
Microsoft.Identity.Web's ``MicrosoftIdentityTokenCredential`` is the .NET counterpart.

This module is the only one that imports azure-core; the plugin never does.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from ._downstream import scope_resource
from ._verify import is_guid

if TYPE_CHECKING:
    from ._plugin import OBOPlugin

__all__ = ["OBOTokenCredential", "scope_resource"]


class OBOTokenCredential:
    """The user's OBO token for one application, as an Azure SDK async credential.

    Example::

        from msgraph import GraphServiceClient

        credential = obo.credential(user_id=uid, application_name="graph")
        graph = GraphServiceClient(credentials=credential, scopes=["https://graph.microsoft.com/.default"])
        me = await graph.me.get()

    ``get_obo_token``'s cache, single flight, retries and errors apply: a step-up is the
    ``better_auth.APIError`` it raises (``sign_in_again`` turns it into a sign-in).
    """

    def __init__(self, plugin: OBOPlugin, *, user_id: str, application_name: str) -> None:
        application = plugin._adapter_application(user_id, application_name)
        self._plugin = plugin
        self.user_id = user_id
        self.application_name = application_name
        self._scopes = application.scope
        self._resources = {r for r in map(scope_resource, application.scope) if r is not None}
        self._checked: set[tuple[str, ...]] = set()  # scope lists already found good
        self._last_info: AccessTokenInfo | None = None
        self._ask_again = 0.0
        self._last_token: AccessTokenInfo | None = None
        self._last_access = AccessToken("", 0)

    def __repr__(self) -> str:
        return (
            f"OBOTokenCredential(user_id={self.user_id!r}, "
            f"application_name={self.application_name!r})"
        )

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """azure-core's ``AsyncTokenCredential.get_token``."""
        info = await self._token(scopes, claims, tenant_id)
        if self._last_token is not info:  # one AccessToken per token: no rebuild per hit
            self._last_token, self._last_access = info, AccessToken(info.token, info.expires_on)
        return self._last_access

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """azure-core's ``AsyncSupportsTokenInfo.get_token_info``."""
        if not options:
            return await self._token(scopes, None, None)
        return await self._token(scopes, options.get("claims"), options.get("tenant_id"))

    async def _token(
        self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None
    ) -> AccessTokenInfo:
        try:
            known = scopes in self._checked
        except TypeError:  # an unhashable scope: _check_scopes says what is wrong
            known = False
        if not known:
            self._check_scopes(scopes)
            if len(self._checked) < 64:  # an SDK asks with one or two scope lists
                self._checked.add(scopes)
        if tenant_id:
            self._check_tenant(tenant_id)
        if claims:
            account = await self._plugin.get_obo_token(
                user_id=self.user_id, application_name=self.application_name, claims=claims
            )
        else:  # the token in memory is read, not copied; a miss goes through get_obo_token
            account = self._plugin._hit(self.user_id, self.application_name) or (
                await self._plugin.get_obo_token(
                    user_id=self.user_id, application_name=self.application_name
                )
            )
        now = self._plugin._clock()
        last = self._last_info
        if last is not None and last.token is account["accessToken"] and now < self._ask_again:
            return last  # the same token as last time: the same answer, not rebuilt
        plugin = self._plugin
        expires_on = int(account["accessTokenExpiresAt"].timestamp())
        # The SDK keeps the token until refresh_on. Asking again within the plugin's
        # revalidation bound lets a revoke, an unlink or a new sign-in reach a long-lived
        # SDK client (CAE tokens live a day); a hit costs microseconds.
        refresh_on = min(
            expires_on - int(plugin.expiry_buffer + plugin.refresh_ahead),
            int(now + max(plugin.cache_revalidate_after, 1.0)),
        )
        self._ask_again = refresh_on
        self._last_info = AccessTokenInfo(
            account["accessToken"], expires_on, token_type="Bearer", refresh_on=refresh_on
        )
        return self._last_info

    def _check_scopes(self, scopes: tuple[str, ...]) -> None:
        if not scopes:
            raise ValueError("get_token needs at least one scope, e.g. the resource's /.default")
        if all(isinstance(scope, str) and scope_resource(scope) is None for scope in scopes):
            raise ValueError(
                f"scopes {list(scopes)[:5]!r} name no resource; ask for the application's "
                f"(configured scopes: {list(self._scopes)})"
            )
        for scope in scopes:
            if not isinstance(scope, str):
                raise TypeError(f"scopes must be strings, got {type(scope).__name__}")
            resource = scope_resource(scope)
            if resource is not None and resource not in self._resources:
                raise ValueError(
                    f"scope {scope[:200]!r} is not for application {self.application_name!r}, "
                    f"whose token is for {sorted(self._resources)} (configured scopes: "
                    f"{list(self._scopes)}); give the SDK that resource's scopes, or make "
                    "a credential for the application that has them"
                )

    def _check_tenant(self, tenant_id: str | None) -> None:
        # An OBO token is issued in the signed-in user's tenant; another tenant cannot be
        # asked for on their behalf.
        if not tenant_id:
            return
        configured = self._plugin.tenant
        if (
            configured
            and is_guid(configured)
            and is_guid(tenant_id)
            and tenant_id.lower() != configured.lower()
        ):
            raise ValueError(
                f"tenant_id {tenant_id[:64]!r} cannot be honoured: an On-Behalf-Of token is "
                "issued in the signed-in user's own tenant"
            )

    async def close(self) -> None:
        """Nothing to release: the plugin owns the connections (``OBOPlugin.aclose``)."""

    async def __aenter__(self) -> OBOTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()
