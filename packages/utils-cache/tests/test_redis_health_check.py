"""redis_check(cache_or_client) on real Redis, and the probes flipping when a private Redis
stops and comes back."""

from __future__ import annotations

import asyncio
import inspect
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from utils.cache import (
    AsyncMemoryCache,
    AsyncRedisCache,
    CacheUnavailableError,
    MemoryCache,
    RedisCache,
    TieredCache,
)
from utils.cache.health import describe_client, redis_check
from utils.core import ValidationError
from utils.core import health as health_module
from utils.core.health import register_check, run_checks
from utils.core.probes import health_app, wsgi_health_app
from utils.core.redis import fail_fast_client
from utils.core.testing import PrivateRedis, find_free_port, serve_wsgi

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = dict(health_module._state.checks)
    yield
    health_module._state.checks = before


def _status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_sync_client_and_caches_pass(utils_redis_url: str) -> None:
    client = fail_fast_client(utils_redis_url)
    try:
        check: Callable[[], Any] = redis_check(client)
        assert not inspect.iscoroutinefunction(check)
        assert check().startswith(f"redis at {describe_client(client)} (")
        with RedisCache(utils_redis_url, namespace="health-check") as cache:
            assert redis_check(cache)().startswith("redis at 127.0.0.1:")
            with TieredCache(MemoryCache(maxsize=10), cache) as tiered:
                assert redis_check(tiered)().startswith("redis at 127.0.0.1:")
    finally:
        client.close()
    assert redis_check(MemoryCache())() == "memory cache: nothing to check"
    assert redis_check(AsyncMemoryCache(MemoryCache()))() == "memory cache: nothing to check"


def test_async_client_and_cache_give_async_checks(utils_redis_url: str) -> None:
    async def scenario() -> list[str]:
        client = redis.asyncio.Redis.from_url(utils_redis_url)
        cache = AsyncRedisCache(utils_redis_url, namespace="health-check")
        try:
            checks = [redis_check(client), redis_check(cache)]
            assert all(inspect.iscoroutinefunction(check) for check in checks)
            return [await check() for check in checks]
        finally:
            await client.aclose()
            await cache.aclose()

    details = asyncio.run(scenario())
    assert all(detail.startswith("redis at 127.0.0.1:") for detail in details)


def test_credentials_never_show_and_bad_targets_are_refused() -> None:
    client = redis.Redis.from_url(f"redis://app:hunter2@127.0.0.1:{find_free_port()}/3")
    assert describe_client(client).endswith("/3")
    assert (
        describe_client(redis.Redis(unix_socket_path="/run/redis.sock")) == "/run/redis.sock?db=0"
    )
    with pytest.raises(CacheUnavailableError) as caught:
        redis_check(client)()
    assert "hunter2" not in str(caught.value)
    assert caught.value.details["server"] == describe_client(client)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(ValidationError, match="redis_check needs a redis-py client"):
        redis_check(object())


def test_probes_flip_to_503_when_redis_stops_and_back(utils_private_redis: PrivateRedis) -> None:
    client = fail_fast_client(utils_private_redis.url)
    register_check("redis", redis_check(client), timeout=2.0)
    try:
        with serve_wsgi(wsgi_health_app(max_age=0, entry_points=False)) as url:
            assert _status(url + "/readyz")[0] == 200
            utils_private_redis.stop()
            status, body = _status(url + "/readyz")
            assert status == 503
            [check] = body["checks"]
            assert check["detail"].startswith(
                f"CacheUnavailableError: redis at 127.0.0.1:{utils_private_redis.port}/0 did not"
            )
            assert _status(url + "/livez")[0] == 200  # liveness never runs readiness
            utils_private_redis.start()
            assert _status(url + "/readyz")[0] == 200
    finally:
        client.close()


def test_async_probe_flips_with_the_app_loop_client(utils_private_redis: PrivateRedis) -> None:
    async def scenario() -> list[int]:
        client = redis.asyncio.Redis.from_url(utils_private_redis.url, socket_timeout=1)
        register_check("redis", redis_check(client), timeout=2.0)
        app = health_app(max_age=0, entry_points=False)
        try:
            statuses = [(await app.answer("readiness")).status]
            utils_private_redis.stop()
            statuses.append((await app.answer("readiness")).status)
            utils_private_redis.start()
            statuses.append((await app.answer("readiness")).status)
            return statuses
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [200, 503, 200]


def test_a_frozen_redis_fails_the_check_within_its_timeout(
    utils_private_redis: PrivateRedis,
) -> None:
    client = fail_fast_client(utils_private_redis.url, timeout=30)  # the check's deadline wins
    register_check("redis", redis_check(client), timeout=0.3)
    try:
        assert run_checks(["redis"])[0].ok
        utils_private_redis.freeze()
        try:
            [result] = run_checks(["redis"])
        finally:
            utils_private_redis.thaw()
        assert not result.ok
        assert result.seconds < 5
        assert "OperationTimeoutError" in result.detail or "TimeoutError" in result.detail
    finally:
        client.close()
