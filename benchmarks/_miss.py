"""What verifying the assertion adds to a miss.

Each user has a token of their own (a distinct ``oid``, so a distinct verdict). A round
of misses runs twice over the same users: first with every token seen for the first
time (signature, issuer, audience, tenant and subject checked: the cost a real first
miss pays), then, after ``revoke_obo_tokens`` empties the cache, with the verdicts
remembered (what every later miss of that sign-in pays). Both rounds do the same reads,
exchange and writes through ``FastEntra``, so their difference is the verification.
CPU time by ``time.process_time``; groups alternate to cancel drift.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from tests._fakes import user_token

from ._doubles import APPLICATION, FastEntra, obo_setup, seed_users


@dataclass(frozen=True)
class MissCost:
    users: int
    first_ms: float  # CPU per miss, token verified for the first time
    again_ms: float  # CPU per miss, verdict remembered

    @property
    def verification_ms(self) -> float:
        return self.first_ms - self.again_ms


async def miss_cost(users: int = 600, groups: int = 6) -> MissCost:
    entra = FastEntra()
    auth, plugin = await obo_setup(entra=entra)
    tokens = [user_token(oid=str(uuid.uuid4())) for _ in range(users)]
    ids = await seed_users(auth, users, tokens=tokens)
    size = users // groups
    first = again = 0.0
    for start in range(0, size * groups, size):
        group = ids[start : start + size]
        for round_ in ("first", "again"):
            for user_id in group:  # same table shape in both rounds: generation rows
                await plugin.revoke_obo_tokens(user_id)
            t0 = time.process_time()
            for user_id in group:
                await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
            spent = time.process_time() - t0
            if round_ == "first":
                first += spent
            else:
                again += spent
    measured = size * groups
    assert entra.exchanges == 2 * measured, "every call of both rounds must be a miss"
    await plugin.aclose()
    return MissCost(measured, first / measured * 1000, again / measured * 1000)
