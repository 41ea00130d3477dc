"""Starting and stopping, sync and async, TLS and plain http, the pytest plugin."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

import better_auth_obo.testing as testing_pkg
from better_auth_obo.testing import EntraEmulator


def test_sync_context_manager_serves_tls_and_cleans_up() -> None:
    with EntraEmulator() as entra:
        ca_file = entra.ca_file
        with httpx.Client(verify=entra.ssl_context()) as http:
            assert http.get(entra.jwks_uri()).status_code == 200
        assert repr(entra).startswith(f"<EntraEmulator {entra.authority} ")
    assert "stopped" in repr(entra)
    with pytest.raises(RuntimeError, match="not running"):
        _ = entra.authority
    import os

    assert not os.path.exists(ca_file)


async def test_async_context_manager() -> None:
    async with EntraEmulator() as entra, httpx.AsyncClient(verify=entra.ssl_context()) as http:
        response = await http.get(f"{entra.authority}/common/v2.0/.well-known/openid-configuration")
        assert response.status_code == 200


def test_plain_http() -> None:
    with EntraEmulator(tls=False) as entra, httpx.Client() as http:
        assert entra.authority.startswith("http://127.0.0.1:")
        assert http.get(entra.jwks_uri()).status_code == 200
        with pytest.raises(RuntimeError, match="plain http"):
            _ = entra.ca_file


def test_cannot_start_twice(entra: EntraEmulator) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        entra.start()


def test_reset_gives_a_fresh_state(entra: EntraEmulator) -> None:
    entra.register_app("api")
    entra.add_user("Ada", "ada@contoso.example")
    entra.faults.fail()
    entra.reset()
    assert (dict(entra.apps), dict(entra.users), entra.faults.pending, entra.token_requests) == (
        {},
        {},
        (),
        (),
    )


def test_lookups(entra: EntraEmulator) -> None:
    api = entra.register_app("api")
    user = entra.add_user("Ada", "ada@contoso.example")
    assert entra.apps[api.client_id] == api
    assert entra.users[user.oid] == user
    assert entra.tenants[entra.tenant_id].domain == "contoso.onmicrosoft.com"
    with pytest.raises(ValueError, match="already"):
        entra.add_user("Ada 2", "ADA@contoso.example")


def test_registration_options_are_validated(entra: EntraEmulator) -> None:
    with pytest.raises(ValueError, match="access_token_version"):
        entra.register_app("x", access_token_version=3)
    with pytest.raises(ValueError, match="token_lifetime"):
        EntraEmulator(token_lifetime=0)
    with pytest.raises(ValueError, match="error_code"):
        entra.require_mfa(error_code=1)


def test_public_names_are_sorted_and_complete() -> None:
    # isort-style order, as ruff's RUF022 keeps it: constants first.
    assert testing_pkg.__all__ == sorted(testing_pkg.__all__, key=lambda n: (not n.isupper(), n))
    for name in testing_pkg.__all__:
        assert getattr(testing_pkg, name) is not None


def test_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, better_auth_obo.testing.pytest_plugin; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'trustme') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
