"""An offline Microsoft Entra ID for tests: ``EntraEmulator`` and pytest fixtures.

Needs the ``testing`` extra (``pip install better-auth-obo[testing]``)::

    from better_auth_obo.testing import EntraEmulator

    with EntraEmulator() as entra:
        api = entra.register_app("middle-tier", scopes=["access_as_user"])
        ...

The pytest plugin (``better_auth_obo.testing.pytest_plugin``, registered as an entry
point) provides the ``entra`` and ``entra_session`` fixtures.
"""

from __future__ import annotations

from ._emulator import EntraEmulator
from ._errors import CATALOGUE
from ._faults import Fault, Faults
from ._models import App, Certificate, Tenant, TokenRequest, User
from ._wire import GRAPH_APP_ID, GRAPH_RESOURCE

__all__ = [
    "CATALOGUE",
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "App",
    "Certificate",
    "EntraEmulator",
    "Fault",
    "Faults",
    "Tenant",
    "TokenRequest",
    "User",
]
