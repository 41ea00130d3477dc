"""Scope strings: which resource they name, which permissions, and Entra's rules.

A v2 request names permissions as ``{resource}/{permission}`` where ``{resource}`` is
the resource's App ID URI or client-id GUID; a bare permission (``User.Read``) means
Microsoft Graph; ``openid profile email offline_access`` are OIDC scopes. One request
may name one resource only (AADSTS700022). Docs: scopes-oidc.md, v2-permissions-and-consent.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import EntraError
from ._models import App
from ._state import Directory
from ._wire import GRAPH_APP_ID, GRAPH_RESOURCE, GRAPH_ROLES, GRAPH_SCOPES, OIDC_SCOPES

__all__ = [
    "GRAPH",
    "RequestedScopes",
    "Resource",
    "named_permissions",
    "parse_scopes",
    "resolve_audience",
    "resource_of_app",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """Something a token can be for: Microsoft Graph or a registered app."""

    client_id: str
    identifiers: tuple[str, ...]
    scopes: frozenset[str]
    roles: frozenset[str]
    display: str
    version: int
    app: App | None = field(default=None, compare=False)

    def audience(self, *, by_uri: bool = False) -> str:
        """``aud``: always the GUID in v2 tokens. A v1 token carries the App ID URI when
        the request named the resource by it (``by_uri``), else the GUID; Microsoft
        Graph's (v1) tokens carry its URL (access-token-claims-reference.md)."""
        if self.version == 2:
            return self.client_id
        if self.client_id == GRAPH_APP_ID:
            return GRAPH_RESOURCE
        if by_uri and self.app is not None:
            return self.app.app_id_uri
        return self.client_id

    def knows(self, permission: str, *, roles: bool = False) -> str | None:
        """The permission's canonical spelling, matched case-insensitively."""
        pool = self.roles if roles else self.scopes
        return next((p for p in pool if p.lower() == permission.lower()), None)


GRAPH = Resource(
    client_id=GRAPH_APP_ID,
    identifiers=(GRAPH_RESOURCE, GRAPH_APP_ID),
    scopes=GRAPH_SCOPES - OIDC_SCOPES,
    roles=GRAPH_ROLES,
    display=GRAPH_RESOURCE,
    version=1,
)


def resource_of_app(app: App) -> Resource:
    return Resource(
        client_id=app.client_id,
        identifiers=(app.client_id, app.app_id_uri),
        scopes=frozenset(app.scopes),
        roles=frozenset(app.roles),
        display=app.app_id_uri,
        version=app.access_token_version,
        app=app,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestedScopes:
    """A parsed ``scope`` parameter."""

    oidc: frozenset[str]
    resource: Resource | None
    permissions: tuple[str, ...]  # canonical names, without ``.default``
    verbatim: tuple[str, ...]  # the resource scopes as the client spelled them
    default: bool  # ``{resource}/.default`` was asked
    by_uri: bool  # the resource was named by App ID URI rather than GUID


def find_resource(directory: Directory, identifier: str, tenant_id: str) -> Resource | None:
    ident = identifier.rstrip("/").lower()
    if ident in (GRAPH_RESOURCE, GRAPH_APP_ID):
        return GRAPH
    for app in list(directory.apps.values()):
        if ident in (app.client_id.lower(), app.app_id_uri.lower()) and (
            app.multi_tenant or app.tenant_id == tenant_id
        ):
            return resource_of_app(app)
    return None


def _split(scope: str) -> tuple[str, str]:
    if "/" not in scope:
        return GRAPH_RESOURCE, scope
    identifier, _, permission = scope.rpartition("/")
    return identifier, permission


def parse_scopes(
    directory: Directory, raw: str, *, tenant: str, tenant_name: str
) -> RequestedScopes:
    """Resolve ``raw`` or raise AADSTS500011 / 700022 / 70011."""
    words = raw.split()
    oidc = frozenset(w.lower() for w in words if w.lower() in OIDC_SCOPES)
    others = [w for w in words if w.lower() not in OIDC_SCOPES]
    resource: Resource | None = None
    permissions: list[str] = []
    default = by_uri = False
    for scope in others:
        identifier, permission = _split(scope)
        found = find_resource(directory, identifier, tenant)
        if found is None:
            raise EntraError(500011, resource=identifier, tenant=tenant_name)
        if resource is not None and found.client_id != resource.client_id:
            raise EntraError(700022, scope=" ".join(others))
        resource = found
        by_uri = by_uri or ("/" in scope and identifier.lower() != found.client_id.lower())
        if permission == ".default":
            default = True
            continue
        canonical = found.knows(permission)
        if canonical is None:
            raise EntraError(70011, scope=scope)
        permissions.append(canonical)
    return RequestedScopes(
        oidc=oidc,
        resource=resource,
        permissions=tuple(dict.fromkeys(permissions)),
        verbatim=tuple(others),
        default=default,
        by_uri=by_uri,
    )


def resolve_audience(directory: Directory, audience: App | str, tenant_id: str) -> Resource:
    """The resource an ``App`` or identifier (GUID, App ID URI, Graph URL) names."""
    if isinstance(audience, App):
        return resource_of_app(audience)
    found = find_resource(directory, audience, tenant_id)
    if found is None:
        raise ValueError(f"unknown audience {audience!r}")
    return found


def named_permissions(
    directory: Directory, scope: str, tenant_id: str
) -> tuple[Resource, list[str]]:
    """What a consent grant for ``scope`` covers: one permission (delegated scope or
    app role), or all of them for ``{resource}/.default``. Raises ValueError."""
    identifier, permission = _split(scope)
    resource = find_resource(directory, identifier, tenant_id)
    if resource is None:
        raise ValueError(f"no resource {identifier!r} in tenant {tenant_id}")
    if permission == ".default":
        return resource, sorted(resource.scopes | resource.roles)
    known = resource.knows(permission) or resource.knows(permission, roles=True)
    if known is None:
        raise ValueError(f"{resource.display} exposes no permission {permission!r}")
    return resource, [known]
