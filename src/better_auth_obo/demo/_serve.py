"""``better-auth-obo demo --serve``: the demo app, kept running for a browser."""

from __future__ import annotations

import asyncio
import errno
import sys
from typing import TextIO

from ._transcript import Transcript

__all__ = ["serve"]


def serve(*, port: int, out: TextIO) -> int:
    """Serve until Ctrl-C (or SIGTERM); 0 when stopped, 1 if the app could not start."""
    try:
        asyncio.run(_serve(port, out))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else str(exc)
        print(f"better-auth-obo demo: cannot serve on port {port}: {reason}", file=sys.stderr)
        return 1
    print("demo stopped.", file=out, flush=True)
    return 0


async def _serve(port: int, out: TextIO) -> None:
    from . import running

    events = Transcript(out)
    async with running(port=port, interactive=True, door=True, events=events) as run:
        entra = run.tenant.entra
        users = ", ".join(f"{u.display_name} <{u.upn}>" for u in run.tenant.users)
        events.line(
            f"better-auth-obo demo: open {run.url}\n"
            f"  Entra ID emulator: {entra.authority} (HTTPS: the app's server-side calls)\n"
            f"  its sign-in pages for your browser: {run.door_url} (plain HTTP, loopback)\n"
            f"  users: {users}\n"
            "  one line per token event below; Ctrl-C to stop.\n"
        )
        await run.stopped.wait()
