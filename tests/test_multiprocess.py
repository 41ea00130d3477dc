"""Several OS processes sharing one PostgreSQL / MariaDB database: exactly one row per key."""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from typing import Any

import pytest
from better_auth.adapters.base import Where
from tests._fakes import provider, seed_user
from tests._worker import run_workers
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin

REDIS_URL = os.environ.get("OBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("lease", [None, "postgres", "redis"])
async def test_processes_racing_write_one_row_per_key(
    make_server_auth: MakeAuth, server_database: Any, lease: str | None
) -> None:
    if lease == "postgres" and server_database.kind != "postgres":
        lease = "redis"  # advisory locks are PostgreSQL's; MariaDB shares Redis instead
    processes = 4
    auth = await make_server_auth(
        social_providers={"microsoft": provider()},
        plugins=[OBOPlugin(applications={"a": {"scope": ["api://a/.default"]}})],
    )
    users = [(await seed_user(auth))["id"] for _ in range(5)]
    spec = {
        "lease": lease,
        "redis_url": REDIS_URL,
        "redis_prefix": f"obo-test-{secrets.token_hex(4)}:",
        "url": server_database.url,
        "users": users,
        "applications": ["a", "b"],
        "start_at": time.time() + 3,
    }
    exchanges = await run_workers(spec, processes)
    keys_total = len(users) * 2
    if lease is None:  # each process makes at most one exchange per key
        assert all(count <= keys_total for count in exchanges)
    else:  # one exchange per key across all processes
        assert sum(exchanges) == keys_total
    rows = await auth.adapter.find_many(
        "account", [Where("providerId", "microsoft:", "starts_with")]
    )
    keys = Counter((row["userId"], row["providerId"]) for row in rows)
    assert len(keys) == len(users) * 2
    assert set(keys.values()) == {1}
