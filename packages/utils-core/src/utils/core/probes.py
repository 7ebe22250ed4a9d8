"""Kubernetes probe endpoints: ``/livez``, ``/readyz`` and ``/startupz``, as raw ASGI or WSGI.

:func:`health_app` (ASGI) and :func:`wsgi_health_app` (WSGI) answer ``GET`` and ``HEAD``
with ``200`` when every check of the probe's kind passes and ``503`` otherwise, and a JSON
body listing each check (``name``, ``ok``, ``detail``, ``seconds``, ``kind``)::

    {"status": "failed", "kind": "readiness",
     "checks": [{"name": "redis", "ok": false, "detail": "CacheUnavailableError: ...", ...}]}

``/livez`` runs only liveness checks (none registered: the process answered, so it is
alive), ``/readyz`` the readiness checks (registered ones and the installed packages'
``utils.health`` entry points, unless ``entry_points=False``), ``/startupz`` the startup
checks. Any other path is ``404`` (or goes to ``fallback``), another method ``405``.

Results are kept for ``max_age`` seconds, so a storm of probes (several kubelets, a load
balancer, a dashboard) reaches each dependency at most once per ``max_age``; callers that
arrive while a run is in progress share that run. A check that fails or recovers is logged
once on the change (``health.check_failed`` / ``health.check_recovered``), never per probe.

Mount the ASGI app in any framework, or serve it alone; it needs no framework::

    app.mount("/health", health_app())          # FastAPI / Starlette: /health/readyz

``root_path`` (a mount, or ``uvicorn --root-path``) is honoured. For WSGI (Flask, Django),
mount it with ``werkzeug.middleware.dispatcher.DispatcherMiddleware``, or put it in front
of the application: ``application = wsgi_health_app(fallback=get_wsgi_application())``.

Example:
    >>> import httpx
    >>> from utils.core.health import register_check, unregister_check
    >>> from utils.core.testing import serve_wsgi
    >>> register_check("queue", lambda: "3 jobs waiting", timeout=0.5)
    >>> with serve_wsgi(wsgi_health_app(entry_points=False)) as url:
    ...     reply = httpx.get(url + "/readyz")
    >>> reply.status_code, reply.json()["checks"][0]["detail"]
    (200, '3 jobs waiting')
    >>> unregister_check("queue")
    True
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from utils.core._redact import redact_text
from utils.core.forksafe import reset_after_fork
from utils.core.health import (
    CheckResult,
    Kind,
    _arun_plan,
    _EntryPoints,
    _load_entry_points,
    _Plan,
    _plan,
    _positive_seconds,
    _run_plan,
    is_draining,
)
from utils.core.report import Event
from utils.core.validate import duration, flag

# PEP 3333 shapes, spelled here rather than imported from _typeshed (which exists only for
# type checkers, so the documentation could not resolve the names).
WSGIEnvironment: TypeAlias = dict[str, Any]
StartResponse: TypeAlias = Callable[..., Any]
WSGIApplication: TypeAlias = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]

__all__ = [
    "ASGIApp",
    "HealthApp",
    "Receive",
    "Scope",
    "Send",
    "WSGIHealthApp",
    "health_app",
    "wsgi_health_app",
]

#: The ASGI connection scope (the shape Starlette and uvicorn use).
Scope: TypeAlias = MutableMapping[str, Any]
#: The ASGI ``receive`` callable.
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
#: The ASGI ``send`` callable.
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: An ASGI application.
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

CHECK_FAILED = Event(
    "health.check_failed", logger="utils.core.health", level="warning", tags=("check", "kind")
)
CHECK_RECOVERED = Event(
    "health.check_recovered", logger="utils.core.health", level="info", tags=("check", "kind")
)

_ROUTES: dict[str, Kind] = {
    "/livez": "liveness",
    "/readyz": "readiness",
    "/startupz": "startup",
    "/livez/": "liveness",
    "/readyz/": "readiness",
    "/startupz/": "startup",
}
_ALLOWED = ("GET", "HEAD")
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class _Answer:
    """One probe's answer, encoded once and served to every caller while fresh."""

    status: int
    body: bytes
    at: float


def _plain(status: int, message: str) -> _Answer:
    return _Answer(status, json.dumps({"status": message}).encode(), 0.0)


_NOT_FOUND = _plain(404, "not found: use /livez, /readyz or /startupz")
_NOT_ALLOWED = _plain(405, "method not allowed: use GET or HEAD")


