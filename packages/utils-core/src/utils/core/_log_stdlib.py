"""How ``utils`` events reach foreign stdlib handlers, and how they get trace ids.

Split out of :mod:`utils.core.log` to keep that module readable; nothing here is public.
:func:`configure_logging <utils.core.log.configure_logging>` puts these processors into its
chain: :func:`render_exception_keeping_original` first, :func:`add_trace_context` after the
timestamp, a :class:`StdlibForwarder` right before the renderer, and :func:`not_forwarded`
as the filter of the utils handler. This module must not import :mod:`utils.core.log`,
which imports it.

Example:
    >>> import logging
    >>> record = logging.LogRecord("app", logging.INFO, __file__, 1, "event", (), None)
    >>> not_forwarded(record)
    True
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "StdlibForwarder",
    "add_trace_context",
    "not_forwarded",
    "render_exception_keeping_original",
]

# The same processors utils.core.log uses to render an exception and a stack.
_format_exc_info = structlog.processors.format_exc_info
_render_stack = structlog.processors.StackInfoRenderer()

# --------------------------------------------------------------------------------------
# Foreign stdlib handlers: utils events reach them as LogRecords.

# The original exception travels from the first processor to the forwarder under this key, in
# a box: the redactor leaves an unknown class alone, where it would flatten a tuple to text.
_EXC_KEY = "_utils_exc_info"


class _ExcBox:
    __slots__ = ("exc_info",)

    def __init__(self, exc_info: Any) -> None:
        self.exc_info = exc_info


def render_exception_keeping_original(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Render ``exc_info``/``stack_info`` as text, and keep the exception for stdlib handlers.

    ``utils.core.log._render_exception_and_stack``, plus the original exception, boxed under
    ``_EXC_KEY`` for :class:`StdlibForwarder` to put on the records it builds.
    """
    if "exc_info" in event_dict:
        original = event_dict["exc_info"]
        event_dict = _format_exc_info(logger, method_name, event_dict)
        if "exception" in event_dict:  # exc_info=False or "no exception active" adds nothing
            event_dict[_EXC_KEY] = _ExcBox(original)
    if "stack_info" in event_dict:
        event_dict = _render_stack(logger, method_name, event_dict)
    return event_dict


def _exc_info_tuple(value: Any) -> Any:
    """``exc_info`` as stdlib handlers expect it: a (type, value, traceback) tuple or None."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value
    current = sys.exc_info()  # exc_info=True: the exception being handled
    return current if current[0] is not None else None


_NULL_HANDLER = logging.NullHandler

_METHOD_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

# Frames of these modules are logging machinery, not the caller a record should name.
_MACHINERY_PACKAGES = frozenset({"structlog", "logging"})
# This module counts too: the forwarder's own frames sit between the caller and _caller().
_MACHINERY_MODULES = frozenset({"utils.core.log", __name__, "utils.core.report"})


def _is_machinery(frame: Any) -> bool:
    name = str(frame.f_globals.get("__name__", ""))
    return name in _MACHINERY_MODULES or name.partition(".")[0] in _MACHINERY_PACKAGES


def _caller() -> tuple[str, int, str]:
    """Where the application logged: the first frame outside logging machinery."""
    frame = sys._getframe(1)
    while frame.f_back is not None and _is_machinery(frame):
        frame = frame.f_back
    code = frame.f_code
    return code.co_filename, frame.f_lineno, code.co_name


# The event keys a LogRecord already has a place for: they set the record, not attributes.
_RECORD_KEYS = frozenset({"event", "level", "logger", "timestamp", "exception", "stack"})
# Set on a forwarded record, so that the utils handler (which wrote the line) skips it.
_FORWARDED = "_utils_forwarded"


def not_forwarded(record: logging.LogRecord) -> bool:
    """Filter of the utils handler: a forwarded utils event was written already."""
    return not getattr(record, _FORWARDED, False)


def _plain_call_handlers() -> Any:
    # Sentry's logging integration replaces Logger.callHandlers instead of adding a handler.
    # Remember stdlib's own, to notice when it has been replaced (None: replaced already).
    call_handlers = logging.Logger.callHandlers
    return call_handlers if getattr(call_handlers, "__module__", None) == "logging" else None


_PLAIN_CALL_HANDLERS = _plain_call_handlers()


class StdlibForwarder:
    """Processor handing each event, as a ``LogRecord``, to the stdlib handlers we do not own.

    It sits right before the renderer, so a record carries the event exactly as our line
    shows it: merged context, redacted, with timestamp, level and logger name. The record
    goes through ``Logger.callHandlers`` of the logger of the same name, so stdlib's own rules
    decide who gets it (every handler up the chain until a logger that does not propagate,
    each with its level and filters) and integrations that wrap ``callHandlers`` (Sentry) see
    it; the utils handler, which writes the line itself, skips it. It is built only when a
    handler other than ours or a ``NullHandler`` is on the chain, or ``callHandlers`` has been
    replaced: otherwise the cost is one walk up the chain, a few attribute reads per logger.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        box = event_dict.pop(_EXC_KEY) if _EXC_KEY in event_dict else None
        try:
            stdlib = logger.stdlib
        except AttributeError:  # a logger structlog.wrap_logger() made: not ours to forward
            return event_dict
        if stdlib.__class__.callHandlers is _PLAIN_CALL_HANDLERS:
            ours = self.handler
            current = stdlib
            # Is there a handler other than ours or a NullHandler? Unrolled: this runs for
            # every event, and the answer is almost always no.
            while current is not None:
                handlers = current.handlers
                if handlers and (
                    len(handlers) > 1
                    or (handlers[0] is not ours and handlers[0].__class__ is not _NULL_HANDLER)
                ):
                    if _foreign_handler_in(current, ours):
                        break
                    return event_dict
                if not current.propagate:
                    return event_dict
                current = current.parent
            else:
                return event_dict
        _forward(stdlib, method_name, event_dict, box)
        return event_dict


