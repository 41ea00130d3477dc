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

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.auth import AccessToken, TokenVerificationError, TokenVerifier
from fastmcp.server.dependencies import CurrentAccessToken

from better_auth_obo import (
    EntraUnavailableError,
    InvalidAssertionError,
    OBOError,
    claims_challenge,
)
from examples.api_common import ApiConfig, GraphAsCaller, GraphError


class EntraTokenVerifier(TokenVerifier):
    """FastMCP's bearer-token hook, verifying inbound Entra ID tokens with ``OBOClient``:
    signature, issuer, audience, tenant and time, before any tool runs (no exchange:
    the tool exchanges when it needs Graph)."""

    def __init__(self, graph: GraphAsCaller) -> None:
        super().__init__(required_scopes=[graph.config.required_scope])
        self.graph = graph

    def get_challenge_scopes(self, required_scopes: list[str] | None = None) -> list[str]:
        # What the client must request from Entra ID: "<client id>/<scope>".
        scopes = self.required_scopes if required_scopes is None else required_scopes
        return [f"{self.graph.config.client_id}/{scope}" for scope in scopes]

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            caller = await self.graph.obo.verify(token)
        except InvalidAssertionError:
            return None  # foreign, tampered, expired: 401 invalid_token
        except EntraUnavailableError as exc:
            # No signing keys could be had: fail closed ("verification unavailable").
            raise TokenVerificationError("Entra ID is unavailable; try again later") from exc
        # FastMCP answers 403 insufficient_scope from these scopes when one is missing.
        return AccessToken(
            token=token,
            client_id=caller.client_id or "",
            scopes=list(caller.scopes),
            expires_at=int(caller.expires_at.timestamp()),
            subject=caller.oid,
            claims={"oid": caller.oid, "tid": caller.tid},
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
