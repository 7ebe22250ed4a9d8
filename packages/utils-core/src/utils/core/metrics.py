"""Metrics hooks: one process-wide sink, fed by every ``utils`` package and by :class:`timed`.

The default sink does nothing, so instrumented code costs next to nothing until the
application installs one (:class:`PrometheusSink` with ``utils-core[prometheus]``, a StatsD
adapter, or :class:`InMemorySink` in tests). Metric names are the event names the packages
log (``cache.hit``, ``db.query``, ``retry.attempt_failed``); durations are in seconds.

Example:
    >>> sink = InMemorySink()
    >>> previous = set_metrics_sink(sink)
    >>> with timed("report.build"):
    ...     pass
    >>> sink.count("report.build", kind="observe")
    1
    >>> _ = set_metrics_sink(previous)
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload, runtime_checkable

__all__ = [
    "InMemorySink",
    "Measurement",
    "MetricsSink",
    "NullSink",
    "get_metrics_sink",
    "set_metrics_sink",
    "timed",
]

P = ParamSpec("P")
R = TypeVar("R")
Tags = Mapping[str, str]


@runtime_checkable
class MetricsSink(Protocol):
    """What a metrics backend implements. Tags are small, low-cardinality string maps.

    Example:
        >>> class PrintSink:
        ...     def increment(self, name, value=1.0, tags=None):
        ...         print("inc", name, value)
        ...
        ...     def observe(self, name, value, tags=None):
        ...         print("obs", name)
        ...
        ...     def gauge(self, name, value, tags=None):
        ...         print("gauge", name, value)
        >>> isinstance(PrintSink(), MetricsSink)
        True
    """

    def increment(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Add ``value`` to the counter ``name``."""

    def observe(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record one observation (a duration in seconds, a size) of ``name``."""

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set the current value of ``name``."""


class NullSink:
    """The default sink: drops everything.

    Example:
        >>> NullSink().increment("cache.hit")
    """

    __slots__ = ()

    def increment(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Drop the increment."""

    def observe(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Drop the observation."""

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Drop the gauge value."""


@dataclass(frozen=True)
class Measurement:
    """One call recorded by :class:`InMemorySink`.

    Example:
        >>> Measurement("increment", "cache.hit", 1.0, {"cache": "users"}).tags["cache"]
        'users'
    """

    kind: Literal["increment", "observe", "gauge"]
    name: str
    value: float
    tags: dict[str, str] = field(default_factory=dict)


class InMemorySink:
    """A thread-safe sink that remembers every call, for tests and the demo.

    Example:
        >>> sink = InMemorySink()
        >>> sink.increment("cache.hit", tags={"cache": "users"})
        >>> sink.increment("cache.hit", tags={"cache": "users"})
        >>> sink.total("cache.hit"), sink.count("cache.hit", cache="users")
        (2.0, 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.measurements: list[Measurement] = []

    def _record(self, kind: Any, name: str, value: float, tags: Tags | None) -> None:
        measurement = Measurement(kind, name, float(value), dict(tags or {}))
        with self._lock:
            self.measurements.append(measurement)

    def increment(self, name: str, value: float = 1.0, tags: Tags | None = None) -> None:
        """Record an increment."""
        self._record("increment", name, value, tags)

    def observe(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record an observation."""
        self._record("observe", name, value, tags)

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record a gauge value."""
        self._record("gauge", name, value, tags)

    def select(self, name: str, *, kind: str | None = None, **tags: str) -> list[Measurement]:
        """Return the measurements of ``name`` (optionally of one kind) whose tags match.

        Example:
            >>> sink = InMemorySink()
            >>> sink.observe("db.query", 0.01, {"op": "select"})
            >>> [m.value for m in sink.select("db.query", op="select")]
            [0.01]
        """
        with self._lock:
            snapshot = list(self.measurements)
        return [
            m
            for m in snapshot
            if m.name == name
            and (kind is None or m.kind == kind)
            and all(m.tags.get(key) == value for key, value in tags.items())
        ]

    def count(self, name: str, *, kind: str | None = None, **tags: str) -> int:
        """How many calls recorded ``name`` with matching tags.

        Example:
            >>> InMemorySink().count("cache.miss")
            0
        """
        return len(self.select(name, kind=kind, **tags))

    def total(self, name: str, **tags: str) -> float:
        """Sum of the increments of counter ``name`` with matching tags.

        Example:
            >>> sink = InMemorySink()
            >>> sink.increment("jobs.done", 3)
            >>> sink.total("jobs.done")
            3.0
        """
        return sum(m.value for m in self.select(name, kind="increment", **tags))

    def clear(self) -> None:
        """Forget everything recorded so far.

        Example:
            >>> sink = InMemorySink()
            >>> sink.gauge("pool.size", 3)
            >>> sink.clear()
            >>> sink.measurements
            []
        """
        with self._lock:
            self.measurements.clear()


_sink: MetricsSink = NullSink()


def set_metrics_sink(sink: MetricsSink | None) -> MetricsSink:
    """Install ``sink`` process-wide (``None`` restores the no-op sink); return the previous.

    Example:
        >>> previous = set_metrics_sink(InMemorySink())
        >>> _ = set_metrics_sink(previous)
    """
    global _sink  # noqa: PLW0603 - the one process-wide sink, read on every measurement
    previous = _sink
    _sink = NullSink() if sink is None else sink
    return previous


def get_metrics_sink() -> MetricsSink:
    """Return the installed sink.

    Example:
        >>> isinstance(get_metrics_sink(), MetricsSink)
        True
    """
    return _sink


class timed:  # noqa: N801 - reads like a function: @timed("db.query"), with timed(...)
    """Measure how long a block or a function takes, and report it to the metrics sink.

    Each measurement is ``observe(name, seconds, tags | {"outcome": "ok" | "error"})``.
    Works as a decorator on sync and async functions (the signature is preserved for type
    checkers) and as a ``with`` / ``async with`` block. Use one ``timed`` object per block;
    a decorated function can be called concurrently from any number of threads and tasks.

    Args:
        name: The metric name, e.g. ``"db.query"``.
        tags: Constant tags added to every measurement.
        clock: The clock to read (``time.perf_counter`` by default), injectable for tests.

    Example:
        >>> sink = InMemorySink()
        >>> previous = set_metrics_sink(sink)
        >>> @timed("report.render", tags={"format": "pdf"})
        ... def render() -> str:
        ...     return "done"
        >>> render()
        'done'
        >>> sink.select("report.render")[0].tags
        {'format': 'pdf', 'outcome': 'ok'}
        >>> _ = set_metrics_sink(previous)
    """

    __slots__ = ("_clock", "_error_tags", "_ok_tags", "_started", "elapsed", "name")

    def __init__(
        self,
        name: str,
        *,
        tags: Tags | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name: str = name
        self._clock = clock
        # Built once: reporting a measurement allocates nothing but the float.
        self._ok_tags = {**(tags or {}), "outcome": "ok"}
        self._error_tags = {**(tags or {}), "outcome": "error"}
        self._started = 0.0
        #: Seconds the last block took (set when a ``with`` block ends).
        self.elapsed: float | None = None

    def _report(self, started: float, failed: bool) -> float:
        elapsed = self._clock() - started
        try:
            _sink.observe(self.name, elapsed, self._error_tags if failed else self._ok_tags)
        except Exception as exc:  # a broken sink must never fail the measured code
            from utils.core.report import report_failure

            report_failure(self.name, "metrics sink", exc)
        return elapsed

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async) so that every call is measured."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                started = self._clock()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException:
                    self._report(started, failed=True)
                    raise
                self._report(started, failed=False)
                return result

            return timed_async

        @functools.wraps(fn)
        def timed_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            started = self._clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                self._report(started, failed=True)
                raise
            self._report(started, failed=False)
            return result

        return timed_sync

    def __enter__(self) -> timed:
        self._started = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed = self._report(self._started, failed=exc_type is not None)

    async def __aenter__(self) -> timed:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
