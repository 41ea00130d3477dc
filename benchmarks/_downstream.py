"""The hit path through ``obo.credential`` and ``obo.http_auth`` beside ``get_obo_token``'s.

1,000 users filled by real misses over ``FastEntra``; then, in interleaved rounds, one
cached token per call through: ``get_obo_token`` itself, the Azure SDK credential's
``get_token``, and the httpx auth flow (``async_auth_flow`` driven as httpx drives it,
with a 200 answer, and no network: the request is built once per user, as a client
would build it anyway). Target: each within 2 µs of ``get_obo_token`` (p50).

httpx's own share of an auth flow (the async generator, ``Headers.__setitem__``) is
measured as ``httpx_floor``: an ``httpx.Auth`` that sets a constant bearer token.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from tests._fakes import user_token

from ._doubles import SCOPE, FastEntra, application_names, fill, obo_setup, seed_users
from ._stats import Timing, time_async

USERS = 1_000
SAMPLES = 20_000
ROUNDS = 3


@dataclass(frozen=True)
class DownstreamHits:
    direct: Timing
    credential: Timing
    http_auth: Timing
    httpx_floor: Timing


class _ConstantBearer(httpx.Auth):
    """The least an httpx auth can do: set one header."""

    def __init__(self, token: str) -> None:
        self._header = "Bearer " + token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = self._header
        response = yield request
        if response.status_code == 401:
            yield request


async def downstream_hits() -> DownstreamHits:
    entra = FastEntra()
    auth, plugin = await obo_setup(entra=entra, applications=1, cache_revalidate_after=3600)
    users = await seed_users(auth, USERS, token=user_token())
    app = application_names(1)[0]
    await fill(plugin, [(u, app) for u in users])
    credentials = {u: plugin.credential(user_id=u, application_name=app) for u in users}
    auths = {u: plugin.http_auth(user_id=u, application_name=app) for u in users}
    requests = {u: httpx.Request("GET", "https://api.example/items") for u in users}
    ok = httpx.Response(200)

    async def direct(user: str) -> dict[str, object]:
        return await plugin.get_obo_token(user_id=user, application_name=app)

    async def credential(user: str) -> object:
        return await credentials[user].get_token(SCOPE)

    constant = _ConstantBearer(str((await direct(users[0]))["accessToken"]))

    async def flow(user: str, auth: httpx.Auth | None = None) -> object:
        steps = (auth or auths[user]).async_auth_flow(requests[user])
        request = await steps.__anext__()
        try:
            await steps.asend(ok)
        except StopAsyncIteration:
            return request
        raise AssertionError("the auth flow sent a second request after a 200")

    calls: dict[str, Callable[[str], Awaitable[object]]] = {
        "direct": direct,
        "credential": credential,
        "http_auth": flow,
        "httpx_floor": lambda user: flow(user, constant),
    }
    best: dict[str, Timing] = {}
    rng = random.Random(USERS)
    for _ in range(ROUNDS):
        order = [rng.choice(users) for _ in range(SAMPLES)]
        for name, call in calls.items():
            timing = await time_async(call, order)
            if name not in best or timing.p50 < best[name].p50:
                best[name] = timing
    assert entra.exchanges == USERS  # every timed call was a hit
    return DownstreamHits(**best)
