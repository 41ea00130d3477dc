"""Fault soak: many calls over many users and three applications against the Entra
emulator over real sockets, with faults on the token endpoint and on database writes.

Two plugin instances ("workers", like two app processes) share one database. About one
token request in ten meets a fault (429, 5xx, an answer slower than the timeout, a
dropped connection, an HTML page) and about one cached-row write in ten fails (before or
after it reached the database). Every call must return a token the emulator's
downstream API accepts as that same user for that application, or a classified
``APIError``; afterwards there is one row per (user, application), each holding the
user's own token. One summary line is printed (``pytest -s`` shows it).

The CI variant runs 1,500 calls over 50 users; ``OBO_SOAK_FULL=1`` runs the full
20,000 calls over 500 users.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import httpx
import pytest
from better_auth import APIError, BetterAuth
from better_auth.adapters.base import BaseAdapter, Where
from better_auth.config import AccountOptions
from better_auth.crypto import symmetric_decrypt
from sqlalchemy.exc import OperationalError
from tests._fakes import seed_user
from tests.conftest import SECRET, Database, MakeAuth
from tests.test_e2e import GRAPH_USER_READ, microsoft

from better_auth_obo import OBO_ERROR_CODES, OBOPlugin, RetryPolicy
from better_auth_obo._store import is_cached_token_row
from better_auth_obo.testing import App, EntraEmulator, User

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FAULT_RATE = 0.10
WRITE_FAULT_RATE = 0.10
REVOKE_RATE = 0.15  # calls that first drop the cached row, so exchanges keep happening
CONCURRENCY = 16
TIMEOUT = 1.0  # the plugin's; slow answers take longer
SLOW = 1.5

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]
pytestmark = pytest.mark.parametrize("database", DATABASES, indirect=True)


@dataclass
class Tally:
    calls: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    write_faults: Counter[str] = field(default_factory=Counter)
    revokes_refused: int = 0  # revocations whose generation write met a fault
    failures: list[BaseException] = field(default_factory=list)


class FlakyWrites:
    """Makes some of the host adapter's writes of ``microsoft:*`` rows fail: before the
    write reaches the database, or after (as if the commit's answer was lost)."""

    def __init__(self, adapter: BaseAdapter, rng: random.Random, tally: Tally) -> None:
        self._create, self._update, self._find_one = (
            adapter.create,
            adapter.update,
            adapter.find_one,
        )
        self._rng, self._tally = rng, tally
        adapter.create = self.create  # type: ignore[method-assign]
        adapter.update = self.update  # type: ignore[method-assign]

    async def create(self, model: str, data: dict[str, Any], **kwargs: Any) -> Any:
        obo = model == "account" and str(data.get("providerId", "")).startswith("microsoft:")
        return await self._write(obo, lambda: self._create(model, data, **kwargs))

    async def update(self, model: str, where: list[Where], data: dict[str, Any]) -> Any:
        obo = False
        if model == "account" and [w.field for w in where] == ["id"]:
            row = await self._find_one(model, where)
            obo = row is not None and str(row["providerId"]).startswith("microsoft:")
        return await self._write(obo, lambda: self._update(model, where, data))

    async def _write(self, obo: bool, write: Callable[[], Awaitable[Any]]) -> Any:
        if not obo or self._rng.random() >= WRITE_FAULT_RATE:
            return await write()
        when = self._rng.choice(["before", "after"])
        self._tally.write_faults[when] += 1
        if when == "after":
            await write()
        raise OperationalError("UPDATE account ...", None, Exception("injected write failure"))


class Chaos:
    """Arms one emulator fault at a time, keeping about FAULT_RATE of token requests faulted."""

    def __init__(self, entra: EntraEmulator, rng: random.Random, tally: Tally) -> None:
        self._entra, self._rng, self._tally = entra, rng, tally
        self._armed: list[tuple[str, Any]] = []

    def step(self) -> None:
        requests = len(self._entra.token_requests)
        if len(self._armed) < FAULT_RATE * requests + 1 and not self._entra.faults.pending:
            self._arm()

    def _arm(self) -> None:
        faults = self._entra.faults
        kind = self._rng.choice(["429", "429-long", "5xx", "slow", "drop", "garbage"])
        if kind == "429":
            fault = faults.throttle(retry_after=1, grant_type="obo")
        elif kind == "429-long":  # longer than the retry cap: that key fails fast for 3 s
            fault = faults.throttle(retry_after=3, grant_type="obo")
        elif kind == "5xx":
            fault = faults.fail(status=self._rng.choice([500, 502, 503, 504]), grant_type="obo")
        elif kind == "slow":
            fault = faults.delay(SLOW, grant_type="obo")
        elif kind == "drop":
            fault = faults.drop_connection(grant_type="obo")
        else:
            fault = faults.garbage(grant_type="obo")
        self._armed.append((kind, fault))

    def count(self) -> Counter[str]:
        """Faults that met a request, by kind."""
        return Counter(kind for kind, fault in self._armed if fault.hits)


@dataclass
class Downstream:
    """Asks the emulator's resources whose each token is; remembers the answer per token."""

    entra: EntraEmulator
    http: httpx.AsyncClient
    apis: dict[str, App]
    seen: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def owner(self, token: str, application: str) -> tuple[str, str]:
        """(oid, application) the token is valid for, as the resource says."""
        if token not in self.seen:
            headers = {"Authorization": f"Bearer {token}"}
            if application == "graph":
                response = await self.http.get(f"{self.entra.graph_url}/v1.0/me", headers=headers)
                assert response.status_code == 200, response.text
                self.seen[token] = (response.json()["id"], application)
            else:
                url = self.entra.api_url(self.apis[application]) + "/whoami"
                response = await self.http.get(url, headers=headers)
                assert response.status_code == 200, response.text
                self.seen[token] = (response.json()["oid"], application)
        return self.seen[token]


async def test_soak(entra: EntraEmulator, make_auth: MakeAuth, database: Database) -> None:
    """CI size: 1,500 calls over 50 users."""
    await soak(entra, make_auth, database.kind, calls=1_500, users=50)


@pytest.mark.skipif(
    os.environ.get("OBO_SOAK_FULL") != "1", reason="the full soak runs with OBO_SOAK_FULL=1"
)
async def test_soak_full(entra: EntraEmulator, make_auth: MakeAuth, database: Database) -> None:
    """Full size: 20,000 calls over 500 users."""
    await soak(entra, make_auth, database.kind, calls=20_000, users=500)


async def soak(
    entra: EntraEmulator, make_auth: MakeAuth, kind: str, *, calls: int, users: int
) -> None:
    rng = random.Random(calls * 7919 + users)
    tally = Tally()
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    files = entra.register_app("files", scopes=["Files.Read"])
    reports = entra.register_app("reports", scopes=["Reports.Read"])
    entra.grant_consent(
        api, GRAPH_USER_READ, files.scope("Files.Read"), reports.scope("Reports.Read")
    )
    applications = {
        "graph": {"scope": [GRAPH_USER_READ]},
        "files": {"scope": [files.scope("Files.Read")]},
        "reports": {"scope": [reports.scope("Reports.Read")]},
    }

    async def short_sleep(seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.05))  # honour the order of events, not the wait

    retry = RetryPolicy(attempts=3, backoff=0.02, max_backoff=0.1, retry_after_cap=2.0, deadline=6)
    plugins = [
        OBOPlugin(applications=applications, timeout=TIMEOUT, retry=retry, sleep=short_sleep)
        for _ in range(2)
    ]
    async with (
        httpx.AsyncClient(verify=entra.ssl_context(), timeout=10) as outbound,
        httpx.AsyncClient(verify=entra.ssl_context(), timeout=10) as check,
    ):
        options: dict[str, Any] = {
            "social_providers": {"microsoft": microsoft(entra, api)},
            "http_client": outbound,
            "account": AccountOptions(encrypt_oauth_tokens=True),
        }
        first = await make_auth(plugins=[plugins[0]], **options)
        # The second worker: a BetterAuth and plugin of its own over the same database.
        await make_auth(plugins=[plugins[1]], adapter=first.adapter, clean=False, **options)
        people: dict[str, User] = {}
        for n in range(users):
            person = entra.add_user(f"User {n}", f"user{n}@contoso.example")
            token = entra.issue_token(person, audience=api, scopes=["access_as_user"])
            user = await seed_user(first, token=token, email=person.upn)
            people[user["id"]] = person
        FlakyWrites(first.adapter, rng, tally)
        chaos = Chaos(entra, rng, tally)
        downstream = Downstream(entra, check, {"files": files, "reports": reports})
        user_ids = list(people)
        plan = [
            (rng.choice(user_ids), rng.choice(list(applications)), rng.choice(plugins))
            for _ in range(calls)
        ]
        revoke = {n for n in range(calls) if rng.random() < REVOKE_RATE}
        queue = list(enumerate(plan))
        queue.reverse()
        started = time.perf_counter()

        async def one(n: int, user_id: str, application: str, plugin: OBOPlugin) -> None:
            if n % 10 == 0:
                chaos.step()
            if n in revoke:
                try:
                    await plugin.revoke_obo_tokens(user_id, application)
                except APIError as exc:  # its generation write met an injected fault
                    if exc.code != "STORAGE_UNAVAILABLE":
                        raise
                    tally.revokes_refused += 1
            tally.calls += 1
            try:
                account = await plugin.get_obo_token(user_id=user_id, application_name=application)
            except APIError as exc:
                reason = (exc.extra or {}).get("reason")
                tally.errors[f"{exc.code}/{reason}"] += 1
                if exc.code not in OBO_ERROR_CODES:
                    tally.failures.append(exc)
                return
            assert account["userId"] == user_id
            assert account["providerId"] == f"microsoft:{application}"
            owner = await downstream.owner(account["accessToken"], application)
            assert owner == (people[user_id].oid, application), "a token served across users"
            tally.ok += 1

        async def worker() -> None:
            while queue:
                n, (user_id, application, plugin) = queue.pop()
                try:
                    await one(n, user_id, application, plugin)
                except Exception as exc:  # kept: the run goes on, the test fails at the end
                    tally.failures.append(exc)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        duration = time.perf_counter() - started
        for plugin in plugins:
            await plugin.aclose()
        exchanges = sum(1 for r in entra.token_requests if r.grant_type == JWT_BEARER)
        tally.faults = chaos.count()
        print(
            f"\nsoak {kind}: calls={tally.calls} ok={tally.ok} "
            f"errors={dict(sorted(tally.errors.items()))} exchanges={exchanges} "
            f"faults={sum(tally.faults.values())} {dict(sorted(tally.faults.items()))} "
            f"db_write_faults={sum(tally.write_faults.values())} {dict(tally.write_faults)} "
            f"revokes_refused={tally.revokes_refused} "
            f"duration={duration:.1f}s"
        )
        assert not tally.failures, tally.failures[:3]
        assert tally.ok + sum(tally.errors.values()) == tally.calls == calls
        assert sum(tally.faults.values()) > 0 and sum(tally.write_faults.values()) > 0
        await check_rows(first, downstream, people)


async def check_rows(auth: BetterAuth, downstream: Downstream, people: dict[str, User]) -> None:
    """One row per (user, application), each holding that user's token for that application."""
    rows = await auth.adapter.find_many(
        "account", [Where("providerId", "microsoft:", operator="starts_with")], limit=10**6
    )
    generations = Counter((r["userId"], r["scope"]) for r in rows if not is_cached_token_row(r))
    assert all(n == 1 for n in generations.values()), generations  # one per revoked scope
    rows = [row for row in rows if is_cached_token_row(row)]
    keys = Counter((row["userId"], row["providerId"]) for row in rows)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    now = time.time()
    for row in rows:
        application = row["providerId"].removeprefix("microsoft:")
        token = symmetric_decrypt(SECRET, row["accessToken"])
        assert token
        expires = row["accessTokenExpiresAt"]
        assert expires.replace(tzinfo=expires.tzinfo or timezone.utc).timestamp() > now
        owner = await downstream.owner(token, application)
        assert owner == (people[row["userId"]].oid, application), "a row holds another user's token"
