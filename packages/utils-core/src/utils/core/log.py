"""Structured logging for libraries and applications, on structlog and stdlib logging.

Libraries call :func:`get_logger` at import time and never configure anything: until the
application calls :func:`configure_logging`, events go to the stdlib logger of the same name
(the ``utils`` logger has a ``NullHandler``), so they appear only where the application's own
stdlib logging set-up sends them. Applications call :func:`configure_logging` once to get
JSON lines (or a console view), ISO-8601 UTC timestamps, merged context and redaction of
secrets — for ``utils`` loggers, their own structlog loggers and foreign stdlib records alike.

Once configured, ``utils`` events are rendered and written by the utils handler directly
(stdlib's record machinery would cost more than rendering the line), and they *also* reach
every other handler of the stdlib logger chain — one the application added for OpenTelemetry,
pytest's ``caplog`` — and Sentry's logging integration, as a :class:`logging.LogRecord`: its
``msg`` is the event name, its attributes are the (redacted) fields (``<name>_field`` for a
field named like a record attribute), ``exc_info`` is the exception and ``exc_text`` its
redacted traceback. While no such handler exists, that costs one walk up the logger chain.

Example:
    >>> import io
    >>> from utils.core import configure_logging, get_logger
    >>> out = io.StringIO()
    >>> configure_logging(level="INFO", format="json", stream=out)
    >>> get_logger("utils.demo").info("user.created", password="hunter2")
    >>> '"password":"***"' in out.getvalue().replace(" ", "")
    True
    >>> reset_logging()
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import IO, Any, Literal, TypeAlias, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from utils.core._log_stdlib import (
    StdlibForwarder,
    add_trace_context,
    not_forwarded,
    render_exception_keeping_original,
)
from utils.core._redact import Redactor

__all__ = [
    "QUIET_LIBRARIES",
    "LogFormat",
    "capture_logs",
    "configure_logging",
    "get_logger",
    "reset_logging",
]

LogFormat: TypeAlias = Literal["auto", "json", "console"]

_LEVEL_METHODS: tuple[tuple[str, int], ...] = (
    ("debug", logging.DEBUG),
    ("info", logging.INFO),
    ("warning", logging.WARNING),
    ("warn", logging.WARNING),
    ("error", logging.ERROR),
    ("exception", logging.ERROR),
    ("critical", logging.CRITICAL),
    ("fatal", logging.CRITICAL),
)

#: The levels :func:`configure_logging` gives chatty third-party loggers unless told otherwise
#: (``quiet_libraries=False``, or the logger's name in ``levels``). Each applies only when it is
#: stricter than the configured level: ``level="ERROR"`` still silences them more.
#: httpx logs every request at INFO; httpcore, hpack, urllib3, botocore, boto3, s3transfer,
#: asyncio and watchfiles (uvicorn's reloader) fill DEBUG and INFO with transport detail.
QUIET_LIBRARIES: Mapping[str, int] = MappingProxyType(
    {
        "asyncio": logging.WARNING,
        "boto3": logging.WARNING,
        "botocore": logging.WARNING,
        "hpack": logging.WARNING,
        "httpcore": logging.WARNING,
        "httpx": logging.WARNING,
        "s3transfer": logging.WARNING,
        "urllib3": logging.WARNING,
        "watchfiles": logging.WARNING,
    }
)

# Libraries must stay silent until the application decides where logs go.
logging.getLogger("utils").addHandler(logging.NullHandler())


def _nop(event: Any = None, *args: Any, **kw: Any) -> None:
    """Stand-in for a level that is filtered out: the cheapest possible call."""


# --------------------------------------------------------------------------------------
# Library mode: before configure_logging, render a readable line and hand it to stdlib.


def _library_message(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Final processor of library mode: ``event key=value ...`` text for stdlib handlers."""
    event = str(event_dict.pop("event", ""))
    exception = event_dict.pop("exception", None)
    pairs = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {pairs}" if pairs else event
    if exception:
        message = f"{message}\n{exception}"
    # exc_info=False: the traceback, already redacted, is part of the message.
    return {"msg": message, "exc_info": False, "stacklevel": 5}


_LIBRARY_REDACTOR = Redactor()
_LIBRARY_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.format_exc_info,
    _LIBRARY_REDACTOR,
    _library_message,
]


# --------------------------------------------------------------------------------------
# Configured mode: the application called configure_logging.


