"""Client authentication at the token endpoint: a secret, or a signed client assertion.

Microsoft identity platform "certificate credentials" doc and RFC 6749 §2.3.1 / RFC 7523 §2.2.
An authenticator adds the app's credentials to a token request in place, so the
exchange client never holds a secret itself.
"""

from __future__ import annotations

import base64
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Literal, TypeVar
from urllib.parse import quote, unquote

from ._errors import EntraError

__all__ = [
    "CLIENT_ASSERTION_TYPE_JWT",
    "ROTATE_ON_CODES",
    "AuthenticatorChain",
    "ClientAuthenticator",
    "check_key",
    "check_scopes",
    "client_assertion_authenticator",
    "client_secret_authenticator",
    "require_text",
    "secret_values",
]

CLIENT_ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

T = TypeVar("T")
logger = logging.getLogger("better_auth_obo")

#: ``(body, headers, grant_type)``: adds the client's credentials to a token request in place.
ClientAuthenticator = Callable[[dict[str, str], dict[str, str], str], Awaitable[None]]

#: Entra's answers meaning "this credential is wrong or expired", on which the next
#: configured credential is tried (reference-error-codes): AADSTS7000215 invalid secret,
#: AADSTS7000222 expired secret, AADSTS700027 client assertion signature invalid or its
#: certificate not (or no longer) registered on the app; for federated assertions
#: (workload-identity-federation) AADSTS70021 no matching federated identity record,
#: AADSTS700211 / 700212 / 700213 no record for its issuer / audience / subject, and
#: AADSTS700024 the assertion is outside its validity (a token file no longer rotated).
ROTATE_ON_CODES = frozenset({7000215, 7000222, 700027, 70021, 700211, 700212, 700213, 700024})

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


class AuthenticatorChain:
    """Several labelled credentials of one app, for rotation; the one that last worked first.

    Example::

        chain = AuthenticatorChain([("secret-2025", old), ("secret-2026", new)])
        for index, label, authenticate in chain.order():
            ...
        chain.worked(index)
    """

    def __init__(self, authenticators: Sequence[tuple[str, ClientAuthenticator]]) -> None:
        if not isinstance(authenticators, Sequence):
            raise TypeError("authenticators must be a list of (label, ClientAuthenticator) pairs")
        if not authenticators:
            raise ValueError("authenticators is empty: give at least one (label, authenticator)")
        labels: list[str] = []
        for item in authenticators:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError("each authenticator must be a (label, ClientAuthenticator) pair")
            label, authenticate = item
            require_text("authenticator label", label)
            if not callable(authenticate):
                raise TypeError(f"the authenticator labelled {label!r} is not callable")
            if label in labels:
                raise ValueError(f"authenticator label {label!r} is used twice")
            labels.append(label)
        self._items = tuple(authenticators)
        self._preferred = 0

    @classmethod
    def of(
        cls,
        authenticate: ClientAuthenticator | None,
        authenticators: Sequence[tuple[str, ClientAuthenticator]] | None,
    ) -> AuthenticatorChain:
        """The chain for ``EntraClient``'s two spellings: exactly one must be given."""
        if (authenticate is None) == (authenticators is None):
            raise TypeError(
                "give one of authenticate (a ClientAuthenticator, see "
                "client_secret_authenticator) or authenticators ([(label, authenticator), ...])"
            )
        if authenticators is not None:
            return cls(authenticators)
        if not callable(authenticate):
            raise TypeError(
                "authenticate must be a ClientAuthenticator (see client_secret_authenticator)"
            )
        return cls([("client credential", authenticate)])

    def __len__(self) -> int:
        return len(self._items)

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels, in the order given."""
        return tuple(label for label, _ in self._items)

    @property
    def preferred(self) -> str:
        """The label tried first: the one that last worked (at first, the first given)."""
        return self._items[self._preferred][0]

    def order(self, skip: Collection[int] = ()) -> list[tuple[int, str, ClientAuthenticator]]:
        """``(index, label, authenticator)``: the preferred first, then the rest as given."""
        indices = [self._preferred, *(i for i in range(len(self._items)) if i != self._preferred)]
        return [(i, *self._items[i]) for i in indices if i not in skip]

    def worked(self, index: int) -> bool:
        """Start with ``index`` from now on; True when that changed the preferred one."""
        changed = index != self._preferred
        self._preferred = index
        return changed

    async def first_accepted(
        self,
        send: Callable[[str | None, ClientAuthenticator], Awaitable[T]],
        rejected: set[int],
    ) -> T:
        """``send(label, authenticator)`` with each credential not yet ``rejected`` in turn,
        until Entra does not refuse the credential itself; the last refusal is raised.

        ``label`` is None when there is only one credential. A credential that is refused
        is added to ``rejected`` (the caller keeps it across retries of one call).
        """
        order = self.order(rejected)
        for position, (index, label, authenticate) in enumerate(order):
            try:
                result = await send(label if len(self._items) > 1 else None, authenticate)
            except EntraError as exc:
                if position + 1 == len(order) or not self.rotates(exc):
                    raise
                rejected.add(index)
                # The label only: never the secret, the key or the assertion.
                logger.warning(
                    "entra client credential %s was refused (%s); trying credential %s",
                    label, ",".join(f"AADSTS{c}" for c in exc.error_codes), order[position + 1][1],
                )  # fmt: skip
                continue
            if self.worked(index):
                logger.warning(
                    "entra client credential %s works and is now tried first; replace or "
                    "remove the credentials Entra refused",
                    label,
                )
            return result
        raise AssertionError("unreachable: the chain is never empty")

    @staticmethod
    def rotates(error: BaseException) -> bool:
        """True when ``error`` says the credential itself was refused (try the next one)."""
        return (
            isinstance(error, EntraError)
            and error.reason == "client_credential_invalid"
            and not ROTATE_ON_CODES.isdisjoint(error.error_codes)
        )


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


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """The scopes as a tuple; TypeError / ValueError for anything Entra would refuse."""
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise TypeError("scopes must be a list of strings, e.g. ['api://downstream/.default']")
    result = tuple(scopes)
    if not result:
        raise ValueError("scopes is empty: give at least one scope")
    for scope in result:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ValueError(f"scope {scope!r} must be a non-empty string without white space")
    return result


def check_key(key: object) -> None:
    """TypeError unless ``key`` (a throttling key) is hashable."""
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"key must be hashable, e.g. a (user_id, application) tuple, not {type(key).__name__}"
        ) from None
