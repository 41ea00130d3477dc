"""Fault injection for the token endpoint.

Each call arms one ``Fault`` that fires for the next ``times`` matching requests
(``times=None``: until cleared). A request matches when every filter given matches:
grant type, client, user (the assertion's, code's or refresh token's user). Delays
add up and then the request goes on (or meets another fault); the first matching
terminal fault (status, throttle, garbage, drop) answers instead of the emulator.

Arming and inspecting are quick calls under a lock, safe from any thread or event
loop; the server applies faults in its own thread, so a delay never blocks the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._models import App, User
from ._wire import GRANT_JWT_BEARER

__all__ = ["Fault", "Faults"]

_GRANT_ALIASES = {"obo": GRANT_JWT_BEARER, "on_behalf_of": GRANT_JWT_BEARER}


@dataclass(frozen=True, slots=True)
class _Filter:
    grant_type: str | None
    client_id: str | None
    user_oid: str | None

    def matches(self, grant_type: str | None, client_id: str | None, user_oid: str | None) -> bool:
        return (
            self.grant_type in (None, grant_type)
            and self.client_id in (None, client_id)
            and self.user_oid in (None, user_oid)
        )


@dataclass(eq=False, kw_only=True)
class Fault:
    """One armed fault. ``hits`` counts the requests it answered or delayed."""

    kind: str  # "status" | "throttle" | "delay" | "garbage" | "drop"
    status: int = 0
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    aadsts: int | None = None
    times: int | None = 1
    hits: int = 0
    _filter: _Filter = field(default=_Filter(None, None, None), repr=False)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    """The emulator's fault injection: ``entra.faults``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []

    def fail(
        self,
        *,
        status: int = 500,
        body: object = None,
        aadsts: int | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        grant_type: str | None = None,
        client: App | str | None = None,
        user: User | str | None = None,
    ) -> Fault:
        """Answer with ``status`` and ``body`` (dict → JSON, str/bytes as is).

        With ``aadsts=<code>`` the emulator renders that catalogue error instead
        (right status, trace ids and all), e.g. ``fail(aadsts=50076)``.
        Without either, a JSON ``server_error`` / ``temporarily_unavailable`` body.
        """
        return self._arm(
            Fault(
                kind="status",
                status=status,
                body=_encode(body, status),
                aadsts=aadsts,
                headers=dict(headers or {}),
                times=times,
            ),
            grant_type,
            client,
            user,
        )

    def throttle(
        self,
        *,
        retry_after: int = 1,
        json_body: bool = False,
        times: int | None = 1,
        grant_type: str | None = None,
        client: App | str | None = None,
        user: User | str | None = None,
    ) -> Fault:
        """HTTP 429 with ``Retry-After``; a plain-text body as Entra sends, or JSON."""
        body = _encode(None, 429) if json_body else b"Too Many Requests"
        kind = "application/json" if json_body else "text/plain"
        return self._arm(
            Fault(
                kind="throttle",
                status=429,
                body=body,
                times=times,
                headers={"Retry-After": str(retry_after), "Content-Type": kind},
            ),
            grant_type,
            client,
            user,
        )

    def delay(
        self,
        seconds: float,
        *,
        times: int | None = 1,
        grant_type: str | None = None,
        client: App | str | None = None,
        user: User | str | None = None,
    ) -> Fault:
        """Hold matching requests ``seconds`` before answering."""
        return self._arm(
            Fault(kind="delay", seconds=seconds, times=times), grant_type, client, user
        )

    def garbage(
        self,
        *,
        status: int = 200,
        body: str = "<html><body>Service Unavailable</body></html>",
        times: int | None = 1,
        grant_type: str | None = None,
        client: App | str | None = None,
        user: User | str | None = None,
    ) -> Fault:
        """Answer with a non-JSON body (HTML by default)."""
        return self._arm(
            Fault(
                kind="garbage",
                status=status,
                body=body.encode(),
                times=times,
                headers={"Content-Type": "text/html"},
            ),
            grant_type,
            client,
            user,
        )

    def drop_connection(
        self,
        *,
        times: int | None = 1,
        grant_type: str | None = None,
        client: App | str | None = None,
        user: User | str | None = None,
    ) -> Fault:
        """Close the connection without sending any response."""
        return self._arm(Fault(kind="drop", times=times), grant_type, client, user)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    @property
    def pending(self) -> tuple[Fault, ...]:
        """Armed faults that can still fire."""
        with self._lock:
            return tuple(f for f in self._armed if not f.exhausted)

    def take(
        self, grant_type: str | None, client_id: str | None, user_oid: str | None
    ) -> tuple[float, Fault | None]:
        """(total delay, terminal fault) for one request; counts the hits."""
        delay, terminal = 0.0, None
        with self._lock:
            for fault in self._armed:
                if fault.exhausted or not fault._filter.matches(grant_type, client_id, user_oid):
                    continue
                if fault.kind == "delay":
                    fault.hits += 1
                    delay += fault.seconds
                elif terminal is None:
                    fault.hits += 1
                    terminal = fault
            self._armed = [f for f in self._armed if not f.exhausted]
        return delay, terminal

    def _arm(
        self,
        fault: Fault,
        grant_type: str | None,
        client: App | str | None,
        user: User | str | None,
    ) -> Fault:
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        fault._filter = _Filter(
            _GRANT_ALIASES.get(grant_type or "", grant_type),
            client.client_id if isinstance(client, App) else client,
            user.oid if isinstance(user, User) else user,
        )
        with self._lock:
            self._armed.append(fault)
        return fault


def _encode(body: object, status: int) -> bytes:
    if body is None:
        error = "temporarily_unavailable" if status in (429, 503, 504) else "server_error"
        body = {
            "error": error,
            "error_description": "AADSTS50000: There was an error issuing a token or an issue "
            "with our sign-in service.",
            "error_codes": [50000],
        }
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
