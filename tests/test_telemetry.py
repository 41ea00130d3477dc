"""OpenTelemetry metrics and spans, read back through the SDK's in-memory exporters."""

from __future__ import annotations

from typing import Any

import pytest
from better_auth import APIError, BetterAuth, MemoryAdapter
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests._fakes import WireEntra, provider, seed_user
from tests.conftest import SECRET

from better_auth_obo import OBOPlugin

READER = InMemoryMetricReader()
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> None:
    # The global providers can be set once per process; later sets are refused (and logged).
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tracer_provider)


def points(name: str) -> list[tuple[dict[str, Any], Any]]:
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found.append((dict(point.attributes), point))
    return found


async def test_counts_sources_errors_and_spans() -> None:
    wire = WireEntra()
    plugin = OBOPlugin(applications={"telemetry-app": {"scope": ["api://t/.default"]}})
    auth = BetterAuth(
        secret=SECRET,
        adapter=MemoryAdapter(),
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=wire.client(),
    )
    user = await seed_user(auth)
    await plugin.get_obo_token(user_id=user["id"], application_name="telemetry-app")
    await plugin.get_obo_token(user_id=user["id"], application_name="telemetry-app")
    other = await seed_user(auth)
    wire.fail_next(
        400, {"error": "invalid_grant", "error_codes": [65001], "suberror": "consent_required"}
    )
    with pytest.raises(APIError):
        await plugin.get_obo_token(user_id=other["id"], application_name="telemetry-app")

    served = {
        a["source"]: p.value for a, p in points("obo.tokens") if a["application"] == "telemetry-app"
    }
    assert served == {"exchange": 1}
    memory = [
        p.value for a, p in points("obo.tokens.memory") if a["application"] == "telemetry-app"
    ]
    assert memory == [1]
    (errors,) = [(a, p) for a, p in points("obo.errors") if a["application"] == "telemetry-app"]
    assert errors[0] == {
        "application": "telemetry-app",
        "code": "OBO_EXCHANGE_FAILED",
        "reason": "consent_required",
        "aadsts": 65001,
    }
    (duration,) = [
        p for a, p in points("obo.exchange.duration") if a["application"] == "telemetry-app"
    ]
    assert duration.count == 1
    spans = [s for s in SPANS.get_finished_spans() if s.name == "obo.get_token"]
    assert len(spans) == 2
    assert all(s.attributes["obo.application"] == "telemetry-app" for s in spans)
