"""utils.resilience against a REAL flaky HTTP upstream on loopback, with httpx, requests, aiohttp.

The upstream is a small ASGI app served by uvicorn (``utils.core.testing.serve_asgi``) that
answers each request with the next step of a per-test script: a status with headers, a hang
(until the test releases it), or a response cut off mid-body. Two raw socket servers add what
an HTTP server cannot be made to do: reset the connection without answering, and present a
certificate the client refuses. Retry waits are skipped (``instant_retries``) and recorded;
the only real waits are the deadline tests' 0.3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import requests

from utils.core import (
    NotFoundError,
    OperationTimeoutError,
    ThrottledError,
    UnavailableError,
    clamp_timeout,
    deadline,
    is_transient,
)
from utils.core.testing import FakeClock, async_wait_until, serve_asgi, wait_until
from utils.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    HTTPNotFoundError,
    HTTPUnavailableError,
    counts_as_failure,
    raise_for_status,
    retry,
)
from utils.resilience.retry import Retry
from utils.resilience.testing import instant_retries

Step = tuple[Any, ...]
OK: Step = ("status", 200, {})


def status(code: int, **headers: str) -> Step:
    return ("status", code, {name.replace("_", "-"): value for name, value in headers.items()})


def http_date(seconds_from_now: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


HANG: Step = ("hang",)
DROP: Step = ("drop",)  # headers and part of the body, then the connection closes


class Upstream:
    """An ASGI app playing a script of steps, one per request; 200 once it runs out."""

    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.paths: list[str] = []
        self.release = threading.Event()

    @property
    def hits(self) -> int:
        return len(self.paths)

    def play(self, *steps: Step) -> None:
        self.script.extend(steps)

    def reset(self) -> None:
        self.release.set()  # whatever still hangs from the last test answers now
        self.release = threading.Event()
        self.script.clear()
        self.paths.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        step = self.script.popleft() if self.script else OK
        query = scope["query_string"].decode()
        self.paths.append(scope["path"] + (f"?{query}" if query else ""))
        if step[0] == "hang":
            # A thread waits for the test's event: the server's loop stays free for others.
            release = self.release
            await asyncio.get_running_loop().run_in_executor(None, release.wait)
            step = OK
        if step[0] == "drop":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionAbortedError("the upstream dies mid-body")  # uvicorn drops it
        _, code, headers = step
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": f"answer {code}".encode()})


class RawServer:
    """A TCP server on loopback whose connections are handled by ``handle(conn)`` in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.handle = handle
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the test is over
                return
            self.connections += 1
            # OSError: the client gave up first, nothing to do.
            with conn, contextlib.suppress(OSError):
                self.handle(conn)

    def close(self) -> None:
        # On Linux, closing a listening socket does not wake a thread blocked in accept();
        # shutting it down does (accept() fails with EINVAL).
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5.0)


def reset_without_answering(conn: socket.socket) -> None:
    conn.recv(65536)  # the request arrived: the client now waits for an answer...
    # ...and gets a TCP reset: SO_LINGER with a zero timeout makes close() send RST.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# A self-signed certificate for 127.0.0.1 (valid until 2126), generated for these tests only:
# no client trusts it, which is the point.
CERTIFICATE = """-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUSgeOPpgAIllGltKVdCN0fDZH+xwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMzEyMDA0NVoYDzIxMjYxMTA5
MTIwMDQ1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATdinq0YOZORwVQVVJCSeZ9UCic12tnpFuUxJhaZxgzTtW7t0+j487S
2TrHjAc4Aw4m+Z10sIq37RDaauRZGPIko28wbTAdBgNVHQ4EFgQUnkhU2BoUU4tV
S+I75rl91OTJN20wHwYDVR0jBBgwFoAUnkhU2BoUU4tVS+I75rl91OTJN20wDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDRwAwRAIgOpApkUIxwSgHH4rPdfk2zqFbGdZlUnazNIjclQ9iwHUCIDAx
yKWm0ZNqceZqd7Kt8Vd9G3Um5oKYy52cn2P1W01a
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLTqw8+BIadKjPPi+
Jdd7mOEbRxL2sbDsiieH0hY1RLehRANCAATdinq0YOZORwVQVVJCSeZ9UCic12tn
pFuUxJhaZxgzTtW7t0+j487S2TrHjAc4Aw4m+Z10sIq37RDaauRZGPIk
-----END PRIVATE KEY-----
"""


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with serve_asgi(app) as url:
        try:
            yield app, url
        finally:
            app.release.set()  # no handler may still hang when uvicorn stops


@pytest.fixture
def upstream(server: tuple[Upstream, str]) -> Iterator[Upstream]:
    app, _ = server
    app.reset()
    yield app
    app.reset()


@pytest.fixture
def url(server: tuple[Upstream, str]) -> str:
    return server[1] + "/v1/prices?api_key=s3cr3t-key&currency=EUR"


