"""The Entra emulator's own speed: sequential On-Behalf-Of requests from one client over a
kept-alive TLS connection, and the emulator thread's CPU per request.

The emulator runs in its own thread with its own event loop; its CPU is read there with
``time.thread_time`` before and after the run, so the client's share is not counted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from better_auth_obo.testing import EntraEmulator

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRAPH = "https://graph.microsoft.com/User.Read"


@dataclass(frozen=True)
class EmulatorSpeed:
    requests: int
    per_second: float
    emulator_cpu_ms: float


def emulator_speed(requests: int = 300) -> EmulatorSpeed:
    with EntraEmulator() as entra:
        api = entra.register_app("middle-tier", scopes=["access_as_user"])
        entra.grant_consent(api, GRAPH)
        user = entra.add_user("Ada Lovelace", "ada@contoso.example")
        assertion = entra.issue_token(user, audience=api, scopes=["access_as_user"])
        form = {
            "grant_type": GRANT,
            "client_id": api.client_id,
            "client_secret": api.client_secret or "",
            "assertion": assertion,
            "requested_token_use": "on_behalf_of",
            "scope": GRAPH,
        }
        loop = entra._server._loop  # the emulator's own loop, in its thread
        assert loop is not None

        async def thread_cpu() -> float:
            return time.thread_time()

        def emulator_cpu() -> float:
            return asyncio.run_coroutine_threadsafe(thread_cpu(), loop).result()

        with httpx.Client(verify=entra.ssl_context()) as http:
            assert http.post(entra.token_endpoint(), data=form).status_code == 200  # warm
            cpu0, t0 = emulator_cpu(), time.perf_counter()
            for _ in range(requests):
                http.post(entra.token_endpoint(), data=form)
            wall, cpu = time.perf_counter() - t0, emulator_cpu() - cpu0
    return EmulatorSpeed(requests, requests / wall, cpu / requests * 1000)
