"""Request context for web services: a request id and an access event for every request.

:class:`RequestContextMiddleware` (raw ASGI: FastAPI, Starlette, Django ASGI, ...) and
:class:`WSGIRequestContextMiddleware` (raw WSGI: Flask, Django, ...) do the same four things,
without importing any framework:

1. **Request id.** Taken from the request header (``X-Request-ID`` by default) when it is a
   valid id, else generated (:func:`new_request_id`, a random UUID4 in hex; injectable). A
   valid id is 1 to 128 characters from ``A-Z a-z 0-9 . _ : + / = -`` — enough for UUIDs,
   ULIDs, hex trace ids, base64 and AWS ``Root=1-...`` ids, and nothing that could break a log
   line or a header. An invalid one is replaced silently (a warning per request would hand
   clients a way to flood the logs). ``trust_incoming=False`` ignores the header altogether,
   for services that face the public internet.
2. **Log context.** ``request_id``, ``method`` and ``path`` are bound
   (:func:`~utils.core.bind_context`) for the whole request — every log line of the
   request, from the application, from ``utils`` packages, from foreign stdlib loggers and
   from the server's own access logger, carries them — and unbound afterwards, exceptions
   included. Under WSGI the binding lasts until the server closes the response iterable, so
   a streamed body and the server's access line still carry it. Read the id with
   ``get_context()["request_id"]``.
3. **Echo.** The id is added to the response headers under the same header name.
4. **Access event.** :data:`HTTP_REQUEST` (``http.request``): one INFO line per request with
   ``method``, ``route``, ``status`` and ``duration`` (seconds), and one ``observe`` of the
   duration with the tags ``method``, ``route`` and ``status``. ``route`` is the route
   *template* — never the raw path, which would give a metric one series per URL: the
   ``scope["route"]`` Starlette and FastAPI set (its ``path_format``), or a string the
   application put under :data:`ROUTE_KEY` in the ASGI scope or WSGI environ (Flask's
   ``request.url_rule.rule``, Django's ``request.resolver_match.route``), else
   :data:`UNMATCHED_ROUTE`. Methods outside the standard nine become ``OTHER``.

An exception escaping the application is logged once, inside the request context, as
:data:`HTTP_UNHANDLED_ERROR` (``http.unhandled_error``, with the traceback), recorded as
status 500, and re-raised for the server. The exception is marked as logged, so the filter of
:func:`~utils.core.uvicorn_log_config` drops uvicorn's second report of it. Cancellation
(the client went away) is no error: the request is recorded with status 499 if no response
had started. Lifespan scopes pass straight through; a websocket connection gets the request
id bound and echoed on ``websocket.accept``, but no access event.

To silence the access line but keep the metric, raise the level of its logger:
``configure_logging(levels={"utils.core.middleware": "WARNING"})``.

Example:
    >>> import asyncio
    >>> from utils.core import capture_logs
    >>> async def app(scope, receive, send):
    ...     await send({"type": "http.response.start", "status": 200, "headers": []})
    ...     await send({"type": "http.response.body", "body": b"ok"})
    >>> sent = []
    >>> async def send(message):
    ...     sent.append(message)
    >>> async def receive():
    ...     return {"type": "http.request", "body": b""}
    >>> scope = {"type": "http", "method": "GET", "path": "/users/42",
    ...          "headers": [(b"x-request-id", b"req-1")]}
    >>> with capture_logs() as logs:
    ...     asyncio.run(RequestContextMiddleware(app)(scope, receive, send))
    >>> sent[0]["headers"]
    [(b'x-request-id', b'req-1')]
    >>> {key: logs[0][key] for key in ("event", "request_id", "route", "status")}
    {'event': 'http.request', 'request_id': 'req-1', 'route': '<unmatched>', 'status': 200}
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, TypeAlias

import structlog

from utils.core.errors import ConfigError
from utils.core.report import Event

__all__ = [
    "HTTP_REQUEST",
    "HTTP_UNHANDLED_ERROR",
    "MAX_REQUEST_ID_LENGTH",
    "ROUTE_KEY",
    "UNMATCHED_ROUTE",
    "RequestContextMiddleware",
    "WSGIRequestContextMiddleware",
    "is_valid_request_id",
    "new_request_id",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse: TypeAlias = Callable[..., Any]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: The longest request id taken from a request header.
MAX_REQUEST_ID_LENGTH = 128

#: Where an application puts its route template when the framework does not expose one in a
#: way the middleware recognises: ``scope[ROUTE_KEY]`` (ASGI) or ``environ[ROUTE_KEY]`` (WSGI).
ROUTE_KEY = "utils.route"

#: The ``route`` of a request no route matched (404s, redirects): one bounded value.
UNMATCHED_ROUTE = "<unmatched>"

#: The access event: logged at INFO, its duration (seconds) observed with these tags.
HTTP_REQUEST = Event(
    "http.request",
    logger="utils.core.middleware",
    level="info",
    tags=("method", "route", "status"),
    metric="observe",
)

#: An exception that escaped the application: logged with its traceback, never metered (the
#: request's own ``http.request`` with status 500 counts it).
HTTP_UNHANDLED_ERROR = Event(
    "http.unhandled_error", logger="utils.core.middleware", level="error", metric=None
)

_VALID_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_REQUEST_ID_LENGTH).fullmatch
_VALID_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# Set on an exception once HTTP_UNHANDLED_ERROR logged it; read by log_integrations' filter.
_LOGGED_MARK = "__utils_logged__"
_urandom = os.urandom
_perf_counter = time.perf_counter


def new_request_id() -> str:
    """A new random request id: a UUID4 in hex (32 characters), three times faster than uuid4.

    Example:
        >>> import uuid
        >>> request_id = new_request_id()
        >>> len(request_id), uuid.UUID(request_id).version
        (32, 4)
    """
    raw = bytearray(_urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def is_valid_request_id(value: str | bytes) -> bool:
    """True when ``value`` is acceptable as a request id from a header (see the module doc).

    Example:
        >>> is_valid_request_id("4bf92f3577b34da6a3ce929d0e0e4736"), is_valid_request_id("a b")
        (True, False)
    """
    if isinstance(value, str):
        if not value.isascii():
            return False
        value = value.encode("ascii")
    return _VALID_ID(value) is not None


def _context_vars() -> tuple[ContextVar[Any], ContextVar[Any], ContextVar[Any]]:
    """The context variables behind ``bind_context(request_id=, method=, path=)``.

    structlog keeps one ContextVar per key for the life of the process; setting them directly
    is what ``bind_context`` does, minus copying the whole context twice per request.
    """
    tokens = structlog.contextvars.bind_contextvars(request_id=None, method=None, path=None)
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens["request_id"].var, tokens["method"].var, tokens["path"].var


_REQUEST_ID, _METHOD, _PATH = _context_vars()


def _method_label(method: str) -> str:
    # A client can send any token as a method: only the standard ones become metric labels.
    return method if method in _METHODS else "OTHER"


def _route_label(container: Any) -> str:
    """The route template of a finished request: bounded, never the raw path."""
    route = container.get(ROUTE_KEY)
    if isinstance(route, str) and route:
        return route
    route = container.get("route")
    if route is not None:  # Starlette / FastAPI's matched route object
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str) and template:
            return template
    return UNMATCHED_ROUTE


def _mark_logged(exc: BaseException) -> None:
    # An exception class refusing attributes is rare; uvicorn then reports it a second time.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _LOGGED_MARK, True)


class _Settings:
    """What both middlewares were configured with: the I/O-free part they share."""

    __slots__ = ("check_generated", "generate_id", "header", "header_key", "trust_incoming")

    def __init__(self, header: str, generate_id: Callable[[], str], trust_incoming: bool) -> None:
        if not isinstance(header, str) or not _VALID_TOKEN(header):
            raise ConfigError(
                f"header must be an HTTP header name such as 'X-Request-ID', got {header!r}"
            )
        if not callable(generate_id):
            raise ConfigError(
                f"generate_id must be a callable returning a new id, got {generate_id!r}"
            )
        self.header = header
        self.header_key = header.lower().encode("latin-1")
        self.generate_id = generate_id
        # Ours makes valid ids by construction; an injected generator is checked per id.
        self.check_generated = generate_id is not new_request_id
        self.trust_incoming = trust_incoming

    def choose(self, incoming: bytes | None) -> tuple[str, bytes]:
        """The request id as text (for logs) and bytes (for the header)."""
        if incoming is not None and self.trust_incoming and _VALID_ID(incoming):
            return incoming.decode("ascii"), incoming
        generated = self.generate_id()
        encoded = generated.encode("latin-1", "replace")
        if self.check_generated and _VALID_ID(encoded) is None:
            raise ConfigError(
                f"generate_id returned {generated!r}, which is not a valid request id "
                f"(1 to {MAX_REQUEST_ID_LENGTH} characters from A-Z a-z 0-9 . _ : + / = -)"
            )
        return generated, encoded


def _finish(method: str, route: str, status: int, started: float) -> None:
    elapsed = _perf_counter() - started
    HTTP_REQUEST.emit(
        value=elapsed,
        method=_method_label(method),
        route=route,
        status=status,
        duration=round(elapsed, 6),
    )


def _unhandled(exc: Exception, method: str, route: str) -> None:
    HTTP_UNHANDLED_ERROR.emit(
        exc_info=exc, method=_method_label(method), route=route, error=type(exc).__name__
    )
    _mark_logged(exc)


class RequestContextMiddleware:
    """ASGI middleware: request id, log context, echoed header and one access event.

    Args:
        app: The ASGI application to wrap.
        header: The request and response header holding the id.
        generate_id: Makes an id when the request brings no valid one (default
            :func:`new_request_id`); what it returns must itself be a valid id.
        trust_incoming: Take the id from the request header when valid; False always
            generates one.

    Raises:
        ConfigError: A header that is not a valid header name, or a ``generate_id`` that is
            not callable.

    Mount it outermost, so that everything runs in the request context: wrap the whole
    application, ``app = RequestContextMiddleware(app)``. With FastAPI or Starlette,
    ``app.add_middleware(RequestContextMiddleware)`` also works, but Starlette keeps its
    ``ServerErrorMiddleware`` outside every added middleware: the 500 response it sends for
    an unhandled exception then lacks the id header, and uvicorn's access line for it lacks
    the request id.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = RequestContextMiddleware(Starlette(), header="X-Correlation-ID")
        >>> app.header
        'X-Correlation-ID'
    """

    __slots__ = ("_settings", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "X-Request-ID",
        generate_id: Callable[[], str] = new_request_id,
        trust_incoming: bool = True,
    ) -> None:
        self.app: ASGIApp = app
        self._settings = _Settings(header, generate_id, trust_incoming)

    @property
    def header(self) -> str:
        """The header name holding the request id.

        Example:
            >>> RequestContextMiddleware(None).header
            'X-Request-ID'
        """
        return self._settings.header

    def _request_id(self, scope: Scope) -> tuple[str, bytes]:
        key = self._settings.header_key
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == key:
                incoming = value
                break
        return self._settings.choose(incoming)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: ``http`` fully, ``websocket`` partly, others not at all."""
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request_id, encoded = self._request_id(scope)
        method = scope.get("method", "GET")
        tokens = (
            _REQUEST_ID.set(request_id),
            _METHOD.set(method),
            _PATH.set(scope.get("path", "")),
        )
        started = _perf_counter()
        echo = (self._settings.header_key, encoded)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A copy: the application may reuse one headers list for every response.
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            status = 500
            _unhandled(exc, method, _route_label(scope))
            raise
        except BaseException:  # cancelled: the client went away, or the server is stopping
            status = status or 499
            raise
        finally:
            try:
                _finish(method, _route_label(scope), status or 500, started)
            finally:
                _PATH.reset(tokens[2])
                _METHOD.reset(tokens[1])
                _REQUEST_ID.reset(tokens[0])

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, encoded = self._request_id(scope)
        echo = (self._settings.header_key, encoded)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        tokens = (_REQUEST_ID.set(request_id), _PATH.set(scope.get("path", "")))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _PATH.reset(tokens[1])
            _REQUEST_ID.reset(tokens[0])

    def __repr__(self) -> str:
        return f"RequestContextMiddleware({self.app!r}, header={self.header!r})"


