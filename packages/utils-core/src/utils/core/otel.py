"""OpenTelemetry for the family (``pip install "utils-core[otel]"``): metrics, log ids, span events.

Three independent pieces, each opt-in:

* :class:`OpenTelemetrySink` is a :class:`~utils.core.MetricsSink` that records every
  ``utils`` metric through an OpenTelemetry ``Meter``: ``increment`` on a Counter,
  ``observe`` on a Histogram (seconds), ``gauge`` on a Gauge; tags become attributes.
* :func:`add_trace_context` is a structlog processor that adds ``trace_id`` and ``span_id``
  to a log event while a span is active, so log lines and traces join up.
* :func:`enable_span_events` makes the events the family already reports
  (``retry.attempt_failed``, ``breaker.rejected``, ``cache.miss``...) also appear as span
  events on the active span, so a trace shows *why* a request was slow.

Only this module imports ``opentelemetry``; ``import utils.core`` never does, and a
process that never imports this module pays nothing for it.

Example:
    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> reader = InMemoryMetricReader()
    >>> sink = OpenTelemetrySink(meter_provider=MeterProvider(metric_readers=[reader]))
    >>> sink.increment("cache.hit", tags={"cache": "users"})
    >>> metric = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0]
    >>> metric.name, metric.data.data_points[0].value
    ('utils.cache.hit', 1.0)
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    from utils.core.errors import ConfigError

    raise ConfigError(
        "utils.core.otel needs opentelemetry-api: pip install 'utils-core[otel]' "
        "(and opentelemetry-sdk, or another SDK, to export anything)"
    ) from _missing

from structlog.typing import EventDict, WrappedLogger

from utils.core import report as _report
from utils.core._redact import MASK, Redactor, redact_text
from utils.core.errors import ConfigError, ValidationError

__all__ = [
    "DEFAULT_SPAN_EVENTS",
    "SECONDS_BUCKETS",
    "OpenTelemetrySink",
    "add_trace_context",
    "disable_span_events",
    "enable_span_events",
    "span_events_enabled",
]

Kind: TypeAlias = Literal["increment", "observe", "gauge"]

#: Histogram bucket boundaries (seconds) advised for durations: those of prometheus_client.
#: OpenTelemetry's own default (0, 5, 10, 25, ... 10000) is made for milliseconds and would
#: put every call under five seconds into one bucket.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

#: The events :func:`enable_span_events` adds to the active span unless told otherwise: the
#: ones that explain a slow or failed request. Hot-path metrics (``cache.hit``) are left out.
DEFAULT_SPAN_EVENTS: frozenset[str] = frozenset(
    {
        "retry.attempt_failed",
        "retry.gave_up",
        "breaker.rejected",
        "breaker.opened",
        "bulkhead.rejected",
        "ratelimit.rejected",
        "cache.miss",
        "cache.error",
        "cache.unavailable",
        "cache.lock_timeout",
        "db.unavailable",
    }
)

# The instrument-name syntax of the OpenTelemetry specification ("/" is left out: the API
# floor we support, 1.20, predates it). Other characters become "_", as PrometheusSink does.
_INVALID = re.compile(r"[^-_.a-zA-Z0-9]")
_VALID_NAME = re.compile(r"[a-zA-Z][-_.a-zA-Z0-9]{0,254}")
_INT64 = (-(2**63), 2**63 - 1)
_WHAT = {"increment": "counter", "observe": "histogram", "gauge": "gauge"}


class OpenTelemetrySink:
    """Records ``utils`` metrics on OpenTelemetry instruments: one instrument per name, cached.

    ``increment`` adds to a Counter, ``observe`` records on a Histogram (unit ``"s"``:
    the family observes durations in seconds) and ``gauge`` sets a synchronous Gauge — or,
    with an ``opentelemetry-api`` older than 1.23, which has none, reports the last value
    set per attribute set through an ObservableGauge (the same "last value" data point a
    synchronous Gauge gives; an UpDownCounter fed with deltas would export a *sum*, and
    would need the previous value of every attribute set to compute them anyway). Tags
    become attributes as they are; unlike Prometheus, OpenTelemetry accepts different tag
    keys on different calls.

    Instrument names are ``<prefix>.<name>`` (``cache.hit`` becomes ``utils.cache.hit``,
    which an OpenTelemetry Prometheus exporter shows as ``utils_cache_hit_total``, the name
    :class:`~utils.core.prometheus.PrometheusSink` gives it); characters the specification
    does not allow become ``_``. A name used with two kinds (``increment`` then ``gauge``)
    is a :class:`~utils.core.ValidationError`; reported through
    :class:`~utils.core.Event`, it is logged once and never reaches the caller.

    Args:
        meter: The ``Meter`` to create instruments on.
        meter_provider: Where to get the meter from instead (named ``utils.core``); with
            neither, the global provider (``opentelemetry.metrics.get_meter_provider()``),
            which may be set after this sink is built.
        prefix: Prepended to every name, with a dot (``""`` for none).
        units: Units by metric name, overriding the defaults (``"s"`` for histograms,
            none for counters and gauges), e.g. ``{"http.response_size": "By"}``.
        buckets: Bucket boundaries advised for histograms in seconds (ignored, with the
            SDK's defaults kept, by an ``opentelemetry-api`` older than 1.24: configure a
            View there); ``None`` advises none.

    Raises:
        ConfigError: Both ``meter`` and ``meter_provider``, or an invalid ``prefix``.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> sink = OpenTelemetrySink(meter_provider=MeterProvider(), prefix="shop")
        >>> sink.observe("db.query", 0.012, tags={"op": "select"})
        >>> sink.instrument_name("db.query")
        'shop.db.query'
    """

    __slots__ = (
        "_advise_buckets",
        "_buckets",
        "_gauges",
        "_instruments",
        "_lock",
        "_meter",
        "_prefix",
        "_units",
    )

    def __init__(
        self,
        meter: Any = None,
        *,
        meter_provider: Any = None,
        prefix: str = "utils",
        units: Mapping[str, str] | None = None,
        buckets: Sequence[float] | None = SECONDS_BUCKETS,
    ) -> None:
        if meter is not None and meter_provider is not None:
            raise ConfigError(
                "OpenTelemetrySink takes a meter or a meter_provider, not both: "
                "pass meter_provider=... alone, or meter=provider.get_meter(...)"
            )
        if not isinstance(prefix, str) or (prefix and not _VALID_NAME.fullmatch(prefix)):
            raise ConfigError(
                f"OpenTelemetrySink prefix {prefix!r} is not a valid instrument name start: "
                "use a letter followed by letters, digits, '_', '.' or '-' (or '' for none)"
            )
        if meter is None:
            if meter_provider is None:
                meter_provider = _otel_metrics.get_meter_provider()
            from utils.core import __version__

            meter = meter_provider.get_meter("utils.core", __version__)
        self._meter = meter
        self._prefix = f"{prefix}." if prefix else ""
        self._units = dict(units or {})
        self._buckets = None if buckets is None else [float(bound) for bound in buckets]
        self._advise_buckets = self._buckets is not None and _accepts_advisory(meter)
        # name -> (kind, bound "record" method): the hot path is one dict look-up.
        self._instruments: dict[str, tuple[str, Any]] = {}
        self._gauges: dict[str, _LastValues] = {}  # the ObservableGauge fallback's state
        self._lock = threading.Lock()

    def instrument_name(self, name: str) -> str:
        """The OpenTelemetry instrument name a ``utils`` metric name is recorded under.

        Raises:
            ValidationError: The result is not a valid instrument name (empty, or longer
                than 255 characters).

        Example:
            >>> from opentelemetry.sdk.metrics import MeterProvider
            >>> OpenTelemetrySink(meter_provider=MeterProvider()).instrument_name("db.query ms")
            'utils.db.query_ms'
        """
        result = self._prefix + _INVALID.sub("_", name)
        if not _VALID_NAME.fullmatch(result):
            raise ValidationError(
                f"metric {name!r} cannot be an OpenTelemetry instrument name ({result!r}): "
                "it must start with a letter (or have a prefix) and be at most 255 characters",
                details={"metric": name},
            )
        return result

    def _record(self, kind: str, name: str) -> Any:
        """The bound method recording ``name`` as ``kind``, created on first use."""
        entry = self._instruments.get(name)
        if entry is None:
            with self._lock:  # two threads meeting a new name create one instrument
                entry = self._instruments.get(name)
                if entry is None:
                    entry = (kind, self._create(kind, name))
                    self._instruments[name] = entry
        if entry[0] != kind:
            raise ValidationError(
                f"metric {name!r} was first used as {entry[0]!r} and now as {kind!r}; "
                "OpenTelemetry gives a name one instrument: use one name per kind",
                details={"metric": name},
            )
        return entry[1]

    def _create(self, kind: str, name: str) -> Any:
        full = self.instrument_name(name)
        meter = self._meter
        description = f"{name} ({_WHAT[kind]})"
        try:
            if kind == "increment":
                return meter.create_counter(full, self._units.get(name, ""), description).add
            if kind == "observe":
                unit = self._units.get(name, "s")
                if self._advise_buckets:
                    histogram = meter.create_histogram(
                        full,
                        unit,
                        description,
                        explicit_bucket_boundaries_advisory=self._buckets,
                    )
                else:
                    histogram = meter.create_histogram(full, unit, description)
                return histogram.record
            unit = self._units.get(name, "")
            create_gauge = getattr(meter, "create_gauge", None)
            if create_gauge is not None:
                return create_gauge(full, unit, description).set
            values = _LastValues()
            meter.create_observable_gauge(full, [values.observe], unit, description)
            self._gauges[name] = values
            return values.set
        except ValidationError:  # pragma: no cover - instrument_name raises before the try
            raise
        except Exception as exc:  # the SDK raises a bare Exception for a name or unit it refuses
            raise ValidationError(
                f"OpenTelemetry refused the instrument {full!r} for metric {name!r} "
                f"({type(exc).__name__}: {exc})",
                details={"metric": name},
            ) from exc

    def increment(
        self, name: str, value: float = 1.0, tags: Mapping[str, str] | None = None
    ) -> None:
        """Add ``value`` to the Counter ``<prefix>.<name>``.

        Example:
            >>> from opentelemetry.sdk.metrics import MeterProvider
            >>> OpenTelemetrySink(meter_provider=MeterProvider()).increment("jobs.done", 2)
        """
        self._record("increment", name)(value, tags)

    def observe(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Record ``value`` (seconds, unless ``units`` says otherwise) on a Histogram.

        Example:
            >>> from opentelemetry.sdk.metrics import MeterProvider
            >>> OpenTelemetrySink(meter_provider=MeterProvider()).observe("db.query", 0.004)
        """
        self._record("observe", name)(value, tags)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set the Gauge ``<prefix>.<name>`` for these tags.

        Example:
            >>> from opentelemetry.sdk.metrics import MeterProvider
            >>> OpenTelemetrySink(meter_provider=MeterProvider()).gauge("db.pool_size", 8)
        """
        self._record("gauge", name)(value, tags)

    def __repr__(self) -> str:
        return f"<OpenTelemetrySink prefix={self._prefix[:-1]!r} instruments={len(self._instruments)}>"


def _accepts_advisory(meter: Any) -> bool:
    """Whether this API's ``create_histogram`` takes bucket advice (opentelemetry-api >= 1.24)."""
    try:
        parameters = inspect.signature(meter.create_histogram).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C-implemented meter
        return False
    return "explicit_bucket_boundaries_advisory" in parameters


