"""Cache misses as span events, with the real OpenTelemetry SDK and a real Redis."""

from __future__ import annotations

import pytest

from utils.core.testing import SpanRecorder, in_ci

try:
    import opentelemetry.sdk.trace  # noqa: F401 - the SDK the utils_spans fixture records with
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
except ImportError:  # pragma: no cover - the test group installs opentelemetry-sdk
    if in_ci():
        raise
    pytest.skip(
        "opentelemetry-sdk is not installed (pip install opentelemetry-sdk)",
        allow_module_level=True,
    )

from utils.cache import MemoryCache, RedisCache, cached
from utils.core.metrics import set_metrics_sink
from utils.core.otel import OpenTelemetrySink


def test_a_redis_miss_is_a_span_event_and_a_hit_is_not(
    utils_spans: SpanRecorder,
    utils_redis_url: str,
    utils_redis_namespace: str,
) -> None:
    with RedisCache(utils_redis_url, namespace=utils_redis_namespace, name="users") as cache:
        with utils_spans.tracer.start_as_current_span("request"):
            assert cache.get("user:1") is None  # a miss
            cache.set("user:1", {"id": 1})
            assert cache.get("user:1") == {"id": 1}  # a hit: no span event
        assert utils_spans.events() == [("cache.miss", {"cache": "users"})]


def test_a_memory_miss_under_cached_reaches_the_span_with_a_metrics_sink(
    utils_spans: SpanRecorder,
) -> None:
    # MemoryCache counts hits and misses in plain counters and reports them in batches at
    # the next write, only when a metrics sink is installed: the miss's span event comes
    # with the write that stores the computed value, in the same request.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    previous = set_metrics_sink(OpenTelemetrySink(meter_provider=provider))
    calls: list[int] = []

    @cached(MemoryCache(name="squares"))
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    try:
        with utils_spans.tracer.start_as_current_span("request"):
            assert square(3) == 9  # miss, computed, stored
            assert square(3) == 9  # hit
    finally:
        set_metrics_sink(previous)
        provider.shutdown()
    assert calls == [3]
    assert ("cache.miss", {"cache": "squares"}) in utils_spans.events()
    assert "cache.hit" not in [name for name, _ in utils_spans.events()]
