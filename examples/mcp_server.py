"""MCP server on FastMCP: the ``my_profile`` tool calls Microsoft Graph as the MCP client's user.

The MCP client sends the user's Entra ID token for this server as ``Authorization:
Bearer`` (streamable HTTP). FastMCP's bearer-token hook (``auth=``, a ``TokenVerifier``)
hands each request's token to ``EntraTokenVerifier``, which verifies it with
``OBOClient`` (signature, issuer, audience, tenant, time, the required scope) before any
tool runs: a foreign, tampered or expired token is 401 and never reaches Entra ID. The
tool then exchanges the same token (On-Behalf-Of, cached per token: one exchange however
many concurrent calls) and calls Graph ``/me``.

Run against a real tenant (see ``api_common.ApiConfig.from_env``)::

    python -m examples.mcp_server        # http://127.0.0.1:8000/mcp
"""

# No `from __future__ import annotations`: FastMCP reads the tool's signature (its
# CurrentAccessToken dependency) at registration time.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.auth import AccessToken, TokenVerificationError, TokenVerifier
from fastmcp.server.dependencies import CurrentAccessToken

from better_auth_obo import (
    EntraError,
    EntraUnavailableError,
    InvalidAssertionError,
    OBOError,
    ReauthenticationRequiredError,
    claims_challenge,
)
from examples.api_common import ApiConfig, GraphAsCaller, GraphError


class EntraTokenVerifier(TokenVerifier):
    """FastMCP's bearer-token hook, verifying inbound Entra ID tokens with ``OBOClient``.

    ``OBOClient`` has no verify-only call, so the check is the exchange itself: it
    verifies first and refuses a bad token before any request to Entra ID, and its
    result is cached, so the tool's exchange with the same token is a cache hit.
    """

    def __init__(self, graph: GraphAsCaller) -> None:
        super().__init__(required_scopes=[graph.config.required_scope])
        self.graph = graph

    def get_challenge_scopes(self, required_scopes: list[str] | None = None) -> list[str]:
        # What the client must request from Entra ID: "<client id>/<scope>".
        scopes = self.required_scopes if required_scopes is None else required_scopes
        return [f"{self.graph.config.client_id}/{scope}" for scope in scopes]

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            await self.graph.exchange(token)
        except InvalidAssertionError as exc:
            if exc.reason != "scope":
                return None  # foreign, tampered, expired: 401 invalid_token
            # Verified, but without this server's scope: FastMCP answers 403
            # insufficient_scope from the token's own scopes below.
        except ReauthenticationRequiredError:
            return None  # Entra ID refused the token itself: the client needs a new one
        except EntraUnavailableError as exc:
            # Fail closed; FastMCP's "verification unavailable" (the request fails).
            raise TokenVerificationError("Entra ID is unavailable; try again later") from exc
        except EntraError:
            # The token passed every check; Entra ID refused the exchange (a claims
            # challenge, consent): the tool call reports it to the client.
            pass
        return _access_token(token)


def _access_token(token: str) -> AccessToken:
    # The claims of a token OBOClient has just verified (signature included).
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return AccessToken(
        token=token,
        client_id=str(claims.get("azp") or claims.get("appid") or ""),
        scopes=str(claims.get("scp", "")).split(),
        expires_at=int(claims["exp"]),
        subject=claims.get("oid"),
        claims=claims,
    )


def _tool_error(exc: OBOError) -> ToolError:
    claims = claims_challenge(exc)
    if claims is not None:
        # MCP has no claims-challenge answer yet: say what the client must do.
        return ToolError(
            f"{exc.message}. insufficient_claims: request a new token for this server "
            f"with these claims, then call again. claims={claims}"
        )
    return ToolError(f"{exc.message} ({exc.code})")


def create_server(config: ApiConfig | None = None) -> FastMCP:
    config = config or ApiConfig.from_env()
    graph = GraphAsCaller(config)

    @asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        async with graph:  # one OBOClient (cache, single-flight) for the server's lifetime
            yield {}

    mcp = FastMCP("graph-as-user", auth=EntraTokenVerifier(graph), lifespan=lifespan)

    @mcp.tool
    async def my_profile(
        token: AccessToken = CurrentAccessToken(),  # noqa: B008 (FastMCP's dependency idiom)
    ) -> dict[str, Any]:
        """The signed-in user's Microsoft Graph profile, fetched as that user."""
        try:
            return await graph.profile(token.token)
        except OBOError as exc:
            raise _tool_error(exc) from None
        except GraphError as exc:
            raise ToolError(str(exc)) from None

    return mcp


if __name__ == "__main__":
    create_server().run(transport="http", host="127.0.0.1", port=8000)
