"""Client authentication at the token endpoint: a secret, or a signed client assertion.

Microsoft identity platform "certificate credentials" doc and RFC 6749 §2.3.1 / RFC 7523 §2.2.
An authenticator adds the app's credentials to a token request in place, so the
exchange client never holds a secret itself.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal
from urllib.parse import quote, unquote

__all__ = [
    "CLIENT_ASSERTION_TYPE_JWT",
    "ClientAuthenticator",
    "client_assertion_authenticator",
    "client_secret_authenticator",
    "require_text",
    "secret_values",
]

CLIENT_ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: ``(body, headers, grant_type)``: adds the client's credentials to a token request in place.
ClientAuthenticator = Callable[[dict[str, str], dict[str, str], str], Awaitable[None]]

# Body fields whose values are credentials: never logged, scrubbed from messages.
_SECRET_FIELDS = ("assertion", "refresh_token", "client_secret", "client_assertion")


def client_secret_authenticator(
    client_id: str, client_secret: str, *, method: Literal["post", "basic"] = "post"
) -> ClientAuthenticator:
    """Authenticate with a client secret, in the body (``post``) or as HTTP Basic.

    Example::

        auth = client_secret_authenticator("11111111-...", "s3cr3t~value")

    ``basic`` follows RFC 6749 §2.3.1: both parts are form-url-encoded before
    base64 (Entra accepts either form; MSAL sends ``post``).
    """
    require_text("client_id", client_id)
    require_text("client_secret", client_secret)
    if method not in ("post", "basic"):
        raise ValueError(f"method must be 'post' or 'basic', not {method!r}")
    basic = "Basic " + base64.b64encode(
        f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
    ).decode("ascii")

    async def authenticate(body: dict[str, str], headers: dict[str, str], grant: str) -> None:
        body["client_id"] = client_id
        if method == "basic":
            headers["authorization"] = basic
        else:
            body["client_secret"] = client_secret

    return authenticate


def client_assertion_authenticator(
    client_id: str, get_assertion: Callable[[], str | Awaitable[str]]
) -> ClientAuthenticator:
    """Authenticate with a signed client assertion (certificate or federated credential).

    ``get_assertion`` is called for every request and may be sync or async; it
    returns the JWT (certificate-credentials doc: ``client_assertion_type`` +
    ``client_assertion``). Example::

        auth = client_assertion_authenticator(client_id, lambda: sign_assertion(key))
    """
    require_text("client_id", client_id)
    if not callable(get_assertion):
        raise TypeError("get_assertion must be a callable returning the client assertion JWT")

    async def authenticate(body: dict[str, str], headers: dict[str, str], grant: str) -> None:
        value = get_assertion()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError("get_assertion must return the client assertion JWT as a string")
        body["client_id"] = client_id
        body["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT
        body["client_assertion"] = value

    return authenticate


def secret_values(body: Mapping[str, str], headers: Mapping[str, str]) -> frozenset[str]:
    """Every credential in a token request (body fields, Authorization and what it encodes)."""
    values = {body[name] for name in _SECRET_FIELDS if body.get(name)}
    authorization = headers.get("authorization", "")
    if authorization:
        values.add(authorization)
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            values.add(credentials)
            try:
                decoded = base64.b64decode(credentials).decode()
            except ValueError:
                decoded = ""
            values.update(unquote(part) for part in decoded.split(":", 1)[1:])
    return frozenset(v for v in values if len(v) >= 6)


def require_text(name: str, value: object) -> None:
    """TypeError / ValueError unless ``value`` is a non-empty string."""
    # The value may be a credential: the message names the parameter, never the value.
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty")
