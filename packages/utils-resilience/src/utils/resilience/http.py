"""Calling HTTP services: error answers as family errors, ``Retry-After``, transient errors.

Works with httpx (sync and async: the response is the same object), requests and aiohttp,
without importing any of them (responses are duck-typed):

- :func:`raise_for_status` turns a 4xx/5xx response into an
  :class:`~utils.resilience.errors.HTTPStatusError` subclass that says what it means (a
  404 is a :class:`~utils.core.errors.NotFoundError`, a 429 a
  :class:`~utils.core.errors.ThrottledError` with ``retry_after``, a 503 an
  :class:`~utils.core.errors.UnavailableError`...), with the URL's secrets masked;
- :func:`parse_retry_after` reads a ``Retry-After`` header (seconds or an HTTP date);
- :func:`classify_http_error` is the ``utils.transient`` classifier that lets ``@retry()``
  and the circuit breaker handle the libraries' own errors (``httpx.HTTPStatusError``,
  ``httpx.ReadTimeout``, ``requests.ConnectionError``, ``aiohttp.ClientResponseError``...);
  ``@retry()`` also honours the ``Retry-After`` of a raw 429/503 error.

Example:
    >>> import httpx
    >>> from utils.core import NotFoundError
    >>> request = httpx.Request("GET", "https://api.example/users/42?api_key=s3cr3t")
    >>> try:
    ...     raise_for_status(httpx.Response(404, request=request))
    ... except NotFoundError as error:
    ...     print(error)
    HTTP 404 Not Found from GET https://api.example/users/42?api_key=***
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, TypeVar

from utils.core import ValidationError, redact_url
from utils.core.validate import MAX_SECONDS
from utils.resilience._http_classify import (
    RETRYABLE_STATUSES,
    classify_http_error,
    header_of,
    status_of,
)
from utils.resilience.errors import (
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
)

__all__ = ["RETRYABLE_STATUSES", "classify_http_error", "parse_retry_after", "raise_for_status"]

R = TypeVar("R")

_CLASS_FOR_STATUS: dict[int, type[HTTPStatusError]] = {
    400: HTTPBadRequestError,
    401: HTTPPermissionDeniedError,
    403: HTTPPermissionDeniedError,
    404: HTTPNotFoundError,
    408: HTTPRequestTimeoutError,
    409: HTTPConflictError,
    410: HTTPNotFoundError,
    412: HTTPConflictError,
    422: HTTPBadRequestError,
    429: HTTPThrottledError,
    502: HTTPUnavailableError,
    503: HTTPUnavailableError,
    504: HTTPGatewayTimeoutError,
}

# RFC 9110 delta-seconds is 1*DIGIT; signs and fractions are tolerated (servers send
# them), exponents, "inf", "nan" and non-ASCII digits (which float() accepts) are not.
_DELTA_SECONDS = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?", re.ASCII)
# Longer than any date or sane number: garbage, not worth parsing.
_MAX_HEADER_LENGTH = 100


def _bounded(seconds: float) -> float:
    return 0.0 if seconds <= 0.0 else min(seconds, MAX_SECONDS)


def _utc_now(now: dt.datetime | float | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if isinstance(now, dt.datetime):
        return now if now.tzinfo is not None else now.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromtimestamp(now, dt.timezone.utc)


def parse_retry_after(  # noqa: PLR0911 - each form of the value ends in its own return
    value: str | bytes | float | None, *, now: dt.datetime | float | None = None
) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or None if it says nothing.

    Args:
        value: The header's value: delta-seconds (``"120"``; ``"1.5"`` is tolerated), an
            HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``), or a number already parsed.
        now: The current time for an HTTP date: an aware ``datetime`` (naive = UTC) or a
            POSIX timestamp; defaults to the system clock. Tests pass a fixed one.

    Returns:
        Seconds, never negative (a date in the past or a negative number gives ``0.0``)
        and at most :data:`utils.core.validate.MAX_SECONDS`; None for a missing, empty or
        unparseable value (never an exception: the header comes from the network).

    Example:
        >>> parse_retry_after("120"), parse_retry_after("-3"), parse_retry_after("soon")
        (120.0, 0.0, None)
        >>> import datetime as dt
        >>> now = dt.datetime(2026, 10, 21, 7, 27, 30, tzinfo=dt.timezone.utc)
        >>> parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=now)
        30.0
    """
    raw: object = value  # the network and untyped callers can hand anything
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        seconds = float(raw)
        return None if math.isnan(seconds) else _bounded(seconds)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("latin-1")  # header bytes: every byte is a character
    if not isinstance(raw, str):
        return None  # None, or not a header value at all
    text = raw.strip()
    if not text or len(text) > _MAX_HEADER_LENGTH:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return _bounded(float(text))  # float: a 5,000-digit value caps, int() would raise
    if not any(char.isalpha() for char in text):
        return None  # a date names its month; spare the date parser the rest
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"; HTTP dates are GMT
        when = when.replace(tzinfo=dt.timezone.utc)
    return _bounded((when - _utc_now(now)).total_seconds())


