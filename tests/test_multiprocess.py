"""Several OS processes sharing one PostgreSQL / MariaDB database: exactly one row per key."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from better_auth.adapters.base import Where
from tests._fakes import provider, seed_user
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("processes", [4])
async def test_processes_racing_write_one_row_per_key(
    make_server_auth: MakeAuth, server_database: Any, processes: int
) -> None:
    auth = await make_server_auth(
        social_providers={"microsoft": provider()},
        plugins=[OBOPlugin(applications={"a": {"scope": ["api://a/.default"]}})],
    )
    users = [(await seed_user(auth))["id"] for _ in range(5)]
    spec = {
        "url": server_database.url,
        "users": users,
        "applications": ["a", "b"],
        "start_at": time.time() + 3,
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests._worker",
            json.dumps(spec),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=False):
        assert proc.returncode == 0, err.decode()[-2000:]
    exchanges = [
        json.loads(out.decode().strip().splitlines()[-1])["exchanges"] for out, _ in outputs
    ]
    # Without a lease each process makes at most one exchange per key.
    assert all(count <= len(users) * 2 for count in exchanges)
    rows = await auth.adapter.find_many(
        "account", [Where("providerId", "microsoft:", "starts_with")]
    )
    keys = Counter((row["userId"], row["providerId"]) for row in rows)
    assert len(keys) == len(users) * 2
    assert set(keys.values()) == {1}