@pytest.fixture
def reset_server() -> Iterator[RawServer]:
    raw = RawServer(reset_without_answering)
    yield raw
    raw.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[RawServer]:
    (tmp_path / "cert.pem").write_text(CERTIFICATE)
    (tmp_path / "key.pem").write_text(KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    def handshake(conn: socket.socket) -> None:
        # The client refuses the certificate: that is the test.
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True).close()

    raw = RawServer(handshake)
    yield raw
    raw.close()


def fast_retry(**options: Any) -> Retry:
    return retry(attempts=4, initial=0.01, jitter="none", **options)


# ------------------------------------------------------------ retries honour Retry-After


def test_httpx_sync_retries_honour_retry_after(upstream: Upstream, url: str) -> None:
    upstream.play(status(503, Retry_After="2"), status(429, Retry_After=http_date(5)), OK)

    with httpx.Client() as client:

        @fast_retry()
        def prices() -> str:
            return raise_for_status(client.get(url, timeout=clamp_timeout(5.0))).text

        with instant_retries() as delays:
            assert prices() == "answer 200"
    assert upstream.hits == 3
    assert delays[0] == 2.0
    assert 3.0 < delays[1] <= 5.0  # an HTTP date: whole seconds, read against the wall clock


def test_httpx_raw_errors_are_retried_with_retry_after(upstream: Upstream, url: str) -> None:
    # No raise_for_status of ours: httpx's own HTTPStatusError, through the classifier.
    upstream.play(status(503, Retry_After="4"), status(502), OK)
    with httpx.Client() as client:

        @fast_retry()
        def prices() -> int:
            return client.get(url).raise_for_status().status_code

        with instant_retries() as delays:
            assert prices() == 200
    assert delays == [4.0, 0.02]


def test_httpx_raw_404_is_not_retried(upstream: Upstream, url: str) -> None:
    upstream.play(status(404, Retry_After="1"))
    with httpx.Client() as client, instant_retries() as delays:
        with pytest.raises(httpx.HTTPStatusError):
            fast_retry().call(lambda: client.get(url).raise_for_status())
        upstream.play(status(404))
        with pytest.raises(HTTPNotFoundError) as caught:
            fast_retry().call(lambda: raise_for_status(client.get(url)))
    assert delays == []
    assert upstream.hits == 2
    error = caught.value
    assert "s3cr3t-key" not in str(error)
    assert str(error).startswith("HTTP 404 Not Found from GET http://127.0.0.1:")
    assert error.url is not None
    assert error.url.endswith("/v1/prices?api_key=***&currency=EUR")
    assert error.response.text == "answer 404"


def test_httpx_async_retries_honour_retry_after(upstream: Upstream, url: str) -> None:
    upstream.play(status(429, Retry_After="3"), status(503, Retry_After="1"), OK)

    async def main() -> tuple[str, list[float]]:
        async with httpx.AsyncClient() as client:

            @fast_retry()
            async def prices() -> str:
                response = await client.get(url, timeout=clamp_timeout(5.0))
                return raise_for_status(response).text

            with instant_retries() as delays:
                return await prices(), delays

    text, delays = asyncio.run(main())
    assert text == "answer 200"
    assert delays == [3.0, 1.0]
    assert upstream.hits == 3


def test_requests_retries_honour_retry_after(upstream: Upstream, url: str) -> None:
    upstream.play(status(503, Retry_After="6"), status(429, Retry_After="2"), OK)
    upstream.play(status(503, Retry_After="5"), OK)
    with requests.Session() as session:

        @fast_retry()
        def prices() -> str:
            return raise_for_status(session.get(url, timeout=clamp_timeout(5.0))).text

        @fast_retry()
        def raw() -> int:
            response = session.get(url, timeout=clamp_timeout(5.0))
            response.raise_for_status()
            return response.status_code

        with instant_retries() as delays:
            assert prices() == "answer 200"
            assert raw() == 200
    assert delays == [6.0, 2.0, 5.0]
    assert upstream.hits == 5


def test_aiohttp_retries_honour_retry_after(upstream: Upstream, url: str) -> None:
    upstream.play(status(503, Retry_After="6"), OK, status(429, Retry_After="2"), OK)
    upstream.play(status(404))

    async def main() -> list[float]:
        async with aiohttp.ClientSession() as session:

            @fast_retry()
            async def prices() -> str:
                timeout = aiohttp.ClientTimeout(total=clamp_timeout(5.0))
                async with session.get(url, timeout=timeout) as response:
                    return await raise_for_status(response).text()

            @fast_retry()
            async def raw() -> int:
                async with session.get(url) as response:
                    response.raise_for_status()  # aiohttp's ClientResponseError
                    return response.status

            with instant_retries() as delays:
                assert await prices() == "answer 200"
                assert await raw() == 200
                with pytest.raises(NotFoundError) as caught:
                    await prices()
            error = caught.value
            assert isinstance(error, HTTPNotFoundError)
            assert error.method == "GET"
            assert error.url is not None
            assert error.url.endswith("/v1/prices?api_key=***&currency=EUR")
            assert error.response.status == 404
            return delays

    assert asyncio.run(main()) == [6.0, 2.0]
    assert upstream.hits == 5


