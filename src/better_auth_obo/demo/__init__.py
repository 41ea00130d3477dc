"""The demo: a local Entra ID, a FastAPI app with better-auth-server and OBOPlugin.

``better-auth-obo demo`` runs :func:`run_demo` (a scripted sign-in and four
``get_obo_token`` calls, as a transcript); ``better-auth-obo demo --serve`` runs
:func:`serve_demo` (the same app, for a browser). Both stay on 127.0.0.1 and keep their
SQLite database in a temporary folder.

Example::

    from better_auth_obo.demo import run_demo
    raise SystemExit(run_demo())
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx
from better_auth import APIError

from better_auth_obo.testing import EntraEmulator

from ._app import build_app
from ._script import DemoFailure, Transcript, run_script, timed
from ._server import bind, serving
from ._world import DemoAuth, Tenant, build_auth, populate

__all__ = ["DemoFailure", "run_demo", "serve_demo"]


@dataclass(frozen=True, slots=True)
class Running:
    """The emulator, the app's auth and the app's URL, while the demo runs."""

    tenant: Tenant
    demo: DemoAuth
    url: str
    stopped: asyncio.Event


@asynccontextmanager
async def running(
    out: Transcript | None = None, *, port: int = 0, interactive: bool = False
) -> AsyncIterator[Running]:
    """Start the emulator and the demo app on loopback; stop both on exit."""
    with timed() as took:
        entra = await asyncio.to_thread(EntraEmulator().start)
    try:
        tenant = populate(entra)
        if out is not None:
            out.step("Entra ID emulator", f"{entra.authority}, tenant {entra.tenant_id}", took())
        with tempfile.TemporaryDirectory(prefix="better-auth-obo-demo-") as folder:
            with timed() as took:
                sock = bind(port)
                url = f"http://127.0.0.1:{sock.getsockname()[1]}"
                demo = await build_auth(tenant, base_url=url, folder=Path(folder))
            try:
                app = build_app(demo, tenant, interactive=interactive)
                async with serving(app, sock) as stopped:
                    if out is not None:
                        out.step(
                            "demo app", f"{url}: FastAPI + better-auth-server + OBOPlugin", took()
                        )
                        out.note(f"SQLite {demo.database}")
                    yield Running(tenant=tenant, demo=demo, url=url, stopped=stopped)
            finally:
                await demo.close()
    finally:
        await asyncio.to_thread(entra.stop)


async def _demo(out: Transcript, prepare: Callable[[EntraEmulator], object] | None) -> None:
    async with running(out) as run:
        if prepare is not None:
            prepare(run.tenant.entra)
        await run_script(run.demo, run.tenant, run.url, out)


def run_demo(
    *, out: TextIO | None = None, prepare: Callable[[EntraEmulator], object] | None = None
) -> int:
    """Run the scripted demo and print its transcript; 0 on success, 1 on failure.

    ``prepare`` gets the running emulator before the script starts (tests use it to
    inject a fault or a policy).
    """
    stream = out or sys.stdout
    transcript = Transcript(stream)
    transcript.line(
        "better-auth-obo demo: Microsoft Entra ID On-Behalf-Of, end to end, offline\n"
        "(a local Entra ID emulator, a FastAPI app with better-auth-server + OBOPlugin, "
        "SQLite; tokens are never printed)\n"
    )
    try:
        asyncio.run(_demo(transcript, prepare))
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
        f"\nDone in {transcript.total:.1f} s: 2 exchanges at Entra ID, then the same two "
        "tokens from cache.\nTry it in a browser: better-auth-obo demo --serve"
    )
    return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{exc.code} ({exc.status}): {exc.message}"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, DemoFailure) else str(exc)


def serve_demo(*, port: int = 0, out: TextIO | None = None) -> int:
    """Serve the demo app until Ctrl-C; 0 when stopped, 1 if it could not start."""
    from ._serve import serve

    status: int = serve(port=port, out=out or sys.stdout)
    return status
