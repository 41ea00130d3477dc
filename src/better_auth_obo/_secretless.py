"""Client assertions without a secret: a federated token, or a managed identity's token.

Workload identity federation (Microsoft Entra "workload-identity-federation" doc): the app
registration trusts an external issuer through a *federated identity credential* (issuer +
subject + audiences, audience ``api://AzureADTokenExchange``); the workload presents that
issuer's token as its ``client_assertion`` (type
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, RFC 7523 §2.2) instead of a secret.

- ``FederatedAssertion``: the token is read from a file (Kubernetes workload identity: the
  webhook projects a service-account token at ``AZURE_FEDERATED_TOKEN_FILE`` and sets
  ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_AUTHORITY_HOST``, as azure-identity's
  ``WorkloadIdentityCredential`` reads them), re-read on the next use after the kubelet
  rotates it; or from any async callable.
- ``ManagedIdentityAssertion``: a managed identity's token for ``api://AzureADTokenExchange``
  ("Configure an application to trust a managed identity": the federated credential names
  issuer ``https://login.microsoftonline.com/{tenant}/v2.0`` and the identity's object id as
  subject). From the App Service / Container Apps endpoint (``IDENTITY_ENDPOINT``, with the
  ``IDENTITY_HEADER`` value in ``X-IDENTITY-HEADER``, ``api-version=2019-08-01``, answer
  ``expires_on`` in epoch seconds), else from IMDS
  (``GET http://169.254.169.254/metadata/identity/oauth2/token``, header ``Metadata: true``,
  ``api-version=2018-02-01``, answer ``expires_in``). Cached until 5 minutes before expiry
  (MSAL's managed identity client treats less as expired); concurrent exchanges fetch once.

Entra's refusals (reference-error-codes; the answers quoted in Azure/azure-workload-identity
issues #340, #616, #1200): AADSTS70021 no matching federated identity record, AADSTS700211
unknown issuer, AADSTS700212 audience, AADSTS700213 subject, AADSTS700024 the assertion is
expired. Tokens never reach a repr, a message or a log.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm

from ._entra_auth import ClientAuthenticator, client_assertion_authenticator, require_text
from ._errors import ConfigurationError, EntraUnavailableError

__all__ = [
    "FEDERATED_TOKEN_FILE_ENV",
    "IMDS_ENDPOINT",
    "TOKEN_EXCHANGE_AUDIENCE",
    "FederatedAssertion",
    "HttpSource",
    "ManagedIdentityAssertion",
    "WatchedFile",
    "unverified_claims",
]

logger = logging.getLogger("better_auth_obo")

T = TypeVar("T")
#: The plugin's client, or a callable returning it (as ``EntraClient(http=...)`` takes).
HttpSource = httpx.AsyncClient | Callable[[], httpx.AsyncClient]

FEDERATED_TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"
#: The audience Entra ID expects in a federated token (public cloud).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
IMDS_ENDPOINT = "http://169.254.169.254/metadata/identity/oauth2/token"
_APP_SERVICE_API_VERSION = "2019-08-01"
_IMDS_API_VERSION = "2018-02-01"
#: A managed identity token is renewed this long before it expires.
REFRESH_BEFORE = 300.0
_MI_TIMEOUT = 10.0


# --- a file re-read when it changes ---------------------------------------------------------


class WatchedFile(Generic[T]):
    """A file parsed again whenever its content changes: rotation without restart.

    Each ``read`` reads the bytes (a few KB: microseconds) and parses them only when their
    SHA-256 differs from the last good read. Content, not mtime: a same-size rewrite within
    one tick of the file system's coarse clock would otherwise go unseen. A file that cannot
    be read or parsed after a good one keeps the last good value and logs a warning (the
    path and the kind of failure only); at first it raises ``ConfigurationError``.
    """

    __slots__ = ("_digest", "_parse", "_value", "path", "what")

    def __init__(self, path: str | os.PathLike[str], parse: Callable[[bytes], T], what: str):
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise TypeError(f"the {what} path must be a non-empty str or os.PathLike")
        self.path = str(path)
        self.what = what
        self._parse = parse
        self._digest: bytes | None = None
        self._value: T | None = None

    def read(self) -> T:
        """The parsed content: from memory unless the file's content changed."""
        try:
            data = Path(self.path).read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest == self._digest and self._value is not None:
                return self._value
            value = self._parse(data)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # UnsupportedAlgorithm: e.g. a PFX with legacy encryption after a rotation.
            return self._keep_last(exc)
        self._digest, self._value = digest, value
        return value

    def _keep_last(self, exc: Exception) -> T:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError):
            why = f"cannot be read: {why}"
        if self._value is None:
            raise ConfigurationError(f"The {self.what} {self.path} {why}") from None
        # The message of our own parsers never holds key material or a token.
        logger.warning("the %s %s %s; keeping the one read before", self.what, self.path, why)
        return self._value


