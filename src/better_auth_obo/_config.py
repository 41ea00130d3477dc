"""Frozen option objects, validated at construction."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import OBO_ERROR_CODES, UnknownApplicationError

__all__ = [
    "OBOApplication",
    "app_id_uris_option",
    "normalize_applications",
    "seconds_option",
    "unknown_application",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class OBOApplication:
    """A named downstream API: the scopes to request from Entra ID for it.

    Example::

        OBOApplication(scope=["https://graph.microsoft.com/.default"])

    The plain dict ``{"scope": [...]}`` is accepted wherever this is.
    """

    #: Any sequence of strings (a list, as documented); kept as a tuple.
    scope: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        raw: Any = self.scope
        if isinstance(raw, str):
            raise TypeError(
                "scope must be a list of strings, e.g. scope=['api://<app-id>/.default'], "
                "not a single string"
            )
        if not isinstance(raw, Iterable):
            raise TypeError(f"scope must be a list of strings, got {type(raw).__name__}")
        scopes = tuple(raw)
        for item in scopes:
            if not isinstance(item, str):
                raise TypeError(f"every scope must be a string, got {type(item).__name__}")
            if not item.strip() or any(c.isspace() for c in item):
                raise ValueError(
                    f"scope {item!r} is empty or contains white space; "
                    "give each scope as its own list item"
                )
        if not scopes:
            raise ValueError(OBO_ERROR_CODES["MISSING_APPLICATION_SCOPE"].message)
        object.__setattr__(self, "scope", scopes)


def unknown_application(name: object, applications: Iterable[str]) -> UnknownApplicationError:
    """The error for an ``application_name`` that is not configured, naming those that are."""
    known = ", ".join(repr(n) for n in applications)
    return UnknownApplicationError(
        f"Unknown OBO application {str(name)[:64]!r}; configured applications: {known}"
    )


def normalize_applications(applications: Any) -> Mapping[str, OBOApplication]:
    """Validate the ``applications`` option into ``{name: OBOApplication}``.

    Raises TypeError / ValueError with a message that says what to write instead.
    """
    if not isinstance(applications, Mapping):
        raise TypeError(
            "applications must be a dict such as "
            "{'graph': {'scope': ['https://graph.microsoft.com/.default']}}"
        )
    if not applications:
        raise ValueError("applications is empty: configure at least one downstream application")
    result: dict[str, OBOApplication] = {}
    for name, value in applications.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"application name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if isinstance(value, OBOApplication):
            app = value
        elif isinstance(value, Mapping):
            unknown = set(value) - {"scope"}
            if unknown:
                raise ValueError(
                    f"application {name!r} has unknown option(s) {sorted(unknown)}; "
                    "only 'scope' is supported"
                )
            if "scope" not in value or not value["scope"]:
                raise ValueError(
                    f"{OBO_ERROR_CODES['MISSING_APPLICATION_SCOPE'].message}: application "
                    f"{name!r} needs a non-empty 'scope' list (MISSING_APPLICATION_SCOPE)"
                )
            try:
                app = OBOApplication(scope=value["scope"])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"application {name!r}: {exc}") from None
        else:
            raise TypeError(
                f"application {name!r} must be a dict {{'scope': [...]}} or an OBOApplication, "
                f"got {type(value).__name__}"
            )
        result[name] = app
    return result


def seconds_option(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """An option in seconds: a finite number >= 0 (``allow_inf``: or infinity), named in
    the error when it is not (NaN would make every comparison false and pass silently)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or seconds < 0 or (math.isinf(seconds) and not allow_inf):
        finite = "" if allow_inf else "finite "
        raise ValueError(f"{name} must be a {finite}number of seconds >= 0, got {value!r}")
    return seconds


def app_id_uris_option(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    uris = tuple(value)
    for uri in uris:
        if not isinstance(uri, str) or not uri.strip():
            raise TypeError("app_id_uris must be a list of App ID URIs, e.g. ['api://contoso-api']")
    return uris
