"""Serve an ASGI app with uvicorn on 127.0.0.1, inside the running event loop.

The demo's OBO calls must run on the loop that serves the app: the SQLAlchemy engine
and the shared ``httpx.AsyncClient`` are bound to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn

__all__ = ["bind", "serving"]

LOOPBACK = "127.0.0.1"


def bind(port: int = 0) -> socket.socket:
    """A listening socket on loopback (``port`` 0: any free one); OSError if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: Any, sock: socket.socket, *, lifespan: Literal["auto", "on", "off"] = "off"
) -> AsyncIterator[asyncio.Event]:
    """Serve ``app`` on ``sock`` until the block exits; yields an event set once the
    server has stopped by itself (Ctrl-C / SIGTERM, which uvicorn handles)."""
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopped = asyncio.Event()
    task.add_done_callback(lambda _: stopped.set())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped the server
                raise RuntimeError("the demo app stopped while starting")
            await asyncio.sleep(0.01)
        yield stopped
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
