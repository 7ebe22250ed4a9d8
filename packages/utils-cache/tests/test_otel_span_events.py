"""Cache misses as span events, with the real OpenTelemetry SDK and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from utils.core.testing import in_ci

try:
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:  # pragma: no cover - the test group installs opentelemetry-sdk
    if in_ci():
        raise
    pytest.skip(
        "opentelemetry-sdk is not installed (pip install opentelemetry-sdk)",
        allow_module_level=True,
    )

from utils.cache import MemoryCache, RedisCache, cached
from utils.core.metrics import set_metrics_sink
from utils.core.otel import OpenTelemetrySink, disable_span_events, enable_span_events


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_span_events()
    yield provider.get_tracer("tests")
    disable_span_events()
    provider.shutdown()


def events_of(exporter: InMemorySpanExporter) -> list[tuple[str, dict[str, Any]]]:
    (span,) = exporter.get_finished_spans()
    return [(event.name, dict(event.attributes or {})) for event in span.events]


def test_a_redis_miss_is_a_span_event_and_a_hit_is_not(
    tracer: trace.Tracer,
    exporter: InMemorySpanExporter,
    utils_redis_url: str,
    utils_redis_namespace: str,
) -> None:
    with RedisCache(utils_redis_url, namespace=utils_redis_namespace, name="users") as cache:
        with tracer.start_as_current_span("request"):
            assert cache.get("user:1") is None  # a miss
            cache.set("user:1", {"id": 1})
            assert cache.get("user:1") == {"id": 1}  # a hit: no span event
        assert events_of(exporter) == [("cache.miss", {"cache": "users"})]


def test_a_memory_miss_under_cached_reaches_the_span_with_a_metrics_sink(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    # MemoryCache counts hits and misses in plain counters and reports them in batches at
    # the next write, only when a metrics sink is installed: the miss's span event comes
    # with the write that stores the computed value, in the same request.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    set_metrics_sink(OpenTelemetrySink(meter_provider=provider))
    calls: list[int] = []

    @cached(MemoryCache(name="squares"))
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    try:
        with tracer.start_as_current_span("request"):
            assert square(3) == 9  # miss, computed, stored
            assert square(3) == 9  # hit
    finally:
        provider.shutdown()
    assert calls == [3]
    assert ("cache.miss", {"cache": "squares"}) in events_of(exporter)
    assert "cache.hit" not in [name for name, _ in events_of(exporter)]