class _HandlerWriter:
    """Final structlog logger writing rendered lines to our root handler's stream.

    It shares the handler's lock, so lines from ``utils`` loggers and from foreign stdlib
    loggers never interleave, and it skips stdlib's ``LogRecord`` machinery, which would
    cost more than rendering the event itself.
    """

    __slots__ = ("handler", "name", "stdlib")

    def __init__(self, handler: logging.StreamHandler[IO[str]], name: str) -> None:
        self.handler = handler
        self.name = name
        # Looked up once: logging.getLogger takes the logging module's lock on every call.
        self.stdlib = logging.getLogger(name)

    def msg(self, message: str) -> None:
        handler = self.handler
        with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            stream = handler.stream
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = error = err = exception = critical = fatal = msg


class _Configuration:
    """Everything ``configure_logging`` decided; loggers are rebuilt from it."""

    __slots__ = ("handler", "level", "levels", "processors")

    def __init__(
        self,
        handler: logging.StreamHandler[IO[str]],
        processors: list[Processor],
        level: int,
        levels: dict[str, int],
    ) -> None:
        self.handler = handler
        self.processors = processors
        self.level = level
        self.levels = levels

    def level_for(self, name: str) -> int:
        """The effective level of ``name``: the longest configured prefix wins."""
        best, best_length = self.level, -1
        for prefix, level in self.levels.items():
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = level, len(prefix)
        return best


_configuration: _Configuration | None = None
_loggers: dict[str, _Logger] = {}
_loggers_lock = threading.Lock()


class _Logger:
    """The object :func:`get_logger` returns: one per name, rebuilt on configuration.

    Level methods are plain attributes swapped by :func:`configure_logging`, so a filtered-out
    call is a single attribute lookup and a call to a no-op, even for loggers created long
    before the application chose its level.
    """

    __slots__ = (
        "_bound",
        "_stdlib",
        "critical",
        "debug",
        "error",
        "exception",
        "fatal",
        "info",
        "name",
        "warn",
        "warning",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)
        self._apply(_configuration)

    def _apply(self, configuration: _Configuration | None) -> None:
        if configuration is None:
            bound: Any = structlog.stdlib.BoundLogger(
                self._stdlib, processors=_LIBRARY_PROCESSORS, context={}
            )
            self._bound = bound
            for method, level in _LEVEL_METHODS:
                setattr(self, method, _library_method(self._stdlib, getattr(bound, method), level))
            return
        level = configuration.level_for(self.name)
        wrapper: Any = structlog.make_filtering_bound_logger(level)
        bound = wrapper(
            _HandlerWriter(configuration.handler, self.name),
            processors=configuration.processors,
            context={},
        )
        self._bound = bound
        for method, method_level in _LEVEL_METHODS:
            setattr(self, method, getattr(bound, method) if method_level >= level else _nop)

    def bind(self, **values: Any) -> Any:
        """Return a logger that adds ``values`` to every event (see structlog's ``bind``)."""
        return self._bound.bind(**values)

    def new(self, **values: Any) -> Any:
        """Return a logger with only ``values`` as its bound context."""
        return self._bound.new(**values)

    def __repr__(self) -> str:
        state = "configured" if _configuration is not None else "library mode"
        return f"<utils logger {self.name!r} ({state})>"


def _delegate(name: str) -> property:
    def get(self: _Logger) -> Any:
        return getattr(self._bound, name)

    get.__name__ = name
    return property(get, doc=f"The current structlog logger's ``{name}``.")


# The rarely used rest of the structlog API, delegated explicitly: a __getattr__ hook would
# slow down *every* attribute access on the logger, including the hot `log.debug`.
for _name in (
    "log",
    "msg",
    "unbind",
    "try_unbind",
    "adebug",
    "ainfo",
    "awarning",
    "aerror",
    "aexception",
    "acritical",
    "afatal",
    "alog",
):
    setattr(_Logger, _name, _delegate(_name))
del _name


def _library_method(stdlib_logger: logging.Logger, emit: Any, level: int) -> Any:
    is_enabled = stdlib_logger.isEnabledFor

    def log(event: Any = None, *args: Any, **kw: Any) -> None:
        if is_enabled(level):
            emit(event, *args, **kw)

    return log


def get_logger(name: str) -> FilteringBoundLogger:
    """Return the structured logger called ``name`` (usually ``__name__``).

    Safe to call at import time in a library: nothing is configured and nothing is printed
    until the application calls :func:`configure_logging` (or configures stdlib logging).
    Loggers are cached per name.

    Example:
        >>> log = get_logger("utils.cache")
        >>> log is get_logger("utils.cache")
        True
        >>> log.debug("cache.miss", key="user:42")  # silent: logging is not configured
    """
    logger = _loggers.get(name)
    if logger is None:
        with _loggers_lock:
            logger = _loggers.get(name)
            if logger is None:
                logger = _loggers[name] = _Logger(name)
    return cast("FilteringBoundLogger", logger)


