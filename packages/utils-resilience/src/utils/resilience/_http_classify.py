"""Which errors of httpx, httpcore, requests, urllib3 and aiohttp are worth retrying (private).

The public face is :func:`utils.resilience.http.classify_http_error`, registered as the
``http`` entry point of the ``utils.transient`` group, so :func:`utils.core.is_transient <utils.core.transient.is_transient>` —
and with it ``@retry()`` and the circuit breaker — knows these libraries' errors. They are
recognised by the modules of the exception's classes, never by importing a library: an
exception raised by httpx means httpx is already loaded, and a program without httpx pays
nothing.

The decision for a class is made once, by walking its MRO, and cached: for an exception
that is not an HTTP client's (the common case in ``is_transient``) the classifier costs one
dictionary look-up. What depends on the instance (the status of an ``HTTPStatusError``, the
cause of a connection error, the reason of urllib3's ``MaxRetryError``) is read per call.

Example:
    >>> classify_http_error(ValueError("not an HTTP error")) is None
    True
    >>> 503 in RETRYABLE_STATUSES, 404 in RETRYABLE_STATUSES
    (True, False)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RETRYABLE_STATUSES",
    "classify_http_error",
    "header_of",
    "retry_after_of",
    "status_of",
]

#: Statuses whose answer may differ on a retry: request timeout, too early, throttled, and
#: the server-side failures a healthy replica or a recovered upstream does not repeat.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# What a class of a library's exception means. Ints, not an Enum: compared on every call.
_NONE = 0  # not an HTTP client's exception, or one we have no opinion on
_TRANSIENT = 1  # timeouts, connection and protocol failures of the other side
_PERMANENT = 2  # a failure that a retry repeats (bad URL, bad certificate, our own bug)
_STATUS = 3  # an error answer: transient for RETRYABLE_STATUSES only
_CONNECT = 4  # a connection failure: transient unless a certificate was refused
_REASON = 5  # urllib3's MaxRetryError: decided by its ``reason``

_ROOTS = frozenset({"httpx", "httpcore", "requests", "urllib3", "aiohttp"})

# httpx and httpcore share their names: ``LocalProtocolError`` (a request *we* made
# invalid) and ``UnsupportedProtocol`` stay out, so they fall back to "no opinion", which
# is_transient turns into False.
_HTTPX = {
    "HTTPStatusError": _STATUS,
    "TimeoutException": _TRANSIENT,
    "ConnectError": _CONNECT,
    "NetworkError": _TRANSIENT,
    "RemoteProtocolError": _TRANSIENT,
    "ProxyError": _TRANSIENT,
    "ConnectionNotAvailable": _TRANSIENT,
}
_KNOWN: dict[str, dict[str, int]] = {
    "httpx": _HTTPX,
    "httpcore": _HTTPX,
    "requests": {
        "HTTPError": _STATUS,
        "ConnectionError": _CONNECT,  # and its ConnectTimeout, ProxyError, SSLError
        "Timeout": _TRANSIENT,
        "ChunkedEncodingError": _TRANSIENT,  # the connection broke mid-body
        # RetryError: urllib3 already retried the statuses it was told to: budget spent.
        "RetryError": _PERMANENT,
    },
    "urllib3": {
        "MaxRetryError": _REASON,
        "ResponseError": _PERMANENT,  # "too many error responses": retries were spent
        "NewConnectionError": _CONNECT,
        "SSLError": _CONNECT,
        "TimeoutError": _TRANSIENT,
        "ResponseNotChunked": _PERMANENT,
        "ProtocolError": _TRANSIENT,
        "ProxyError": _TRANSIENT,
        "IncompleteRead": _TRANSIENT,
        "InvalidChunkLength": _TRANSIENT,
        "EmptyPoolError": _TRANSIENT,
    },
    "aiohttp": {
        "ClientResponseError": _STATUS,  # and ContentTypeError, TooManyRedirects...
        "ClientConnectorCertificateError": _PERMANENT,
        "ServerFingerprintMismatch": _PERMANENT,  # a pinned certificate changed
        "ClientConnectorError": _CONNECT,
        "ClientConnectionError": _TRANSIENT,  # OSError, disconnects, socket timeouts
        "ClientPayloadError": _TRANSIENT,  # the body was cut short
    },
}

#: Decisions per exception class. Bounded: a program that creates exception classes on the
#: fly must not grow it for ever (it is cleared and re-learnt, which is cheap).
_kind_by_class: dict[type, int] = {}
_MAX_CLASSES = 1024


def _learn(cls: type) -> int:
    """The kind of ``cls``: the first class of its MRO that a table knows decides."""
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", None)
        if not isinstance(module, str):
            continue
        table = _KNOWN.get(module.partition(".")[0])
        if table is not None:
            kind = table.get(klass.__name__)
            if kind is not None:
                return kind
    return _NONE


def _remember(cls: type) -> int:
    """Learn and cache the kind of ``cls`` (once per class)."""
    kind = _learn(cls)
    if len(_kind_by_class) >= _MAX_CLASSES:
        _kind_by_class.clear()
    _kind_by_class[cls] = kind
    return kind


def _kind(exc: BaseException) -> int:
    kind = _kind_by_class.get(type(exc))
    return _remember(type(exc)) if kind is None else kind


def status_of(obj: object) -> int | None:
    """The HTTP status of a response, or of an error carrying one (None when unknown).

    Reads ``status_code`` (httpx, requests) or ``status`` (aiohttp, urllib3), on the object
    itself or on its ``response``.

    Example:
        >>> class Answer:
        ...     status_code = 503
        >>> status_of(Answer()), status_of(ValueError())
        (503, None)
    """
    for holder in (obj, getattr(obj, "response", None)):
        if holder is None:
            continue
        for name in ("status_code", "status"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return int(value)  # int() also turns http.HTTPStatus into a plain int
    return None


def header_of(obj: object, name: str) -> Any:
    """Header ``name`` of a response, of an error's ``response``, or of the error (aiohttp).

    None when there is no such header or no headers at all.

    Example:
        >>> class Answer:
        ...     headers = {"retry-after": "3"}
        >>> header_of(Answer(), "Retry-After"), header_of(ValueError(), "Retry-After")
        ('3', None)
    """
    for holder in (getattr(obj, "response", None), obj):
        headers = getattr(holder, "headers", None)
        getter = getattr(headers, "get", None)
        if getter is None:
            continue
        try:
            value = getter(name)
            if value is None:
                value = getter(name.lower())  # a plain dict is case-sensitive
        except Exception:  # an exotic headers object: no hint rather than a crash
            return None
        if value is not None:
            return value
    return None


def _certificate_refused(exc: BaseException) -> bool:
    """True when a certificate verification failure is somewhere behind ``exc``.

    Libraries wrap the ``ssl`` error differently (as ``__cause__``, as an argument, as
    urllib3's ``reason``): look at all of them, a few levels deep.
    """
    import ssl  # loaded already: every HTTP client imports it

    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending and len(seen) < 16:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        pending.extend((item.__cause__, item.__context__, getattr(item, "reason", None)))
        pending.extend(item.args)
    return False


def classify_http_error(exc: BaseException) -> bool | None:  # noqa: PLR0911 - one per kind
    """True (transient), False (permanent) or None (not an HTTP client's error).

    The ``utils.transient`` classifier (entry point ``http``) of httpx, httpcore, requests,
    urllib3 and aiohttp, which :func:`utils.core.is_transient <utils.core.transient.is_transient>` asks, so ``@retry()`` and
    :class:`~utils.resilience.breaker.CircuitBreaker` handle these libraries' raw errors:

    - **error answers** (``httpx.HTTPStatusError`` from ``response.raise_for_status()``,
      ``requests.HTTPError``, ``aiohttp.ClientResponseError``): True for 408, 425, 429,
      500, 502, 503 and 504; False for every other status;
    - **timeouts, connection failures, connections dropped by the server** (connect/read/
      write/pool timeouts, refused or reset connections, a server that closed the
      connection without answering or mid-body): True — except a refused TLS certificate
      (verification failure, aiohttp's fingerprint mismatch), which a retry repeats: False;
    - urllib3's ``MaxRetryError``: as its ``reason``; ``requests.RetryError`` (urllib3 already
      spent its status retries): False;
    - anything else of these libraries (an invalid URL, a request we made invalid, a
      decoding error, too many redirects): None, which ``is_transient`` turns into False
      unless the exception is also a ``ConnectionError`` or ``TimeoutError``;
    - an exception of any other library: None (no opinion), at the cost of one dictionary
      look-up.

    Example:
        >>> import httpx
        >>> request = httpx.Request("GET", "https://api.example/prices")
        >>> def answer(status: int) -> httpx.HTTPStatusError:
        ...     response = httpx.Response(status, request=request)
        ...     return httpx.HTTPStatusError("failed", request=request, response=response)
        >>> classify_http_error(answer(503)), classify_http_error(answer(404))
        (True, False)
        >>> classify_http_error(httpx.ReadTimeout("timed out", request=request))
        True
        >>> classify_http_error(KeyError("x")) is None
        True
    """
    # The look-up inlined, not a call to _kind(): this line is what every exception that
    # is not an HTTP client's costs is_transient.
    kind = _kind_by_class.get(type(exc))
    if kind is None:
        kind = _remember(type(exc))
    if kind == _NONE:
        return None
    if kind == _TRANSIENT:
        return True
    if kind == _PERMANENT:
        return False
    if kind == _STATUS:
        status = status_of(exc)
        return None if status is None else status in RETRYABLE_STATUSES
    if kind == _CONNECT:
        return not _certificate_refused(exc)
    reason = getattr(exc, "reason", None)  # _REASON: urllib3's MaxRetryError
    if isinstance(reason, BaseException) and reason is not exc:
        return classify_http_error(reason)
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from the ``Retry-After`` of a raw, retryable HTTP error answer, or None.

    How ``@retry()`` honours the header when the error is the library's own
    (``httpx.HTTPStatusError`` from ``response.raise_for_status()``,
    ``requests.HTTPError``, ``aiohttp.ClientResponseError``), as it honours
    ``UtilsError.retry_after``. Called on the failure path only.

    Example:
        >>> retry_after_of(ConnectionResetError()) is None
        True
    """
    if _kind(exc) != _STATUS or status_of(exc) not in RETRYABLE_STATUSES:
        return None
    value = header_of(exc, "Retry-After")
    if value is None:
        return None
    from utils.resilience.http import parse_retry_after

    return parse_retry_after(value)
