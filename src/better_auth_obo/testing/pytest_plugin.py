"""pytest fixtures for the Entra ID emulator (entry point ``better_auth_obo``).

``entra_session``: one running ``EntraEmulator`` for the whole session.
``entra``: the same server, reset to a fresh state for each test.

Nothing heavy is imported until a fixture is used, so projects without the
``testing`` extra still run pytest with this plugin installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._emulator import EntraEmulator

__all__ = ["entra", "entra_session"]


@pytest.fixture(scope="session")
def entra_session() -> Iterator[EntraEmulator]:
    """One emulator (TLS on 127.0.0.1) shared by the session."""
    from ._emulator import EntraEmulator

    with EntraEmulator() as emulator:
        yield emulator


@pytest.fixture
def entra(entra_session: EntraEmulator) -> Iterator[EntraEmulator]:
    """The session's emulator with fresh state: no apps, users, consent, faults or log."""
    entra_session.reset()
    yield entra_session
    entra_session.reset()
