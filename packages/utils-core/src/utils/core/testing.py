"""Test helpers for applications and for the ``utils`` packages' own suites.

Pytest fixtures (registered through the ``pytest11`` entry point, imported lazily):

- ``utils_logs``: a list that collects every log event emitted during the test;
- ``utils_metrics``: an :class:`~utils.core.InMemorySink` installed for the test;
- ``utils_redis_url`` / ``utils_postgres_url``: the URL of a real server, per the service
  policy below;
- ``utils_redis``: a fail-fast client of that Redis
  (:func:`utils.core.redis.fail_fast_client`), closed after the test;
- ``utils_redis_namespace``: a unique key prefix whose keys are deleted after the test;
- ``utils_private_redis``: a :class:`PrivateRedis` of the test's own, to stop, freeze and
  restart (fault tests never touch the shared server);
- ``utils_fake_clock``: a :class:`FakeClock`;
- ``utils_spans``: a :class:`SpanRecorder` (the real OpenTelemetry SDK, span events on).

Real servers on loopback: :func:`serve_asgi` (uvicorn) and :func:`serve_wsgi` (wsgiref) run
an application in a thread for a ``with`` block and yield its base URL.

Service policy (one place, used by every package's tests): the URL comes from
``UTILS_TEST_REDIS_URL`` / ``UTILS_TEST_POSTGRES_URL`` (default: the standard localhost port).
When nothing answers there, a Redis test may get a throwaway ``redis-server`` started from a
local binary; otherwise the test is skipped with one line saying what to start — except under
``CI=true``, where a missing service fails the test.

Example:
    >>> from utils.core.testing import capture_logs
    >>> from utils.core import get_logger
    >>> with capture_logs() as logs:
    ...     get_logger("utils.demo").warning("demo.warned")
    >>> logs[0]["event"]
    'demo.warned'
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from utils.core._redact import redact_text
from utils.core._test_servers import serve_asgi, serve_wsgi
from utils.core._test_spans import SpanRecorder, recorded_spans
from utils.core.errors import UnavailableError
from utils.core.log import capture_logs
from utils.core.metrics import InMemorySink, set_metrics_sink
from utils.core.validate import TRUE_WORDS

__all__ = [
    "DOCTEST_OPTIONS",
    "SERVICES",
    "FakeClock",
    "PrivateRedis",
    "ServiceSpec",
    "SpanRecorder",
    "async_wait_until",
    "capture_logs",
    "find_free_port",
    "in_ci",
    "metrics_sink",
    "package_modules",
    "private_redis",
    "recorded_spans",
    "redis_for_tests",
    "require_service",
    "run_doctests",
    "serve_asgi",
    "serve_wsgi",
    "service_reachable",
    "service_url",
    "wait_until",
]

ServiceName = Literal["redis", "postgres"]


@dataclass(frozen=True)
class ServiceSpec:
    """Where a test service is looked for, and how to tell a person to start it.

    Example:
        >>> SERVICES["redis"].env_var
        'UTILS_TEST_REDIS_URL'
    """

    name: str
    env_var: str
    default_url: str
    hint: str


SERVICES: dict[str, ServiceSpec] = {
    "redis": ServiceSpec(
        "redis",
        "UTILS_TEST_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "start one with `redis-server --port 6379` or set UTILS_TEST_REDIS_URL",
    ),
    "postgres": ServiceSpec(
        "postgres",
        "UTILS_TEST_POSTGRES_URL",
        "postgresql://postgres@127.0.0.1:5432/test",
        "start one (e.g. `pg_ctlcluster 15 main start`) or set UTILS_TEST_POSTGRES_URL",
    ),
}


def in_ci(environ: dict[str, str] | None = None) -> bool:
    """True when running under CI (``CI`` set to a true value), where skips become failures.

    Example:
        >>> in_ci({"CI": "true"}), in_ci({"CI": "0"}), in_ci({})
        (True, False, False)
    """
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in TRUE_WORDS


def service_url(name: ServiceName, environ: dict[str, str] | None = None) -> str:
    """The URL configured for service ``name`` (environment variable or default).

    Example:
        >>> service_url("redis", {})
        'redis://127.0.0.1:6379/0'
    """
    spec = SERVICES[name]
    source = os.environ if environ is None else environ
    return source.get(spec.env_var) or spec.default_url


def service_reachable(url: str, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at the URL's host and port.

    For ``redis://`` URLs the server must also answer ``PING`` (a half-dead port or another
    protocol does not count).

    Example:
        >>> service_reachable(f"redis://127.0.0.1:{find_free_port()}/0")
        False
    """
    parts = urlsplit(url)
    default_port = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}
    port = parts.port or default_port.get(parts.scheme, 0)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout) as conn:
            if parts.scheme == "redis":
                conn.settimeout(timeout)
                conn.sendall(b"PING\r\n")
                reply = conn.recv(64)
                return reply.startswith((b"+PONG", b"-NOAUTH"))
            return True
    except OSError:
        return False


