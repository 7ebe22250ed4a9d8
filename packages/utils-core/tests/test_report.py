"""Tests of utils.core.report: one event, logged and metered under one name; outages."""

from __future__ import annotations

import io
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from utils.core import ValidationError, configure_logging, get_logger, set_metrics_sink
from utils.core.metrics import NullSink
from utils.core.prometheus import PrometheusSink
from utils.core.report import BoundEvent, Event, Outage, report_failure
from utils.core.testing import FakeClock, capture_logs, metrics_sink

_names = itertools.count()


def unique(prefix: str = "test") -> str:
    """A fresh event name: failures are reported once per event, process-wide."""
    return f"{prefix}.event_{next(_names)}"


class RaisingSink:
    """A metrics sink whose every method fails, like a statsd client with a bad socket."""

    def __init__(self, error: type[Exception] = RuntimeError) -> None:
        self.error = error
        self.calls = 0

    def _fail(self, *args: Any) -> None:
        self.calls += 1
        raise self.error("sink is broken")

    increment = observe = gauge = _fail


@pytest.fixture
def raising_sink() -> Iterator[RaisingSink]:
    sink = RaisingSink()
    previous = set_metrics_sink(sink)
    try:
        yield sink
    finally:
        set_metrics_sink(previous)


def report_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "utils.core.report"]


class Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")

    __str__ = __repr__


# --- Event: construction ---------------------------------------------------------------------


def test_exported_from_utils_core() -> None:
    import utils.core

    assert utils.core.Event is Event
    assert utils.core.Outage is Outage
    assert {"Event", "Outage"} <= set(utils.core.__all__)


def test_event_attributes_and_repr() -> None:
    event = Event("cache.error", logger="utils.cache", level="warning", tags=("cache", "op"))
    assert event.name == "cache.error"
    assert event.level == "warning"
    assert event.tags == ("cache", "op")
    assert event.metric == "increment"
    assert repr(event) == "Event('cache.error', level='warning', tags=('cache', 'op'))"
    default = Event("app.started", logger="app")
    assert (default.level, default.tags, default.metric) == ("info", (), "increment")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "event name must be a non-empty string, got ''"),
        ({"name": 3}, "event name must be a non-empty string, got 3"),
        ({"level": "verbose"}, "event level must be one of"),
        ({"level": "WARNING"}, "got 'WARNING'"),
        ({"metric": "count"}, "event metric must be one of"),
        ({"level": None, "metric": None}, "event 'x.y' is neither logged nor metered"),
        ({"tags": ["cache"]}, "event tags must be a tuple of names, got ['cache']"),
        ({"tags": "cache"}, "event tags must be a tuple of names"),
        ({"tags": ("cache", "")}, "event tags must be a tuple of names"),
        ({"tags": ("cache", 1)}, "event tags must be a tuple of names"),
    ],
)
def test_event_constructor_validation(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "x.y", "logger": "utils.test", **kwargs}
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Event(**arguments)


# --- Event: emit -----------------------------------------------------------------------------


def test_emit_logs_and_meters_under_one_name() -> None:
    name = unique("cache")
    event = Event(name, logger="utils.cache", level="warning", tags=("cache", "op"))
    with capture_logs() as logs, metrics_sink() as sink:
        event.emit(cache="users", op="get", reason="unavailable", error="ConnectionError: x")
    assert logs == [
        {
            "cache": "users",
            "op": "get",
            "reason": "unavailable",
            "error": "ConnectionError: x",
            "event": name,
            "logger": "utils.cache",
            "log_level": "warning",
        }
    ]
    [measurement] = sink.measurements
    assert (measurement.kind, measurement.name, measurement.value) == ("increment", name, 1.0)
    assert measurement.tags == {"cache": "users", "op": "get"}  # exactly the declared set


def test_metric_tags_are_exactly_the_declared_set() -> None:
    name = unique()
    event = Event(name, logger="utils.test", tags=("cache", "op", "reason"))
    with capture_logs() as logs, metrics_sink() as sink:
        event.emit(cache="users")  # missing tags become ""
        event.emit(cache="users", op=3, reason=None, key="user:1")  # values become str
        event.emit()
    assert [m.tags for m in sink.measurements] == [
        {"cache": "users", "op": "", "reason": ""},
        {"cache": "users", "op": "3", "reason": "None"},
        {"cache": "", "op": "", "reason": ""},
    ]
    assert logs[1]["key"] == "user:1"  # extra keywords go to the log line only
    assert logs[1]["op"] == 3  # and the log keeps the original values
    assert "op" not in logs[0]  # a missing tag is not invented in the log