class _Probes:
    """What both apps share: configuration, the planning, the cache, the change log."""

    def __init__(
        self,
        max_age: float | timedelta,
        timeout: float | timedelta,
        entry_points: bool,
        clock: Callable[[], float],
    ) -> None:
        seconds = duration(max_age, "max_age", allow_none=False, allow_infinite=False)
        assert seconds is not None  # allow_none=False, allow_infinite=False
        self.max_age = seconds
        self.timeout: float = _positive_seconds(timeout, "timeout")
        self.entry_points: bool = flag(entry_points, "entry_points")
        self.clock = clock
        self._loaded: _EntryPoints | None = None
        self._answers: dict[Kind, _Answer] = {}
        self._last_ok: dict[tuple[Kind, str], bool] = {}

    def fresh(self, kind: Kind) -> _Answer | None:
        """The cached answer, while younger than ``max_age`` (never while draining)."""
        answer = self._answers.get(kind)
        if answer is None or self.clock() - answer.at >= self.max_age:
            return None
        if kind == "readiness" and is_draining():
            return None  # mark_draining() takes effect at once, not after max_age
        return answer

    def plan(self, kind: Kind) -> _Plan:
        """The checks of ``kind`` (entry points loaded once, on the first readiness probe)."""
        entry = None
        if self.entry_points and kind == "readiness":
            entry = self._loaded
            if entry is None:  # two threads may both load: the same modules, harmless
                entry = self._loaded = _load_entry_points()
        return _plan(None, kind, self.timeout, entry)

    def failed_to_plan(self, kind: Kind, exc: Exception) -> list[CheckResult]:
        """A run that could not even start (two plugins with one name) is a failed probe."""
        detail = redact_text(f"{type(exc).__name__}: {exc}")[:200]
        return [CheckResult("health", False, detail, 0.0, kind)]

    def store(self, kind: Kind, results: list[CheckResult]) -> _Answer:
        """Encode, remember and return the answer; report checks that changed state."""
        ok = all(result.ok for result in results)
        body = {
            "status": "ok" if ok else "failed",
            "kind": kind,
            "checks": [result.as_dict() for result in results],
        }
        answer = _Answer(200 if ok else 503, json.dumps(body).encode(), self.clock())
        if not (kind == "readiness" and is_draining()):  # undraining must take effect at once
            self._answers[kind] = answer
        for result in results:
            key = (kind, result.name)
            before = self._last_ok.get(key, True)
            self._last_ok[key] = result.ok
            if before and not result.ok:
                CHECK_FAILED.emit(check=result.name, kind=kind, detail=result.detail)
            elif result.ok and not before:
                CHECK_RECOVERED.emit(check=result.name, kind=kind)
        return answer


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "") or "/"
    root: str = scope.get("root_path", "") or ""
    # ASGI puts root_path (a Starlette Mount, uvicorn --root-path) inside path; older
    # servers and frameworks strip it. Remove it only where it really is a prefix segment.
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return path


def _headers(answer: _Answer) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("content-length", str(len(answer.body))),
        ("cache-control", "no-store"),
    ]


