"""After configure_logging, utils events also reach the stdlib handlers the application adds.

OpenTelemetry's logging handler and pytest's caplog sit on stdlib loggers, Sentry wraps
Logger.callHandlers; the utils handler writes its JSON line itself, so each event is also handed
to them as a LogRecord: msg = event name, the fields as attributes.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from utils.core import (
    Event,
    _log_stdlib,
    bind_context,
    capture_logs,
    configure_logging,
    get_logger,
    reset_logging,
)
from utils.core.log import QUIET_LIBRARIES


class Collect(logging.Handler):
    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level="INFO", format="json", stream=stream)
    return stream


@pytest.fixture
def root_handler() -> Iterator[Collect]:
    handler = Collect()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_caplog_sees_utils_events(out: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    with bind_context(request_id="r-1"):
        get_logger("utils.cache").warning("cache.error", cache="users", password="hunter2")
    [record] = [r for r in caplog.records if r.name == "utils.cache"]
    assert record.getMessage() == "cache.error"
    assert record.levelno == logging.WARNING
    assert record.cache == "users"  # type: ignore[attr-defined]
    assert record.request_id == "r-1"  # type: ignore[attr-defined]
    assert record.password == "***"  # type: ignore[attr-defined]  # redacted, as in our line
    assert not hasattr(record, "event")  # the event name is the message
    assert caplog.messages[-1] == "cache.error"
    assert "hunter2" not in caplog.text
    assert len(lines(out)) == 1  # our own line is still written once


def test_root_handler_gets_every_level_it_accepts(out: io.StringIO) -> None:
    picky = Collect(level=logging.ERROR)
    logging.getLogger().addHandler(picky)
    try:
        log = get_logger("app")
        log.debug("filtered.out")  # below the configured INFO: nobody sees it
        log.info("info.event", n=1)
        log.error("error.event")
        log.critical("critical.event")
    finally:
        logging.getLogger().removeHandler(picky)
    assert [r.getMessage() for r in picky.records] == ["error.event", "critical.event"]
    assert [line["event"] for line in lines(out)] == [
        "info.event",
        "error.event",
        "critical.event",
    ]


def test_level_names_and_aliases_map_to_stdlib_levels(
    out: io.StringIO, root_handler: Collect
) -> None:
    log = get_logger("app")
    log.warn("a")
    log.exception("b")  # no exception active: an ERROR without a traceback
    log.fatal("c")
    # The record's level is the one structlog itself gives the call:
    # as on structlog 24.1, the lowest we support, its `fatal` may log at "error".
    fatal_level = logging.getLevelName(lines(out)[-1]["level"].upper())
    assert fatal_level in (logging.CRITICAL, logging.ERROR)
    assert [(r.getMessage(), r.levelno) for r in root_handler.records] == [
        ("a", logging.WARNING),
        ("b", logging.ERROR),
        ("c", fatal_level),
    ]
    assert root_handler.records[1].exc_info is None


def test_handlers_up_the_logger_chain_and_propagation(
    out: io.StringIO, root_handler: Collect
) -> None:
    on_utils = Collect()
    on_leaf = Collect()
    logging.getLogger("utils").addHandler(on_utils)
    logging.getLogger("utils.deep.leaf").addHandler(on_leaf)
    try:
        get_logger("utils.deep.leaf").info("one")
        logging.getLogger("utils.deep").propagate = False
        get_logger("utils.deep.leaf").info("two")
    finally:
        logging.getLogger("utils").removeHandler(on_utils)
        logging.getLogger("utils.deep.leaf").removeHandler(on_leaf)
        logging.getLogger("utils.deep").propagate = True
    assert [r.getMessage() for r in on_leaf.records] == ["one", "two"]
    assert [r.getMessage() for r in on_utils.records] == ["one"]
    assert [r.getMessage() for r in root_handler.records] == ["one"]
    assert [line["event"] for line in lines(out)] == ["one", "two"]  # ours writes regardless


def test_null_handlers_and_our_own_handler_are_not_called_again(out: io.StringIO) -> None:
    null = logging.NullHandler()
    logging.getLogger().addHandler(null)
    try:
        get_logger("utils.x").info("once")
    finally:
        logging.getLogger().removeHandler(null)
    assert [line["event"] for line in lines(out)] == ["once"]


def test_exception_object_reaches_handlers_but_formatted_text_is_redacted(
    out: io.StringIO, root_handler: Collect
) -> None:
    error = ConnectionError("redis://default:s3cret@cache:6379/0 refused")
    try:
        raise error
    except ConnectionError:
        get_logger("utils.cache").exception("cache.unavailable")
    get_logger("utils.cache").error("explicit", exc_info=error)
    get_logger("utils.cache").error("as.tuple", exc_info=(type(error), error, error.__traceback__))
    first, second, third = root_handler.records
    for record in (first, second, third):
        assert record.exc_info is not None
        assert record.exc_info[1] is error  # Sentry / OpenTelemetry get the real exception
        text = logging.Formatter().format(record)
        assert "Traceback" in text
        assert "s3cret" not in text  # a plain formatter prints our redacted traceback
    assert "s3cret" not in out.getvalue()


def test_record_names_the_application_frame(out: io.StringIO, root_handler: Collect) -> None:
    get_logger("app").info("here")
    Event("app.reported", logger="app").emit(detail=1)
    direct, reported = root_handler.records
    for record in (direct, reported):
        assert record.pathname == __file__
        assert record.funcName == "test_record_names_the_application_frame"
    assert reported.detail == 1  # type: ignore[attr-defined]


def test_fields_clashing_with_record_attributes_are_renamed(
    out: io.StringIO, root_handler: Collect
) -> None:
    get_logger("app").info("clash", name="field-name", message="m", args="a", lineno="x")
    [record] = root_handler.records
    assert (record.name, record.args, record.getMessage()) == ("app", (), "clash")
    assert isinstance(record.lineno, int)
    assert record.name_field == "field-name"  # type: ignore[attr-defined]
    assert record.message_field == "m"  # type: ignore[attr-defined]
    assert record.args_field == "a"  # type: ignore[attr-defined]
    assert record.lineno_field == "x"  # type: ignore[attr-defined]
    # What the record has a place of its own for is not repeated as an attribute.
    for key in ("event", "level", "logger", "timestamp", "exception", "stack"):
        assert not hasattr(record, key)


def test_application_structlog_loggers_are_forwarded_too(
    out: io.StringIO, root_handler: Collect
) -> None:
    structlog.get_logger("app.structlog").info("from.structlog", k="v")
    [record] = root_handler.records
    assert (record.name, record.getMessage(), record.k) == ("app.structlog", "from.structlog", "v")  # type: ignore[attr-defined]


def test_wrapped_foreign_logger_is_not_forwarded(out: io.StringIO, root_handler: Collect) -> None:
    printed: list[str] = []

    class Named:  # any logger object of the application's own, without our stdlib link
        name = "named"

        def info(self, message: str) -> None:
            printed.append(message)

    structlog.wrap_logger(Named()).info("printed")
    assert root_handler.records == []
    assert json.loads(printed[0])["event"] == "printed"


def test_record_factory_is_honoured(out: io.StringIO, root_handler: Collect) -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.injected = "yes"  # what OpenTelemetry's logging instrumentation does
        return record

    logging.setLogRecordFactory(factory)
    try:
        get_logger("app").info("factored")
    finally:
        logging.setLogRecordFactory(previous)
    assert root_handler.records[0].injected == "yes"  # type: ignore[attr-defined]


def test_a_failing_handler_never_breaks_the_call(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler bug")

    monkeypatch.setattr(logging, "raiseExceptions", False)
    broken = Broken()
    logging.getLogger().addHandler(broken)
    try:
        get_logger("app").info("still.written")
    finally:
        logging.getLogger().removeHandler(broken)
    events = [line["event"] for line in lines(out)]
    assert events[-1] == "still.written"
    assert "RuntimeError: handler bug" in events[0]  # reported once, on utils.core.report


def test_a_failure_building_the_record_is_reported_not_raised(
    out: io.StringIO, root_handler: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> logging.LogRecord:
        raise RuntimeError("factory bug")

    reported: list[tuple[str, str]] = []
    monkeypatch.setattr(logging, "getLogRecordFactory", lambda: refuse)
    monkeypatch.setattr(
        "utils.core.report.report_failure",
        lambda event, part, exc: reported.append((event, part)),
    )
    get_logger("app").info("survives")
    assert root_handler.records == []
    assert reported == [("survives", "stdlib handlers")]
    assert [line["event"] for line in lines(out)] == ["survives"]


def test_library_mode_is_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    reset_logging()
    with caplog.at_level(logging.INFO, logger="utils.lib"):
        get_logger("utils.lib").info("lib.event", k=1)
    [record] = caplog.records
    assert record.getMessage() == "lib.event k=1"


# --------------------------------------------------------------------------------------
# Quiet third-party libraries


def test_chatty_libraries_are_quieted_by_default() -> None:
    configure_logging(level="INFO", stream=io.StringIO())
    for name, level in QUIET_LIBRARIES.items():
        assert logging.getLogger(name).level == level
    reset_logging()
    assert logging.getLogger("httpx").level == logging.NOTSET


def test_levels_win_over_the_quiet_table_and_it_never_makes_loggers_louder() -> None:
    configure_logging(level="INFO", stream=io.StringIO(), levels={"httpx": "DEBUG"})
    assert logging.getLogger("httpx").level == logging.DEBUG
    assert logging.getLogger("botocore").level == logging.WARNING
    reset_logging()
    configure_logging(level="ERROR", stream=io.StringIO())
    assert logging.getLogger("httpx").level == logging.NOTSET  # ERROR from the root already
    reset_logging()
    configure_logging(level="DEBUG", stream=io.StringIO(), quiet_libraries=False)
    assert logging.getLogger("httpx").level == logging.NOTSET


def test_httpx_request_lines_are_gone_at_info(out: io.StringIO) -> None:
    logging.getLogger("httpx").info("HTTP Request: GET http://x/ 200 OK")
    logging.getLogger("httpx").warning("kept")
    assert [line["event"] for line in lines(out)] == ["kept"]


# --------------------------------------------------------------------------------------
# Trace ids (utils.core.otel.add_trace_context, wired lazily)


@pytest.fixture
def tracer() -> Any:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider().get_tracer("test")


def test_trace_ids_join_lines_inside_a_span(out: io.StringIO, tracer: Any) -> None:
    with tracer.start_as_current_span("request") as span:
        get_logger("app").info("in.span")
        logging.getLogger("foreign").warning("foreign in span")
    get_logger("app").info("after.span")
    inside, foreign, after = lines(out)
    context = span.get_span_context()
    for line in (inside, foreign):
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert line["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in after


def test_no_opentelemetry_costs_one_lookup_and_adds_nothing(
    out: io.StringIO, tracer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_log_stdlib, "_modules", {})  # as if opentelemetry was never imported
    with tracer.start_as_current_span("request"):
        get_logger("app").info("untraced")
    assert "trace_id" not in lines(out)[0]


def test_missing_otel_module_is_tolerated(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_log_stdlib, "_trace_processor", None)
    monkeypatch.setattr(_log_stdlib, "_modules", {"opentelemetry.trace": object()})
    monkeypatch.setitem(sys.modules, "utils.core.otel", None)  # importing it raises ImportError
    get_logger("app").info("still.logged")
    get_logger("app").info("and.again")
    assert [line["event"] for line in lines(out)] == ["still.logged", "and.again"]
    assert _log_stdlib._trace_processor is _log_stdlib._no_trace_context


def test_without_foreign_handlers_nothing_is_built(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        _log_stdlib, "_forward", lambda stdlib, method, event_dict, box: calls.append(method)
    )
    root = logging.getLogger()
    ours = next(h for h in root.handlers if getattr(h, "_utils_handler", False))
    # pytest keeps capture handlers on the root logger: take them away for this test.
    monkeypatch.setattr(root, "handlers", [ours])
    get_logger("utils.cache").info("only.ours")  # the walk reaches the root and stops
    monkeypatch.setattr(root, "handlers", [ours, logging.NullHandler()])
    get_logger("utils.cache").info("ours.and.null")  # two handlers, neither foreign
    monkeypatch.setattr(logging.getLogger("utils"), "propagate", False)
    get_logger("utils.cache").info("not.propagated")  # the walk stops at `utils`
    assert calls == []
    assert [line["event"] for line in lines(out)] == [
        "only.ours",
        "ours.and.null",
        "not.propagated",
    ]


def test_stack_info_is_rendered_for_forwarded_and_captured_events(
    out: io.StringIO, root_handler: Collect
) -> None:
    get_logger("app").info("with.stack", stack_info=True)
    assert "test_stack_info_is_rendered" in lines(out)[0]["stack"]
    record = root_handler.records[0]
    assert record.stack_info is not None
    assert "test_stack_info_is_rendered" in record.stack_info
    assert "Stack (most recent call last)" in logging.Formatter().format(record)
    with capture_logs() as logs:
        get_logger("app").info("captured.stack", stack_info=True)
    assert "test_stack_info_is_rendered" in logs[0]["stack"]


def test_a_wrapped_call_handlers_sees_every_event(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sentry's logging integration adds no handler: it wraps Logger.callHandlers.
    seen: list[logging.LogRecord] = []
    original = logging.Logger.callHandlers

    def sentry_like(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record)
        original(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", sentry_like)
    root = logging.getLogger()
    ours = next(h for h in root.handlers if getattr(h, "_utils_handler", False))
    monkeypatch.setattr(root, "handlers", [ours])  # no handler but ours anywhere
    get_logger("utils.cache").error("cache.unavailable", cache="users")
    assert [(r.name, r.getMessage(), r.cache) for r in seen] == [  # type: ignore[attr-defined]
        ("utils.cache", "cache.unavailable", "users")
    ]
    assert [line["event"] for line in lines(out)] == ["cache.unavailable"]  # written once


def test_call_handlers_replaced_before_import_counts_as_replaced() -> None:
    code = (
        "import logging\n"
        "logging.Logger.callHandlers = lambda self, record: None\n"
        "from utils.core import _log_stdlib\n"
        "print(_log_stdlib._PLAIN_CALL_HANDLERS)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "None"


SENTRY_APP = """
import io, json
import sentry_sdk
from sentry_sdk.transport import Transport
from utils.core import bind_context, configure_logging, get_logger