def _redacted(url: object) -> str | None:
    return None if url is None else redact_url(url)


def _request_of(response: Any) -> Any:
    try:
        return response.request  # httpx raises RuntimeError when no request is attached
    except Exception:
        return None


def _url_of(response: Any) -> object:
    try:
        url = response.url
    except Exception:  # httpx: no request attached
        return None
    return url if url is not None else getattr(_request_of(response), "url", None)


def _method_of(response: Any) -> str | None:
    method = getattr(response, "method", None)  # aiohttp
    if method is None:
        method = getattr(_request_of(response), "method", None)  # httpx, requests
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    return method if isinstance(method, str) else None


def _error_for(response: Any, status: int, now: dt.datetime | float | None) -> HTTPStatusError:
    from http import HTTPStatus

    try:
        reason: str | None = HTTPStatus(status).phrase
    except ValueError:
        # Not the server's reason text: it is free text from the network, and this message
        # goes to logs and problem details.
        reason = None
    url = _redacted(_url_of(response))
    method = _method_of(response)
    retry_after = None
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after(header_of(response, "Retry-After"), now=now)
    message = f"HTTP {status} {reason or 'error'}"
    if url is not None:
        message += f" from {method} {url}" if method else f" from {url}"
    default: type[HTTPStatusError]
    if status < 600:
        default = HTTPClientError if status < 500 else HTTPServerError
    else:
        default = HTTPStatusError
    cls = _CLASS_FOR_STATUS.get(status, default)
    return cls(
        message,
        status=status,
        url=url,
        method=method,
        reason=reason,
        response=response,
        retry_after=retry_after,
    )


def raise_for_status(response: R, *, now: dt.datetime | float | None = None) -> R:
    """Return ``response`` when its status is below 400; raise the matching error otherwise.

    Takes an httpx, requests or aiohttp response (anything with an integer ``status_code``
    or ``status``, and ``headers``, ``url`` and a method where known). The error is an
    :class:`~utils.resilience.errors.HTTPStatusError` subclass chosen by status:

    - 400, 422: ``HTTPBadRequestError``, a ``ValidationError``;
    - 401, 403: ``HTTPPermissionDeniedError``, a ``PermissionDeniedError``;
    - 404, 410: ``HTTPNotFoundError``, a ``NotFoundError``;
    - 408: ``HTTPRequestTimeoutError``, a ``TransientError`` and an
      ``OperationTimeoutError``;
    - 409, 412: ``HTTPConflictError``, a ``ConflictError``;
    - 429: ``HTTPThrottledError``, a ``ThrottledError``;
    - other 4xx: ``HTTPClientError`` (the base class of the 4xx classes above);
    - 502, 503: ``HTTPUnavailableError``, an ``UnavailableError``;
    - 504: ``HTTPGatewayTimeoutError``, an ``UnavailableError`` and an
      ``OperationTimeoutError``;
    - 500 and other 5xx: ``HTTPServerError`` (the base class of the 5xx classes above), a
      ``TransientError``.

    ``retryable`` is True for ``RETRYABLE_STATUSES`` only: 408, 425, 429, 500, 502, 503
    and 504 (a 501 is an ``HTTPServerError`` that says ``retryable=False``).

    A retryable answer's ``Retry-After`` header (seconds or an HTTP date, read with
    :func:`parse_retry_after` relative to ``now``) becomes ``retry_after``, which
    ``@retry()`` honours. The message names the status, its reason phrase, the method and
    the URL, with credentials and secret query values (``api_key``, ``token``,
    ``X-Amz-Signature``...) masked; the body is never read. The response stays reachable
    as ``error.response``.

    Raises:
        HTTPStatusError: a subclass of it, for a status of 400 or more.
        ValidationError: ``response`` has no integer status.

    Example:
        >>> import httpx
        >>> from utils.core import ThrottledError
        >>> request = httpx.Request("POST", "https://user:pw@api.example/orders")
        >>> raise_for_status(httpx.Response(201, request=request)).status_code
        201
        >>> try:
        ...     raise_for_status(httpx.Response(429, headers={"Retry-After": "2"}, request=request))
        ... except ThrottledError as error:
        ...     print(error)
        ...     print(error.status, error.retry_after, error.response.status_code)
        HTTP 429 Too Many Requests from POST https://user:***@api.example/orders (retry after 2s)
        429 2.0 429
    """
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(response, "status", None)  # aiohttp, urllib3
    if type(status) is int and status < 400:
        return response  # the hot path: one or two attribute reads
    status = status_of(response)
    if status is None:
        raise ValidationError(
            f"raise_for_status() needs an HTTP response with an integer status_code or "
            f"status attribute (httpx, requests, aiohttp), got {type(response).__name__}"
        )
    if status < 400:
        return response
    raise _error_for(response, status, now)
