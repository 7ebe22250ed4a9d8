"""utils.core's request-context middleware against asgi-correlation-id, side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_web.py [--quick] [--json PATH]
[--verbose]`` where utils-core and asgi-correlation-id are installed.

Both middlewares wrap the same trivial raw ASGI application (one ``http.response.start``, one
``http.response.body``, fresh messages per response) and are called directly, in-process,
with a fresh 6-header request scope per request and no-op ``receive``/``send``: no server and
no HTTP parsing, so the figures are the middlewares' own cost. Each measurement runs ``n``
requests awaited one after the other inside one coroutine on one event loop (the loop's own
cost is paid once per measurement, not per request). Logging is configured the same way for
every side, ``configure_logging(json)`` writing to ``os.devnull`` (a real file, written and
flushed per line).

a. the middleware alone, a request without an id: ours (generates an id, binds
   request_id/method/path, echoes it, records the access metric to the default no-op sink;
   the access *line* filtered out by level) vs ``CorrelationIdMiddleware`` (generates an id,
   sets its context variable, writes it into the request headers, echoes it). Target
   ours/peer <= 1.2.
b. the same with a valid incoming ``X-Request-ID`` (a UUID4 in hex, which both accept).
   Target ours/peer <= 1.2.
c. the whole job, one JSON access line per request: ours with its ``http.request`` line vs
   ``CorrelationIdMiddleware`` plus uvicorn's access line (the same ``uvicorn.access`` stdlib
   call uvicorn makes, with asgi-correlation-id's ``CorrelationIdFilter`` on that logger),
   rendered by the same utils handler. Target ours/peer <= 1.2.
d. informational: ours with its access line vs ``CorrelationIdMiddleware`` alone (which
   logs nothing): what one JSON line costs next to a middleware.
e. informational: each middleware against the bare application: the absolute per-request
   overhead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from _harness import (
    Measure,
    Result,
    compare,
    environment,
    parse_args,
    print_table,
    write_json,
)
from asgi_correlation_id import CorrelationIdMiddleware
from asgi_correlation_id.log_filters import CorrelationIdFilter

from utils.core import RequestContextMiddleware, capture_logs, configure_logging, reset_logging

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"python-httpx/0.28"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"x-forwarded-for", b"10.0.0.1"),
]
INCOMING_ID = uuid.uuid4().hex.encode()


def scope(with_id: bool) -> dict[str, Any]:
    headers = [*HEADERS, (b"x-request-id", INCOMING_ID)] if with_id else list(HEADERS)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/42",
        "raw_path": b"/users/42",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The trivial application both middlewares wrap.

    Fresh messages per response, as frameworks build them: asgi-correlation-id writes the
    header into the message it is given, so a shared message would grow with every request.
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


class UvicornAccessLine:
    """The access line uvicorn writes when a response starts, as a middleware around the peer.

    The same call as ``uvicorn.protocols.http.h11_impl`` (``access_logger.info`` with the
    client, method, path, HTTP version and status), inside the request, so the peer's context
    is set when it runs.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.logger = logging.getLogger("uvicorn.access")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        info = self.logger.info

        async def send_logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                info(
                    '%s - "%s %s HTTP/%s" %d',
                    "%s:%d" % scope["client"],  # noqa: UP031 - uvicorn's own formatting
                    scope["method"],
                    scope["path"],
                    scope["http_version"],
                    message["status"],
                )
            await send(message)

        await self.app(scope, receive, send_logged)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def requests(
    asgi: Callable[..., Any], with_id: bool, configure: Callable[[], None] = lambda: None
) -> Measure:
    """A measurement of ``n`` requests through ``asgi``, in CPU time, GC off (as timeit)."""
    loop = asyncio.new_event_loop()

    async def run(scopes: list[dict[str, Any]]) -> None:
        for request_scope in scopes:
            await asgi(request_scope, receive, send)

    def measure(n: int) -> float:
        configure()  # untimed: sides that need another logging configuration set it here
        # A fresh scope per request, as a server makes one (asgi-correlation-id writes the
        # generated id into the request headers), built outside the timing.
        scopes = [scope(with_id) for _ in range(n)]
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.process_time()
            loop.run_until_complete(run(scopes))
            return time.process_time() - started
        finally:
            if gc_was_enabled:
                gc.enable()

    return measure


