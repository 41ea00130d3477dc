"""Our hit path at N cached keys, the dict "ideal", and bytes per L1 entry.

Up to ``EXCHANGE_FILL_LIMIT`` keys L1 is filled by full misses (row read, exchange over
``FastEntra``, upsert). Beyond that a miss costs ~1 ms of CPU here, so 100,000 keys are
filled through ``get_obo_token``'s database path instead: the cached rows are written
in the plugin's row format first (as another worker process would have left them) and
one call per key reads its row and fills L1. That fill runs under tracemalloc, which
gives the bytes each L1 entry holds (the token strings are shared with the rows, so
they are not counted: "beyond the tokens").
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timezone

from better_auth import BetterAuth
from tests._fakes import user_token

from better_auth_obo import OBOPlugin
from better_auth_obo._assertion import fingerprint
from better_auth_obo._store import UserRows, obo_row_id

from ._doubles import (
    SCOPE,
    FastEntra,
    application_names,
    fill,
    insert,
    obo_setup,
    seed_users,
)
from ._stats import Timing, time_async, time_sync

EXCHANGE_FILL_LIMIT = 10_000
APPLICATIONS_AT_SCALE = 100  # 100,000 keys = 1,000 users x 100 applications
SAMPLES = 50_000


@dataclass(frozen=True)
class HitResult:
    keys: int
    timing: Timing
    fill: str
    fill_seconds: float
    entry_bytes: float | None = None
    token_chars: int = 0


async def hit_path(keys: int) -> HitResult:
    entra = FastEntra()
    apps = 1 if keys <= EXCHANGE_FILL_LIMIT else APPLICATIONS_AT_SCALE
    auth, plugin = await obo_setup(
        entra=entra,
        applications=apps,
        cache_max_entries=max(keys, 10_000),
        # the 100,000-key fill takes longer than the default 30 s revalidation bound
        cache_revalidate_after=3600,
    )
    token = user_token()
    users = await seed_users(auth, keys // apps, token=token)
    pairs = [(u, a) for u in users for a in application_names(apps)]
    started = time.perf_counter()
    entry_bytes = None
    if apps == 1:
        await fill(plugin, pairs)
        how = "exchange per key"
        assert entra.exchanges == keys
    else:
        await _write_rows(auth, pairs, token, entra.lifetime)
        started = time.perf_counter()
        entry_bytes = await _traced_fill(plugin, pairs)
        how = "row read per key"
        assert entra.exchanges == 0
    seconds = time.perf_counter() - started
    rng = random.Random(keys)
    order = [rng.choice(pairs) for _ in range(SAMPLES)]

    async def hit(key: tuple[str, str]) -> object:
        return await plugin.get_obo_token(user_id=key[0], application_name=key[1])

    result = await time_async(hit, order)
    assert entra.exchanges == (keys if apps == 1 else 0)  # every timed call was a hit
    sample = await hit(pairs[0])
    return HitResult(keys, result, how, seconds, entry_bytes, len(sample["accessToken"]))


async def _write_rows(
    auth: BetterAuth, pairs: list[tuple[str, str]], token: str, lifetime: int
) -> None:
    """Cached rows as the plugin writes them: another process's exchanges, in effect."""
    now = datetime.now(timezone.utc)
    expires = datetime.fromtimestamp(int(time.time() + lifetime), timezone.utc)
    bound_to = fingerprint(token)
    stamp = UserRows(None, {}, {}).generation  # never revoked: the stamp the plugin writes
    rows = [
        {
            "id": obo_row_id(user_id, app),
            "userId": user_id,
            "providerId": f"microsoft:{app}",
            "accountId": bound_to,
            "accessToken": f"obo.{i:08d}.{'x' * 1200}",
            "accessTokenExpiresAt": expires,
            "scope": SCOPE,
            "idToken": stamp(app),
            "createdAt": now,
            "updatedAt": now,
        }
        for i, (user_id, app) in enumerate(pairs)
    ]
    await insert(auth.adapter, "account", rows)


async def _traced_fill(plugin: OBOPlugin, pairs: list[tuple[str, str]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await fill(plugin, pairs)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / len(pairs)


def dict_lookup(keys: int) -> Timing:
    """The floor: a dict lookup by (user, application), timed like our calls."""
    table = {(f"user-{i}", "api"): f"token-{i}" for i in range(keys)}
    rng = random.Random(keys)
    order = [(f"user-{rng.randrange(keys)}", "api") for _ in range(SAMPLES)]
    return time_sync(table.__getitem__, order)
