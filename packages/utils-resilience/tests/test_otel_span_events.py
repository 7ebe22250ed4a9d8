"""Span events of retries and breakers with the real OpenTelemetry SDK (utils.core.otel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from utils.core.testing import SpanRecorder, in_ci

try:
    import opentelemetry.sdk.trace  # noqa: F401 - the SDK the utils_spans fixture records with
except ImportError:  # pragma: no cover - the test group installs opentelemetry-sdk
    if in_ci():
        raise
    pytest.skip(
        "opentelemetry-sdk is not installed (pip install opentelemetry-sdk)",
        allow_module_level=True,
    )

from utils.resilience import retry
from utils.resilience.breaker import CircuitBreaker
from utils.resilience.errors import CircuitOpenError
from utils.resilience.testing import instant_retries


def flaky(failures: int) -> Callable[[], str]:
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionResetError("reset by peer")
        return "ok"

    return fetch


def test_a_failed_attempt_is_a_span_event(utils_spans: SpanRecorder) -> None:
    fetch = retry(attempts=3, name="fetch", jitter="none", initial=0.1)(flaky(1))
    with instant_retries(), utils_spans.tracer.start_as_current_span("request"):
        assert fetch() == "ok"
    ((name, attributes),) = utils_spans.events()
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


def test_giving_up_is_a_span_event(utils_spans: SpanRecorder) -> None:
    fetch = retry(attempts=2, name="fetch", jitter="none", initial=0.1)(flaky(5))
    with (
        instant_retries(),
        utils_spans.tracer.start_as_current_span("request"),
        pytest.raises(ConnectionResetError),
    ):
        fetch()
    names = [name for name, _ in utils_spans.events()]
    assert names == ["retry.attempt_failed", "retry.attempt_failed", "retry.gave_up"]
    assert utils_spans.events()[-1][1]["reason"] == "attempts"


def test_async_retry_span_events(utils_spans: SpanRecorder) -> None:
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("reset by peer")
        return "ok"

    policy = retry(attempts=3, name="afetch", jitter="none", initial=0.1)

    async def main() -> str:
        with utils_spans.tracer.start_as_current_span("request"):
            return await policy(fetch)()

    with instant_retries():
        assert asyncio.run(main()) == "ok"
    assert [name for name, _ in utils_spans.events()] == ["retry.attempt_failed"]


def test_a_successful_call_adds_nothing(utils_spans: SpanRecorder) -> None:
    fetch = retry(attempts=3, name="fetch")(flaky(0))
    with utils_spans.tracer.start_as_current_span("request"):
        assert fetch() == "ok"
    assert utils_spans.events() == []


def test_a_breaker_rejection_is_a_span_event(utils_spans: SpanRecorder) -> None:
    breaker = CircuitBreaker("payments", fail_max=1)

    @breaker
    def pay() -> None:
        raise ConnectionResetError("reset by peer")

    with utils_spans.tracer.start_as_current_span("request"):
        with pytest.raises(ConnectionResetError):
            pay()  # opens the breaker
        with pytest.raises(CircuitOpenError):
            pay()  # rejected
    events = utils_spans.events()
    assert ("breaker.rejected", {"breaker": "payments"}) in events
    assert "breaker.opened" in [name for name, _ in events]
