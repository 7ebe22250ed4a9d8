"""Tests of the Redis fixtures of the core pytest plugin, used the way a suite uses them."""

from __future__ import annotations

import inspect
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import redis

import utils._core_pytest as plugin
from utils.core.redis import fail_fast_client, is_async_client
from utils.core.testing import PrivateRedis, service_reachable


def fixture_generator(fixture: object, *args: Any) -> Generator[Any, None, None]:
    """Call a fixture's own function, to drive its set-up and tear-down by hand."""
    function = inspect.unwrap(cast("Any", fixture))
    return cast("Generator[Any, None, None]", function(*args))


def finish(generator: Generator[Any, None, None]) -> None:
    """Run a fixture's tear-down (the code after its ``yield``)."""
    for _ in generator:
        raise AssertionError("a fixture yields once")


def test_utils_redis_is_a_working_fail_fast_client(
    utils_redis: redis.Redis, utils_redis_namespace: str
) -> None:
    assert not is_async_client(utils_redis)
    assert utils_redis.ping() is True
    key = f"{utils_redis_namespace}:k"
    assert utils_redis.set(key, "v") is True
    assert utils_redis.get(key) == b"v"
    kwargs = utils_redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 1.0
    assert kwargs["retry"].get_retries() == 0


def test_utils_redis_is_closed_after_the_test(utils_redis_url: str) -> None:
    setup = fixture_generator(plugin.utils_redis, utils_redis_url)
    client = next(setup)
    assert client.ping() is True
    [connection] = client.connection_pool._available_connections
    assert connection._sock is not None
    finish(setup)
    assert connection._sock is None  # disconnected


def test_namespaces_are_unique(utils_redis_namespace: str, utils_redis_url: str) -> None:
    assert re.fullmatch(r"test-[0-9a-f]{12}", utils_redis_namespace)
    other = fixture_generator(plugin.utils_redis_namespace, utils_redis_url)
    assert next(other) != utils_redis_namespace
    finish(other)


def test_namespace_keys_are_deleted_after_the_test(utils_redis_url: str) -> None:
    setup = fixture_generator(plugin.utils_redis_namespace, utils_redis_url)
    namespace = next(setup)
    client = fail_fast_client(utils_redis_url)
    try:
        # Enough keys for several SCAN pages and UNLINK batches, plus a key outside it.
        with client.pipeline(transaction=False) as pipe:
            for i in range(1203):
                pipe.set(f"{namespace}:{i}", i)
            pipe.set(f"{namespace}", "the prefix itself")
            pipe.set(f"other-{namespace}", "not in the namespace")
            pipe.execute()
        finish(setup)
        assert list(client.scan_iter(match=f"{namespace}*", count=1000)) == []
        assert client.get(f"other-{namespace}") == b"not in the namespace"
    finally:
        client.delete(f"other-{namespace}")
        client.close()


def test_namespace_tear_down_with_nothing_to_delete(utils_redis_url: str) -> None:
    setup = fixture_generator(plugin.utils_redis_namespace, utils_redis_url)
    next(setup)
    finish(setup)


def test_utils_private_redis_is_a_server_of_ones_own(
    utils_private_redis: PrivateRedis, utils_redis_url: str
) -> None:
    assert utils_private_redis.is_running()
    assert utils_private_redis.url != utils_redis_url
    assert service_reachable(utils_private_redis.url)


def test_utils_private_redis_is_removed_after_the_test() -> None:
    setup = fixture_generator(plugin.utils_private_redis)
    server = next(setup)
    assert isinstance(server, PrivateRedis)
    directory = Path(server._dir)
    assert directory.is_dir()
    finish(setup)
    assert not server.is_running()
    assert not service_reachable(server.url)
    assert not directory.exists()


def test_utils_fake_clock_fixture_function() -> None:
    clock = inspect.unwrap(cast("Any", plugin.utils_fake_clock))()
    assert clock() == 0.0