def check_sides(devnull_configure: Callable[[], None]) -> list[str]:
    """Problems with what the sides do (empty when both really did their job), untimed."""
    problems = []
    sent: list[Any] = []

    async def record(message: Any) -> None:
        sent.append(message)

    for name, middleware in (
        ("ours", RequestContextMiddleware(app)),
        ("asgi-correlation-id", CorrelationIdMiddleware(app)),
    ):
        for with_id in (False, True):
            sent.clear()
            with capture_logs() as logs:
                asyncio.run(middleware(scope(with_id), receive, record))
            echoed = [v for k, v in sent[0]["headers"] if k == b"x-request-id"]
            if len(echoed) != 1 or (with_id and echoed[0] != INCOMING_ID):
                problems.append(f"{name}: echoed {echoed} (incoming id: {with_id})")
            if name == "ours" and [entry["event"] for entry in logs] != ["http.request"]:
                problems.append(f"ours: expected one http.request event, got {logs}")
    devnull_configure()
    return problems


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0])
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives for the run

    def with_access_line() -> None:
        configure_logging(level="INFO", format="json", stream=devnull)

    def without_access_line() -> None:
        configure_logging(
            level="INFO",
            format="json",
            stream=devnull,
            levels={"utils.core.middleware": "WARNING"},
        )

    for problem in check_sides(with_access_line):
        print(f"WARNING: {problem}", file=sys.stderr)

    ours = RequestContextMiddleware(app)
    peer = CorrelationIdMiddleware(app)
    access = logging.getLogger("uvicorn.access")
    access.addFilter(CorrelationIdFilter())
    peer_with_line = UvicornAccessLine(peer)
    results: list[Result] = []
    for label, with_id in (
        ("a. middleware, no incoming id", False),
        ("b. middleware, valid id", True),
    ):
        results.append(
            compare(
                label,
                ours=(
                    "RequestContextMiddleware, access line filtered out",
                    requests(ours, with_id, without_access_line),
                ),
                peer=(
                    "asgi_correlation_id.CorrelationIdMiddleware",
                    requests(peer, with_id, without_access_line),
                ),
                settings=settings,
                max_ratio=1.2,
                target="<= 1.20",
            )
        )
    results.append(
        compare(
            "c. with one JSON access line",
            ours=(
                "RequestContextMiddleware + its http.request line",
                requests(ours, False, with_access_line),
            ),
            peer=(
                "CorrelationIdMiddleware + uvicorn's access line",
                requests(peer_with_line, False, with_access_line),
            ),
            settings=settings,
            max_ratio=1.2,
            target="<= 1.20",
        )
    )
    results.append(
        compare(
            "d. with line vs peer without",
            ours=(
                "RequestContextMiddleware + its http.request line",
                requests(ours, False, with_access_line),
            ),
            peer=(
                "asgi_correlation_id.CorrelationIdMiddleware (logs nothing)",
                requests(peer, False, with_access_line),
            ),
            settings=settings,
        )
    )
    for label, middleware, configure in (
        ("e. ours vs bare app", ours, without_access_line),
        ("e. asgi-correlation-id vs bare app", peer, without_access_line),
    ):
        results.append(
            compare(
                label,
                ours=(type(middleware).__name__, requests(middleware, False, configure)),
                peer=("the application alone", requests(app, False, configure)),
                settings=settings,
            )
        )
    access.filters.clear()
    reset_logging()
    devnull.close()

    env = environment({"asgi_correlation_id": _version("asgi-correlation-id"), "sink": os.devnull})
    title = (
        f"bench_web  Python {env['python']}, {env['cpus']} CPUs, asgi-correlation-id "
        f"{env['asgi_correlation_id']}, in-process ASGI calls"
    )
    print_table(title, results, settings)
    for result in results:
        if result.name.startswith("e."):
            print(
                f"  {result.name}: overhead {result.ours_us - result.peer_us:.2f} µs per request"
            )
    if settings.json_path:
        write_json(settings.json_path, "web", results, env)
    return 0  # reports, never gates


def _version(dist: str) -> str | None:
    from _harness import installed_version

    return installed_version(dist)


if __name__ == "__main__":
    sys.exit(main())
