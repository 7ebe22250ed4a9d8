"""Logging set-ups for web servers and frameworks: their lines become utils JSON lines.

uvicorn and Django configure stdlib logging themselves, from a ``dictConfig`` dictionary, and
by default give their loggers handlers of their own that print plain text. The dictionaries
built here do the opposite: the server's and the framework's loggers get *no* handler and
propagate to the root logger, where the handler of :func:`~utils.core.configure_logging`
renders them as the same JSON (or console) lines as everything else — with the request
context merged in, so uvicorn's access line and Django's request errors carry the
``request_id`` that :class:`~utils.core.RequestContextMiddleware` bound.

Each dictionary also makes sure logging is configured: a handler entry whose factory calls
:func:`~utils.core.configure_logging` (with the ``level`` and ``format`` given here) when
nobody has yet, and otherwise keeps the configuration the application made, with all its
options. The root logger is left alone, so handlers the application added there (Sentry,
OpenTelemetry) stay. ``disable_existing_loggers`` is False: loggers created before the
server started keep working.

Example:
    >>> config = uvicorn_log_config()
    >>> config["loggers"]["uvicorn.access"]
    {'handlers': [], 'level': 'INFO', 'propagate': True}
"""

from __future__ import annotations

import logging
from typing import Any

from utils.core import log as _log
from utils.core.log import LogFormat, configure_logging
from utils.core.middleware import _LOGGED_MARK

__all__ = ["django_logging_config", "uvicorn_log_config"]

# The dotted paths dictConfig imports the factories from.
_HANDLER_FACTORY = f"{__name__}._utils_handler"
_FILTER_FACTORY = f"{__name__}._SkipLoggedExceptions"


def _utils_handler(
    root_level: int | str = "INFO", log_format: LogFormat = "auto"
) -> logging.Handler:
    """The handler configure_logging put on the root logger, configuring logging if needed.

    The keyword names avoid ``level`` and ``formatter``: dictConfig would apply those to the
    handler itself.
    """
    if _log._configuration is None:
        configure_logging(level=root_level, format=log_format)
    configuration = _log._configuration
    assert configuration is not None  # set by configure_logging just above
    return configuration.handler


class _SkipLoggedExceptions(logging.Filter):
    """Drops a server's report of an exception the request middleware already logged.

    uvicorn logs "Exception in ASGI application" with the traceback after the request ended,
    outside the request context; the middleware logged the same exception inside it, with the
    request id. One report is enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            return not getattr(exc_info[1], _LOGGED_MARK, False)
        return True


def _logger(level: int | str) -> dict[str, Any]:
    return {"handlers": [], "level": level, "propagate": True}


def _base(level: int | str, format: LogFormat) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            # Attached to no logger: dictConfig builds it anyway, which configures logging.
            "utils": {"()": _HANDLER_FACTORY, "root_level": level, "log_format": format}
        },
        "filters": {"utils_skip_logged": {"()": _FILTER_FACTORY}},
    }


def uvicorn_log_config(
    level: int | str = "INFO", *, format: LogFormat = "auto", access_log: bool = True
) -> dict[str, Any]:
    """A ``log_config`` for uvicorn that sends its lines through the utils handler.

    ``uvicorn.run(app, log_config=uvicorn_log_config())`` (or ``uvicorn.Config``). uvicorn
    writes its access line while the application's ``send`` runs, so inside the request
    context: the JSON line of ``uvicorn.access`` carries the ``request_id``. Its message
    holds the path with the query string, redacted like every line. With
    :class:`~utils.core.RequestContextMiddleware` mounted, its ``http.request`` event is a
    richer access line (route template, duration): then pass ``access_log=False`` here and
    to uvicorn (``uvicorn.run(..., access_log=False)``) to log each request once.

    Args:
        level: The level of uvicorn's loggers, and of everything when logging was not
            configured yet (the application's own :func:`~utils.core.configure_logging` call
            wins when it came first).
        format: The format used when logging was not configured yet.
        access_log: False silences ``uvicorn.access`` (level WARNING).

    Example:
        >>> config = uvicorn_log_config(access_log=False)
        >>> config["loggers"]["uvicorn.access"]["level"], config["disable_existing_loggers"]
        ('WARNING', False)
    """
    config = _base(level, format)
    error = _logger(level)
    error["filters"] = ["utils_skip_logged"]
    config["loggers"] = {
        "uvicorn": _logger(level),
        "uvicorn.error": error,
        "uvicorn.access": _logger(level if access_log else "WARNING"),
        "uvicorn.asgi": _logger(level),
    }
    # Never used (no handler names them), but uvicorn writes `use_colors` into these two when
    # run with use_colors=True/False, and a KeyError there would stop the server starting.
    config["formatters"] = {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(message)s"},
        "access": {"()": "uvicorn.logging.AccessFormatter", "fmt": "%(message)s"},
    }
    return config


def django_logging_config(
    level: int | str = "INFO", *, format: LogFormat = "auto"
) -> dict[str, Any]:
    """A ``LOGGING`` setting for Django that sends its lines through the utils handler.

    In ``settings.py``: ``LOGGING = django_logging_config()``. Django's own loggers
    (``django``, ``django.request``, ``django.server``, ``django.security``, ``django.db``...)
    propagate to the root handler instead of Django's console and mail handlers, so request
    errors (``django.request``, with the traceback) and ``runserver``'s access lines carry
    the request id bound by :class:`~utils.core.WSGIRequestContextMiddleware` (or the ASGI
    one). Django's ``mail_admins`` handler is not installed; add it to the ``django.request``
    logger of the returned dictionary if you rely on it.

    Args:
        level: The level of Django's loggers, and of everything when logging was not
            configured yet.
        format: The format used when logging was not configured yet.

    Example:
        >>> LOGGING = django_logging_config("WARNING")
        >>> LOGGING["loggers"]["django"]
        {'handlers': [], 'level': 'WARNING', 'propagate': True}
    """
    config = _base(level, format)
    config["loggers"] = {
        "django": _logger(level),
        "django.server": _logger(level),  # Django's default gives it its own handler
    }
    return config
