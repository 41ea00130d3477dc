"""An offline Microsoft Entra ID for tests: ``EntraEmulator`` and pytest fixtures.

Needs the ``testing`` extra (``pip install better-auth-obo[testing]``)::

    from better_auth_obo.testing import EntraEmulator

    with EntraEmulator() as entra:
        api = entra.register_app("middle-tier", scopes=["access_as_user"])
        ...

The pytest plugin (``better_auth_obo.testing.pytest_plugin``, registered as an entry
point) provides the ``entra`` and ``entra_session`` fixtures. Names are imported on
first use, so loading the plugin costs nothing for projects that never use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._emulator import EntraEmulator
    from ._errors import CATALOGUE
    from ._faults import Fault, Faults
    from ._federation import ExternalIssuer, FederatedCredential, ManagedIdentity
    from ._models import App, Certificate, Tenant, TokenRequest, User
    from ._wire import GRAPH_APP_ID, GRAPH_RESOURCE

__all__ = [
    "CATALOGUE",
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "App",
    "Certificate",
    "EntraEmulator",
    "ExternalIssuer",
    "Fault",
    "Faults",
    "FederatedCredential",
    "ManagedIdentity",
    "Tenant",
    "TokenRequest",
    "User",
]

_HOME = {
    "CATALOGUE": "._errors",
    "GRAPH_APP_ID": "._wire",
    "GRAPH_RESOURCE": "._wire",
    "App": "._models",
    "Certificate": "._models",
    "EntraEmulator": "._emulator",
    "ExternalIssuer": "._federation",
    "Fault": "._faults",
    "Faults": "._faults",
    "FederatedCredential": "._federation",
    "ManagedIdentity": "._federation",
    "Tenant": "._models",
    "TokenRequest": "._models",
    "User": "._models",
}


if not TYPE_CHECKING:  # hidden from mypy, which would accept any name otherwise

    def __getattr__(name: str) -> Any:
        if name not in _HOME:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(_HOME[name], __name__)
        except ModuleNotFoundError as exc:
            if exc.name not in _EXTRA_MODULES:
                raise
            raise ImportError(
                f"better_auth_obo.testing needs the testing extra ({exc.name} is missing): "
                'pip install "better-auth-obo[testing]"'
            ) from exc
        value = getattr(module, name)
        globals()[name] = value
        return value


#: What the ``testing`` extra installs (a missing one is named with the fix).
_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "trustme"})


def __dir__() -> list[str]:
    return sorted(__all__)
