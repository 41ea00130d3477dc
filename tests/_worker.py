"""One OS process of the cross-process test: its own BetterAuth and OBOPlugin on a shared DB.

Usage: python -m tests._worker '<json: url, users, applications, start_at>'
Prints one JSON line: the number of exchanges this process made.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from better_auth import BetterAuth
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.ext.asyncio import create_async_engine
from tests._fakes import WireEntra, provider
from tests.conftest import SECRET

from better_auth_obo import OBOPlugin
from better_auth_obo._lease import PostgresAdvisoryLease, RedisLease


async def main(spec: dict[str, object]) -> None:
    engine = create_async_engine(str(spec["url"]), pool_size=20, max_overflow=20)
    wire = WireEntra(delay=0.05)
    applications = {name: {"scope": [f"api://{name}/.default"]} for name in spec["applications"]}  # type: ignore[attr-defined]
    lease: Any = None
    redis_client: Any = None
    if spec.get("lease") == "postgres":
        lease = PostgresAdvisoryLease(engine)
    elif spec.get("lease") == "redis":
        from redis.asyncio import Redis

        redis_client = Redis.from_url(str(spec["redis_url"]))
        lease = RedisLease(redis_client, prefix=str(spec["redis_prefix"]))
    plugin = OBOPlugin(applications=applications, lease=lease)
    BetterAuth(
        secret=SECRET,
        adapter=SQLAlchemyAdapter(engine),
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=wire.client(),
    )
    await asyncio.sleep(max(0.0, float(spec["start_at"]) - time.time()))  # type: ignore[arg-type]
    await asyncio.gather(
        *(
            plugin.get_obo_token(user_id=user, application_name=app)
            for user in spec["users"]  # type: ignore[attr-defined]
            for app in applications
            for _ in range(5)
        )
    )
    await engine.dispose()
    if redis_client is not None:
        await redis_client.aclose()
    print(json.dumps({"exchanges": len(wire.exchanges)}))


ROOT = Path(__file__).resolve().parent.parent


async def run_workers(spec: dict[str, object], count: int) -> list[int]:
    """Start ``count`` worker processes on ``spec``; the exchanges each one made."""
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
        for _ in range(count)
    ]
    exchanges = []
    for proc in procs:
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {err.decode()[-2000:]}")
        exchanges.append(int(json.loads(out.decode().strip().splitlines()[-1])["exchanges"]))
    return exchanges


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
