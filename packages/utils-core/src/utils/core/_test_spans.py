"""Span events recorded by the real OpenTelemetry SDK, for tests (re-exported by testing).

One place for the tracer-provider / in-memory-exporter / ``enable_span_events`` set-up that
every package's span-event tests need; imports the SDK only when used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from utils.core.errors import ConfigError

__all__ = ["SpanRecorder", "recorded_spans"]


class SpanRecorder:
    """A tracer whose finished spans are kept in memory, with the events they carry.

    Example:
        >>> from utils.core.report import span_event
        >>> with recorded_spans() as spans:
        ...     with spans.tracer.start_as_current_span("request"):
        ...         span_event("cache.miss", cache="users")
        >>> spans.events()
        [('cache.miss', {'cache': 'users'})]
    """

    def __init__(self, tracer: Any, exporter: Any) -> None:
        #: An OpenTelemetry ``Tracer``: start the spans the code under test reports into.
        self.tracer = tracer
        self._exporter = exporter

    def spans(self) -> list[Any]:
        """The finished spans, oldest first."""
        return list(self._exporter.get_finished_spans())

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """``(name, attributes)`` of every event of the one finished span.

        Fails the test (``AssertionError``) unless exactly one span has finished.
        """
        finished = self.spans()
        assert len(finished) == 1, f"expected one finished span, got {len(finished)}"
        return [(event.name, dict(event.attributes or {})) for event in finished[0].events]


@contextmanager
def recorded_spans(events: Iterable[str] | None = None) -> Iterator[SpanRecorder]:
    """Record spans with the real SDK, with span events on, for the ``with`` block.

    ``events``: the event names to add to spans (default: the family's
    :data:`utils.core.otel.DEFAULT_SPAN_EVENTS`). Span events are turned off again on exit.
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from utils.core import otel
    except ImportError as exc:  # pragma: no cover - the test environments install the SDK
        raise ConfigError("recorded_spans needs: pip install opentelemetry-sdk") from exc

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.enable_span_events(otel.DEFAULT_SPAN_EVENTS if events is None else events)
    try:
        yield SpanRecorder(provider.get_tracer("utils.core.testing"), exporter)
    finally:
        otel.disable_span_events()
        provider.shutdown()