def _unavailable(message: str) -> NoReturn:
    import pytest

    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


def require_service(name: ServiceName) -> str:
    """Return the URL of a reachable ``name`` server, or skip (locally) / fail (CI) the test.

    Example:
        >>> url = require_service("redis")  # doctest: +SKIP
    """
    spec = SERVICES[name]
    url = service_url(name)
    if service_reachable(url):
        return url
    _unavailable(f"{spec.name} is not reachable at {redact_text(url)}: {spec.hint}")


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    *,
    interval: float = 0.001,
    message: str = "condition not reached",
) -> float:
    """Wait until ``predicate()`` is true; return the seconds it took.

    For what a test cannot drive itself — another thread reaching a point, a pub/sub message
    arriving, a server expiring a key — where no clock can be injected. Polls every
    ``interval`` seconds and fails the test (``AssertionError``) after ``timeout``.
    Everything a test *can* drive should use an injected clock instead.

    Example:
        >>> wait_until(lambda: True) < 1.0
        True
    """
    started = time.monotonic()
    while not predicate():
        waited = time.monotonic() - started
        assert waited < timeout, f"{message} within {timeout:g}s"
        time.sleep(interval)
    return time.monotonic() - started


class FakeClock:
    """A monotonic clock that moves only when told: inject it instead of sleeping.

    Pass it wherever ``utils`` code takes ``clock=`` (a callable returning seconds) and
    ``sleep=`` / ``asleep=``: sleeping advances the clock at once and records the duration,
    so a test of backoff, TTLs, rate limits or breaker recovery runs in microseconds and
    always the same way.

    Args:
        start: The first reading.

    Example:
        >>> clock = FakeClock(100.0)
        >>> clock()
        100.0
        >>> clock.sleep(1.5)
        >>> clock.monotonic(), clock.sleeps
        (101.5, [1.5])
    """

    __slots__ = ("now", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        #: The current reading; assign to jump.
        self.now: float = float(start)
        #: Every duration passed to :meth:`sleep` / :meth:`asleep`, in order.
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The current reading (the clock is its own ``time.monotonic``)."""
        return self.now

    def monotonic(self) -> float:
        """The current reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward: it is monotonic).

        Example:
            >>> clock = FakeClock()
            >>> clock.advance(2)
            >>> clock()
            2.0
        """
        if not seconds >= 0:  # NaN too: it would make every later comparison False
            raise ValueError(f"a monotonic clock cannot go back ({seconds!r})")
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and advance by it, without waiting."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """The async twin of :meth:`sleep` (still yields to the event loop once)."""
        import asyncio

        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


async def async_wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    *,
    interval: float = 0.001,
    message: str = "condition not reached",
) -> float:
    """The async twin of :func:`wait_until`: yields to the event loop between checks.

    Example:
        >>> import asyncio
        >>> asyncio.run(async_wait_until(lambda: True)) < 1.0
        True
    """
    import asyncio

    started = time.monotonic()
    while not predicate():
        waited = time.monotonic() - started
        assert waited < timeout, f"{message} within {timeout:g}s"
        await asyncio.sleep(interval)
    return time.monotonic() - started


#: The doctest options every family package runs its docstring examples with.
DOCTEST_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def package_modules(package: str) -> list[str]:
    """The package and every module under it, by dotted name (for ``parametrize``).

    Example:
        >>> "utils.core.deadline" in package_modules("utils.core")
        True
    """
    root = importlib.import_module(package)
    names = [package]
    names += [info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    return sorted(names)


def run_doctests(module: str, *, optionflags: int = DOCTEST_OPTIONS) -> int:
    """Run the docstring examples of ``module``; fail the test with the report; return the count.

    Every public name of the family carries an example; this is how each package's tests
    prove they still run (parametrize it over :func:`package_modules`).

    Example:
        >>> run_doctests("utils.core.validate") > 0
        True
    """
    loaded = importlib.import_module(module)
    runner = doctest.DocTestRunner(optionflags=optionflags)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(loaded, loaded.__name__):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    return results.attempted


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Example:
        >>> 1024 <= find_free_port() <= 65535
        True
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throwaway ``redis-server`` on a free port, for tests that stop and restart Redis.

    Never point fault tests at the shared server: use this. ``stop()`` and ``start()`` keep
    the same port, so clients reconnect to the same URL.

    Example:
        >>> with private_redis() as server:  # doctest: +SKIP
        ...     server.stop()
        ...     server.start()
    """

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary: str = binary
        self.port: int = port or find_free_port()
        self.url: str = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="utils-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers ``PING``."""
        if self._process is not None and self._process.poll() is None:
            return
        self._process = subprocess.Popen(  # noqa: S603 - a local binary with fixed arguments
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline_at = time.monotonic() + timeout
        while not service_reachable(self.url, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline_at:
                self.stop()
                raise UnavailableError(f"private redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (connections drop at once)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def freeze(self) -> None:
        """Stop the process with SIGSTOP: connections stay open but nothing answers.

        The nastiest outage for a client: every call waits for its socket timeout.
        """
        if self._process is not None:  # send_signal: never to a reaped (reusable) pid
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a process frozen by :meth:`freeze` (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """Start a throwaway ``redis-server`` from a local binary; skip (or fail in CI) without one.

    Example:
        >>> with private_redis() as server:  # doctest: +SKIP
        ...     server.url
        'redis://127.0.0.1:...'
    """
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed: install Redis to run fault tests")
    server = PrivateRedis(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def redis_for_tests() -> Iterator[str]:
    """Yield a Redis URL for a test session, per the service policy.

    The configured server when it answers; otherwise, outside CI, a throwaway
    ``redis-server`` started from the local binary for the duration of the block; otherwise
    a skip (locally) or a failure (``CI=true``).

    Example:
        >>> with redis_for_tests() as url:  # doctest: +SKIP
        ...     url.startswith("redis://")
        True
    """
    url = service_url("redis")
    if service_reachable(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None or in_ci():
        require_service("redis")  # skips or fails with the one-line explanation
    assert binary is not None
    server = PrivateRedis(binary)
    try:
        server.start()
        yield server.url
    finally:
        server.close()


@contextmanager
def metrics_sink() -> Iterator[InMemorySink]:
    """Install an :class:`~utils.core.InMemorySink` for the block, then restore the previous.

    Example:
        >>> with metrics_sink() as sink:
        ...     from utils.core import timed
        ...
        ...     with timed("job.run"):
        ...         pass
        >>> sink.count("job.run")
        1
    """
    sink = InMemorySink()
    previous = set_metrics_sink(sink)
    try:
        yield sink
    finally:
        set_metrics_sink(previous)