# --------------------------------------------------------------------------------------
# configure_logging


def _json_serializer() -> Any:
    try:
        import orjson
    except ImportError:
        fallback = _json_default

        def dumps(obj: Any, **_: Any) -> str:
            try:
                return json.dumps(obj, default=fallback, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError):
                return _dumps_anything(obj)

        return dumps

    orjson_dumps = orjson.dumps
    options = orjson.OPT_NON_STR_KEYS

    def dumps_orjson(obj: Any, **_: Any) -> str:
        try:
            return orjson_dumps(obj, default=_json_default, option=options).decode()
        except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
            return _dumps_anything(obj)

    return dumps_orjson


# Deeper than any real event; far below both JSON encoders' own limits.
_MAX_DEPTH = 64


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that any JSON encoder accepts: string keys, bounded depth."""
    if depth >= _MAX_DEPTH:
        return "<nested too deeply to log>"
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else repr(key): _jsonable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, depth + 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # orjson refuses integers beyond 64 bits
    return value


def _dumps_anything(obj: Any) -> str:
    """The slow path for an event the fast encoder refused: a log call never raises."""
    try:
        return json.dumps(_jsonable(obj), default=_json_default, ensure_ascii=False)
    except Exception as exc:
        return json.dumps({"event": "log.unserializable", "error": f"{type(exc).__name__}: {exc}"})


def _json_default(value: Any) -> Any:
    # Secret and friends render their own masked form through str(); everything else repr.
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value) if hasattr(value, "__utils_masked__") else repr(value)


class _UTCTimeStamper:
    """ISO-8601 UTC timestamps (``2026-01-31T12:00:00.123456Z``), formatted cheaply.

    The same output as ``structlog.processors.TimeStamper(fmt="iso", utc=True)``, but the
    date and time part is formatted once per second and reused: building a ``datetime`` for
    every event was the single most expensive step of rendering a log line.
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: tuple[int, str] = (-1, "")

    def __call__(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> EventDict:
        now = time.time()
        second = int(now)
        cached_second, prefix = self._cache
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cache = (second, prefix)  # one tuple: atomic for concurrent readers
        event_dict["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


_format_exc_info = structlog.processors.format_exc_info
_render_stack = structlog.processors.StackInfoRenderer()


def _render_exception_and_stack(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Turn ``exc_info``/``stack_info`` into plain text (never locals) before redaction.

    The guards keep the common event (no exception) to two dict look-ups.
    """
    if "exc_info" in event_dict:
        event_dict = _format_exc_info(logger, method_name, event_dict)
    if "stack_info" in event_dict:
        event_dict = _render_stack(logger, method_name, event_dict)
    return event_dict


def _coerce_level(level: int | str, what: str) -> int:
    if isinstance(level, int):
        return level
    # logging.getLevelName maps a known name to its number (and an unknown one to a str).
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        from utils.core.errors import ConfigError

        raise ConfigError(
            f"unknown log level {level!r} for {what}; "
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL (or an int)"
        )
    return number


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def configure_logging(
    level: int | str = "INFO",
    format: LogFormat = "auto",  # mirrors logging.basicConfig(format=...)
    *,
    stream: IO[str] | None = None,
    redact: bool = True,
    redact_keys: Iterable[str] = (),
    levels: Mapping[str, int | str] | None = None,
    quiet_libraries: bool = True,
) -> None:
    """Configure logging for the whole process. Call once, early, from the application.

    Args:
        level: The minimum level for every logger (``"DEBUG"``, ``"INFO"``, ... or an int).
        format: ``"json"`` for JSON lines, ``"console"`` for a human view, ``"auto"`` picks
            console when ``stream`` is a terminal and JSON otherwise.
        stream: Where lines go; defaults to ``sys.stderr``.
        redact: Mask sensitive keys and secret-looking values (on by default).
        redact_keys: Extra key fragments to treat as sensitive, e.g. ``["ssn"]``.
        levels: Per-logger overrides, e.g. ``{"utils.cache": "DEBUG", "botocore": "WARNING"}``.
        quiet_libraries: Give the chatty libraries of :data:`QUIET_LIBRARIES` (httpx,
            botocore, urllib3, asyncio...) their quieter level, unless ``levels`` names them.

    Calling it again replaces the previous configuration (it never duplicates handlers).
    It configures structlog globally too, so the application's own
    ``structlog.get_logger()`` loggers render the same way. Handlers the application adds to
    the stdlib loggers (Sentry, OpenTelemetry, ``caplog``) receive every ``utils`` event as a
    ``LogRecord`` too; the levels that decide which events exist are the ones set here.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> configure_logging(level="DEBUG", format="json", stream=out)
        >>> get_logger("app").debug("job.started", job="nightly")
        >>> '"event":"job.started"' in out.getvalue().replace(" ", "")
        True
        >>> reset_logging()
    """
    global _configuration  # noqa: PLW0603 - the process-wide logging configuration
    if format not in ("auto", "json", "console"):
        from utils.core.errors import ConfigError

        raise ConfigError(f"unknown log format {format!r}; use 'auto', 'json' or 'console'")
    root_level = _coerce_level(level, "level")
    overrides = {
        name: _coerce_level(value, f"logger {name!r}") for name, value in (levels or {}).items()
    }
    if quiet_libraries:
        for name, quiet in QUIET_LIBRARIES.items():
            if quiet > root_level:  # never louder than the level asked for
                overrides.setdefault(name, quiet)
    output = stream if stream is not None else sys.stderr
    use_json = format == "json" or (format == "auto" and not _is_tty(output))

    # Redaction runs before the timestamp, level and logger name are added: those are ours
    # and safe, and scanning them on every event would be wasted work.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _render_exception_and_stack,
    ]
    if redact:
        shared.append(Redactor(redact_keys))
    shared += [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _UTCTimeStamper(),
        add_trace_context,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json_serializer())
        if use_json
        else structlog.dev.ConsoleRenderer(colors=_is_tty(output))
    )

    handler: logging.StreamHandler[IO[str]] = logging.StreamHandler(output)
    handler.set_name("utils")
    handler._utils_handler = True  # type: ignore[attr-defined]  # marks ours for idempotency
    handler.addFilter(not_forwarded)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_utils_handler", False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, value in overrides.items():
        logging.getLogger(name).setLevel(value)

    # utils and structlog events keep their exception object for the stdlib handlers they are
    # forwarded to; foreign records (foreign_pre_chain above) went through stdlib already.
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        render_exception_keeping_original,
        *shared[2:],
        StdlibForwarder(handler),
        renderer,
    ]
    configuration = _Configuration(handler, processors, root_level, overrides)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(root_level),
        logger_factory=lambda name="app", *_: _HandlerWriter(handler, str(name)),
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    with _loggers_lock:
        _configuration = configuration
        for logger in _loggers.values():
            logger._apply(configuration)


class _Capture:
    """A configuration that records event dicts instead of rendering them."""

    def __init__(self, level: int) -> None:
        self.entries: list[dict[str, Any]] = []
        self.level = level

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        event_dict.setdefault("log_level", "warning" if method_name == "warn" else method_name)
        event_dict.pop("level", None)
        self.entries.append(dict(event_dict))
        raise structlog.DropEvent


@contextmanager
def capture_logs(level: int | str = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Record the events of every ``utils`` logger (and structlog logger) in the block.

    Each entry is the event dict after context merging and redaction, with ``event``,
    ``log_level`` and ``logger`` keys. The previous configuration is restored afterwards.

    Example:
        >>> with capture_logs() as logs:
        ...     get_logger("utils.cache").info("cache.miss", key="k", token="t")
        >>> logs
        [{'key': 'k', 'token': '***', 'event': 'cache.miss', 'logger': 'utils.cache', 'log_level': 'info'}]
    """
    global _configuration  # noqa: PLW0603
    number = _coerce_level(level, "level")
    capture = _Capture(number)
    handler: logging.StreamHandler[IO[str]] = logging.StreamHandler(io.StringIO())
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _render_exception_and_stack,
        Redactor(),
        structlog.stdlib.add_logger_name,
        add_trace_context,
        capture,
    ]
    previous = _configuration
    previous_structlog = structlog.get_config()
    with _loggers_lock:
        _configuration = _Configuration(handler, processors, number, {})
        for logger in _loggers.values():
            logger._apply(_configuration)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=lambda name="app", *_: _HandlerWriter(handler, str(name)),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous_structlog)
        with _loggers_lock:
            _configuration = previous
            for logger in _loggers.values():
                logger._apply(previous)


def reset_logging() -> None:
    """Undo :func:`configure_logging`: back to silent library mode and structlog defaults.

    Meant for tests and for applications that hand logging over to another framework.

    Example:
        >>> reset_logging()
    """
    global _configuration  # noqa: PLW0603
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_utils_handler", False):
            root.removeHandler(existing)
    if _configuration is not None:
        for name in _configuration.levels:
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.setLevel(logging.WARNING)
    structlog.reset_defaults()
    with _loggers_lock:
        _configuration = None
        for logger in _loggers.values():
            logger._apply(None)
