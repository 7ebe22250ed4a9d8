"""Tests of utils.core.otel with the real OpenTelemetry SDK (in-memory reader and exporter)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from utils.core.testing import in_ci

try:
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        Gauge,
        Histogram,
        InMemoryMetricReader,
        Metric,
        Sum,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
except ImportError:  # pragma: no cover - the core test group installs opentelemetry-sdk
    if in_ci():
        raise
    pytest.skip(
        "opentelemetry-sdk is not installed (pip install opentelemetry-sdk)",
        allow_module_level=True,
    )

from utils.core import (
    ConfigError,
    ValidationError,
    capture_logs,
    configure_logging,
    get_logger,
    set_metrics_sink,
    timed,
)
from utils.core import report as report_module
from utils.core.otel import (
    DEFAULT_SPAN_EVENTS,
    SECONDS_BUCKETS,
    OpenTelemetrySink,
    add_trace_context,
    disable_span_events,
    enable_span_events,
    span_events_enabled,
)
from utils.core.report import Event, span_event
from utils.core.testing import SpanRecorder

# --------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def provider_and_reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests")
    provider.shutdown()


@pytest.fixture(autouse=True)
def _span_events_off() -> Iterator[None]:
    disable_span_events()
    previous = set_metrics_sink(None)
    yield
    disable_span_events()
    set_metrics_sink(previous)


def metrics(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def only(metric: Metric) -> Any:
    (point,) = metric.data.data_points
    return point


def point_values(metric: Metric) -> list[Any]:
    return [point.value for point in metric.data.data_points]  # type: ignore[union-attr]


def points(metric: Metric) -> dict[frozenset[tuple[str, Any]], Any]:
    return {
        frozenset((point.attributes or {}).items()): point for point in metric.data.data_points
    }


class RecordingMeter:
    """The real SDK meter, counting instrument creations (what "one per name" is about)."""

    def __init__(self, meter: Any, *, without_gauge: bool = False) -> None:
        self._meter = meter
        self._without_gauge = without_gauge
        self.created: list[str] = []

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        self.created.append(name)
        return self._meter.create_counter(name, unit, description)

    def create_observable_gauge(
        self, name: str, callbacks: Any, unit: str, description: str
    ) -> Any:
        self.created.append(name)
        return self._meter.create_observable_gauge(name, callbacks, unit, description)

    def __getattr__(self, name: str) -> Any:
        if name == "create_gauge" and self._without_gauge:
            raise AttributeError(name)  # what opentelemetry-api < 1.23 looks like
        return getattr(self._meter, name)


#: A meter nothing reads, for tests that only translate names (one provider, not one each).
PROBE_METER = MeterProvider(shutdown_on_exit=False).get_meter("probe")


def sink_on(provider: MeterProvider, **options: Any) -> OpenTelemetrySink:
    return OpenTelemetrySink(meter_provider=provider, **options)


# --------------------------------------------------------------------------------------
# The sink: counters, histograms, gauges


def test_counter_with_attributes(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    sink = sink_on(provider)
    sink.increment("cache.hit", tags={"cache": "users"})
    sink.increment("cache.hit", 2, tags={"cache": "users"})
    sink.increment("cache.hit", tags={"cache": "orders"})
    sink.increment("jobs.done")
    found = metrics(reader)
    hit = found["utils.cache.hit"]
    assert isinstance(hit.data, Sum)
    assert hit.data.is_monotonic
    values = {key: point.value for key, point in points(hit).items()}
    assert values == {
        frozenset({("cache", "users")}): 3.0,
        frozenset({("cache", "orders")}): 1.0,
    }
    assert [point.value for point in points(found["utils.jobs.done"]).values()] == [1.0]
    assert hit.description == "cache.hit (counter)"


def test_histogram_in_seconds_with_seconds_buckets(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    sink = sink_on(provider)
    for value in (0.003, 0.02, 0.02, 3.0):
        sink.observe("db.query", value, tags={"op": "select"})
    metric = metrics(reader)["utils.db.query"]
    assert isinstance(metric.data, Histogram)
    assert metric.unit == "s"
    point = only(metric)
    assert dict(point.attributes or {}) == {"op": "select"}
    assert point.count == 4
    assert point.sum == pytest.approx(3.043)
    if sink._advise_buckets:  # opentelemetry-api >= 1.24 takes the advice
        assert tuple(point.explicit_bounds) == SECONDS_BUCKETS
        assert point.bucket_counts[0] == 1  # 0.003 <= 0.005
        assert point.bucket_counts[SECONDS_BUCKETS.index(0.025)] == 2


def test_histogram_custom_unit_and_no_bucket_advice(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    sink = sink_on(provider, units={"http.body": "By"}, buckets=None)
    assert not sink._advise_buckets
    sink.observe("http.body", 512)
    metric = metrics(reader)["utils.http.body"]
    assert metric.unit == "By"
    point = only(metric)
    assert tuple(point.explicit_bounds) != SECONDS_BUCKETS  # the SDK's defaults


def test_histogram_without_bucket_advice_support(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    real = provider.get_meter("old-api")

    class OldMeter(RecordingMeter):
        def create_histogram(self, name: str, unit: str = "", description: str = "") -> Any:
            return real.create_histogram(name, unit, description)  # no advice keyword

    sink = OpenTelemetrySink(OldMeter(real))
    assert not sink._advise_buckets
    sink.observe("db.query", 0.5)
    point = only(metrics(reader)["utils.db.query"])
    assert point.count == 1


@pytest.mark.skipif(
    not hasattr(PROBE_METER, "create_gauge"),
    reason="opentelemetry < 1.23 has no synchronous Gauge (the fallback is tested below)",
)
def test_gauge_sets_last_value_per_attribute_set(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    sink = sink_on(provider)
    sink.gauge("db.pool_size", 4, tags={"db": "main"})
    sink.gauge("db.pool_size", 7, tags={"db": "main"})
    sink.gauge("db.pool_size", 2, tags={"db": "replica"})
    metric = metrics(reader)["utils.db.pool_size"]
    assert isinstance(metric.data, Gauge)
    values = {key: point.value for key, point in points(metric).items()}
    assert values == {frozenset({("db", "main")}): 7, frozenset({("db", "replica")}): 2}


def test_gauge_fallback_without_synchronous_gauge(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    meter = RecordingMeter(provider.get_meter("old"), without_gauge=True)
    sink = OpenTelemetrySink(meter)
    sink.gauge("breaker.state", 1, tags={"breaker": "payments"})
    sink.gauge("breaker.state", 0, tags={"breaker": "payments"})
    sink.gauge("breaker.state", 2, tags={"breaker": "search"})
    sink.gauge("queue.depth", 5)
    assert meter.created == ["utils.breaker.state", "utils.queue.depth"]
    found = metrics(reader)
    state = found["utils.breaker.state"]
    assert isinstance(state.data, Gauge)  # an ObservableGauge reports the same data type
    values = {key: point.value for key, point in points(state).items()}
    assert values == {
        frozenset({("breaker", "payments")}): 0,
        frozenset({("breaker", "search")}): 2,
    }
    assert point_values(found["utils.queue.depth"]) == [5]
    sink.gauge("breaker.state", 1, tags={"breaker": "search"})
    values = {
        key: point.value for key, point in points(metrics(reader)["utils.breaker.state"]).items()
    }
    assert values[frozenset({("breaker", "search")})] == 1


def test_gauge_fallback_reads_while_threads_set_new_tag_sets(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    sink = OpenTelemetrySink(RecordingMeter(provider.get_meter("old"), without_gauge=True))

    def writer(index: int) -> None:
        for n in range(1000):  # every one of its 200 tag sets, five times over
            sink.gauge("pool.size", n, tags={"pool": f"{index}-{n % 200}"})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):  # the reader iterates while new tag sets appear
            metrics(reader)
    finally:
        for thread in threads:
            thread.join()
    assert len(points(metrics(reader)["utils.pool.size"])) == 800


# --------------------------------------------------------------------------------------
# One instrument per name, and names


def test_one_instrument_per_name(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, _ = provider_and_reader
    meter = RecordingMeter(provider.get_meter("count"))
    sink = OpenTelemetrySink(meter)
    for index in range(50):
        sink.increment("cache.hit", tags={"cache": f"c{index % 3}"})
        sink.increment("cache.miss")
    assert meter.created == ["utils.cache.hit", "utils.cache.miss"]


def test_concurrent_first_use_creates_one_instrument(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    meter = RecordingMeter(provider.get_meter("race"))
    sink = OpenTelemetrySink(meter)
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        sink.increment("jobs.started")

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.created == ["utils.jobs.started"]
    point = only(metrics(reader)["utils.jobs.started"])
    assert point.value == 8


def test_one_name_two_kinds_is_a_validation_error(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, _ = provider_and_reader
    sink = sink_on(provider)
    sink.increment("pool.size")
    with pytest.raises(ValidationError, match=r"'pool\.size' was first used as 'increment'"):
        sink.gauge("pool.size", 3)


def test_kind_clash_through_an_event_never_reaches_the_caller(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, reader = provider_and_reader
    set_metrics_sink(sink_on(provider))
    Event("otel.clash", logger="tests", level=None).emit()
    clash = Event("otel.clash", logger="tests", level=None, metric="gauge")
    with caplog.at_level(logging.ERROR, logger="utils.core.report"):
        clash.emit(value=3)  # does not raise
        clash.emit(value=4)
    reports = [r for r in caplog.records if "otel.clash" in r.getMessage()]
    assert len(reports) == 1  # reported once, not per call
    assert "first used as 'increment'" in reports[0].getMessage()
    assert point_values(metrics(reader)["utils.otel.clash"]) == [1.0]


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [
        ("utils", "cache.hit", "utils.cache.hit"),
        ("shop", "db.query", "shop.db.query"),
        ("", "retry.attempt_failed", "retry.attempt_failed"),
        ("utils", "odd name/with:chars", "utils.odd_name_with_chars"),
        ("utils", "2fa.sent", "utils.2fa.sent"),
    ],
)
def test_instrument_names(prefix: str, name: str, expected: str) -> None:
    assert OpenTelemetrySink(PROBE_METER, prefix=prefix).instrument_name(name) == expected


@pytest.mark.parametrize("name", ["", "2fa.sent", "x" * 256])
def test_names_that_cannot_be_instruments(name: str) -> None:
    sink = OpenTelemetrySink(PROBE_METER, prefix="")
    with pytest.raises(ValidationError, match="cannot be an OpenTelemetry instrument name"):
        sink.increment(name)


@given(st.text(max_size=300), st.sampled_from(["", "utils", "a.b-c_d"]))
def test_instrument_name_is_valid_or_refused(name: str, prefix: str) -> None:
    sink = OpenTelemetrySink(PROBE_METER, prefix=prefix)
    try:
        result = sink.instrument_name(name)
    except ValidationError as exc:
        refused = str(exc)
        assert repr(name)[:60] in refused
        return
    assert len(result) <= 255
    assert result[0].isascii()
    assert result[0].isalpha()
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in result)
    assert result.startswith(f"{prefix}." if prefix else "")
    assert len(result) == len(prefix) + bool(prefix) + len(name)  # one character for one


def test_sdk_refusal_becomes_a_validation_error() -> None:
    sink = OpenTelemetrySink(meter_provider=MeterProvider(), units={"req.size": "µs" * 40})
    with pytest.raises(ValidationError, match=r"refused the instrument 'utils\.req\.size'"):
        sink.observe("req.size", 1.0)


@pytest.mark.parametrize("prefix", ["1utils", "utils!", ".utils"])
def test_invalid_prefix_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        OpenTelemetrySink(meter_provider=MeterProvider(), prefix=prefix)


def test_meter_and_provider_together_is_a_config_error() -> None:
    provider = MeterProvider()
    with pytest.raises(ConfigError, match="not both"):
        OpenTelemetrySink(provider.get_meter("x"), meter_provider=provider)


def test_default_is_the_global_meter_provider(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, reader = provider_and_reader
    import opentelemetry.metrics

    monkeypatch.setattr(opentelemetry.metrics, "get_meter_provider", lambda: provider)
    sink = OpenTelemetrySink()
    sink.increment("jobs.done")
    data = reader.get_metrics_data()
    assert data is not None
    scope = data.resource_metrics[0].scope_metrics[0].scope
    assert scope.name == "utils.core"
    assert "instruments=1" in repr(sink)


def test_the_family_reports_through_the_sink(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    set_metrics_sink(sink_on(provider))
    with timed("job.run", tags={"queue": "mail"}):
        pass
    rejected = Event("bulkhead.rejected", logger="tests", level=None, tags=("bulkhead",))
    rejected.emit(bulkhead="pdf", waited=0.1)  # waited goes to the log line only
    rejected.bind(bulkhead="pdf")()
    found = metrics(reader)
    run = only(found["utils.job.run"])
    assert dict(run.attributes or {}) == {"queue": "mail", "outcome": "ok"}
    point = only(found["utils.bulkhead.rejected"])
    assert dict(point.attributes or {}) == {"bulkhead": "pdf"}
    assert point.value == 2.0


# --------------------------------------------------------------------------------------
# Trace ids in log events


def test_trace_context_only_inside_a_valid_span(tracer: trace.Tracer) -> None:
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    with tracer.start_as_current_span("request") as span:
        event = add_trace_context(None, "info", {"event": "x"})
        context = span.get_span_context()
    assert event["trace_id"] == f"{context.trace_id:032x}"
    assert event["span_id"] == f"{context.span_id:016x}"
    assert len(event["trace_id"]) == 32
    assert int(event["trace_id"], 16) == context.trace_id
    assert add_trace_context(None, "info", {"event": "after"}) == {"event": "after"}


def test_trace_context_in_a_sampled_out_span() -> None:
    # A span the sampler dropped still has valid ids: logs carry them (what OTel's own
    # logging instrumentation does), so a line can be found from a propagated trace id.
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")
    with tracer.start_as_current_span("dropped") as span:
        assert not span.is_recording()
        event = add_trace_context(None, "info", {})
    assert event["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_trace_context_keeps_explicit_ids(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("request"):
        event = add_trace_context(None, "info", {"trace_id": "given", "span_id": "mine"})
    assert event == {"trace_id": "given", "span_id": "mine"}


def test_trace_context_as_a_structlog_processor(tracer: trace.Tracer) -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[add_trace_context, structlog.processors.JSONRenderer()],
    )
    log.info("outside")
    with tracer.start_as_current_span("request") as span:
        log.info("inside")
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "trace_id" not in outside
    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_configured_logging_carries_trace_ids(tracer: trace.Tracer) -> None:
    """utils.core.log wires add_trace_context in once opentelemetry is imported."""
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    log = get_logger("utils.tests.otel")
    log.info("outside.span")
    with tracer.start_as_current_span("request") as span:
        log.info("inside.span")
        logging.getLogger("foreign.lib").warning("stdlib line")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_event = {line["event"]: line for line in lines}
    ids = span.get_span_context()
    assert "trace_id" not in by_event["outside.span"]
    assert by_event["inside.span"]["trace_id"] == f"{ids.trace_id:032x}"
    assert by_event["inside.span"]["span_id"] == f"{ids.span_id:016x}"
    assert by_event["stdlib line"]["trace_id"] == f"{ids.trace_id:032x}"


def test_captured_logs_carry_trace_ids(tracer: trace.Tracer) -> None:
    with capture_logs() as logs, tracer.start_as_current_span("request") as span:
        get_logger("utils.tests.otel").info("inside.span")
    assert logs[0]["trace_id"] == f"{span.get_span_context().trace_id:032x}"


# --------------------------------------------------------------------------------------
# Span events

ATTEMPT_FAILED = Event(
    "retry.attempt_failed", logger="utils.tests.otel", level="warning", tags=("retry",)
)
REJECTED = Event("breaker.rejected", logger="utils.tests.otel", level=None, tags=("breaker",))
MISS = Event("cache.miss", logger="utils.tests.otel", level=None, tags=("cache",))
HIT = Event("cache.hit", logger="utils.tests.otel", level=None, tags=("cache",))


def test_span_events_for_declared_events(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    enable_span_events()
    with tracer.start_as_current_span("request"):
        ATTEMPT_FAILED.emit(
            retry="fetch",
            attempt=1,
            delay=0.2,
            error="ConnectionError: redis://app:hunter2@cache:6379",
            result=None,
        )
        REJECTED.emit(breaker="payments")
        MISS.bind(cache="users")()
        HIT.bind(cache="users")()  # not a span event by default: a hot-path metric
    (span,) = exporter.get_finished_spans()
    events = [(event.name, dict(event.attributes or {})) for event in span.events]
    assert events == [
        (
            "retry.attempt_failed",
            {
                "retry": "fetch",
                "attempt": 1,
                "delay": 0.2,
                "error": "ConnectionError: redis://app:***@cache:6379",
            },
        ),
        ("breaker.rejected", {"breaker": "payments"}),
        ("cache.miss", {"cache": "users"}),
    ]


def test_no_span_events_outside_a_span_or_when_off(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    enable_span_events()
    REJECTED.emit(breaker="payments")  # no current span: nothing, no error
    disable_span_events()
    assert span_events_enabled() == frozenset()
    with tracer.start_as_current_span("request"):
        REJECTED.emit(breaker="payments")
        MISS.bind(cache="users")()
        span_event("cache.miss", cache="users")
    (span,) = exporter.get_finished_spans()
    assert span.events == ()


def test_no_span_events_on_a_span_that_does_not_record() -> None:
    enable_span_events()
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")
    with tracer.start_as_current_span("dropped") as span:
        REJECTED.emit(breaker="payments")
    assert not span.is_recording()


def test_chosen_event_names(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    enable_span_events(["cache.hit"])
    assert span_events_enabled() == frozenset({"cache.hit"})
    with tracer.start_as_current_span("request"):
        HIT.bind(cache="users")(value=3.0, key_count=3)
        MISS.emit(cache="users")
    (span,) = exporter.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("cache.hit", {"value": 3.0, "cache": "users", "key_count": 3})
    ]


def test_span_event_function(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    enable_span_events({"cache.miss"})
    with tracer.start_as_current_span("request"):
        span_event("cache.miss", cache="users", value=2.0)
        span_event("cache.other", cache="users")
    (span,) = exporter.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("cache.miss", {"value": 2.0, "cache": "users"})
    ]


class Opaque:
    def __str__(self) -> str:
        return "opaque token=abc123 here"


def test_span_event_attributes_are_otel_types_and_redacted(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    enable_span_events({"job.failed"})
    job_failed = Event("job.failed", logger="utils.tests.otel", level=None, tags=("queue",))
    with tracer.start_as_current_span("request"):
        job_failed.emit(
            queue="mail",
            api_key="sk-live-1",
            huge=2**70,
            flag=True,
            ratio=0.5,
            names=["a", "b"],
            mixed=[1, "a"],
            empty=[],
            error=ValueError("password=hunter2"),
            thing=Opaque(),
            nothing=None,
            event="clash",
        )
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.events[0].attributes or {})
    assert attributes == {
        "queue": "mail",
        "api_key": "***",
        "huge": str(2**70),
        "flag": True,
        "ratio": 0.5,
        "names": ("a", "b"),
        "mixed": "[1, 'a']",
        "empty": "[]",
        "error": "ValueError: password=***",
        "thing": "opaque token=*** here",
        "event": "clash",
    }


def test_span_events_and_metrics_together(
    tracer: trace.Tracer,
    exporter: InMemorySpanExporter,
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, reader = provider_and_reader
    set_metrics_sink(sink_on(provider))
    enable_span_events()
    with tracer.start_as_current_span("request"):
        REJECTED.emit(breaker="payments")
    assert [e.name for e in exporter.get_finished_spans()[0].events] == ["breaker.rejected"]
    point = only(metrics(reader)["utils.breaker.rejected"])
    assert point.value == 1.0


def test_a_failing_hook_never_reaches_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, value: float, fields: Any) -> None:
        raise RuntimeError("exporter exploded")

    report_module._set_span_hook(broken, frozenset({"breaker.rejected", "cache.miss"}))
    with caplog.at_level(logging.ERROR, logger="utils.core.report"):
        REJECTED.emit(breaker="payments")
        MISS.bind(cache="users")()
        span_event("cache.miss")
        HIT.bind(cache="users")()  # not named: the hook is not even called
    messages = [r.getMessage() for r in caplog.records]
    assert any("'breaker.rejected' failed in the span events" in m for m in messages)
    assert any("'cache.miss' failed in the span events" in m for m in messages)
    assert not any("cache.hit" in m for m in messages)


@pytest.mark.parametrize("events", ["retry.gave_up", [""], [1], None])
def test_enable_span_events_validates_names(events: Any) -> None:
    with pytest.raises(ValidationError, match="iterable of event names"):
        enable_span_events(events)
    assert span_events_enabled() == frozenset()


def test_default_span_events_name_the_family_events() -> None:
    assert {"retry.attempt_failed", "breaker.rejected", "cache.miss"} <= DEFAULT_SPAN_EVENTS
    assert "cache.hit" not in DEFAULT_SPAN_EVENTS
    enable_span_events()
    assert span_events_enabled() == DEFAULT_SPAN_EVENTS


# --------------------------------------------------------------------------------------
# Import hygiene


def test_importing_utils_core_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, utils.core\n"
        "from utils.core.report import Event\n"
        "Event('a.b', logger='x', level='info').emit()\n"
        "utils.core.get_logger('x').info('y')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
        "assert utils.core.OpenTelemetrySink.__module__ == 'utils.core.otel'\n"
        "assert 'opentelemetry.metrics' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recorded_spans_records_chosen_events_and_turns_them_off_after() -> None:
    from utils.core.report import span_event
    from utils.core.testing import recorded_spans

    with recorded_spans(["cache.miss"]) as spans:
        assert span_events_enabled() == frozenset({"cache.miss"})
        with pytest.raises(AssertionError, match="expected one finished span, got 0"):
            spans.events()
        with spans.tracer.start_as_current_span("request"):
            span_event("cache.miss", cache="users")
            span_event("retry.gave_up", retry="fetch")  # not chosen: not recorded
        assert spans.events() == [("cache.miss", {"cache": "users"})]
        assert [span.name for span in spans.spans()] == ["request"]
    assert span_events_enabled() == frozenset()


def test_the_utils_spans_fixture_uses_the_family_defaults(utils_spans: SpanRecorder) -> None:
    assert span_events_enabled() == DEFAULT_SPAN_EVENTS
    with utils_spans.tracer.start_as_current_span("request"):
        pass
    assert utils_spans.events() == []
