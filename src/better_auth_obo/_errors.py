"""Error codes and the exception tree.

Every failure inside the library raises one of these. The plugin boundary
(``_plugin.py``) turns each into one ``better_auth.APIError`` with a code from
``OBO_ERROR_CODES``; nothing else does that translation::

    OBOError
     ├── ConfigurationError            MISSING_CREDENTIALS (500) / MISSING_APPLICATION_SCOPE
     ├── UnknownApplicationError       UNKNOWN_APPLICATION (400)
     ├── AccountNotFoundError          MICROSOFT_ACCOUNT_NOT_FOUND (404)
     ├── ReauthenticationRequiredError MICROSOFT_REAUTHENTICATION_REQUIRED (401)
     │    └── KeyRetiredError               expired, signed by a key no longer published
     ├── InvalidAssertionError         INVALID_ASSERTION (500)
     ├── EntraError                    OBO_EXCHANGE_FAILED (502): Entra answered with an error
     │    ├── InteractionRequiredError      claims challenge / MFA (``claims`` attribute)
     │    └── ConsentRequiredError          AADSTS65001
     ├── EntraUnavailableError         ENTRA_UNAVAILABLE (503): network, timeout, 5xx, 429
     └── StorageUnavailableError       STORAGE_UNAVAILABLE (503): the host's database failed

Messages say what to do next and never carry a token, an assertion or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args

__all__ = [
    "OBO_ERROR_CODES",
    "REASONS",
    "AccountNotFoundError",
    "ConfigurationError",
    "ConsentRequiredError",
    "EntraError",
    "EntraUnavailableError",
    "ErrorCode",
    "InteractionRequiredError",
    "InvalidAssertionError",
    "KeyRetiredError",
    "OBOConfigurationWarning",
    "OBOError",
    "Reason",
    "ReauthenticationRequiredError",
    "StorageUnavailableError",
    "UnknownApplicationError",
]


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One row of the error table: the machine code, its HTTP status and default message."""

    code: str
    status: int
    message: str


def _table(*rows: ErrorCode) -> Mapping[str, ErrorCode]:
    return MappingProxyType({row.code: row for row in rows})


#: The plugin's error table, registered on ``auth.error_codes``.
OBO_ERROR_CODES: Mapping[str, ErrorCode] = _table(
    ErrorCode("UNKNOWN_APPLICATION", 400, "Unknown OBO application"),
    ErrorCode("MISSING_APPLICATION_SCOPE", 400, "The OBO application has no scope"),
    ErrorCode(
        "MICROSOFT_ACCOUNT_NOT_FOUND",
        404,
        "The user has no Microsoft account with an access token; they must sign in with Microsoft",
    ),
    ErrorCode(
        "MICROSOFT_REAUTHENTICATION_REQUIRED",
        401,
        "The user's Microsoft token has expired and cannot be refreshed; they must sign in again",
    ),
    ErrorCode(
        "INVALID_ASSERTION",
        500,
        "The stored Microsoft token cannot be used as an On-Behalf-Of assertion",
    ),
    ErrorCode("OBO_EXCHANGE_FAILED", 502, "Entra ID rejected the On-Behalf-Of exchange"),
    ErrorCode("ENTRA_UNAVAILABLE", 503, "Entra ID is unavailable; try again later"),
    ErrorCode(
        "STORAGE_UNAVAILABLE", 503, "The Better Auth database is unavailable; try again later"
    ),
    ErrorCode(
        "MISSING_CREDENTIALS",
        500,
        "The Microsoft provider is missing or has no client credentials",
    ),
)


class OBOConfigurationWarning(UserWarning):
    """Issued at start-up for a configuration that will make OBO fail or misbehave."""


#: Every ``extra["reason"]`` the library gives, in one place (docs/errors.md lists them; a test
#: keeps the two equal). Verification of a token: ``signature`` ... ``scope``; Entra's answers:
#: ``interaction_required`` ... ``rejected``; the user's stored token: ``no_refresh_token``,
#: ``expired``, ``key_retired``; the rest: ``unavailable``, ``storage_unavailable``.
Reason = Literal[
    "assertion_invalid",
    "signature",
    "issuer",
    "tenant",
    "audience",
    "subject",
    "not_yet_valid",
    "expired",
    "malformed",
    "graph_audience",
    "id_token",
    "app_only",
    "scope",
    "interaction_required",
    "consent_required",
    "client_credential_invalid",
    "configuration",
    "blocked_by_policy",
    "invalid_response",
    "rejected",
    "no_refresh_token",
    "key_retired",
    "unavailable",
    "storage_unavailable",
]
REASONS: frozenset[str] = frozenset(get_args(Reason))


class OBOError(Exception):
    """Base of every error this library raises."""

    code: ClassVar[str] = "OBO_EXCHANGE_FAILED"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or OBO_ERROR_CODES[self.code].message
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return OBO_ERROR_CODES[self.code].status

    def to_extra(self) -> dict[str, Any]:
        """Fields for ``APIError.extra``; never a token or a secret."""
        return {}


class ConfigurationError(OBOError):
    """The plugin or the Microsoft provider is configured so that no exchange can work."""

    code = "MISSING_CREDENTIALS"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code  # type: ignore[misc]
        super().__init__(message)


class UnknownApplicationError(OBOError):
    """``application_name`` is not one of the configured applications."""

    code = "UNKNOWN_APPLICATION"


class AccountNotFoundError(OBOError):
    """The user has no Microsoft account row holding an access token."""

    code = "MICROSOFT_ACCOUNT_NOT_FOUND"


