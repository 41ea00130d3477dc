"""The demo: a local Entra ID, a FastAPI app with better-auth-server and OBOPlugin.

``better-auth-obo demo`` runs :func:`run_demo` (a scripted sign-in and four
``get_obo_token`` calls, as a transcript); ``better-auth-obo demo --serve`` runs
:func:`serve_demo` (the same app, for a browser). Both stay on 127.0.0.1 and keep their
SQLite database in a temporary folder.

This module imports only the standard library at first: the transcript's first line is
printed before FastAPI, better-auth-server and the emulator are loaded.

Example::

    from better_auth_obo.demo import run_demo
    raise SystemExit(run_demo())
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._transcript import Transcript, timed

if TYPE_CHECKING:
    from better_auth_obo.testing import EntraEmulator

    from ._events import TokenLog
    from ._world import DemoAuth, Tenant

__all__ = ["DemoFailure", "Running", "run_demo", "running", "serve_demo"]

HEADER = (
    "better-auth-obo demo: Microsoft Entra ID On-Behalf-Of, end to end, offline\n"
    "(a local Entra ID emulator, a FastAPI app with better-auth-server + OBOPlugin, SQLite;\n"
    "tokens are never printed)\n"
)
EXTRA = "better-auth-obo demo needs the demo extra: pip install 'better-auth-obo[demo]'"


class DemoFailure(Exception):
    """A step did not do what the demo expected; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Running:
    """The emulator, the app's auth and the app's URL, while the demo runs.

    ``door_url``: where a browser reaches the emulator's sign-in pages (plain HTTP on
    loopback, serve mode), else None.
    """

    tenant: Tenant
    demo: DemoAuth
    url: str
    stopped: asyncio.Event
    log: TokenLog
    door_url: str | None = None


@asynccontextmanager
async def running(
    out: Transcript | None = None,
    *,
    port: int = 0,
    interactive: bool = False,
    door: bool = False,
    events: Transcript | None = None,
) -> AsyncIterator[Running]:
    """Start the emulator and the demo app on loopback; stop both on exit.

    ``door``: also serve the emulator's sign-in pages over plain HTTP for a browser (no
    certificate warning); ``events``: where the app prints one line per token event.
    """
    from better_auth_obo.testing import EntraEmulator

    from ._app import build_app
    from ._door import front_door
    from ._events import TokenLog
    from ._server import bind, serving
    from ._world import build_auth, populate

    with timed() as took:
        entra = await asyncio.to_thread(EntraEmulator().start)
    try:
        tenant = populate(entra)
        if out is not None:
            out.step("Entra ID emulator", entra.authority, took())
            out.note(f"tenant {entra.tenant_id}")
        with tempfile.TemporaryDirectory(prefix="better-auth-obo-demo-") as folder:
            with timed() as took:
                sock = bind(port)
                url = f"http://127.0.0.1:{sock.getsockname()[1]}"
                demo = await build_auth(tenant, base_url=url, folder=Path(folder))
            try:
                async with AsyncExitStack() as stack:
                    door_url = None
                    if door:
                        door_sock = bind(0)
                        door_url = f"http://127.0.0.1:{door_sock.getsockname()[1]}"
                        door_app = front_door(entra.authority, demo.http)
                        await stack.enter_async_context(serving(door_app, door_sock))
                    log = TokenLog(demo.obo, tenant, events)
                    stack.enter_context(log.listening())
                    app = build_app(
                        demo, tenant, interactive=interactive, log=log, door_url=door_url
                    )
                    stopped = await stack.enter_async_context(serving(app, sock))
                    if out is not None:
                        out.step("demo app", url, took())
                        out.note("FastAPI + better-auth-server + OBOPlugin")
                        out.note(f"SQLite {demo.database}")
                    yield Running(
                        tenant=tenant,
                        demo=demo,
                        url=url,
                        stopped=stopped,
                        log=log,
                        door_url=door_url,
                    )
            finally:
                await demo.close()
    finally:
        await asyncio.to_thread(entra.stop)


async def _demo(out: Transcript, prepare: Callable[[EntraEmulator], object] | None) -> None:
    from ._script import run_script

    async with running(out) as run:
        if prepare is not None:
            prepare(run.tenant.entra)
        await run_script(run.demo, run.tenant, run.url, out)


def run_demo(
    *, out: TextIO | None = None, prepare: Callable[[EntraEmulator], object] | None = None
) -> int:
    """Run the scripted demo and print its transcript; 0 on success, 1 on failure.

    The first line is printed at once; the total reported at the end is the time from
    that line to the end of the shutdown. ``prepare`` gets the running emulator before
    the script starts (tests use it to inject a fault or a policy).
    """
    stream = out or sys.stdout
    transcript = Transcript(stream)
    transcript.line(HEADER)
    try:
        with timed() as took:
            import httpx
            from better_auth import APIError

            from . import _app, _script  # noqa: F401  (FastAPI, better-auth-server, emulator)
    except ImportError as exc:
        print(f"{EXTRA} ({exc})", file=sys.stderr)
        return 1
    transcript.step("load the demo", "FastAPI, better-auth-server, the emulator", took())
    try:
        asyncio.run(_demo(transcript, prepare))
    except ImportError as exc:
        print(f"{EXTRA} ({exc})", file=sys.stderr)
        return 1
    except (DemoFailure, APIError, httpx.HTTPError, OSError) as exc:
        print(f"\ndemo FAILED after step {transcript.count}: {_describe(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one clear line, and the type to report
        print(
            f"\ndemo FAILED after step {transcript.count} with an unexpected "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    transcript.line(
        f"\nDone in {transcript.total:.1f} s ({transcript.count} steps, start to shutdown): "
        "2 exchanges at "
        "Entra ID,\nthen the same two tokens from cache.\n"
        "Try it in a browser: better-auth-obo demo --serve"
    )
    return 0


def _describe(exc: BaseException) -> str:
    from better_auth import APIError

    if isinstance(exc, APIError):
        return f"{exc.code} ({exc.status}): {exc.message}"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, DemoFailure) else str(exc)


def serve_demo(*, port: int = 0, out: TextIO | None = None) -> int:
    """Serve the demo app until Ctrl-C; 0 when stopped, 1 if it could not start."""
    from ._serve import serve

    status: int = serve(port=port, out=out or sys.stdout)
    return status
