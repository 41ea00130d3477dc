"""A database failure is STORAGE_UNAVAILABLE, and the driver's error is nowhere in the
exception chain (its text carries statement parameters: tokens)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from better_auth import APIError, BetterAuth, MemoryAdapter
from better_auth.adapters.base import Where
from tests._fakes import WireEntra, provider, seed_user, user_token
from tests._leaks import chained
from tests.conftest import SECRET

from better_auth_obo import OBOPlugin

GRAPH = {"scope": ["https://graph.microsoft.com/.default"]}


class BrokenAdapter(MemoryAdapter):
    """Fails the chosen operation the way a driver does: with the statement's parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: str | None = None
        self.leaked = user_token()  # registered as a secret by make_jwt

    def _fail(self, operation: str) -> None:
        if self.failing == operation:
            raise sqlite3.OperationalError(f"database is locked [parameters: ('{self.leaked}',)]")

    async def find_many(self, model: str, where: list[Where] | None = None, **kw: Any) -> Any:
        self._fail("read")
        return await super().find_many(model, where, **kw)

    async def delete_many(self, model: str, where: list[Where]) -> int:
        self._fail("delete")
        return await super().delete_many(model, where)


def assert_clean(error: APIError, adapter: BrokenAdapter) -> None:
    assert error.code == "STORAGE_UNAVAILABLE"
    assert "OperationalError" in error.message
    for cause in chained(error):
        assert not isinstance(cause, sqlite3.Error), repr(cause)
        assert adapter.leaked not in str(cause)


@pytest.mark.parametrize("operation", ["read", "delete"])
async def test_storage_failure_chain_holds_no_driver_error(operation: str) -> None:
    adapter = BrokenAdapter()
    wire = WireEntra()
    plugin = OBOPlugin(applications={"graph": GRAPH})
    auth = BetterAuth(
        secret=SECRET,
        base_url="http://testserver",
        adapter=adapter,
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=wire.client(),
    )
    user = await seed_user(auth)
    adapter.failing = operation
    call = (
        plugin.get_obo_token(user_id=user["id"], application_name="graph")
        if operation == "read"
        else plugin.revoke_obo_tokens(user["id"])
    )
    with pytest.raises(APIError) as info:
        await call
    assert_clean(info.value, adapter)
