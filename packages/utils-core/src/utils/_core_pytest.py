"""Pytest fixtures of utils-core, registered through the ``pytest11`` entry point.

Pytest imports this module at start-up in every project that installs utils-core. It lives
outside ``utils.core`` on purpose: importing anything inside that package would import
``utils.core`` (and structlog) into every test run. Fixtures import what they need when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from utils.core.metrics import InMemorySink
    from utils.core.testing import FakeClock, PrivateRedis, SpanRecorder


@pytest.fixture
def utils_logs() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted during the test, as redacted event dicts."""
    from utils.core.log import capture_logs

    with capture_logs() as entries:
        yield entries


@pytest.fixture
def utils_metrics() -> Iterator[InMemorySink]:
    """An in-memory metrics sink installed for the duration of the test."""
    from utils.core.testing import metrics_sink

    with metrics_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def utils_redis_url() -> Iterator[str]:
    """URL of a reachable Redis (or a throwaway local one); skips locally, fails under CI."""
    from utils.core.testing import redis_for_tests

    with redis_for_tests() as url:
        yield url


@pytest.fixture(scope="session")
def utils_postgres_url() -> str:
    """URL of a reachable PostgreSQL; skips locally and fails under CI=true without one."""
    from utils.core.testing import require_service

    return require_service("postgres")


@pytest.fixture
def utils_redis(utils_redis_url: str) -> Iterator[Any]:
    """A fail-fast ``redis.Redis`` client of the test Redis, closed after the test."""
    from utils.core.redis import fail_fast_client

    client = fail_fast_client(utils_redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def utils_redis_namespace(utils_redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    import uuid

    from utils.core.redis import fail_fast_client

    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = fail_fast_client(utils_redis_url)
    try:
        batch = list(client.scan_iter(match=f"{namespace}*", count=500))
        while batch:
            client.unlink(*batch[:500])
            batch = batch[500:]
    finally:
        client.close()


@pytest.fixture
def utils_private_redis() -> Iterator[PrivateRedis]:
    """A throwaway ``redis-server`` on a free port, for tests that stop or freeze Redis."""
    from utils.core.testing import private_redis

    with private_redis() as server:
        yield server


@pytest.fixture
def utils_fake_clock() -> FakeClock:
    """A :class:`~utils.core.testing.FakeClock` starting at 0."""
    from utils.core.testing import FakeClock

    return FakeClock()


@pytest.fixture
def utils_spans() -> Iterator[SpanRecorder]:
    """Spans recorded by the real OpenTelemetry SDK, with the family's span events on."""
    from utils.core.testing import recorded_spans

    with recorded_spans() as spans:
        yield spans