class HealthApp:
    """The ASGI probe app :func:`health_app` returns.

    Example:
        >>> isinstance(health_app(), HealthApp)
        True
    """

    def __init__(self, probes: _Probes, fallback: ASGIApp | None) -> None:
        self._probes = probes
        self._fallback = fallback
        self._flights: dict[Kind, asyncio.Task[_Answer]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "http":
            kind = _ROUTES.get(_route_path(scope))
            if kind is None and self._fallback is not None:
                await self._fallback(scope, receive, send)
                return
            if kind is None:
                answer = _NOT_FOUND
            elif scope.get("method", "GET") not in _ALLOWED:
                answer = _NOT_ALLOWED
            else:
                answer = await self.answer(kind)
            await _send(send, answer, head=scope.get("method") == "HEAD")
        elif self._fallback is not None:
            await self._fallback(scope, receive, send)
        elif scope["type"] == "lifespan":  # served alone: say the app started and stopped
            await _lifespan(receive, send)
        # A websocket without a fallback: returning unaccepted makes the server refuse it.

    async def answer(self, kind: Kind) -> _Answer:
        """The fresh answer, the run in progress, or a new run (shared by concurrent callers)."""
        answer = self._probes.fresh(kind)
        if answer is not None:
            return answer
        loop = asyncio.get_running_loop()
        flight = self._flights.get(kind)
        if flight is None or flight.get_loop() is not loop:
            flight = self._flights[kind] = loop.create_task(self._run(kind))
            flight.add_done_callback(self._landed(kind))
        # shield: a caller that goes away does not cancel the run the others wait for.
        return await asyncio.shield(flight)

    def _landed(self, kind: Kind) -> Callable[[asyncio.Task[_Answer]], None]:
        def forget(task: asyncio.Task[_Answer]) -> None:
            if self._flights.get(kind) is task:
                del self._flights[kind]

        return forget

    async def _run(self, kind: Kind) -> _Answer:
        try:
            results = await _arun_plan(self._probes.plan(kind))
        except Exception as exc:  # a probe answers 503, never a 500
            results = self._probes.failed_to_plan(kind, exc)
        return self._probes.store(kind, results)

    def __repr__(self) -> str:
        return f"<HealthApp max_age={self._probes.max_age:g}>"


async def _send(send: Send, answer: _Answer, *, head: bool) -> None:
    headers = [(name.encode(), value.encode()) for name, value in _headers(answer)]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Flight:
    """A run in progress in the WSGI app; callers that arrive meanwhile wait for it."""

    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: _Answer | None = None


class WSGIHealthApp:
    """The WSGI probe app :func:`wsgi_health_app` returns.

    Example:
        >>> isinstance(wsgi_health_app(), WSGIHealthApp)
        True
    """

    def __init__(self, probes: _Probes, fallback: WSGIApplication | None) -> None:
        self._probes = probes
        self._fallback = fallback
        self._lock = threading.Lock()
        self._flights: dict[Kind, _Flight] = {}
        reset_after_fork(self, WSGIHealthApp._after_fork)  # pre-fork servers (gunicorn)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flights = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        kind = _ROUTES.get(environ.get("PATH_INFO") or "/")
        if kind is None and self._fallback is not None:
            return self._fallback(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if kind is None:
            answer = _NOT_FOUND
        elif method not in _ALLOWED:
            answer = _NOT_ALLOWED
        else:
            answer = self.answer(kind)
        start_response(f"{answer.status} {_REASONS[answer.status]}", _headers(answer))
        return [] if method == "HEAD" else [answer.body]

    def answer(self, kind: Kind) -> _Answer:
        """The fresh answer, the run in progress, or a new run (shared by concurrent callers)."""
        answer = self._probes.fresh(kind)
        if answer is not None:
            return answer
        with self._lock:
            flight = self._flights.get(kind)
            leader = flight is None
            if flight is None:
                flight = self._flights[kind] = _Flight()
        if not leader:
            # The leader's run ends within its longest check timeout: checks run in threads.
            flight.done.wait()
            if flight.answer is not None:
                return flight.answer
        try:
            answer = self._run(kind)
            flight.answer = answer
        finally:
            if leader:
                with self._lock:
                    self._flights.pop(kind, None)
                flight.done.set()
        return answer

    def _run(self, kind: Kind) -> _Answer:
        probes = self._probes
        try:
            steps = probes.plan(kind)
            results = steps.sort(_run_plan(steps))
        except Exception as exc:  # a probe answers 503, never a 500
            results = probes.failed_to_plan(kind, exc)
        return probes.store(kind, results)

    def __repr__(self) -> str:
        return f"<WSGIHealthApp max_age={self._probes.max_age:g}>"


def health_app(
    *,
    max_age: float | timedelta = 1.0,
    timeout: float | timedelta = 1.0,
    entry_points: bool = True,
    fallback: ASGIApp | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> HealthApp:
    """An ASGI app serving ``/livez``, ``/readyz`` and ``/startupz`` (see the module docs).

    Args:
        max_age: Seconds an answer is reused before the checks run again (0: every probe
            runs them; concurrent probes still share one run).
        timeout: Seconds allowed to each entry-point check (a registered check has its own).
        entry_points: Run the installed packages' ``utils.health`` checks on ``/readyz``
            (configured from the environment); False for registered checks only.
        fallback: An ASGI app that gets every other path, websockets and lifespan events
            (put the probes in front of an app instead of mounting them in it).
        clock: A monotonic clock for ``max_age`` (inject a fake one in tests).

    Raises:
        ValidationError: A negative or absurd ``max_age``, a ``timeout`` that is not > 0.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = Starlette()
        >>> app.mount("/health", health_app(max_age=2.0))  # GET /health/readyz
    """
    return HealthApp(_Probes(max_age, timeout, entry_points, clock), fallback)


def wsgi_health_app(
    *,
    max_age: float | timedelta = 1.0,
    timeout: float | timedelta = 1.0,
    entry_points: bool = True,
    fallback: WSGIApplication | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> WSGIHealthApp:
    """The WSGI twin of :func:`health_app` (Flask, Django, any WSGI server).

    Sync checks run in threads with their timeouts; an async check runs in a fresh event
    loop of its own thread (prefer sync checks, and sync clients, with WSGI).

    Args:
        max_age: Seconds an answer is reused before the checks run again.
        timeout: Seconds allowed to each entry-point check (a registered check has its own).
        entry_points: Run the installed packages' ``utils.health`` checks on ``/readyz``.
        fallback: A WSGI app that gets every other path, e.g. Django's
            ``get_wsgi_application()``.
        clock: A monotonic clock for ``max_age``.

    Example:
        >>> probes = wsgi_health_app(entry_points=False)
        >>> seen = []
        >>> body = probes(
        ...     {"PATH_INFO": "/livez", "REQUEST_METHOD": "GET"},
        ...     lambda status, headers: seen.append(status),
        ... )
        >>> seen, json.loads(b"".join(body))["status"]
        (['200 OK'], 'ok')
    """
    return WSGIHealthApp(_Probes(max_age, timeout, entry_points, clock), fallback)
