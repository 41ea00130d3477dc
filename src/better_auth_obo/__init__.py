"""Microsoft Entra ID On-Behalf-Of token exchange for better-auth-server.

Example::

    from better_auth_obo import OBOPlugin

    obo = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
    auth = BetterAuth(..., social_providers={"microsoft": {...}}, plugins=[obo])
    account = await obo.get_obo_token(user_id=user_id, application_name="graph")
"""

from __future__ import annotations

from ._config import OBOApplication
from ._credentials import ClientCertificate, ClientSecret, credential_expiry_warnings
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
from ._plugin import OBOPlugin
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
    "InteractionRequiredError",
    "InvalidAssertionError",
    "Lease",
    "NullLease",
    "OBOAccount",
    "OBOApplication",
    "OBOConfigurationWarning",
    "OBOError",
    "OBOPlugin",
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
