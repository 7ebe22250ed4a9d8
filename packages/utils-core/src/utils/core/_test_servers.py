"""Real HTTP servers on loopback for tests: an ASGI app under uvicorn, a WSGI app under wsgiref.

Re-exported by :mod:`utils.core.testing`. They exist so that middleware, probes and HTTP-client
helpers are proven over real sockets (a real server parses the request, a real client sees the
response bytes) rather than through a framework's in-process test client alone.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from utils.core.errors import ConfigError

__all__ = ["serve_asgi", "serve_wsgi"]


@contextmanager
def serve_asgi(app: Any, *, startup_timeout: float = 10.0, **config: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a free loopback port for the ``with`` block.

    Yields the base URL (``http://127.0.0.1:PORT``). The server runs in a thread of this process,
    so the test can share state (events, counters) with the app. ``config`` goes to
    ``uvicorn.Config``; by default uvicorn leaves logging alone (``log_config=None``) and skips
    lifespan events unless the app handles them (``lifespan="auto"``). On exit the server stops
    accepting, gives open connections one second (``timeout_graceful_shutdown``), then stops.

    Example:
        >>> import httpx
        >>> async def app(scope, receive, send):
        ...     await send({"type": "http.response.start", "status": 204, "headers": []})
        ...     await send({"type": "http.response.body", "body": b""})
        >>> with serve_asgi(app) as url:
        ...     httpx.get(url).status_code
        204
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - the test environments install uvicorn
        raise ConfigError("serve_asgi needs uvicorn: pip install uvicorn") from exc

    config.setdefault("log_config", None)
    config.setdefault("lifespan", "auto")
    config.setdefault("timeout_graceful_shutdown", 1)
    server = uvicorn.Server(uvicorn.Config(app, **config))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # handed to the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        from utils.core.testing import wait_until

        wait_until(
            lambda: server.started or not thread.is_alive(),
            timeout=startup_timeout,
            message=f"uvicorn did not start on port {port}",
        )
        if failure or not server.started:
            raise RuntimeError(f"uvicorn failed to start on port {port}") from (
                failure[0] if failure else None
            )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5.0)
        if thread.is_alive():  # a handler that never returns: stop without waiting for it
            server.force_exit = True
            thread.join(timeout=5.0)
        sock.close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung request must not keep the test process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing: wsgiref would print an access line per request; tests read their own logs."""


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI ``app`` on a free loopback port (threaded wsgiref) for the ``with`` block.

    Yields the base URL (``http://127.0.0.1:PORT``). Each request runs in its own thread.

    Example:
        >>> import httpx
        >>> def app(environ, start_response):
        ...     start_response("200 OK", [("Content-Type", "text/plain")])
        ...     return [b"hello"]
        >>> with serve_wsgi(app) as url:
        ...     httpx.get(url).text
        'hello'
    """
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"wsgi:{port}"
    )
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)