# --- federated token --------------------------------------------------------------------------


def _token_text(data: bytes) -> str:
    text = data.decode("ascii", "replace").strip()
    if not text:
        raise ValueError("is empty")
    if text.count(".") != 2 or any(c.isspace() for c in text):
        raise ValueError("does not hold a JWT (three base64url parts separated by dots)")
    return text


class FederatedAssertion:
    """An external identity provider's token as the app's client assertion.

    Example::

        FederatedAssertion()                       # the file AZURE_FEDERATED_TOKEN_FILE names
        FederatedAssertion.from_file("/var/run/secrets/azure/tokens/azure-identity-token")
        FederatedAssertion(get_token=fetch_github_oidc_token)   # any async source

    The file is re-read on the next use after it changes (the kubelet rotates it hourly).
    The app registration needs a federated identity credential naming the token's issuer,
    subject and audience (``api://AzureADTokenExchange``), else Entra answers AADSTS70021,
    or AADSTS700211 / 700213 / 700212 for the issuer / subject / audience that differs.
    """

    __slots__ = ("_file", "_get_token")

    def __init__(self, get_token: Callable[[], Awaitable[str]] | None = None) -> None:
        self._get_token = get_token
        self._file: WatchedFile[str] | None = None
        if get_token is not None:
            if not callable(get_token):
                raise TypeError("get_token must be an async callable returning the token (str)")
            return
        path = os.environ.get(FEDERATED_TOKEN_FILE_ENV, "").strip()
        if not path:
            raise ConfigurationError(
                f"FederatedAssertion() reads the token file named by {FEDERATED_TOKEN_FILE_ENV}, "
                "which is not set: on Kubernetes label the pod azure.workload.identity/use: "
                "'true' (its service account annotated with the app's client id), or use "
                "FederatedAssertion.from_file(path) / FederatedAssertion(get_token=...)"
            )
        self._file = WatchedFile(path, _token_text, "federated token file")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FederatedAssertion:
        """The token in ``path``, re-read on the next use after the file changes."""
        credential = cls.__new__(cls)
        credential._get_token = None
        credential._file = WatchedFile(path, _token_text, "federated token file")
        return credential

    @property
    def source(self) -> str:
        """Where the token comes from: ``file <path>`` or ``get_token <name>``."""
        if self._file is not None:
            return f"file {self._file.path}"
        return f"get_token {getattr(self._get_token, '__qualname__', 'callable')}"

    def __repr__(self) -> str:
        if self._file is not None:
            return f"FederatedAssertion.from_file({self._file.path!r})"
        return f"FederatedAssertion(get_token=<{self.source.removeprefix('get_token ')}>)"

    async def assertion(self) -> str:
        """The current external token (the client assertion to send)."""
        if self._file is not None:
            return self._file.read()
        assert self._get_token is not None
        value = await self._get_token()
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                "FederatedAssertion's get_token returned no token: it must return the "
                "external identity provider's JWT as a non-empty str"
            )
        return value.strip()

    def authenticator(
        self, client_id: str, token_endpoint: str | None = None, *, http: HttpSource | None = None
    ) -> ClientAuthenticator:
        """Sends the current external token as ``client_assertion`` (no ``http`` needed)."""
        return client_assertion_authenticator(client_id, self.assertion)