class _LastValues:
    """The state of a gauge on an API without a synchronous Gauge: the last value per tag set.

    ``set`` runs on the caller's thread, ``observe`` on the metric reader's: the lock keeps
    the reader from iterating while a new tag set is added.
    """

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[frozenset[tuple[str, str]], tuple[float, dict[str, str]]] = {}

    def set(self, value: float, tags: Mapping[str, str] | None = None) -> None:
        attributes = dict(tags or {})
        with self._lock:
            self._values[frozenset(attributes.items())] = (float(value), attributes)

    def observe(self, options: Any) -> Iterator[Any]:
        with self._lock:
            current = list(self._values.values())
        return iter(
            [_otel_metrics.Observation(value, attributes) for value, attributes in current]
        )


# --------------------------------------------------------------------------------------
# Trace ids in log events

_get_current_span = _otel_trace.get_current_span


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: add ``trace_id`` (32 hex digits) and ``span_id`` (16) in a span.

    Nothing is added outside a valid span, and values the event already carries are kept
    (an application that logs on behalf of another trace says so explicitly).

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> tracer = TracerProvider().get_tracer("demo")
        >>> add_trace_context(None, "info", {"event": "outside"})
        {'event': 'outside'}
        >>> with tracer.start_as_current_span("request"):
        ...     event = add_trace_context(None, "info", {"event": "inside"})
        >>> len(event["trace_id"]), len(event["span_id"])
        (32, 16)
    """
    context = _get_current_span().get_span_context()
    if context.is_valid:
        if "trace_id" not in event_dict:
            event_dict["trace_id"] = format(context.trace_id, "032x")
        if "span_id" not in event_dict:
            event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


# --------------------------------------------------------------------------------------
# Span events


class _SpanEvents:
    """The hook :mod:`utils.core.report` calls for each event named in the enabled set.

    Outside a recording span it returns after one context-variable read; only inside one
    does it build the attributes.
    """

    __slots__ = ("redactor",)

    def __init__(self) -> None:
        self.redactor = Redactor()

    def __call__(self, name: str, value: float, fields: Mapping[str, Any]) -> None:
        span = _get_current_span()
        if not span.is_recording():
            return
        span.add_event(name, self.attributes(value, fields))

    def attributes(self, value: float, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The event's fields as OpenTelemetry attributes, secrets masked as in the logs."""
        attributes: dict[str, Any] = {}
        if value != 1.0:
            attributes["value"] = value
        for key, item in fields.items():
            if item is None:
                continue  # OpenTelemetry has no null attribute
            if self.redactor.is_sensitive(key):
                attributes[key] = MASK
            else:
                attributes[key] = _attribute(self.redactor, item)
        return attributes


