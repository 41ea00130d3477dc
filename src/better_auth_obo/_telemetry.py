"""Optional OpenTelemetry spans and metrics; a no-op when ``opentelemetry-api`` is absent.

Instruments (meter and tracer ``better_auth_obo``):

- ``obo.tokens`` (counter): tokens served, by ``application`` and ``source``
  (``memory``, ``database``, ``exchange``, ``grace``); memory hits are counted in a
  plain dict on the hot path and reported through an observable counter, so a hit
  costs no OpenTelemetry call;
- ``obo.exchange.duration`` (histogram, ms): time to produce a token on a miss;
- ``obo.errors`` (counter): failures, by ``application``, ``code`` (ours), ``reason``
  and ``aadsts`` (Entra's first error code);
- a span ``obo.get_token`` around each miss, with the same attributes.

Nothing here ever sees a token.
"""

from __future__ import annotations

import contextlib
import importlib
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ._errors import EntraError, OBOError, ReauthenticationRequiredError

__all__ = ["Telemetry"]


def _load(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class _Instruments:
    """One set of instruments per process, shared by every plugin instance: the SDK keeps
    the first instrument registered under a name, so per-instance callbacks would be lost."""

    def __init__(self) -> None:
        self.sources: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self.trace = trace = _load("opentelemetry.trace")
        self.metrics = _load("opentelemetry.metrics")
        self.tracer = trace.get_tracer("better_auth_obo") if trace else None
        self.tokens = self.duration = self.errors = None
        if self.metrics is not None:
            meter = self.metrics.get_meter("better_auth_obo")
            self.tokens = meter.create_counter("obo.tokens", description="OBO tokens served")
            self.duration = meter.create_histogram(
                "obo.exchange.duration", unit="ms", description="time to produce a token on a miss"
            )
            self.errors = meter.create_counter("obo.errors", description="failed OBO requests")
            meter.create_observable_counter(
                "obo.tokens.memory", callbacks=[self._observe_hits], description="L1 hits"
            )

    def _observe_hits(self, options: Any) -> Iterator[Any]:
        totals: Counter[str] = Counter()
        for source in list(self.sources):
            totals.update(source.hits)
        for application, count in totals.items():
            yield self.metrics.Observation(count, {"application": application, "source": "memory"})


_INSTRUMENTS: _Instruments | None = None


def _tracing_configured() -> bool:
    # Until the app installs a tracer provider the API hands out no-op spans, which still
    # cost tens of microseconds a miss; skip them (checked per call: it may come later).
    trace = _instruments().trace
    return trace is not None and not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


def _instruments() -> _Instruments:
    global _INSTRUMENTS
    if _INSTRUMENTS is None:
        _INSTRUMENTS = _Instruments()
    return _INSTRUMENTS


class Telemetry:
    """Counts and spans for the plugin; every method is cheap when OpenTelemetry is absent."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()  # application -> memory hits (hot path)
        shared = _instruments()
        shared.sources.add(self)
        self._tracer = shared.tracer
        self._tokens = shared.tokens
        self._duration = shared.duration
        self._errors = shared.errors

    @property
    def enabled(self) -> bool:
        return self._tracer is not None or self._tokens is not None

    @contextlib.contextmanager
    def span(self, application: str) -> Iterator[None]:
        """A span around one miss (no-op without OpenTelemetry)."""
        if self._tracer is None or not _tracing_configured():
            yield
            return
        with self._tracer.start_as_current_span(
            "obo.get_token", attributes={"obo.application": application}
        ):
            yield

    def served(self, application: str, source: str, duration_ms: float) -> None:
        if self._tokens is not None:
            self._tokens.add(1, {"application": application, "source": source})
        if self._duration is not None and source != "memory":
            self._duration.record(duration_ms, {"application": application, "source": source})

    def failed(self, application: str, error: OBOError) -> None:
        if self._errors is None:
            return
        entra = error.entra if isinstance(error, ReauthenticationRequiredError) else error
        attributes: dict[str, str | int] = {"application": application, "code": error.code}
        reason = error.to_extra().get("reason")
        if isinstance(reason, str):
            attributes["reason"] = reason
        if isinstance(entra, EntraError) and entra.error_codes:
            attributes["aadsts"] = entra.error_codes[0]
        self._errors.add(1, attributes)
