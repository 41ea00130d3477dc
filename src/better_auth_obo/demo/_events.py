"""What each ``get_obo_token`` call did, for the pages and the terminal of ``--serve``.

The source of a token is observed, not guessed: ``exchange`` when the emulator's token
endpoint saw one more jwt-bearer request during the call; otherwise ``database`` or
``grace`` when the plugin logged a load with that source (its INFO line ``obo token
application=... source=...``, emitted only when memory could not answer); otherwise
``cache`` (this process's memory). The timing of each exchange is remembered by the
fingerprint of the token it produced, so a row shows how long its exchange took even
when it is later served from the cache. Nothing here keeps or prints a token.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from better_auth import APIError

from better_auth_obo import OBOAccount, OBOPlugin
from better_auth_obo._assertion import fingerprint

from ._transcript import Transcript, duration
from ._world import Tenant

__all__ = ["Served", "TokenLog"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_PLUGIN_LOGGER = "better_auth_obo"
_LOADS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "better_auth_obo_demo_loads", default=None
)


@dataclass(frozen=True, slots=True)
class Served:
    """One ``get_obo_token`` call: where the token came from and how long the call took."""

    application: str
    source: str  # exchange, cache, database, grace
    seconds: float
    at: float  # time.time() when it returned


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange the demo saw: how long it took and when."""

    seconds: float
    at: float


class _LoadSources(logging.Handler):
    """Collects the ``source`` of the plugin's load lines into the calling task's list."""

    def emit(self, record: logging.LogRecord) -> None:
        loads = _LOADS.get()
        if loads is None or not str(record.msg).startswith("obo token application="):
            return
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 2:
            loads.append(str(args[1]))


class TokenLog:
    """Calls ``get_obo_token`` and records (and, with ``out``, prints) what happened."""

    def __init__(self, obo: OBOPlugin, tenant: Tenant, out: Transcript | None = None) -> None:
        self.obo = obo
        self.tenant = tenant
        self.out = out
        self.exchanges: dict[str, Exchange] = {}  # token fingerprint -> its exchange

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Watch the plugin's load lines while the block runs (INFO on its logger)."""
        logger = logging.getLogger(_PLUGIN_LOGGER)
        handler = _LoadSources(logging.INFO)
        level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)

    async def get(
        self, user: Mapping[str, Any], application: str, *, force: bool = False
    ) -> tuple[OBOAccount, Served]:
        """``get_obo_token`` for ``user`` (a Better Auth user row); raises what it raises."""
        before = self._exchange_count()
        loads: list[str] = []
        token = _LOADS.set(loads)
        started = time.perf_counter()
        try:
            account = await self.obo.get_obo_token(
                user_id=str(user["id"]), application_name=application, force_refresh=force
            )
        except APIError as exc:
            self._print(user, f'get_obo_token("{application}")', f"{'refused':<8} {_refusal(exc)}")
            raise
        finally:
            _LOADS.reset(token)
        took = time.perf_counter() - started
        if self._exchange_count() > before:
            source = "exchange"
        else:
            source = next((s for s in loads if s in ("database", "grace")), "cache")
        served = Served(application, source, took, time.time())
        if source == "exchange":
            self.exchanges[fingerprint(str(account["accessToken"]))] = Exchange(took, served.at)
        forced = "  (force_refresh)" if force else ""
        detail = f"{source:<8} {duration(took):>9}{forced}"
        self._print(user, f'get_obo_token("{application}")', detail)
        return account, served

    def exchange_of(self, token: str) -> Exchange | None:
        """The exchange that produced ``token``, if this process saw it."""
        return self.exchanges.get(fingerprint(token))

    def revoked(self, user: Mapping[str, Any], deleted: int) -> None:
        rows = "row" if deleted == 1 else "rows"
        self._print(user, "revoke_obo_tokens", f"{deleted} cached {rows} deleted")

    def event(self, user: Mapping[str, Any] | None, title: str, detail: str) -> None:
        """Any other line for the terminal (sign-in, policy changes)."""
        self._print(user, title, detail)

    def _print(self, user: Mapping[str, Any] | None, title: str, detail: str) -> None:
        if self.out is None:
            return
        who = f"  {user.get('name')}" if user else ""
        self.out.step(title, f"{detail}{who}")

    def _exchange_count(self) -> int:
        return sum(1 for r in self.tenant.entra.token_requests if r.grant_type == JWT_BEARER)


def _refusal(exc: APIError) -> str:
    extra = exc.extra or {}
    codes = extra.get("error_codes") or extra.get("errorCodes") or ()
    aadsts = ",".join(f"AADSTS{c}" for c in codes)
    return f"{exc.code} {aadsts}".strip()
