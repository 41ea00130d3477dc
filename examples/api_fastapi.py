"""FastAPI API: ``GET /me`` calls Microsoft Graph as the caller (On-Behalf-Of), no Better Auth.

The client sends ``Authorization: Bearer <its token for this API>``; the ``caller_token``
dependency reads it, ``OBOClient`` verifies and exchanges it, and the route calls Graph
with the OBO token. A bad token is 401 (``WWW-Authenticate: Bearer error="invalid_token"``)
before any request to Entra ID; Entra's claims challenge (MFA, Conditional Access) goes
back to the client as Microsoft documents for APIs (see ``api_common.error_response``).

Run against a real tenant (see ``api_common.ApiConfig.from_env``)::

    uvicorn --factory examples.api_fastapi:create_app
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations
# at definition time, and they are locals of create_app.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from better_auth_obo import OBOError
from examples.api_common import ApiConfig, GraphAsCaller, GraphError, error_response

_bearer = HTTPBearer(auto_error=False)  # we answer a missing token ourselves (RFC 6750)


async def caller_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The inbound access token from ``Authorization: Bearer``; 401 without one.

    RFC 6750 §3.1: a request without credentials gets a challenge with no error code.
    """
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(401, "A bearer token is required", {"WWW-Authenticate": "Bearer"})
    return credentials.credentials.strip()


def create_app(config: ApiConfig | None = None) -> FastAPI:
    config = config or ApiConfig.from_env()
    graph = GraphAsCaller(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with graph:  # one OBOClient (cache, single-flight) for the app's lifetime
            yield

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(OBOError)
    async def obo_error(request: Request, exc: OBOError) -> JSONResponse:
        status, body, headers = error_response(exc, config)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(GraphError)
    async def graph_error(request: Request, exc: GraphError) -> JSONResponse:
        body = {"code": "GRAPH_ERROR", "message": str(exc), "status": exc.status_code}
        return JSONResponse(body, status_code=502)

    @app.get("/me")
    async def me(token: Annotated[str, Depends(caller_token)]) -> Any:
        return await graph.profile(token)

    return app