class InvalidAssertionError(OBOError):
    """The stored token can never be an OBO assertion for this app (e.g. a Graph token)."""

    code = "INVALID_ASSERTION"

    def __init__(self, message: str | None = None, *, reason: Reason = "assertion_invalid") -> None:
        self.reason = reason
        super().__init__(message)

    def to_extra(self) -> dict[str, Any]:
        return {"reason": self.reason}


_ENTRA_FIELDS = (
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
    "suberror",
    "claims",
)


class EntraError(OBOError):
    """Entra ID answered a token request with an OAuth error.

    Entra's own fields are attributes (``error``, ``error_description``,
    ``error_codes``, ``trace_id``, ``correlation_id``, ``timestamp``, ``error_uri``,
    ``suberror``, ``claims``) plus ``status_code`` (the HTTP status) and ``reason``,
    a stable classification (``interaction_required``, ``consent_required``,
    ``assertion_invalid``, ``client_credential_invalid``, ``configuration``,
    ``blocked_by_policy``, ``invalid_response``, ``rejected``).
    """

    code = "OBO_EXCHANGE_FAILED"

    def __init__(
        self,
        message: str | None = None,
        *,
        error: str,
        error_description: str | None = None,
        error_codes: Sequence[int] = (),
        timestamp: str | None = None,
        trace_id: str | None = None,
        correlation_id: str | None = None,
        error_uri: str | None = None,
        suberror: str | None = None,
        claims: str | None = None,
        status_code: int | None = None,
        reason: Reason = "rejected",
    ) -> None:
        self.error = error
        self.error_description = error_description
        self.error_codes = tuple(error_codes)
        self.timestamp = timestamp
        self.trace_id = trace_id
        self.correlation_id = correlation_id
        self.error_uri = error_uri
        self.suberror = suberror
        self.claims = claims
        self.status_code = status_code
        self.reason = reason
        super().__init__(message or _describe(error, error_description))

    def to_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"reason": self.reason}
        for name in _ENTRA_FIELDS:
            value = getattr(self, name)
            if name == "error_codes":
                value = list(value)
            if value is not None:
                extra[name] = value
        return extra

    def __repr__(self) -> str:
        codes = ",".join(str(c) for c in self.error_codes)
        return (
            f"{type(self).__name__}(error={self.error!r}, error_codes=[{codes}], "
            f"reason={self.reason!r}, trace_id={self.trace_id!r})"
        )


class InteractionRequiredError(EntraError):
    """The user must sign in again interactively, with ``claims`` when Entra sent a challenge."""


class ConsentRequiredError(EntraError):
    """Consent for the downstream scopes is missing (AADSTS65001)."""


class ReauthenticationRequiredError(OBOError):
    """The user's Microsoft token is expired (or about to be) and cannot be refreshed.

    ``entra`` holds Entra's refusal of the refresh, when there was one; otherwise
    ``reason`` says why (``no_refresh_token``, ``expired``, ``key_retired``).
    """

    code = "MICROSOFT_REAUTHENTICATION_REQUIRED"

    def __init__(
        self,
        message: str | None = None,
        *,
        entra: EntraError | None = None,
        reason: Reason = "no_refresh_token",
    ) -> None:
        self.entra = entra
        self.reason = reason
        super().__init__(message)

    def to_extra(self) -> dict[str, Any]:
        return self.entra.to_extra() if self.entra is not None else {"reason": self.reason}


class KeyRetiredError(ReauthenticationRequiredError):
    """The stored token has expired and Entra no longer publishes the key that signed it:
    it cannot be verified, only replaced (a refresh, whose result is verified, or a new
    sign-in)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, reason="key_retired")


class EntraUnavailableError(OBOError):
    """Entra ID could not be reached or answered 5xx / 429; ``retry_after`` in seconds if known."""

    code = "ENTRA_UNAVAILABLE"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        trace_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.status_code = status_code
        self.trace_id = trace_id
        self.correlation_id = correlation_id
        super().__init__(message)

    def to_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"reason": "unavailable"}
        if self.retry_after is not None:
            extra["retryAfter"] = self.retry_after
        if self.status_code is not None:
            extra["status_code"] = self.status_code
        if self.trace_id is not None:
            extra["trace_id"] = self.trace_id
        if self.correlation_id is not None:
            extra["correlation_id"] = self.correlation_id
        return extra


class StorageUnavailableError(OBOError):
    """The Better Auth database failed (connection lost, refused, timed out).

    The message names the driver's exception type only: a database error's own text can
    carry the statement's parameters, tokens among them.
    """

    code = "STORAGE_UNAVAILABLE"

    def to_extra(self) -> dict[str, Any]:
        return {"reason": "storage_unavailable"}


#: Packages whose exceptions mean "the database failed" rather than a bug of ours.
_STORAGE_PACKAGES = frozenset(
    {"sqlalchemy", "asyncpg", "aiomysql", "pymysql", "asyncmy", "aiosqlite", "sqlite3"}
)


def storage_error(exc: BaseException) -> StorageUnavailableError | None:
    """Our error for a database failure raised by the host's adapter, else None."""
    package = type(exc).__module__.split(".")[0]
    if package in _STORAGE_PACKAGES or isinstance(exc, (ConnectionError, TimeoutError)):
        return StorageUnavailableError(
            "The Better Auth database failed "
            f"({type(exc).__name__}); try again later, and check the database if it persists"
        )
    return None


def _describe(error: str, description: str | None) -> str:
    if description:
        return f"Entra ID rejected the request: {description}"
    return f"Entra ID rejected the request: {error}"
