"""Errors raised by utils.resilience: each is a ``ResilienceError`` *and* a core meaning-class.

Catch by meaning (``except UnavailableError``, ``except ThrottledError``) to handle any
package's failures alike, or by origin (``except ResilienceError``).

Example:
    >>> from utils.core import ThrottledError, is_transient
    >>> err = RateLimitExceeded("api rate limit reached", retry_after=0.5)
    >>> isinstance(err, ThrottledError), is_transient(err), err.retry_after
    (True, True, 0.5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from utils.core import OperationTimeoutError, ThrottledError, UnavailableError, UtilsError

if TYPE_CHECKING:
    from utils.resilience.breaker import CircuitOpenError

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "RateLimitExceeded",
    "RateLimitStorageError",
    "ResilienceError",
    "ResilienceTimeoutError",
    "StorageError",
]


class ResilienceError(UtilsError):
    """Origin class of every error raised by ``utils.resilience``.

    Example:
        >>> issubclass(RateLimitExceeded, ResilienceError)
        True
    """

    default_code = "resilience_error"


class RateLimitExceeded(ResilienceError, ThrottledError):  # noqa: N818 - the name users expect
    """The rate limit refused the call; ``retry_after`` says when it would be allowed.

    Example:
        >>> str(RateLimitExceeded("limit 'api' reached", retry_after=0.25))
        "limit 'api' reached (retry after 0.25s)"
    """

    default_code = "rate_limited"


class RateLimitStorageError(ResilienceError, UnavailableError):
    """A rate-limit storage could not decide (e.g. Redis unreachable) and fails closed.

    Storages raise it from ``update`` / ``aupdate``; the limiter turns it into a refusal
    (``try_acquire``) or a :class:`~utils.resilience.RateLimitExceeded` whose ``__cause__``
    it is (``acquire``). The driver's exception is its own ``__cause__``.

    Example:
        >>> err = RateLimitStorageError("redis is unreachable", retry_after=1.0)
        >>> err.code, err.retryable, isinstance(err, UnavailableError)
        ('ratelimit_storage_unavailable', True, True)
    """

    default_code = "ratelimit_storage_unavailable"


class StorageError(ResilienceError):
    """A shared storage (Redis) answered with an error that waiting will not fix.

    ``NOPERM`` (an ACL user without ``EVALSHA``), ``WRONGTYPE`` (another program's data at
    a limiter's or breaker's key), a script error: a misconfiguration or a bug. Unlike an
    outage it is always raised, whatever ``fail_open`` says — failing open would silently
    switch the limit or the breaker off. The driver's exception is the ``__cause__``.

    Example:
        >>> err = StorageError("redis refused the rate-limit script")
        >>> err.code, err.retryable
        ('storage_error', False)
    """

    default_code = "storage_error"


class BulkheadFullError(ResilienceError, UnavailableError):
    """Every slot of the bulkhead is busy and its waiting queue is full (or the wait timed out).

    Example:
        >>> BulkheadFullError("bulkhead 'db' is full").code
        'bulkhead_full'
    """

    default_code = "bulkhead_full"


class ResilienceTimeoutError(ResilienceError, OperationTimeoutError):
    """A :func:`~utils.resilience.timeout` expired.

    Example:
        >>> from utils.core import OperationTimeoutError
        >>> isinstance(ResilienceTimeoutError("took longer than 2s"), OperationTimeoutError)
        True
    """

    default_code = "timeout"


def __getattr__(name: str) -> Any:
    # CircuitOpenError is also a pybreaker.CircuitBreakerError, and importing pybreaker
    # imports redis when it is installed: it lives in breaker.py, loaded on first use, so
    # that `import utils.resilience` imports no driver.
    if name == "CircuitOpenError":
        from utils.resilience.breaker import CircuitOpenError

        return CircuitOpenError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
