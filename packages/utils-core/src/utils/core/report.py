"""Report what happened once, under one name: a log event and a metric that always agree.

Every ``utils`` package declares its events here, next to the code that emits them::

    CACHE_ERROR = Event("cache.error", logger="utils.cache", level="warning",
                        tags=("cache", "op", "reason"))

and emits them with ``CACHE_ERROR.emit(cache="users", op="get", reason="unavailable",
error="ConnectionError: ...")``. The log event and the metric share the name, and the metric
always carries exactly the declared tags — a missing tag becomes ``""`` and extra keywords go
to the log line only — so a Prometheus sink can never see two label sets for one name. That
is what makes "metric name = log event name" structural rather than a convention.

Reporting never fails the caller: an exception raised by the metrics sink or by logging is
swallowed, and reported once per event and exception type on the stdlib logger
``utils.core.report`` (stdlib logging never raises out of a handler). A background task that
reports stays alive.

:class:`Outage` is the one way the family reports a dependency going away and coming back:
``<dependency>.unavailable`` once when it starts, ``<dependency>.recovered`` once when it
ends, and in between a *fail-fast gate* (:meth:`Outage.allow`) that lets one caller per
``probe_interval`` try the dependency while the others give up at once, so an outage costs
one timeout per interval instead of one per call.

With OpenTelemetry, :func:`utils.core.otel.enable_span_events` makes chosen events also
appear on the active span (``span.add_event``); until then the hook costs one global read
per reported event.

Example:
    >>> from utils.core.metrics import InMemorySink, set_metrics_sink
    >>> sink = InMemorySink()
    >>> previous = set_metrics_sink(sink)
    >>> JOB_DONE = Event("job.done", logger="app.jobs", tags=("queue",))
    >>> JOB_DONE.emit(queue="mail", job_id=42)  # job_id goes to the log line only
    >>> sink.select("job.done")[0].tags
    {'queue': 'mail'}
    >>> _ = set_metrics_sink(previous)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

from utils.core import metrics as _metrics
from utils.core.errors import ValidationError
from utils.core.forksafe import reset_after_fork
from utils.core.log import get_logger
from utils.core.validate import positive

__all__ = ["BoundEvent", "Event", "Level", "MetricKind", "Outage", "report_failure", "span_event"]

Level: TypeAlias = Literal["debug", "info", "warning", "error", "critical"]
MetricKind: TypeAlias = Literal["increment", "observe", "gauge"]

_LEVELS = ("debug", "info", "warning", "error", "critical")
_KINDS = ("increment", "observe", "gauge")
_NULL_SINK = _metrics.NullSink

_fallback = logging.getLogger("utils.core.report")

#: Called with ``(name, value, fields)`` for each reported event named in ``_span_names``
#: while span events are on (:func:`utils.core.otel.enable_span_events`). Off, the default,
#: costs one global read per event; on, an event not named costs one set look-up more.
#: Events are reported on failure paths (a retried attempt, a rejection), never on the
#: family's success hot paths, so even "on" costs those paths nothing.
_span_hook: Callable[[str, float, Mapping[str, Any]], None] | None = None
_span_names: frozenset[str] = frozenset()


def _set_span_hook(
    hook: Callable[[str, float, Mapping[str, Any]], None] | None,
    names: frozenset[str] = frozenset(),
) -> None:
    """Install the span-event hook and the names it is for (utils.core.otel's business)."""
    global _span_hook, _span_names  # noqa: PLW0603 - one process-wide hook, read per event
    # Names first: an event racing with this call meets the new names with either hook.
    _span_names = names if hook is not None else frozenset()
    _span_hook = hook


def span_event(name: str, *, value: float = 1.0, **fields: Any) -> None:
    """Add ``name`` to the active OpenTelemetry span, when span events are on for it.

    For code that has something worth seeing in a trace but no :class:`Event` to report
    it with. A no-op (one global read) unless :func:`utils.core.otel.enable_span_events`
    was called with ``name``; never raises.

    Example:
        >>> span_event("cache.miss", cache="users")  # nothing happens: span events are off
    """
    hook = _span_hook
    if hook is not None and name in _span_names:
        try:
            hook(name, value, fields)
        except Exception as exc:
            report_failure(name, "span events", exc)


_failures_seen: set[tuple[str, str, type[BaseException]]] = set()


class _Guard:
    """The lock of the failures table, replaced in a forked child (see utils.core.forksafe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        reset_after_fork(self, _Guard.__init__)


_failures_guard = _Guard()


def report_failure(event: str, part: str, exc: BaseException) -> None:
    """Say once (per event, part and exception type) that reporting ``event`` failed.

    For code that reports through a sink or logger of its own and must survive its failure
    the way :class:`Event` does. Never raises.

    Example:
        >>> report_failure("job.done", "metrics sink", RuntimeError("statsd is down"))
    """
    try:
        key = (event, part, type(exc))
        with _failures_guard.lock:
            if key in _failures_seen:
                return
            _failures_seen.add(key)
        _fallback.error(
            "reporting %r failed in the %s (%s: %s); further failures of this kind are not shown",
            event,
            part,
            type(exc).__name__,
            exc,
        )
    except Exception:  # noqa: S110 - the last line of defence must not raise
        pass


class Event:
    """One thing that happens, logged and metered under one name with one tag set.

    Args:
        name: ``snake_case`` with a package prefix (``cache.hit``, ``retry.gave_up``): the log
            event and the metric name.
        logger: The logger name (``utils.cache``); events log through
            :func:`utils.core.get_logger`.
        level: The log level, or None for a metric that is never logged (hot paths).
        tags: The metric's tag names, fixed here for every emission.
        metric: How the sink records it (``increment``, ``observe``, ``gauge``), or None for
            an event that is only logged.

    Example:
        >>> RETRY_GAVE_UP = Event(
        ...     "retry.gave_up", logger="utils.resilience", level="warning", tags=("reason",)
        ... )
        >>> RETRY_GAVE_UP.tags
        ('reason',)
    """

    __slots__ = ("_logger", "_record", "level", "metric", "name", "tags")

    def __init__(
        self,
        name: str,
        *,
        logger: str,
        level: Level | None = "info",
        tags: tuple[str, ...] = (),
        metric: MetricKind | None = "increment",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"event name must be a non-empty string, got {name!r}")
        if level is not None and level not in _LEVELS:
            raise ValidationError(f"event level must be one of {_LEVELS} or None, got {level!r}")
        if metric is not None and metric not in _KINDS:
            raise ValidationError(f"event metric must be one of {_KINDS} or None, got {metric!r}")
        if level is None and metric is None:
            raise ValidationError(f"event {name!r} is neither logged nor metered")
        if not isinstance(tags, tuple) or not all(isinstance(t, str) and t for t in tags):
            raise ValidationError(f"event tags must be a tuple of names, got {tags!r}")
        self.name: str = name
        self.level: Level | None = level
        self.tags: tuple[str, ...] = tags
        self.metric: MetricKind | None = metric
        self._logger = get_logger(logger)
        self._record: Callable[[Any, str, float, Mapping[str, str]], None] | None = (
            None if metric is None else _RECORDERS[metric]
        )

    def bind(self, **tags: str) -> BoundEvent:
        """Fix the tag values once, for an event emitted on a hot path.

        Raises:
            ValidationError: A tag that is not declared, or a declared one missing.

        Example:
            >>> CACHE_HIT = Event("cache.hit", logger="utils.cache", level=None, tags=("cache",))
            >>> hit = CACHE_HIT.bind(cache="users")
            >>> hit()  # one increment of cache.hit{cache="users"} (a no-op without a sink)
        """
        if set(tags) != set(self.tags):
            raise ValidationError(
                f"event {self.name!r} declares tags {list(self.tags)}, got {sorted(tags)}",
                details={"event": self.name},
            )
        return BoundEvent(self, {name: str(tags[name]) for name in self.tags})

    def emit(self, *, value: float = 1.0, **fields: Any) -> None:
        """Log the event (with every field) and record the metric (with the declared tags).

        Never raises. ``value`` is the metric's value (a count, a duration in seconds).

        Example:
            >>> Event("app.started", logger="app", tags=("mode",)).emit(mode="web", workers=4)
        """
        record = self._record
        if record is not None:
            sink = _metrics._sink
            if sink.__class__ is not _NULL_SINK:
                tags = {name: str(fields.get(name, "")) for name in self.tags}
                try:
                    record(sink, self.name, value, tags)
                except Exception as exc:
                    report_failure(self.name, "metrics sink", exc)
        hook = _span_hook
        if hook is not None and self.name in _span_names:
            try:
                hook(self.name, value, fields)
            except Exception as exc:
                report_failure(self.name, "span events", exc)
        if self.level is not None:
            try:
                getattr(self._logger, self.level)(self.name, **_log_fields(fields))
            except Exception as exc:
                report_failure(self.name, "logging", exc)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, level={self.level!r}, tags={self.tags!r})"


class BoundEvent:
    """An :class:`Event` with its tag values fixed: the cheapest way to emit it often.

    Calling it records the metric (and logs, if the event has a level). With the default
    no-op sink, span events off and no log level, a call is one attribute check and one
    global read.

    Example:
        >>> QUERY = Event("db.query", logger="utils.db", level=None, tags=("op",), metric="observe")
        >>> select = QUERY.bind(op="select")
        >>> select(value=0.003)
    """

    __slots__ = ("_event", "_name", "_record", "tags")

    def __init__(self, event: Event, tags: dict[str, str]) -> None:
        self._event = event
        self._name = event.name
        self._record = event._record
        self.tags: Mapping[str, str] = tags

    def __call__(self, value: float = 1.0, **fields: Any) -> None:
        """Record the metric with the bound tags; log ``fields`` too if the event logs."""
        sink = _metrics._sink
        if sink.__class__ is not _NULL_SINK and self._record is not None:
            try:
                self._record(sink, self._name, value, self.tags)
            except Exception as exc:
                report_failure(self._name, "metrics sink", exc)
        hook = _span_hook
        if hook is not None and self._name in _span_names:
            try:
                hook(self._name, value, {**self.tags, **fields} if fields else self.tags)
            except Exception as exc:
                report_failure(self._name, "span events", exc)
        event = self._event
        if event.level is not None:
            try:
                getattr(event._logger, event.level)(
                    self._name, **_log_fields({**self.tags, **fields})
                )
            except Exception as exc:
                report_failure(self._name, "logging", exc)

    def __repr__(self) -> str:
        return f"<BoundEvent {self._name!r} {dict(self.tags)!r}>"


def _log_fields(fields: dict[str, Any]) -> dict[str, Any]:
    # structlog takes the event name as its first argument: a field called "event" would
    # clash with it and lose the whole line.
    if "event" in fields:
        fields = dict(fields)
        fields["event_field"] = fields.pop("event")
    return fields


def _increment(sink: Any, name: str, value: float, tags: Mapping[str, str]) -> None:
    sink.increment(name, value, tags)


def _observe(sink: Any, name: str, value: float, tags: Mapping[str, str]) -> None:
    sink.observe(name, value, tags)


def _gauge(sink: Any, name: str, value: float, tags: Mapping[str, str]) -> None:
    sink.gauge(name, value, tags)


_RECORDERS: dict[str, Callable[[Any, str, float, Mapping[str, str]], None]] = {
    "increment": _increment,
    "observe": _observe,
    "gauge": _gauge,
}


class Outage:
    """Whether a dependency is reachable: reported once when lost, once when back.

    Call :meth:`failed` when a call to the dependency failed because it is unavailable, and
    :meth:`succeeded` when one worked. While :attr:`down`, :meth:`allow` grants one *probe*
    per ``probe_interval`` and refuses everyone else, so callers fail fast instead of each
    waiting for a timeout; the probe's outcome ends the outage or starts a new interval.

    Args:
        dependency: What is watched (``"redis"``), logged as ``dependency``.
        events: The names of the "went down" and "came back" events, e.g.
            ``("cache.unavailable", "cache.recovered")``: logged (warning / info) and counted.
        logger: The logger name of the package that watches.
        tags: Tag values of both metrics (low cardinality: the cache name, not a key).
        probe_interval: Seconds between probes while down.
        clock: A monotonic clock, injectable in tests.

    Example:
        >>> outage = Outage("redis", events=("cache.unavailable", "cache.recovered"),
        ...                 logger="utils.cache", tags={"cache": "users"}, clock=lambda: 0.0)
        >>> outage.allow()
        True
        >>> outage.failed(ConnectionError("refused"))
        >>> outage.down, outage.allow()  # fail fast until the next probe is due
        (True, False)
        >>> outage.succeeded()
        >>> outage.down
        False
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_down_since",
        "_lock",
        "_next_probe",
        "_recovered",
        "_tags",
        "_unavailable",
        "dependency",
        "down",
        "probe_interval",
    )

    def __init__(
        self,
        dependency: str,
        *,
        events: tuple[str, str],
        logger: str,
        tags: Mapping[str, str] | None = None,
        probe_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        tags = dict(tags or {})
        names = tuple(tags)
        self.dependency: str = dependency
        self.probe_interval: float = positive(probe_interval, "probe_interval")
        self._clock = clock
        self._tags = tags
        self._unavailable = Event(events[0], logger=logger, level="warning", tags=names)
        self._recovered = Event(events[1], logger=logger, level="info", tags=names)
        self._lock = threading.Lock()
        reset_after_fork(self, Outage._new_lock)  # a forked child must not inherit it held
        #: True from the first failure until a success. A plain attribute: read it freely.
        self.down: bool = False
        self._down_since = 0.0
        self._next_probe = 0.0

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """True when the dependency may be called: always while up, once per interval while down.

        Example:
            >>> Outage("redis", events=("a.down", "a.up"), logger="app").allow()
            True
        """
        if not self.down:
            return True
        now = self._clock()
        with self._lock:
            if now < self._next_probe:
                return False
            self._next_probe = now + self.probe_interval
            return True

    def retry_after(self) -> float | None:
        """Seconds until the next probe while down (0 when one is due), None while up.

        Example:
            >>> Outage("redis", events=("a.down", "a.up"), logger="app").retry_after() is None
            True
        """
        if not self.down:
            return None
        left = self._next_probe - self._clock()
        return left if left > 0.0 else 0.0

    def failed(self, error: BaseException | None = None, **fields: Any) -> None:
        """Record a failure; the first one of an outage is logged and counted.

        Example:
            >>> outage = Outage("redis", events=("a.down", "a.up"), logger="app")
            >>> outage.failed(TimeoutError("timed out"), op="get")
            >>> outage.down
            True
        """
        now = self._clock()
        with self._lock:
            started = not self.down
            self.down = True
            self._next_probe = now + self.probe_interval
            if started:
                self._down_since = now
        if started:
            report: dict[str, Any] = {**self._tags, "dependency": self.dependency, **fields}
            if error is not None:
                report["error"] = f"{type(error).__name__}: {error}"
            self._unavailable.emit(**report)

    def succeeded(self, **fields: Any) -> None:
        """Record a success; if it ends an outage, that is logged and counted once.

        Example:
            >>> Outage("redis", events=("a.down", "a.up"), logger="app").succeeded()
        """
        if not self.down:
            return
        with self._lock:
            ended = self.down
            self.down = False
            lasted = self._clock() - self._down_since
        if ended:  # another thread may have ended it first
            report: dict[str, Any] = {
                **self._tags,
                "dependency": self.dependency,
                "down_seconds": round(lasted, 3),
                **fields,
            }
            self._recovered.emit(**report)

    def __repr__(self) -> str:
        state = "down" if self.down else "up"
        return f"<Outage {self.dependency} {state} {self._tags!r}>"
