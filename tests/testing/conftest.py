"""Fixtures for the emulator's own tests: an HTTP client trusting it and a ready
middle-tier / downstream / user trio."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from entra_helpers import GRAPH_USER_READ, Trio
from tests._leaks import register

from better_auth_obo.testing import EntraEmulator


@pytest.fixture
def http(entra: EntraEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=entra.ssl_context(), timeout=10) as client:
        yield client


@pytest.fixture
def trio(entra: EntraEmulator) -> Trio:
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    downstream = entra.register_app("downstream", scopes=["Files.Read"], roles=["Files.Read.All"])
    entra.grant_consent(api, GRAPH_USER_READ, downstream.scope("Files.Read"))
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    assertion = entra.issue_token(user, audience=api, scopes=["access_as_user"])
    register(api.client_secret, downstream.client_secret, assertion)
    return Trio(api, downstream, user, assertion)