events = []


class Capture(Transport):  # keeps the envelopes: nothing leaves the process
    def capture_envelope(self, envelope):
        events.extend(item.payload.json for item in envelope.items if item.type == "event")


out = io.StringIO()
configure_logging(format="json", stream=out)
sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=Capture)
log = get_logger("utils.cache")
with bind_context(request_id="req-s"):
    log.info("cache.miss", key="user:1")
    try:
        raise ConnectionError("redis://default:s3cret@cache:6379/0 refused")
    except ConnectionError:
        log.exception("cache.unavailable", cache="users")
sentry_sdk.flush()
[event] = events
print(json.dumps({
    "message": event["logentry"]["message"],
    "extra": {k: v for k, v in event["extra"].items() if k != "sys.argv"},
    "exception": event["exception"]["values"][0]["type"],
    "breadcrumbs": [crumb["message"] for crumb in event["breadcrumbs"]["values"]],
    "our_lines": [json.loads(line)["event"] for line in out.getvalue().splitlines()],
}))
"""


def test_real_sentry_sdk_gets_events_breadcrumbs_and_context() -> None:
    pytest.importorskip("sentry_sdk")
    # A subprocess: sentry_sdk wraps Logger.callHandlers for the rest of the process.
    result = subprocess.run(
        [sys.executable, "-c", SENTRY_APP], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "message": "cache.unavailable",
        "extra": {"cache": "users", "request_id": "req-s"},
        "exception": "ConnectionError",
        "breadcrumbs": ["cache.miss"],
        "our_lines": ["cache.miss", "cache.unavailable"],  # each written once, by us
    }


@pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk` is deprecated")
def test_real_opentelemetry_logging_handler_exports_utils_events(out: io.StringIO) -> None:
    pytest.importorskip("opentelemetry.sdk._logs")
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, export

    # InMemoryLogExporter was renamed in later SDKs; the old name warns, then goes away.
    exporter_class: Any = getattr(export, "InMemoryLogRecordExporter", None)
    exporter = (exporter_class or export.InMemoryLogExporter)()
    provider = LoggerProvider()
    provider.add_log_record_processor(export.SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    logging.getLogger().addHandler(handler)
    try:
        with bind_context(request_id="req-o"):
            get_logger("utils.cache").warning("cache.error", cache="users", token="t0k3n")
    finally:
        logging.getLogger().removeHandler(handler)
        provider.shutdown()
    [exported] = [
        item.log_record
        for item in exporter.get_finished_logs()
        if item.log_record.body == "cache.error"
    ]
    attributes = dict(exported.attributes or {})
    assert exported.severity_text in ("WARN", "WARNING")  # the SDK's spelling changed
    assert (attributes["cache"], attributes["request_id"]) == ("users", "req-o")
    assert attributes["token"] == "***"
