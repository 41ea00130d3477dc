"""Microsoft Entra ID On-Behalf-Of token exchange for better-auth-server.

Example::

    from better_auth_obo import OBOPlugin

    obo = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
    auth = BetterAuth(..., social_providers={"microsoft": {...}}, plugins=[obo])
    account = await obo.get_obo_token(user_id=user_id, application_name="graph")

Names are imported on first use (PEP 562), so ``import better_auth_obo`` (and with it
``better-auth-obo emulator`` and ``python -m better_auth_obo.testing``) does not load
better-auth, httpx or the plugin until something asks for them. To export a new name, add
it to ``__all__``, to ``_HOME`` (name → submodule) and to the ``TYPE_CHECKING`` imports.
"""

import importlib
import typing

if typing.TYPE_CHECKING:  # what mypy and IDEs see; at run time ``__getattr__`` below
    __version__: str
    from ._client import OBOCaller, OBOClient, OBOToken
    from ._config import OBOApplication
    from ._credentials import (
        ClientCertificate,
        ClientSecret,
        FederatedAssertion,
        ManagedIdentityAssertion,
        credential_expiry_warnings,
    )
    from ._errors import (
        OBO_ERROR_CODES,
        AccountNotFoundError,
        ConfigurationError,
        ConsentRequiredError,
        EntraError,
        EntraUnavailableError,
        ErrorCode,
        InteractionRequiredError,
        InvalidAssertionError,
        OBOConfigurationWarning,
        OBOError,
        ReauthenticationRequiredError,
        StorageUnavailableError,
        UnknownApplicationError,
    )
    from ._lease import Lease, NullLease, PostgresAdvisoryLease, RedisLease
    from ._plugin import OBOAPIError, OBOPlugin
    from ._retry import RetryPolicy
    from ._stepup import claims_challenge, sign_in_again, www_authenticate
    from ._store import OBOAccount

__all__ = [
    "OBO_ERROR_CODES",
    "AccountNotFoundError",
    "ClientCertificate",
    "ClientSecret",
    "ConfigurationError",
    "ConsentRequiredError",
    "EntraError",
    "EntraUnavailableError",
    "ErrorCode",
    "FederatedAssertion",
    "InteractionRequiredError",
    "InvalidAssertionError",
    "Lease",
    "ManagedIdentityAssertion",
    "NullLease",
    "OBOAPIError",
    "OBOAccount",
    "OBOApplication",
    "OBOCaller",
    "OBOClient",
    "OBOConfigurationWarning",
    "OBOError",
    "OBOPlugin",
    "OBOToken",
    "PostgresAdvisoryLease",
    "ReauthenticationRequiredError",
    "RedisLease",
    "RetryPolicy",
    "StorageUnavailableError",
    "UnknownApplicationError",
    "claims_challenge",
    "credential_expiry_warnings",
    "sign_in_again",
    "www_authenticate",
]

# Each public name and the submodule that defines it, one line per name.
_HOME = {
    "OBO_ERROR_CODES": "._errors",
    "AccountNotFoundError": "._errors",
    "ClientCertificate": "._credentials",
    "ClientSecret": "._credentials",
    "ConfigurationError": "._errors",
    "ConsentRequiredError": "._errors",
    "EntraError": "._errors",
    "EntraUnavailableError": "._errors",
    "ErrorCode": "._errors",
    "FederatedAssertion": "._credentials",
    "InteractionRequiredError": "._errors",
    "InvalidAssertionError": "._errors",
    "Lease": "._lease",
    "ManagedIdentityAssertion": "._credentials",
    "NullLease": "._lease",
    "OBOAPIError": "._plugin",
    "OBOAccount": "._store",
    "OBOApplication": "._config",
    "OBOConfigurationWarning": "._errors",
    "OBOError": "._errors",
    "OBOCaller": "._client",
    "OBOClient": "._client",
    "OBOPlugin": "._plugin",
    "OBOToken": "._client",
    "PostgresAdvisoryLease": "._lease",
    "ReauthenticationRequiredError": "._errors",
    "RedisLease": "._lease",
    "RetryPolicy": "._retry",
    "StorageUnavailableError": "._errors",
    "UnknownApplicationError": "._errors",
    "claims_challenge": "._stepup",
    "credential_expiry_warnings": "._credentials",
    "sign_in_again": "._stepup",
    "www_authenticate": "._stepup",
}


if not typing.TYPE_CHECKING:  # hidden from mypy, which would accept any name otherwise

    def __getattr__(name: str) -> object:
        """Import a public name's submodule on first use, then keep the name here."""
        if name == "__version__":  # from the installed distribution's metadata
            from importlib.metadata import version

            globals()[name] = value = version("better-auth-obo")
            return value
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