@pytest.mark.parametrize("kind", ["increment", "observe", "gauge"])
def test_metric_kinds_and_value(kind: Any) -> None:
    name = unique()
    event = Event(name, logger="utils.test", level=None, tags=("op",), metric=kind)
    with metrics_sink() as sink:
        event.emit(op="select", value=0.25)
        event.emit(op="select")
    assert [(m.kind, m.value) for m in sink.select(name)] == [(kind, 0.25), (kind, 1.0)]


def test_metric_none_is_only_logged() -> None:
    name = unique()
    event = Event(name, logger="utils.test", level="info", tags=("op",), metric=None)
    with capture_logs() as logs, metrics_sink() as sink:
        event.emit(op="x")
        event.bind(op="y")()
    assert sink.measurements == []
    assert [entry["op"] for entry in logs] == ["x", "y"]


def test_level_none_is_never_logged() -> None:
    name = unique()
    event = Event(name, logger="utils.test", level=None, tags=("cache",))
    with capture_logs("DEBUG") as logs, metrics_sink() as sink:
        event.emit(cache="users", key="k")
        event.bind(cache="users")(key="k")
    assert logs == []
    assert sink.count(name, cache="users") == 2


def test_emit_with_the_null_sink_only_logs() -> None:
    name = unique()
    event = Event(name, logger="utils.test", tags=("cache",))
    previous = set_metrics_sink(None)
    try:
        with capture_logs() as logs:
            event.emit(cache="users")
    finally:
        set_metrics_sink(previous)
    assert [entry["event"] for entry in logs] == [name]


def test_levels_are_honoured() -> None:
    events = {
        level: Event(unique(), logger="utils.test.levels", level=level)
        for level in ("debug", "info", "warning", "error", "critical")
    }
    with capture_logs("WARNING") as logs:
        for event in events.values():
            event.emit()
    assert [entry["log_level"] for entry in logs] == ["warning", "error", "critical"]


# --- a real Prometheus sink ------------------------------------------------------------------


def test_prometheus_sink_never_sees_two_label_sets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    name = unique("cache")
    event = Event(name, logger="utils.cache", level="warning", tags=("cache", "op"))
    previous = set_metrics_sink(sink)
    try:
        with capture_logs():
            event.emit(cache="users", op="get", error="timeout")
            event.emit(cache="users", op="set", key="user:1", attempt=2)
            event.emit(cache="users")
            event.emit(cache="users", op="get", value=2.0, reason="unavailable")
            event.bind(cache="orders", op="get")(detail="x")
    finally:
        set_metrics_sink(previous)
    assert report_records(caplog) == []
    text = generate_latest(registry).decode()
    metric = "utils_" + name.replace(".", "_") + "_total"
    assert f'{metric}{{cache="users",op="get"}} 3.0' in text
    assert f'{metric}{{cache="users",op="set"}} 1.0' in text
    assert f'{metric}{{cache="users",op=""}} 1.0' in text
    assert f'{metric}{{cache="orders",op="get"}} 1.0' in text
    # What the declared tag set prevents: the sink itself refuses a second label set.
    with pytest.raises(ValidationError, match="Prometheus needs the same tag keys"):
        sink.increment(name, tags={"cache": "users", "op": "get", "key": "user:1"})


# --- failures never reach the caller ---------------------------------------------------------


