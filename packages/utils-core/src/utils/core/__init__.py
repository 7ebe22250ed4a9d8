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

from typing import TYPE_CHECKING, Any

from utils.core.context import bind_context, get_context, run_in_thread, with_current_context
from utils.core.deadline import check_deadline, clamp_timeout, deadline, remaining
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
from utils.core.log import capture_logs, configure_logging, get_logger, reset_logging
from utils.core.transient import (
    TransientClassifier,
    is_transient,
    register_transient_classifier,
    unregister_transient_classifier,
)

if TYPE_CHECKING:
    from utils.core.config import Secret, Settings, parse_duration
    from utils.core.metrics import (
        InMemorySink,
        MetricsSink,
        NullSink,
        get_metrics_sink,
        set_metrics_sink,
        timed,
    )
    from utils.core.plugins import PluginError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "InMemorySink",
    "MetricsSink",
    "NotFoundError",
    "NullSink",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "PluginError",
    "Secret",
    "Settings",
    "ThrottledError",
    "TransientClassifier",
    "TransientError",
    "UnavailableError",
    "UtilsError",
    "ValidationError",
    "__version__",
    "bind_context",
    "capture_logs",
    "check_deadline",
    "clamp_timeout",
    "configure_logging",
    "deadline",
    "get_context",
    "get_logger",
    "get_metrics_sink",
    "is_transient",
    "parse_duration",
    "register_transient_classifier",
    "remaining",
    "reset_logging",
    "run_in_thread",
    "set_metrics_sink",
    "timed",
    "unregister_transient_classifier",
    "with_current_context",
]

# Imported on first use, so `import utils.core` stays as cheap as `import structlog`.
_LAZY = {
    "Secret": "utils.core.config",
    "Settings": "utils.core.config",
    "parse_duration": "utils.core.config",
    "InMemorySink": "utils.core.metrics",
    "MetricsSink": "utils.core.metrics",
    "NullSink": "utils.core.metrics",
    "get_metrics_sink": "utils.core.metrics",
    "set_metrics_sink": "utils.core.metrics",
    "timed": "utils.core.metrics",
    "PluginError": "utils.core.plugins",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'utils.core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
