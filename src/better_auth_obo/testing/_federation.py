"""Workload identity federation in the emulator: federated identity credentials, external
issuers (a Kubernetes-like service-account issuer with its own discovery and JWKS) and
managed identities (the App Service / Container Apps token endpoint).

Entra's rules, as documented ("Workload identity federation", "Configure an application to
trust a managed identity", Microsoft Graph ``federatedIdentityCredential``: issuer, subject,
audiences, matched case-sensitively) and as its answers read (reference-error-codes; the
bodies quoted in Azure/azure-workload-identity issues #340, #616, #1200 and Azure/login #482):

- no federated credential on the app: AADSTS70021 (naming the assertion's issuer, subject
  and audience);
- none with the token's issuer: AADSTS700211; with its issuer but not its subject:
  AADSTS700213; with both but not its audience: AADSTS700212;
- a token outside its validity: AADSTS700024, as for certificate assertions.

A managed identity's token (``resource=api://AzureADTokenExchange``) is issued by the
tenant (``iss`` ``{authority}/{tid}/v2.0``) with ``sub`` = ``oid`` = the identity's object
id: that pair is what a federated credential trusting the identity names.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._errors import EntraError
from ._keys import SigningKey
from ._wire import iso_timestamp, new_guid, opaque

if TYPE_CHECKING:
    from ._models import App
    from ._state import Directory
    from ._tokens import TokenIssuer

__all__ = [
    "MANAGED_IDENTITY_LIFETIME",
    "TOKEN_EXCHANGE_AUDIENCE",
    "ExternalIssuer",
    "FederatedCredential",
    "ManagedIdentity",
    "check_federated_assertion",
    "external_discovery",
    "external_jwks",
    "is_federated",
    "managed_identity_token",
]

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
#: Managed identity tokens live about 24 hours (Azure DevOps' workload identity notes).
MANAGED_IDENTITY_LIFETIME = 24 * 3600
_APP_SERVICE_API_VERSION = "2019-08-01"


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedCredential:
    """A federated identity credential of an app registration (Microsoft Graph's
    ``federatedIdentityCredential``): tokens of ``issuer`` about ``subject`` whose ``aud``
    is one of ``audiences`` authenticate the app."""

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]


class ExternalIssuer:
    """An OIDC issuer outside Entra (like a Kubernetes cluster's service-account issuer),
    served by the emulator: ``{issuer}/.well-known/openid-configuration`` and its JWKS.

    Example::

        k8s = entra.add_external_issuer()
        app.add_federated_credential(issuer=k8s.issuer, subject="system:serviceaccount:ns:sa")
        token = k8s.issue_token(subject="system:serviceaccount:ns:sa")
    """

    def __init__(self, *, issuer: str, clock: Callable[[], float]) -> None:
        self.issuer = issuer
        self._clock = clock
        self._key = SigningKey.generate()

    def __repr__(self) -> str:
        return f"<ExternalIssuer {self.issuer}>"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/openid/v1/jwks"

    def key(self, kid: str) -> Any:
        """The public key for ``kid``, or None."""
        return self._key.public_key if kid == self._key.kid else None

    def issue_token(
        self,
        *,
        subject: str,
        audience: str | Iterable[str] = TOKEN_EXCHANGE_AUDIENCE,
        lifetime: int = 3600,
        issued_at: float | None = None,
    ) -> str:
        """A token of this issuer about ``subject`` (``issued_at`` in the past with a short
        ``lifetime`` gives an expired one)."""
        now = int(self._clock() if issued_at is None else issued_at)
        audiences = [audience] if isinstance(audience, str) else list(audience)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": new_guid(),
        }
        headers = {"kid": self._key.kid}
        return jwt.encode(claims, self._key.private_key, algorithm="RS256", headers=headers)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        key = self._key.jwk(self.issuer)
        return {"keys": [{k: key[k] for k in ("kty", "use", "kid", "n", "e")} | {"alg": "RS256"}]}


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedIdentity:
    """A user-assigned managed identity, with the App Service / Container Apps token
    endpoint of the resource it is assigned to.

    Set ``IDENTITY_ENDPOINT`` = ``identity_endpoint`` and ``IDENTITY_HEADER`` =
    ``identity_header``; a federated credential trusting it names ``issuer`` and
    ``subject`` (its object id)."""

    name: str
    client_id: str
    object_id: str
    tenant_id: str
    issuer: str
    identity_endpoint: str
    identity_header: str = field(repr=False)

    @property
    def subject(self) -> str:
        return self.object_id


# --- the token endpoint's check ---------------------------------------------------------------


def is_federated(app: App, header: dict[str, Any], claims: dict[str, Any]) -> bool:
    """A client assertion from another issuer: not issued by the app itself, and with a
    ``kid`` (issuers' tokens, Entra's own included, name their key) or no thumbprint (a
    certificate assertion names its certificate by ``x5t`` / ``x5t#S256`` only)."""
    thumbprint = header.get("x5t") or header.get("x5t#S256")
    return claims.get("iss") != app.client_id and ("kid" in header or not thumbprint)


def check_federated_assertion(
    directory: Directory, app: App, assertion: str, header: dict[str, Any], claims: dict[str, Any]
) -> None:
    """Accept ``assertion`` for ``app`` or raise the AADSTS error Entra would."""
    iss, sub = str(claims.get("iss", "")), str(claims.get("sub", ""))
    aud = claims.get("aud", [])
    audiences = [aud] if isinstance(aud, str) else [str(a) for a in aud or []]
    _match(directory.federated_credentials(app.client_id), iss, sub, audiences)
    key = directory.federation_key(iss, str(header.get("kid", "")))
    if key is None or header.get("alg") != "RS256":
        raise EntraError(
            700027, reason="The key was not found.", thumbprint="", client_id=app.client_id
        )
    try:
        # Times against the emulator's clock below; issuer, subject, audience matched above.
        jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False, "require": ["exp", "iss", "sub", "aud"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        raise EntraError(
            700027, reason="Signature validation failed.", thumbprint="", client_id=app.client_id
        ) from exc
    now = directory.clock()
    exp, nbf = float(claims["exp"]), float(claims.get("nbf", 0))
    if not nbf <= now < exp:
        raise EntraError(
            700024, now=iso_timestamp(now), nbf=iso_timestamp(nbf), exp=iso_timestamp(exp)
        )


def _match(
    credentials: list[FederatedCredential], iss: str, sub: str, audiences: list[str]
) -> None:
    shown = ", ".join(audiences)
    if not credentials:
        raise EntraError(70021, issuer=iss, subject=sub, audience=shown)
    same_issuer = [c for c in credentials if c.issuer == iss]
    if not same_issuer:
        raise EntraError(700211, issuer=iss)
    same_subject = [c for c in same_issuer if c.subject == sub]
    if not same_subject:
        raise EntraError(700213, subject=sub)
    if not any(a in c.audiences for c in same_subject for a in audiences):
        raise EntraError(700212, audience=shown)


# --- routes -----------------------------------------------------------------------------------


def _external(request: Request) -> ExternalIssuer | None:
    issuer: TokenIssuer = request.app.state.issuer
    url = f"{issuer.authority}/external/{request.path_params['issuer_id']}"
    return issuer.directory.external_issuer(url)


async def external_discovery(request: Request) -> Response:
    found = _external(request)
    if found is None:
        return JSONResponse({"error": "not_found"}, 404)
    return JSONResponse(found.discovery())


async def external_jwks(request: Request) -> Response:
    found = _external(request)
    if found is None:
        return JSONResponse({"error": "not_found"}, 404)
    return JSONResponse(found.jwks())


async def managed_identity_token(request: Request) -> Response:
    """``GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01[&client_id=...]`` with
    ``X-IDENTITY-HEADER``: the App Service / Container Apps managed identity protocol."""
    issuer: TokenIssuer = request.app.state.issuer
    identity = issuer.directory.managed_identity(request.path_params["identity_id"])
    if identity is None:
        return _mi_error(404, "not_found", "No managed identity at this endpoint.")
    presented = request.headers.get("x-identity-header", "")
    if not hmac.compare_digest(presented.encode(), identity.identity_header.encode()):
        return _mi_error(401, "unauthorized", "The X-IDENTITY-HEADER header is missing or wrong.")
    query = request.query_params
    if query.get("api-version") != _APP_SERVICE_API_VERSION:
        return _mi_error(400, "invalid_request", "api-version must be 2019-08-01.")
    resource = query.get("resource", "").strip()
    if not resource:
        return _mi_error(400, "invalid_request", "The resource parameter is required.")
    if query.get("client_id") not in (None, identity.client_id):
        return _mi_error(400, "invalid_request", "No identity with that client_id is assigned.")
    token, expires_on = _identity_token(issuer, identity, resource)
    return JSONResponse(
        {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
    )


def _identity_token(
    issuer: TokenIssuer, identity: ManagedIdentity, resource: str
) -> tuple[str, int]:
    now = int(issuer.clock())
    exp = now + MANAGED_IDENTITY_LIFETIME
    claims = {
        "aud": resource,
        "iss": identity.issuer,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "azp": identity.client_id,
        "azpacr": "2",
        "idtyp": "app",
        "oid": identity.object_id,
        "sub": identity.object_id,
        "tid": identity.tenant_id,
        "uti": opaque()[:22],
        "ver": "2.0",
    }
    return issuer.keys.sign(claims), exp


def _mi_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status)