# --- managed identity -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class _IdentityToken:
    token: str
    expires_at: float


class ManagedIdentityAssertion:
    """A managed identity's token for ``api://AzureADTokenExchange`` as the client assertion.

    Example::

        ManagedIdentityAssertion()                          # system-assigned
        ManagedIdentityAssertion(client_id="<user-assigned identity's client id>")

    The app registration needs a federated identity credential with issuer
    ``https://login.microsoftonline.com/<tenant>/v2.0``, subject the identity's object
    (principal) id, audience ``api://AzureADTokenExchange``. Uses App Service / Container
    Apps' endpoint when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set (read when this
    is built), else IMDS. The identity endpoint is on this machine (plain http on loopback
    or link-local): requests to it never go through the app's client, a proxy from the
    environment or a redirect (the ``X-IDENTITY-HEADER`` is a secret), but through a
    short-lived client of their own, or ``http_client`` when given. The token is kept
    until 5 minutes before it expires.
    """

    __slots__ = (
        "_clock",
        "_endpoint",
        "_header",
        "_http_client",
        "_inflight",
        "_token",
        "client_id",
        "protocol",
        "resource",
    )

    def __init__(
        self,
        client_id: str | None = None,
        *,
        resource: str = TOKEN_EXCHANGE_AUDIENCE,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ`` (default ``os.environ``) is where ``IDENTITY_ENDPOINT`` and
        ``IDENTITY_HEADER`` are looked up (the doctor passes its own mapping)."""
        if client_id is not None:
            require_text("client_id", client_id)
        require_text("resource", resource)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        self.client_id = client_id
        self.resource = resource
        self._http_client = http_client
        self._clock = clock
        env = os.environ if environ is None else environ
        endpoint = env.get("IDENTITY_ENDPOINT", "").strip()
        header = env.get("IDENTITY_HEADER", "").strip()
        self.protocol = "app_service" if endpoint and header else "imds"
        self._endpoint = endpoint if self.protocol == "app_service" else IMDS_ENDPOINT
        _check_local(self._endpoint)
        self._header = header
        self._token: _IdentityToken | None = None
        self._inflight: asyncio.Future[_IdentityToken] | None = None

    def __repr__(self) -> str:
        return (
            f"ManagedIdentityAssertion(client_id={self.client_id!r}, protocol={self.protocol!r}, "
            f"endpoint={self._endpoint!r})"
        )

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def expires_at(self) -> datetime | None:
        """Expiry of the token held in memory (None before the first fetch)."""
        token = self._token
        return None if token is None else datetime.fromtimestamp(token.expires_at, timezone.utc)

    async def assertion(self, http: HttpSource | None = None) -> str:
        """The identity's token: from memory, or fetched once for all concurrent callers."""
        held = self._token
        if held is not None and held.expires_at - REFRESH_BEFORE > self._clock():
            return held.token
        flight = self._inflight
        loop = asyncio.get_running_loop()
        if flight is None or flight.done() or flight.get_loop() is not loop:
            flight = self._inflight = loop.create_task(self._fetch(http))
            # Read the outcome even if every waiter was cancelled (no "never retrieved").
            flight.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Shielded: one cancelled request does not cancel the fetch the others wait for.
        return (await asyncio.shield(flight)).token

    def authenticator(
        self, client_id: str, token_endpoint: str | None = None, *, http: HttpSource | None = None
    ) -> ClientAuthenticator:
        """Sends the identity's token as ``client_assertion``, fetched with ``http``."""

        async def get_assertion() -> str:
            return await self.assertion(http)

        return client_assertion_authenticator(client_id, get_assertion)

    async def _fetch(self, http: HttpSource | None) -> _IdentityToken:
        # ``http`` (the app's client) is not used: it may carry a proxy from the environment
        # (httpx sends even localhost through HTTP_PROXY), and the header is a secret.
        del http
        params, headers = self.request_parts()
        options: dict[str, Any] = {
            "params": params,
            "headers": headers,
            "timeout": _MI_TIMEOUT,
            "follow_redirects": False,
        }
        try:
            if self._http_client is None:  # a short-lived client of our own, no proxy
                async with httpx.AsyncClient(trust_env=False) as own:
                    response = await own.get(self._endpoint, **options)
            else:
                response = await self._http_client.get(self._endpoint, **options)
        except httpx.HTTPError as exc:
            raise EntraUnavailableError(
                f"The managed identity endpoint ({self._where}) could not be reached "
                f"({type(exc).__name__}): is a managed identity assigned to this resource?"
            ) from None
        token = self.read_answer(response)
        self._token = token
        return token

    @property
    def _where(self) -> str:
        return "App Service IDENTITY_ENDPOINT" if self.protocol == "app_service" else "IMDS"

    def request_parts(self) -> tuple[dict[str, str], dict[str, str]]:
        """The query parameters and headers of a token request to ``endpoint``."""
        if self.protocol == "app_service":
            params = {"api-version": _APP_SERVICE_API_VERSION, "resource": self.resource}
            headers = {"X-IDENTITY-HEADER": self._header}
        else:
            params = {"api-version": _IMDS_API_VERSION, "resource": self.resource}
            headers = {"Metadata": "true"}
        if self.client_id:
            params["client_id"] = self.client_id
        return params, headers

    def read_answer(self, response: httpx.Response) -> _IdentityToken:
        """The token in the endpoint's answer, or the error it means (never its body)."""
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if status >= 500 or status == 429:
            raise EntraUnavailableError(
                f"The managed identity endpoint ({self._where}) answered HTTP {status}; "
                "try again later",
                status_code=status,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if status != 200 or not isinstance(token, str) or not token:
            error = body.get("error") if isinstance(body, dict) else None
            named = f", error {error!r}" if isinstance(error, str) and error.isidentifier() else ""
            raise ConfigurationError(
                f"The managed identity endpoint ({self._where}) gave no token (HTTP {status}"
                f"{named}): check that the identity (client_id={self.client_id!r}) is "
                "assigned to this resource"
            )
        return _IdentityToken(token, self._expiry(body, token))

    def _expiry(self, body: dict[str, Any], token: str) -> float:
        # App Service: expires_on (epoch seconds); IMDS: expires_in too. Else the JWT's exp.
        # Whatever is read must be a plausible time: never kept more than a day, and an
        # answer of "inf" or NaN falls through to the next source.
        now = self._clock()
        candidates: list[Any] = []
        for field, base in (("expires_on", 0.0), ("expires_in", now)):
            try:
                candidates.append(base + float(body[field]))
            except (KeyError, TypeError, ValueError):
                continue
        candidates.append(unverified_claims(token).get("exp"))
        for value in candidates:
            if isinstance(value, (int, float)) and math.isfinite(value) and value > now:
                return min(float(value), now + _MAX_IDENTITY_LIFETIME)
        return now + REFRESH_BEFORE


#: A managed identity's token lives about a day; a longer answer is not believed.
_MAX_IDENTITY_LIFETIME = 24 * 3600.0


def _check_local(endpoint: str) -> None:
    """The identity endpoint is this machine's: plain http only on loopback or link-local."""
    try:
        url = httpx.URL(endpoint)
    except (httpx.InvalidURL, TypeError):
        raise ConfigurationError("IDENTITY_ENDPOINT is not a URL") from None
    host = url.host
    try:
        address = ipaddress.ip_address(host)
        local = address.is_loopback or address.is_link_local
    except ValueError:  # a name: only localhost is this machine
        local = host == "localhost"
    if url.scheme == "https" or (url.scheme == "http" and local):
        return
    raise ConfigurationError(
        f"IDENTITY_ENDPOINT must be the managed identity endpoint on this machine (http on "
        f"localhost or 169.254.x.x, or https), not {url.scheme}://{host}"
    )


def _resolve(http: HttpSource | None) -> httpx.AsyncClient | None:
    if http is None or isinstance(http, httpx.AsyncClient):
        return http
    return http()


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for expiry and reporting only); {} if unreadable."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}