def _attribute(redactor: Redactor, value: Any) -> Any:
    """A redacted value OpenTelemetry accepts: str, bool, int64, float, or a sequence of one."""
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple) and value:
        items = [_attribute(redactor, item) for item in value]
        kinds = {type(item) for item in items}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(items)
    if isinstance(value, BaseException):
        return redactor.value(value)  # "Type: message", masked
    return redact_text(str(redactor.value(value)))


def enable_span_events(events: Iterable[str] = DEFAULT_SPAN_EVENTS) -> None:
    """Also add the family's reported events to the active span, as span events.

    Every :class:`~utils.core.Event` (and :func:`~utils.core.report.span_event`) whose name
    is in ``events`` becomes ``span.add_event(name, attributes)`` on the current recording
    span, with the event's fields as attributes (redacted like log lines). Outside a
    recording span nothing happens. Calling it again replaces the set of names.

    The family's success paths (a cache hit, a retried call that works the first time)
    report no event, so they cost exactly the same with span events on or off; see
    ``benchmarks/bench_otel.py``.

    Raises:
        ValidationError: ``events`` is a single string or holds something else than names.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter,
        ... )
        >>> from utils.core.report import Event
        >>> exporter = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
        >>> REJECTED = Event("job.rejected", logger="app", level=None, tags=("queue",))
        >>> enable_span_events({"job.rejected"})
        >>> with provider.get_tracer("demo").start_as_current_span("request"):
        ...     REJECTED.emit(queue="mail", reason="full")
        >>> disable_span_events()
        >>> event = exporter.get_finished_spans()[0].events[0]
        >>> event.name, dict(event.attributes)
        ('job.rejected', {'queue': 'mail', 'reason': 'full'})
    """
    names: list[Any]
    try:
        names = [events] if isinstance(events, str) else list(events)
    except TypeError:  # not iterable
        names = [events]
    if isinstance(events, str) or not all(isinstance(name, str) and name for name in names):
        raise ValidationError(
            f"enable_span_events takes an iterable of event names, got {events!r}; "
            'e.g. enable_span_events({"retry.attempt_failed", "cache.miss"})'
        )
    _report._set_span_hook(_SpanEvents(), frozenset(names))


def disable_span_events() -> None:
    """Stop adding events to spans (the default state).

    Example:
        >>> disable_span_events()
        >>> span_events_enabled()
        frozenset()
    """
    _report._set_span_hook(None)


def span_events_enabled() -> frozenset[str]:
    """The event names currently added to spans (empty when span events are off).

    Example:
        >>> enable_span_events({"retry.gave_up"})
        >>> span_events_enabled()
        frozenset({'retry.gave_up'})
        >>> disable_span_events()
    """
    return _report._span_names
