"""Span events of retries and breakers with the real OpenTelemetry SDK (utils.core.otel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from utils.core.testing import in_ci

try:
    from opentelemetry import trace
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

from utils.core.otel import disable_span_events, enable_span_events
from utils.resilience import retry
from utils.resilience.breaker import CircuitBreaker
from utils.resilience.errors import CircuitOpenError
from utils.resilience.testing import instant_retries


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


def flaky(failures: int) -> Callable[[], str]:
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionResetError("reset by peer")
        return "ok"

    return fetch


def test_a_failed_attempt_is_a_span_event(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    fetch = retry(attempts=3, name="fetch", jitter="none", initial=0.1)(flaky(1))
    with instant_retries(), tracer.start_as_current_span("request"):
        assert fetch() == "ok"
    ((name, attributes),) = events_of(exporter)
    assert name == "retry.attempt_failed"
    elapsed = attributes.pop("elapsed")
    assert isinstance(elapsed, float)
    assert elapsed >= 0.0
    assert attributes == {
        "retry": "fetch",
        "attempt": 1,
        "delay": 0.1,
        "error": "ConnectionResetError: reset by peer",
    }


def test_giving_up_is_a_span_event(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    fetch = retry(attempts=2, name="fetch", jitter="none", initial=0.1)(flaky(5))
    with (
        instant_retries(),
        tracer.start_as_current_span("request"),
        pytest.raises(ConnectionResetError),
    ):
        fetch()
    names = [name for name, _ in events_of(exporter)]
    assert names == ["retry.attempt_failed", "retry.attempt_failed", "retry.gave_up"]
    assert events_of(exporter)[-1][1]["reason"] == "attempts"


def test_async_retry_span_events(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("reset by peer")
        return "ok"

    policy = retry(attempts=3, name="afetch", jitter="none", initial=0.1)

    async def main() -> str:
        with tracer.start_as_current_span("request"):
            return await policy(fetch)()

    with instant_retries():
        assert asyncio.run(main()) == "ok"
    assert [name for name, _ in events_of(exporter)] == ["retry.attempt_failed"]


def test_a_successful_call_adds_nothing(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    fetch = retry(attempts=3, name="fetch")(flaky(0))
    with tracer.start_as_current_span("request"):
        assert fetch() == "ok"
    assert events_of(exporter) == []


def test_a_breaker_rejection_is_a_span_event(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    breaker = CircuitBreaker("payments", fail_max=1)

    @breaker
    def pay() -> None:
        raise ConnectionResetError("reset by peer")

    with tracer.start_as_current_span("request"):
        with pytest.raises(ConnectionResetError):
            pay()  # opens the breaker
        with pytest.raises(CircuitOpenError):
            pay()  # rejected
    events = events_of(exporter)
    assert ("breaker.rejected", {"breaker": "payments"}) in events
    assert "breaker.opened" in [name for name, _ in events]