class WSGIRequestContextMiddleware:
    """WSGI middleware: request id, log context, echoed header and one access event.

    The same arguments and behaviour as :class:`RequestContextMiddleware`. The context stays
    bound until the server calls ``close()`` on the response (PEP 3333 servers always do),
    so a streamed body and the server's own access line carry the request id; the access
    event is emitted then, with the duration of the whole response.

    Example:
        >>> from wsgiref.util import setup_testing_defaults
        >>> from utils.core import capture_logs
        >>> def app(environ, start_response):
        ...     environ[ROUTE_KEY] = "/users/{id}"
        ...     start_response("200 OK", [("Content-Type", "text/plain")])
        ...     return [b"ok"]
        >>> environ = {"PATH_INFO": "/users/42", "HTTP_X_REQUEST_ID": "req-2"}
        >>> setup_testing_defaults(environ)
        >>> seen = []
        >>> with capture_logs() as logs:
        ...     response = WSGIRequestContextMiddleware(app)(
        ...         environ, lambda status, headers, exc_info=None: seen.extend(headers))
        ...     body = b"".join(response)
        ...     response.close()
        >>> seen
        [('Content-Type', 'text/plain'), ('X-Request-ID', 'req-2')]
        >>> {key: logs[0][key] for key in ("event", "request_id", "route", "status")}
        {'event': 'http.request', 'request_id': 'req-2', 'route': '/users/{id}', 'status': 200}
    """

    __slots__ = ("_environ_key", "_settings", "app")

    def __init__(
        self,
        app: WSGIApp,
        *,
        header: str = "X-Request-ID",
        generate_id: Callable[[], str] = new_request_id,
        trust_incoming: bool = True,
    ) -> None:
        self.app: WSGIApp = app
        self._settings = _Settings(header, generate_id, trust_incoming)
        self._environ_key = "HTTP_" + header.upper().replace("-", "_")

    @property
    def header(self) -> str:
        """The header name holding the request id.

        Example:
            >>> WSGIRequestContextMiddleware(None).header
            'X-Request-ID'
        """
        return self._settings.header

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one WSGI request; the returned iterable ends the request when closed."""
        incoming = environ.get(self._environ_key)
        # PEP 3333 hands header values over as latin-1 text.
        request_id, _ = self._settings.choose(
            incoming.encode("latin-1", "replace") if isinstance(incoming, str) else None
        )
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if not path.isascii():  # PEP 3333 decodes the path as latin-1; show it as sent
            path = path.encode("latin-1", "replace").decode("utf-8", "replace")
        request = _WSGIRequest(
            environ,
            start_response,
            (self._settings.header, request_id),
            method,
            (_REQUEST_ID.set(request_id), _METHOD.set(method), _PATH.set(path)),
        )
        try:
            request.result = self.app(environ, request.start_response)
        except Exception as exc:
            request.failed(exc)
            request.close()
            raise
        except BaseException:
            request.close()
            raise
        return request

    def __repr__(self) -> str:
        return f"WSGIRequestContextMiddleware({self.app!r}, header={self.header!r})"


class _WSGIRequest:
    """One request in flight: the ``start_response`` wrapper and the response iterable."""

    __slots__ = (
        "_closed",
        "_echo",
        "_environ",
        "_iterator",
        "_method",
        "_start_response",
        "_started",
        "_status",
        "_tokens",
        "result",
    )

    def __init__(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        echo: tuple[str, str],
        method: str,
        tokens: tuple[Token[Any], Token[Any], Token[Any]],
    ) -> None:
        self._environ = environ
        self._start_response = start_response
        self._echo = echo
        self._method = method
        self._tokens = tokens
        self._status = 0
        self._closed = False
        self._iterator: Iterator[bytes] | None = None
        self._started = _perf_counter()
        self.result: Iterable[bytes] = ()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        try:
            self._status = int(status[:3])
        except ValueError:  # a malformed status: the server will refuse it, we count a 500
            self._status = 500
        # A copy: the application may reuse one headers list for every response.
        return self._start_response(status, [*headers, self._echo], exc_info)

    def failed(self, exc: Exception) -> None:
        self._status = 500
        _unhandled(exc, self._method, _route_label(self._environ))

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = iter(self.result)
        try:
            return next(iterator)
        except StopIteration:
            raise
        except Exception as exc:
            self.failed(exc)
            raise

    def close(self) -> None:
        """End the request: close the application's iterable, report, unbind the context."""
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            try:
                _finish(
                    self._method, _route_label(self._environ), self._status or 500, self._started
                )
            finally:
                tokens = self._tokens
                try:
                    _PATH.reset(tokens[2])
                    _METHOD.reset(tokens[1])
                    _REQUEST_ID.reset(tokens[0])
                except ValueError:  # closed from another context than the one that bound it
                    pass