# --------------------------------------------------------------------------- the breaker


def test_breaker_opens_then_lets_exactly_one_probe_through_sync(
    upstream: Upstream, url: str
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("upstream-sync", fail_max=2, reset_timeout=30, clock=clock)
    upstream.play(status(503), status(503), HANG, OK)
    with httpx.Client() as client:

        @breaker
        def prices() -> str:
            return raise_for_status(client.get(url, timeout=5.0)).text

        for _ in range(2):
            with pytest.raises(HTTPUnavailableError):
                prices()
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            prices()
        assert upstream.hits == 2  # refused without calling the upstream

        clock.advance(30)  # half-open: one probe may go
        outcome: list[str] = []
        probe = threading.Thread(target=lambda: outcome.append(prices()))
        probe.start()
        wait_until(lambda: upstream.hits == 3, message="the probe did not reach the upstream")
        with pytest.raises(CircuitOpenError):
            prices()  # the probe is in flight: everyone else still fails fast
        assert upstream.hits == 3
        upstream.release.set()
        probe.join(timeout=10)
        assert outcome == ["answer 200"]
        assert breaker.state == "closed"
        assert prices() == "answer 200"
    assert upstream.hits == 4


def test_breaker_opens_then_lets_exactly_one_probe_through_async(
    upstream: Upstream, url: str
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("upstream-async", fail_max=2, reset_timeout=30, clock=clock)
    upstream.play(status(502), status(504), HANG, OK)

    async def main() -> None:
        async with httpx.AsyncClient() as client:

            @breaker
            async def prices() -> str:
                return raise_for_status(await client.get(url, timeout=5.0)).text

            for _ in range(2):
                with pytest.raises(UnavailableError):
                    await prices()
            assert breaker.state == "open"
            clock.advance(30)
            probe = asyncio.create_task(prices())
            await async_wait_until(lambda: upstream.hits == 3)
            with pytest.raises(CircuitOpenError):
                await prices()
            assert upstream.hits == 3
            upstream.release.set()
            assert await probe == "answer 200"
            assert breaker.state == "closed"

    asyncio.run(main())
    assert upstream.hits == 3


def test_breaker_ignores_client_errors(upstream: Upstream, url: str) -> None:
    breaker = CircuitBreaker("upstream-4xx", fail_max=2)
    upstream.play(status(404), status(404), status(429), status(503))
    with httpx.Client() as client:
        expected: type[Exception]
        for expected in (NotFoundError, NotFoundError):
            with pytest.raises(expected):
                breaker.call(lambda: raise_for_status(client.get(url)))
        assert breaker.state == "closed"  # a 404 says nothing about the upstream's health
        for expected in (ThrottledError, UnavailableError):
            with pytest.raises(expected):
                breaker.call(lambda: raise_for_status(client.get(url)))
    assert breaker.state == "open"


# ----------------------------------------------------------------- the deadline cuts a hang

SHORT = 0.3  # the only real wait of this module: a socket timeout cut by the deadline


def assert_cut_by_deadline(error: BaseException, started: float) -> None:
    assert time.monotonic() - started < 3.0  # not the 5 s socket timeout asked for
    assert is_transient(error)  # a timeout: retryable, but no time is left to retry
    assert "(deadline)" in getattr(error, "__notes__", [""])[-1]


def test_deadline_cuts_a_hang_httpx_sync(upstream: Upstream, url: str) -> None:
    upstream.play(HANG)
    with httpx.Client() as client:

        @fast_retry()
        def prices() -> str:
            return raise_for_status(client.get(url, timeout=clamp_timeout(5.0, "GET"))).text

        started = time.monotonic()
        with deadline(SHORT):
            with pytest.raises(httpx.ReadTimeout) as caught:
                prices()
            assert_cut_by_deadline(caught.value, started)
            # The budget is spent: the next call fails before sending anything.
            with pytest.raises(OperationTimeoutError):
                prices()
    assert upstream.hits == 1


def test_deadline_cuts_a_hang_httpx_async(upstream: Upstream, url: str) -> None:
    upstream.play(HANG)

    async def main() -> None:
        async with httpx.AsyncClient() as client:

            @fast_retry()
            async def prices() -> str:
                response = await client.get(url, timeout=clamp_timeout(5.0, "GET"))
                return raise_for_status(response).text

            started = time.monotonic()
            async with deadline(SHORT):
                with pytest.raises(httpx.ReadTimeout) as caught:
                    await prices()
                assert_cut_by_deadline(caught.value, started)
                with pytest.raises(OperationTimeoutError):
                    clamp_timeout(5.0, "GET")

    asyncio.run(main())
    assert upstream.hits == 1


def test_deadline_cuts_a_hang_requests(upstream: Upstream, url: str) -> None:
    upstream.play(HANG)

    @fast_retry()
    def prices() -> str:
        return raise_for_status(requests.get(url, timeout=clamp_timeout(5.0, "GET"))).text

    started = time.monotonic()
    with deadline(SHORT), pytest.raises(requests.ReadTimeout) as caught:
        prices()
    assert_cut_by_deadline(caught.value, started)
    assert upstream.hits == 1


def test_deadline_cuts_a_hang_aiohttp(upstream: Upstream, url: str) -> None:
    upstream.play(HANG)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:

            @fast_retry()
            async def prices() -> str:
                timeout = aiohttp.ClientTimeout(total=clamp_timeout(5.0, "GET"))
                async with session.get(url, timeout=timeout) as response:
                    return await raise_for_status(response).text()

            started = time.monotonic()
            async with deadline(SHORT):
                with pytest.raises(asyncio.TimeoutError) as caught:
                    await prices()
                assert_cut_by_deadline(caught.value, started)

    asyncio.run(main())
    assert upstream.hits == 1


# --------------------------------------------- dropped and reset connections, bad certificates


def test_a_response_cut_mid_body_is_retried(upstream: Upstream, url: str) -> None:
    upstream.play(DROP, OK, DROP, OK, DROP, OK)
    errors: list[BaseException] = []

    def record(state: Any) -> None:
        errors.append(state.error)

    policy = fast_retry(before_sleep=record)
    with instant_retries(), httpx.Client() as client:
        assert policy.call(lambda: raise_for_status(client.get(url)).text) == "answer 200"
    with instant_retries(), requests.Session() as session:
        assert policy.call(lambda: raise_for_status(session.get(url)).text) == "answer 200"

    async def with_aiohttp() -> str:
        async with aiohttp.ClientSession() as session:

            async def get() -> str:
                async with session.get(url) as response:
                    return await raise_for_status(response).text()

            with instant_retries():
                return await policy.acall(get)

    assert asyncio.run(with_aiohttp()) == "answer 200"
    assert [type(error).__name__ for error in errors] == [
        "RemoteProtocolError",
        "ChunkedEncodingError",
        "ClientPayloadError",
    ]
    assert upstream.hits == 6


def test_a_reset_connection_is_transient(
    upstream: Upstream, url: str, reset_server: RawServer
) -> None:
    dead = f"http://127.0.0.1:{reset_server.port}/v1/prices"
    errors: list[BaseException] = []
    for attempt in (
        lambda: httpx.get(dead),
        lambda: requests.get(dead, timeout=5),
    ):
        with pytest.raises(Exception) as caught:
            attempt()
        errors.append(caught.value)

    async def with_clients() -> None:
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.TransportError) as by_httpx:
                await client.get(dead)
            errors.append(by_httpx.value)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError) as by_aiohttp:
                await session.get(dead)
            errors.append(by_aiohttp.value)

    asyncio.run(with_clients())
    assert reset_server.connections >= 4
    for error in errors:
        assert is_transient(error), repr(error)
        assert counts_as_failure(error), repr(error)

    # A load balancer sending the retry to a healthy replica: the retry gets through.
    targets = iter([dead, url])
    with instant_retries() as delays, httpx.Client() as client:
        text = fast_retry().call(lambda: raise_for_status(client.get(next(targets))).text)
    assert text == "answer 200"
    assert len(delays) == 1


def test_a_refused_certificate_is_not_retried(tls_server: RawServer) -> None:
    https = f"https://127.0.0.1:{tls_server.port}/v1/prices"
    errors: list[BaseException] = []
    with instant_retries() as delays:
        for attempt in (lambda: httpx.get(https), lambda: requests.get(https, timeout=5)):
            with pytest.raises(Exception) as caught:
                fast_retry().call(attempt)
            errors.append(caught.value)

        async def with_aiohttp() -> None:
            async with aiohttp.ClientSession() as session:

                async def get() -> int:
                    async with session.get(https) as response:
                        return response.status

                with pytest.raises(aiohttp.ClientError) as caught:
                    await fast_retry().acall(get)
                errors.append(caught.value)

        asyncio.run(with_aiohttp())
    assert delays == []  # not one retry: the certificate will be refused again
    assert tls_server.connections == 3
    assert [type(error).__name__ for error in errors] == [
        "ConnectError",
        "SSLError",
        "ClientConnectorCertificateError",
    ]
    for error in errors:
        assert not is_transient(error), repr(error)
