"""utils-resilience: retry, circuit breaker, rate limits, timeout, bulkhead and pipelines.

Every strategy works as a decorator on sync and async functions, as a call API
(``.call`` / ``.acall``) and as a stage of a :func:`pipeline`. Policies are immutable: one
object is safe to share across threads and tasks.

Example:
    >>> from utils.resilience import pipeline, retry, timeout
    >>> @pipeline(timeout(2), retry(attempts=3))
    ... def fetch() -> str:
    ...     return "ok"
    >>> fetch()
    'ok'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from utils.resilience._strategy import Strategy
from utils.resilience.backoff import Backoff, Jitter
from utils.resilience.budget import RetryBudget
from utils.resilience.bulkhead import Bulkhead
from utils.resilience.errors import (
    BulkheadFullError,
    HTTPBadRequestError,
    HTTPClientError,
    HTTPConflictError,
    HTTPGatewayTimeoutError,
    HTTPNotFoundError,
    HTTPPermissionDeniedError,
    HTTPRequestTimeoutError,
    HTTPServerError,
    HTTPStatusError,
    HTTPThrottledError,
    HTTPUnavailableError,
    RateLimitExceeded,
    RateLimitStorageError,
    ResilienceError,
    ResilienceTimeoutError,
    StorageError,
)
from utils.resilience.pipeline import Pipeline, pipeline
from utils.resilience.ratelimit import (
    Decision,
    MemoryRateLimitStorage,
    RateLimiter,
    RateLimitStorage,
    RedisRateLimitStorage,
)
from utils.resilience.retry import Attempt, Retry, RetryState, retry
from utils.resilience.timeout import Timeout, timeout

if TYPE_CHECKING:
    from utils.resilience._breaker_redis import RedisBreakerStorage
    from utils.resilience.breaker import (
        BreakerState,
        BreakerStorage,
        CircuitBreaker,
        CircuitOpenError,
        MemoryBreakerStorage,
        counts_as_failure,
    )
    from utils.resilience.http import parse_retry_after, raise_for_status

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "Backoff",
    "BreakerState",
    "BreakerStorage",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Decision",
    "HTTPBadRequestError",
    "HTTPClientError",
    "HTTPConflictError",
    "HTTPGatewayTimeoutError",
    "HTTPNotFoundError",
    "HTTPPermissionDeniedError",
    "HTTPRequestTimeoutError",
    "HTTPServerError",
    "HTTPStatusError",
    "HTTPThrottledError",
    "HTTPUnavailableError",
    "Jitter",
    "MemoryBreakerStorage",
    "MemoryRateLimitStorage",
    "Pipeline",
    "RateLimitExceeded",
    "RateLimitStorage",
    "RateLimitStorageError",
    "RateLimiter",
    "RedisBreakerStorage",
    "RedisRateLimitStorage",
    "ResilienceError",
    "ResilienceTimeoutError",
    "Retry",
    "RetryBudget",
    "RetryState",
    "StorageError",
    "Strategy",
    "Timeout",
    "__version__",
    "counts_as_failure",
    "parse_retry_after",
    "pipeline",
    "raise_for_status",
    "retry",
    "timeout",
]

# The breaker is built on pybreaker, and importing pybreaker imports redis when it is
# installed: those names load on first use, so `import utils.resilience` imports no driver.
_LAZY = {
    "BreakerState": "utils.resilience.breaker",
    "BreakerStorage": "utils.resilience.breaker",
    "CircuitBreaker": "utils.resilience.breaker",
    "CircuitOpenError": "utils.resilience.breaker",
    "MemoryBreakerStorage": "utils.resilience.breaker",
    "counts_as_failure": "utils.resilience.breaker",
    "RedisBreakerStorage": "utils.resilience._breaker_redis",
    # Not a cost worth paying at import for programs that make no HTTP calls.
    "parse_retry_after": "utils.resilience.http",
    "raise_for_status": "utils.resilience.http",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'utils.resilience' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
