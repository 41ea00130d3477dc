"""FastAPI: better-auth mounted, and ``GET /api/tasks`` calling a downstream API via OBO.

Run against a real tenant (see ``common.ExampleConfig.from_env``)::

    uvicorn --factory examples.fastapi_app:create_app
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations at
# definition time, and the session dependency is a local of create_app.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from better_auth import APIError
from better_auth.integrations.fastapi import BetterAuthFastAPI
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from examples.common import ExampleConfig, build_auth, call_downstream, close, error_response


def create_app(config: ExampleConfig | None = None) -> FastAPI:
    config = config or ExampleConfig.from_env()
    auth, obo = build_auth(config)
    integration = BetterAuthFastAPI(auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await auth.adapter.create_tables()  # type: ignore[attr-defined]
        yield
        await close(auth)

    app = FastAPI(lifespan=lifespan)
    app.include_router(integration.router)

    @app.exception_handler(APIError)
    async def obo_error(request: Request, exc: APIError) -> JSONResponse:
        status, body, headers = error_response(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/api/tasks")
    async def tasks(
        session: Annotated[dict[str, Any], Depends(integration.require_session)],
    ) -> Any:
        return await call_downstream(auth, obo, config, session["user"]["id"])

    return app
