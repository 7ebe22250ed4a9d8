"""serve_asgi / serve_wsgi: real servers on loopback for the family's HTTP tests."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import httpx
import pytest

from utils.core.testing import serve_asgi, serve_wsgi


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # pragma: no cover - lifespan="auto" never starts one here
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_serve_asgi_answers_over_a_real_socket_and_stops() -> None:
    with serve_asgi(_hello) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/ping").text == "/ping"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/ping", timeout=1.0)


def test_serve_asgi_reports_an_app_that_cannot_start() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="failed to start"), serve_asgi(broken, lifespan="on"):
        pass  # pragma: no cover - never reached


def test_serve_asgi_stops_even_when_a_handler_never_returns() -> None:
    entered = threading.Event()
    release = threading.Event()

    async def hang(scope: dict[str, Any], receive: Any, send: Any) -> None:
        entered.set()
        while not release.is_set():  # a handler stuck in a slow upstream
            await _yield()

    with serve_asgi(hang, lifespan="off", timeout_graceful_shutdown=0) as url:
        client = threading.Thread(
            target=lambda: _swallow(lambda: httpx.get(url, timeout=30.0)), daemon=True
        )
        client.start()
        assert entered.wait(10.0)
    release.set()
    client.join(10.0)
    assert not client.is_alive()


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def _swallow(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_serve_wsgi_runs_each_request_in_a_thread() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    with serve_wsgi(app) as url:
        response = httpx.get(url + "/made")
        assert (response.status_code, response.text) == (201, "/made")
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1.0)
