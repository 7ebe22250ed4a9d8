"""utils-core: the shared foundation of the utils family.

One exception taxonomy, transient-error classification, deadlines, structured logging with
redaction, typed settings from the environment, metrics hooks and plugins — used by every
``utils.*`` package and available to applications.

Example:
    >>> from utils.core import NotFoundError, deadline, get_logger, remaining
    >>> log = get_logger("app")
    >>> with deadline(2.0):
    ...     remaining() <= 2.0
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from utils.core.context import bind_context, get_context, run_in_thread, with_current_context
from utils.core.deadline import check_deadline, clamp_timeout, deadline, deadline_at, remaining
from utils.core.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
)
from utils.core.lazy import lazy_exports
from utils.core.log import capture_logs, configure_logging, get_logger, reset_logging
from utils.core.transient import (
    TransientClassifier,
    is_transient,
    register_transient_classifier,
    unregister_transient_classifier,
)

if TYPE_CHECKING:
    from utils.core._redact import redact_url
    from utils.core.config import Secret, Settings, parse_duration
    from utils.core.deprecation import deprecated
    from utils.core.health import arun_checks, mark_draining, register_check, unregister_check
    from utils.core.log_integrations import django_logging_config, uvicorn_log_config
    from utils.core.metrics import (
        InMemorySink,
        MetricsSink,
        NullSink,
        get_metrics_sink,
        set_metrics_sink,
        timed,
    )
    from utils.core.middleware import RequestContextMiddleware, WSGIRequestContextMiddleware
    from utils.core.otel import OpenTelemetrySink
    from utils.core.plugins import PluginError
    from utils.core.probes import health_app, wsgi_health_app
    from utils.core.problems import (
        ProblemResponse,
        http_status_for,
        problem_details,
        problem_headers,
        problem_response,
    )
    from utils.core.report import Event, Outage

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "Event",
    "InMemorySink",
    "MetricsSink",
    "NotFoundError",
    "NullSink",
    "OpenTelemetrySink",
    "OperationTimeoutError",
    "Outage",
    "PermissionDeniedError",
    "PluginError",
    "ProblemResponse",
    "RequestContextMiddleware",
    "Secret",
    "Settings",
    "ThrottledError",
    "TransientClassifier",
    "TransientError",
    "UnavailableError",
    "UtilsError",
    "ValidationError",
    "WSGIRequestContextMiddleware",
    "__version__",
    "arun_checks",
    "bind_context",
    "capture_logs",
    "check_deadline",
    "clamp_timeout",
    "configure_logging",
    "deadline",
    "deadline_at",
    "deprecated",
    "django_logging_config",
    "get_context",
    "get_logger",
    "get_metrics_sink",
    "health_app",
    "http_status_for",
    "is_transient",
    "mark_draining",
    "parse_duration",
    "problem_details",
    "problem_headers",
    "problem_response",
    "redact_url",
    "register_check",
    "register_transient_classifier",
    "remaining",
    "reset_logging",
    "run_in_thread",
    "set_metrics_sink",
    "timed",
    "unregister_check",
    "unregister_transient_classifier",
    "uvicorn_log_config",
    "with_current_context",
    "wsgi_health_app",
]

# Imported on first use, so `import utils.core` stays as cheap as `import structlog`.
__getattr__: Callable[[str], Any]
__dir__: Callable[[], list[str]]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Secret": "utils.core.config",  # nosec B105 - a module name, not a password
        "Settings": "utils.core.config",
        "parse_duration": "utils.core.config",
        "InMemorySink": "utils.core.metrics",
        "MetricsSink": "utils.core.metrics",
        "NullSink": "utils.core.metrics",
        "get_metrics_sink": "utils.core.metrics",
        "set_metrics_sink": "utils.core.metrics",
        "timed": "utils.core.metrics",
        "PluginError": "utils.core.plugins",
        "deprecated": "utils.core.deprecation",
        "Event": "utils.core.report",
        "Outage": "utils.core.report",
        "register_check": "utils.core.health",
        "arun_checks": "utils.core.health",
        "mark_draining": "utils.core.health",
        "unregister_check": "utils.core.health",
        "django_logging_config": "utils.core.log_integrations",
        "uvicorn_log_config": "utils.core.log_integrations",
        "RequestContextMiddleware": "utils.core.middleware",
        "WSGIRequestContextMiddleware": "utils.core.middleware",
        "OpenTelemetrySink": "utils.core.otel",
        "health_app": "utils.core.probes",
        "wsgi_health_app": "utils.core.probes",
        "http_status_for": "utils.core.problems",
        "problem_details": "utils.core.problems",
        "redact_url": "utils.core._redact",
        "problem_headers": "utils.core.problems",
        "problem_response": "utils.core.problems",
        "ProblemResponse": "utils.core.problems",
    },
)
