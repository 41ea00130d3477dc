"""Litestar: better-auth mounted, and ``GET /api/tasks`` calling a downstream API via OBO.

Run against a real tenant (see ``common.ExampleConfig.from_env``)::

    uvicorn --factory examples.litestar_app:create_app
"""

from __future__ import annotations

from typing import Any

from better_auth import APIError
from better_auth.integrations.litestar import BetterAuthLitestar
from litestar import Litestar, Request, Response, get

from examples.common import ExampleConfig, build_auth, call_downstream, close, error_response


def create_app(config: ExampleConfig | None = None) -> Litestar:
    config = config or ExampleConfig.from_env()
    auth, obo = build_auth(config)
    integration = BetterAuthLitestar(auth)

    async def create_tables() -> None:
        await auth.adapter.create_tables()  # type: ignore[attr-defined]

    async def shutdown() -> None:
        await close(auth)

    def obo_error(request: Request[Any, Any, Any], exc: APIError) -> Response[Any]:
        status, body, headers = error_response(exc)
        return Response(body, status_code=status, headers=headers)

    @get("/api/tasks")
    async def tasks(request: Request[Any, Any, Any]) -> Any:
        session = await integration.require_session(request)
        return await call_downstream(auth, obo, config, session["user"]["id"])

    return Litestar(
        route_handlers=[integration.router, tasks],
        on_startup=[create_tables],
        on_shutdown=[shutdown],
        exception_handlers={APIError: obo_error},
    )
