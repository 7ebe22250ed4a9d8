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

from utils.core import (
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
from utils.resilience._http_classify import RETRYABLE_STATUSES

if TYPE_CHECKING:
    from utils.resilience.breaker import CircuitOpenError

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
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


# -- HTTP answers -------------------------------------------------------------------------
# Raised by utils.resilience.http.raise_for_status(). One origin (HTTPStatusError) and one
# concrete class per meaning; `retryable` is decided by the status, never by the class alone,
# so `raise_for_status` and the `utils.transient` classifier of raw httpx/requests/aiohttp
# errors always agree on whether an answer is worth retrying.


class HTTPStatusError(ResilienceError):
    """An HTTP server answered with an error status (4xx or 5xx).

    Raised by :func:`~utils.resilience.http.raise_for_status`, which picks the concrete
    subclass from the status. It carries what a handler or a log needs, never a secret:

    - ``status`` (int), ``reason`` (the standard reason phrase), ``method`` (or None);
    - ``url``: the request's URL with credentials and secret query values masked;
    - ``response``: the original response object (httpx, requests, aiohttp), for code that
      wants the body or the headers. It is never shown in ``str()``/``repr()``, nor
      pickled (an error sent to another process arrives with ``response=None``);
    - ``details``: ``status``, ``url`` and ``method``, for logs;
    - ``retryable``: True for 408, 425, 429, 500, 502, 503 and 504 only; ``retry_after``
      from the ``Retry-After`` header of a retryable answer.

    Example:
        >>> err = HTTPStatusError("418 I'm a Teapot from GET https://tea.example/pot",
        ...                       status=418, url="https://tea.example/pot", method="GET")
        >>> err.status, err.retryable, err.details
        (418, False, {'status': 418, 'url': 'https://tea.example/pot', 'method': 'GET'})
    """

    default_code = "http_error"

    status: int
    url: str | None
    method: str | None
    reason: str | None
    response: Any

    def __init__(
        self,
        message: str = "",
        *,
        status: int,
        url: str | None = None,
        method: str | None = None,
        reason: str | None = None,
        response: Any = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        facts: dict[str, Any] = {"status": status, "url": url}
        if method is not None:
            facts["method"] = method
        if details:
            facts.update(details)
        if retryable is None:
            retryable = status in RETRYABLE_STATUSES
        super().__init__(
            message, code=code, details=facts, retryable=retryable, retry_after=retry_after
        )
        self.status = status
        self.url = url
        self.method = method
        self.reason = reason
        self.response = response

    @property
    def from_dependency(self) -> bool:
        """Always True: the answer of a server this service called, whatever its status.

        To this service's own client, an upstream 403 or 429 is a failure of a dependency,
        not of the client's request (see :attr:`utils.core.UtilsError.from_dependency`).

        Example:
            >>> HTTPStatusError("403 Forbidden", status=403).from_dependency
            True
        """
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        # A response object holds a connection, a stream or an event loop: it does not
        # travel to another process (and must not make the error unpicklable).
        rebuild, (cls, args, state, cause) = super().__reduce__()
        state["response"] = None
        return (rebuild, (cls, args, state, cause))


class HTTPClientError(HTTPStatusError):
    """A 4xx answer: the request was wrong. Not retryable, except 408, 425 and 429.

    The class of every 4xx without a more precise one below (405, 406, 411, 413, 415, 425...).

    Example:
        >>> err = HTTPClientError("405 Method Not Allowed from DELETE https://api.example/x",
        ...                       status=405)
        >>> err.code, err.retryable
        ('http_client_error', False)
    """

    default_code = "http_client_error"


class HTTPBadRequestError(HTTPClientError, ValidationError):
    """400 Bad Request or 422 Unprocessable Content: the server refused the request's data.

    Example:
        >>> from utils.core import ValidationError
        >>> isinstance(HTTPBadRequestError("bad", status=422), ValidationError)
        True
    """

    default_code = "http_bad_request"


class HTTPPermissionDeniedError(HTTPClientError, PermissionDeniedError):
    """401 Unauthorized or 403 Forbidden: missing, wrong or insufficient credentials.

    Example:
        >>> from utils.core import PermissionDeniedError
        >>> isinstance(HTTPPermissionDeniedError("denied", status=403), PermissionDeniedError)
        True
    """

    default_code = "http_permission_denied"


class HTTPNotFoundError(HTTPClientError, NotFoundError):
    """404 Not Found or 410 Gone.

    Example:
        >>> from utils.core import NotFoundError
        >>> isinstance(HTTPNotFoundError("gone", status=410), NotFoundError)
        True
    """

    default_code = "http_not_found"


class HTTPConflictError(HTTPClientError, ConflictError):
    """409 Conflict or 412 Precondition Failed (an ``If-Match`` that no longer holds).

    Example:
        >>> from utils.core import ConflictError
        >>> isinstance(HTTPConflictError("stale ETag", status=412), ConflictError)
        True
    """

    default_code = "http_conflict"


class HTTPRequestTimeoutError(HTTPClientError, TransientError, OperationTimeoutError):
    """408 Request Timeout: the server gave up waiting for the request. Retryable.

    Example:
        >>> err = HTTPRequestTimeoutError("timed out", status=408)
        >>> err.retryable, isinstance(err, OperationTimeoutError)
        (True, True)
    """

    default_code = "http_request_timeout"


class HTTPThrottledError(HTTPClientError, ThrottledError):
    """429 Too Many Requests; ``retry_after`` comes from the ``Retry-After`` header.

    Example:
        >>> str(HTTPThrottledError("429 Too Many Requests", status=429, retry_after=2))
        '429 Too Many Requests (retry after 2s)'
    """

    default_code = "http_throttled"


class HTTPServerError(HTTPStatusError, TransientError):
    """A 5xx answer: the server failed. Retryable for 500, 502, 503 and 504.

    The class of 500 and of every 5xx without a more precise one below. A 501 (Not
    Implemented) or 505 (HTTP Version Not Supported) will not heal by retrying: those
    instances say ``retryable=False``.

    Example:
        >>> HTTPServerError("boom", status=500).retryable, HTTPServerError("no", status=501).retryable
        (True, False)
    """

    default_code = "http_server_error"


class HTTPUnavailableError(HTTPServerError, UnavailableError):
    """502 Bad Gateway or 503 Service Unavailable (and, as a subclass, 504).

    Example:
        >>> from utils.core import UnavailableError
        >>> isinstance(HTTPUnavailableError("down", status=503), UnavailableError)
        True
    """

    default_code = "http_unavailable"


class HTTPGatewayTimeoutError(HTTPUnavailableError, OperationTimeoutError):
    """504 Gateway Timeout: unavailable *and* a timeout (the server's upstream was too slow).

    Unlike an expired :class:`~utils.core.deadline.deadline` it is retryable: the next attempt may
    reach a healthy upstream.

    Example:
        >>> err = HTTPGatewayTimeoutError("504 Gateway Timeout", status=504)
        >>> err.retryable, isinstance(err, OperationTimeoutError)
        (True, True)
    """

    default_code = "http_gateway_timeout"


def __getattr__(name: str) -> Any:
    # CircuitOpenError is also a pybreaker.CircuitBreakerError, and importing pybreaker
    # imports redis when it is installed: it lives in breaker.py, loaded on first use, so
    # that `import utils.resilience` imports no driver.
    if name == "CircuitOpenError":
        from utils.resilience.breaker import CircuitOpenError

        return CircuitOpenError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