def test_a_failing_sink_is_swallowed_and_reported_once(
    raising_sink: RaisingSink, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    event = Event(name, logger="utils.test", tags=("op",))
    bound = event.bind(op="get")
    with capture_logs() as logs:
        for _ in range(3):
            event.emit(op="get")
            bound()
    assert raising_sink.calls == 6
    assert len(logs) == 6  # logging still works
    [record] = report_records(caplog)
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert repr(name) in message
    assert "metrics sink" in message
    assert "RuntimeError: sink is broken" in message
    # Another exception type is news: reported once too.
    raising_sink.error = KeyError
    event.emit(op="get")
    event.emit(op="get")
    assert len(report_records(caplog)) == 2


def test_a_failing_logger_is_swallowed_and_reported_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique()
    logger_name = f"utils.test.{name}"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(get_logger(logger_name), "warning", broken)
    event = Event(name, logger=logger_name, level="warning", tags=("op",))
    with metrics_sink() as sink:
        for _ in range(3):
            event.emit(op="get")
            event.bind(op="get")()
    assert sink.count(name) == 6  # the metric still works
    [record] = report_records(caplog)
    assert "logging" in record.getMessage()
    assert "OSError: disk full" in record.getMessage()


def test_a_field_that_cannot_be_rendered_is_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Library mode renders `key=repr(value)`: a value whose repr raises breaks logging for real.
    name = unique()
    event = Event(name, logger="utils.test.render", level="warning")
    event.emit(payload=Unprintable())
    event.emit(payload=Unprintable())
    event.bind()(payload=Unprintable())
    [record] = report_records(caplog)
    assert "ValueError: no repr for you" in record.getMessage()


def test_configured_logging_failures_are_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    name = unique()
    event = Event(name, logger="utils.test.configured", level="warning")
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    event.emit(ok=1)
    assert f'"event":"{name}"' in out.getvalue().replace(" ", "")
    out.close()  # the stream goes away under the logger's feet
    event.emit(ok=2)
    event.emit(ok=3)
    [record] = report_records(caplog)
    assert "logging (ValueError: I/O operation on closed file)" in record.getMessage()


def test_a_failing_fallback_handler_is_swallowed_too(raising_sink: RaisingSink) -> None:
    class BrokenHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("the handler is broken too")

    fallback = logging.getLogger("utils.core.report")
    handler = BrokenHandler()
    fallback.addHandler(handler)
    try:
        Event(unique(), logger="utils.test", level=None).emit()
    finally:
        fallback.removeHandler(handler)
    assert raising_sink.calls == 1


def test_report_failure_is_public_and_once(caplog: pytest.LogCaptureFixture) -> None:
    name = unique()
    report_failure(name, "metrics sink", RuntimeError("statsd is down"))
    report_failure(name, "metrics sink", RuntimeError("statsd is still down"))
    report_failure(name, "logging", RuntimeError("other part"))
    messages = [record.getMessage() for record in report_records(caplog)]
    assert len(messages) == 2
    assert "statsd is down" in messages[0]
    assert "further failures of this kind are not shown" in messages[0]


# --- bind / BoundEvent -----------------------------------------------------------------------


def test_bind_validation() -> None:
    event = Event("cache.hit", logger="utils.cache", level=None, tags=("cache", "op"))
    with pytest.raises(
        ValidationError,
        match=r"^event 'cache.hit' declares tags \['cache', 'op'\], got \['cache'\]$",
    ) as info:
        event.bind(cache="users")
    assert info.value.details == {"event": "cache.hit"}
    with pytest.raises(ValidationError, match=r"got \['cache', 'key', 'op'\]"):
        event.bind(cache="users", op="get", key="k")
    with pytest.raises(ValidationError, match=r"got \[\]"):
        event.bind()


def test_bound_event_records_with_its_tags() -> None:
    name = unique()
    event = Event(name, logger="utils.test", level="info", tags=("cache",), metric="observe")
    bound = event.bind(cache=7)  # type: ignore[arg-type]
    assert isinstance(bound, BoundEvent)
    assert bound.tags == {"cache": "7"}
    assert repr(bound) == f"<BoundEvent {name!r} {{'cache': '7'}}>"
    with capture_logs() as logs, metrics_sink() as sink:
        bound()
        bound(value=0.5, key="k")
        bound(2.0)
    assert [(m.kind, m.value, m.tags) for m in sink.select(name)] == [
        ("observe", 1.0, {"cache": "7"}),
        ("observe", 0.5, {"cache": "7"}),
        ("observe", 2.0, {"cache": "7"}),
    ]
    assert logs[1] == {
        "cache": "7",
        "key": "k",
        "event": name,
        "logger": "utils.test",
        "log_level": "info",
    }


def test_bound_event_with_the_null_sink_does_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique()
    hit = Event(name, logger="utils.test", level=None, tags=("cache",)).bind(cache="users")
    previous = set_metrics_sink(NullSink())
    try:
        with capture_logs("DEBUG") as logs:
            for _ in range(100):
                hit()
    finally:
        set_metrics_sink(previous)
    assert logs == []
    assert report_records(caplog) == []
    with metrics_sink() as sink:  # and counts again once a real sink is installed
        hit()
    assert sink.count(name, cache="users") == 1


# --- Outage ----------------------------------------------------------------------------------


def make_outage(
    clock: FakeClock, *, probe_interval: float = 1.0, tags: dict[str, str] | None = None
) -> Outage:
    return Outage(
        "redis",
        events=("cache.unavailable", "cache.recovered"),
        logger="utils.cache",
        tags={"cache": "users"} if tags is None else tags,
        probe_interval=probe_interval,
        clock=clock,
    )


def test_outage_while_up(utils_fake_clock: FakeClock) -> None:
    outage = make_outage(utils_fake_clock)
    with capture_logs() as logs, metrics_sink() as sink:
        assert outage.down is False
        assert outage.allow() is True
        assert outage.retry_after() is None
        outage.succeeded()  # cheap and silent while up
    assert logs == []
    assert sink.measurements == []
    assert repr(outage) == "<Outage redis up {'cache': 'users'}>"


def is_down(outage: Outage) -> bool:
    """Read ``down`` through a call, so the type checker does not narrow it for good."""
    return outage.down


def test_outage_lifecycle(utils_fake_clock: FakeClock) -> None:
    clock = utils_fake_clock
    clock.advance(100.0)
    outage = make_outage(clock, probe_interval=2.0)
    with capture_logs() as logs, metrics_sink() as sink:
        outage.failed(ConnectionError("refused"), op="get")
        assert outage.down is True
        assert repr(outage) == "<Outage redis down {'cache': 'users'}>"
        assert outage.allow() is False  # fail fast until the probe is due
        assert outage.retry_after() == 2.0
        clock.advance(0.5)
        outage.failed(TimeoutError("timed out"))  # still the same outage: not logged again
        assert outage.retry_after() == 2.0  # a failure starts a new interval
        clock.advance(1.5)
        assert outage.allow() is False
        assert outage.retry_after() == 0.5
        clock.advance(0.5)
        assert outage.retry_after() == 0.0
        assert outage.allow() is True  # the probe
        assert outage.allow() is False  # one caller per interval
        assert outage.retry_after() == 2.0
        clock.advance(2.0)
        assert outage.allow() is True
        assert outage.allow() is False
        clock.advance(0.25)
        outage.succeeded(op="get")
        assert not is_down(outage)
        assert outage.allow() is True
        assert outage.retry_after() is None
        outage.succeeded()  # already up: nothing more
    assert logs == [
        {
            "cache": "users",
            "dependency": "redis",
            "op": "get",
            "error": "ConnectionError: refused",
            "event": "cache.unavailable",
            "logger": "utils.cache",
            "log_level": "warning",
        },
        {
            "cache": "users",
            "dependency": "redis",
            "down_seconds": 4.75,
            "op": "get",
            "event": "cache.recovered",
            "logger": "utils.cache",
            "log_level": "info",
        },
    ]
    assert [(m.name, m.tags) for m in sink.measurements] == [
        ("cache.unavailable", {"cache": "users"}),
        ("cache.recovered", {"cache": "users"}),
    ]


def test_outage_without_error_and_a_second_outage(utils_fake_clock: FakeClock) -> None:
    outage = make_outage(utils_fake_clock, tags={})
    with capture_logs() as logs, metrics_sink() as sink:
        outage.failed()
        utils_fake_clock.advance(1 / 3)
        outage.succeeded()
        outage.failed(OSError("again"))
        outage.succeeded()
    assert [entry["event"] for entry in logs] == [
        "cache.unavailable",
        "cache.recovered",
        "cache.unavailable",
        "cache.recovered",
    ]
    assert "error" not in logs[0]
    assert logs[1]["down_seconds"] == 0.333
    assert logs[2]["error"] == "OSError: again"
    assert logs[3]["down_seconds"] == 0.0
    assert [m.tags for m in sink.measurements] == [{}, {}, {}, {}]


@pytest.mark.parametrize("interval", [0, -1, True, float("nan"), float("inf")])
def test_outage_probe_interval_validation(interval: float) -> None:
    with pytest.raises(ValidationError, match=r"^probe_interval must be a finite number > 0"):
        make_outage(FakeClock(), probe_interval=interval)


def test_outage_uses_the_real_clock_by_default() -> None:
    outage = Outage("redis", events=("a.down", "a.up"), logger="utils.test")
    outage.failed()
    left = outage.retry_after()
    assert left is not None
    assert 0.0 <= left <= 1.0
    outage.succeeded()


def run_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Start ``count`` threads together (a barrier) running ``target``; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def work(index: int) -> None:
        barrier.wait()
        results[index] = target()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_exactly_one_probe_per_interval_across_threads(utils_fake_clock: FakeClock) -> None:
    outage = make_outage(utils_fake_clock)
    with capture_logs():
        outage.failed(ConnectionError("refused"))
        assert run_threads(32, outage.allow).count(True) == 0
        for _ in range(5):
            utils_fake_clock.advance(1.0)
            assert run_threads(32, outage.allow).count(True) == 1


def test_concurrent_failures_and_recoveries_log_once(utils_fake_clock: FakeClock) -> None:
    outage = make_outage(utils_fake_clock)
    with capture_logs() as logs, metrics_sink() as sink:
        run_threads(16, lambda: outage.failed(ConnectionError("refused")))
        run_threads(16, outage.succeeded)
    assert [entry["event"] for entry in logs] == ["cache.unavailable", "cache.recovered"]
    assert sink.count("cache.unavailable") == 1
    assert sink.count("cache.recovered") == 1