def _foreign_handler_in(logger: logging.Logger | None, ours: logging.Handler) -> bool:
    """True when a handler other than ours or a NullHandler is on ``logger``'s chain."""
    while logger is not None:
        for handler in logger.handlers:
            if handler is not ours and handler.__class__ is not _NULL_HANDLER:
                return True
        logger = logger.parent if logger.propagate else None
    return False


def _forward(
    stdlib: logging.Logger, method_name: str, event_dict: EventDict, box: _ExcBox | None
) -> None:
    """Build the record of one event and hand it to ``stdlib``'s handlers; never raises."""
    event = str(event_dict.get("event", ""))
    try:
        pathname, lineno, function = _caller()
        record = logging.getLogRecordFactory()(
            stdlib.name,
            _METHOD_LEVELS.get(method_name, logging.INFO),
            pathname,
            lineno,
            event,
            (),
            None if box is None else _exc_info_tuple(box.exc_info),
            function,
            event_dict.get("stack"),
        )
        # A formatter prints exc_text instead of formatting exc_info itself: the redacted
        # traceback, while Sentry and OpenTelemetry still get the exception object.
        record.exc_text = event_dict.get("exception")
        attributes = record.__dict__
        for key, value in event_dict.items():
            if key in _RECORD_KEYS:
                continue
            if key in attributes or key in ("message", "asctime"):
                key = f"{key}_field"  # noqa: PLW2901 - as Event renames a field called "event"
            attributes[key] = value
        attributes[_FORWARDED] = True
        stdlib.callHandlers(record)
    except Exception as exc:  # a log call never raises; a handler should catch its own
        from utils.core.report import report_failure

        report_failure(event, "stdlib handlers", exc)


# --------------------------------------------------------------------------------------
# Trace ids: utils.core.otel is imported only once OpenTelemetry itself is.

_modules = sys.modules
_trace_processor: Processor | None = None


def _no_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return event_dict


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Add ``trace_id``/``span_id`` inside an OpenTelemetry span; one dict look-up otherwise."""
    if "opentelemetry.trace" not in _modules:
        return event_dict
    global _trace_processor  # noqa: PLW0603 - resolved once, on the first traced event
    processor = _trace_processor
    if processor is None:
        try:
            from utils.core.otel import add_trace_context as otel_add_trace_context
        except Exception:  # no usable OpenTelemetry API (ImportError, ConfigError): a log call
            processor = _no_trace_context  # must not fail for it, and nothing is added
        else:
            processor = otel_add_trace_context
        _trace_processor = processor
    return processor(logger, method_name, event_dict)
