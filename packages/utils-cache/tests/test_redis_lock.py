"""The stampede locks of the Redis caches (RedisLock / AsyncRedisLock) on real Redis servers.

Waiting is tested with an injected clock whose ``sleep`` advances it: no real sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from utils.cache._redis_lock import (
    MAX_POLL,
    RELEASE_SHA,
    AsyncRedisLock,
    RedisLock,
)
from utils.cache.errors import CacheUnavailableError
from utils.cache.redis_cache import AsyncRedisCache, RedisCache
from utils.core import ValidationError, deadline
from utils.core.testing import PrivateRedis, find_free_port, private_redis, wait_until

pytestmark = pytest.mark.redis


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Any = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def namespace(utils_redis_url: str) -> Iterator[str]:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(utils_redis_url)
    try:
        names = list(client.scan_iter(match=f"{namespace}#*"))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture
def raw(utils_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(utils_redis_url)
    yield client
    client.close()


@pytest.fixture
def cache(utils_redis_url: str, namespace: str) -> Iterator[RedisCache]:
    with RedisCache(utils_redis_url, namespace=namespace) as cache:
        yield cache


def fake_lock(cache: RedisCache, key: str, ttl: float, fake: FakeTime) -> RedisLock:
    return RedisLock(
        cache, f"{cache.prefix[:-1]}#lock:{key}", ttl, clock=fake.clock, sleep=fake.sleep
    )


# -- sync ------------------------------------------------------------------------------------


def test_acquire_and_release(cache: RedisCache, raw: redis.Redis, namespace: str) -> None:
    lock = cache._lock("k", 30)
    assert "not held" in repr(lock)
    assert lock.acquire() is True
    assert lock.held
    assert "held" in repr(lock)
    name = f"{namespace}#0#lock:k"
    assert 29_000 < raw.pttl(name) <= 30_000
    assert cache._lock("k", 30).acquire(wait=0) is False
    assert lock.release() is True
    assert "not held" in repr(lock)
    assert not raw.exists(name)
    assert lock.release() is False  # not held any more
    other = cache._lock("k", 30)
    assert other.acquire()
    other.release()


def test_locks_of_different_keys_are_independent(cache: RedisCache) -> None:
    a, b = cache._lock("a", 30), cache._lock("b", 30)
    assert a.acquire()
    assert b.acquire()
    a.release()
    b.release()


def test_an_expired_holder_never_deletes_the_next_holders_lock(
    cache: RedisCache, raw: redis.Redis, namespace: str
) -> None:
    name = f"{namespace}#0#lock:k"
    first = cache._lock("k", 30)
    assert first.acquire()
    raw.delete(name)  # as if it had expired while the first holder was still computing
    second = cache._lock("k", 30)
    assert second.acquire()
    token = raw.get(name)
    assert first.release() is False
    assert raw.get(name) == token
    assert second.release() is True


def test_a_lock_really_expires(cache: RedisCache, raw: redis.Redis, namespace: str) -> None:
    lock = cache._lock("k", 0.01)
    assert lock.ttl_ms == 10
    assert lock.acquire()
    # Wait (a few ms) for Redis to expire it, then the next holder gets it.
    wait_until(lambda: not raw.exists(f"{namespace}#0#lock:k"))
    assert cache._lock("k", 30).acquire()
    assert lock.release() is False


def test_waiting_gives_up_after_wait_with_capped_backoff(cache: RedisCache) -> None:
    holder = cache._lock("k", 30)
    assert holder.acquire()
    fake = FakeTime()
    waiter = fake_lock(cache, "k", 30, fake)
    assert waiter.acquire(wait=0.5) is False
    assert sum(fake.sleeps) == pytest.approx(0.5)
    assert fake.sleeps[0] == 0.002
    assert fake.sleeps[1] == 0.004
    assert max(fake.sleeps) == MAX_POLL
    assert fake.sleeps[:-1] == sorted(fake.sleeps[:-1])  # grows, then the rest of the wait
    holder.release()


def test_waiting_ends_when_the_holder_releases(cache: RedisCache) -> None:
    holder = cache._lock("k", 30)
    assert holder.acquire()
    fake = FakeTime()
    fake.on_sleep = lambda: len(fake.sleeps) == 3 and holder.release()
    waiter = fake_lock(cache, "k", 30, fake)
    assert waiter.acquire(wait=10) is True
    assert len(fake.sleeps) == 3
    waiter.release()


def test_waiting_never_outlasts_the_deadline(cache: RedisCache) -> None:
    holder = cache._lock("k", 30)
    assert holder.acquire()
    fake = FakeTime()
    waiter = fake_lock(cache, "k", 30, fake)
    with deadline(0.05):
        assert waiter.acquire(wait=60) is False
    assert sum(fake.sleeps) <= 0.05
    holder.release()


def test_invalid_arguments(cache: RedisCache) -> None:
    for ttl in (0, -1, float("nan"), True, "1"):
        with pytest.raises(ValidationError, match="ttl"):
            cache._lock("k", ttl)  # type: ignore[arg-type]
    lock = cache._lock("k", 30)
    for wait in (-1, float("nan"), True):
        with pytest.raises(ValidationError, match="wait"):
            lock.acquire(wait)
    assert lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()


def test_the_lock_is_granted_without_redis_when_failing_open(utils_metrics: Any) -> None:
    url = f"redis://127.0.0.1:{find_free_port()}/0"
    with RedisCache(url, namespace="down") as cache:
        lock = cache._lock("k", 30)
        assert lock.acquire(wait=5) is True
        assert not lock.held
        assert lock.release() is False
    assert utils_metrics.count("cache.error", op="lock", reason="unavailable") == 1
    with (
        RedisCache(url, namespace="down", fail_open=False) as strict,
        pytest.raises(CacheUnavailableError),
    ):
        strict._lock("k", 30).acquire()


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


def test_release_reloads_the_script_after_a_flush(private_server: PrivateRedis) -> None:
    private_server.start()
    raw = redis.Redis.from_url(private_server.url)
    try:
        with RedisCache(private_server.url, namespace="noscript") as cache:
            lock = cache._lock("k", 30)
            assert lock.acquire()
            raw.script_flush()
            assert raw.script_exists(RELEASE_SHA) == [False]
            assert lock.release() is True
            assert raw.script_exists(RELEASE_SHA) == [True]
            with deadline(5):  # and through the capped path
                assert lock.acquire()
                raw.script_flush()
                assert lock.release() is True
            assert not raw.exists("noscript#0#lock:k")
    finally:
        raw.close()


def test_release_while_redis_is_down(private_server: PrivateRedis) -> None:
    private_server.start()
    with RedisCache(private_server.url, namespace="gone") as cache:
        lock = cache._lock("k", 30)
        assert lock.acquire()
        private_server.stop()
        try:
            assert lock.release() is False  # failing open: nothing to do, the lock expires
            assert not lock.held
        finally:
            private_server.start()
    with RedisCache(private_server.url, namespace="gone", fail_open=False) as strict:
        lock = strict._lock("k2", 30)
        assert lock.acquire()
        private_server.stop()
        try:
            with pytest.raises(CacheUnavailableError):
                lock.release()
        finally:
            private_server.start()


# -- async -----------------------------------------------------------------------------------


def test_async_lock(utils_redis_url: str, namespace: str, raw: redis.Redis) -> None:
    async def main() -> None:
        async with AsyncRedisCache(utils_redis_url, namespace=namespace) as cache:
            lock = cache._alock("k", 30)
            assert isinstance(lock, AsyncRedisLock)
            assert await lock.aacquire()
            assert lock.held
            assert not await cache._alock("k", 30).aacquire(wait=0)
            name = f"{namespace}#0#lock:k"
            raw.delete(name)
            second = cache._alock("k", 30)
            assert await second.aacquire()
            assert await lock.arelease() is False
            assert raw.exists(name)
            assert await lock.arelease() is False
            with pytest.raises(RuntimeError):
                await second.aacquire()

            fake = FakeTime()
            waiter = AsyncRedisLock(cache, name, 30, clock=fake.clock, sleep=fake.asleep)
            assert await waiter.aacquire(wait=0.3) is False
            assert sum(fake.sleeps) == pytest.approx(0.3)
            fake.on_sleep = lambda: asyncio.ensure_future(second.arelease())
            assert await waiter.aacquire(wait=10) is True
            assert await waiter.arelease() is True

    asyncio.run(main())


def test_async_release_reloads_the_script(private_server: PrivateRedis) -> None:
    private_server.start()

    async def main() -> None:
        raw = redis.asyncio.Redis.from_url(private_server.url)
        async with AsyncRedisCache(private_server.url, namespace="noscript") as cache:
            lock = cache._alock("k", 30)
            assert await lock.aacquire()
            await raw.script_flush()
            assert await lock.arelease() is True
        close = getattr(raw, "aclose", None) or raw.close
        await close()

    asyncio.run(main())


def test_async_lock_without_redis() -> None:
    url = f"redis://127.0.0.1:{find_free_port()}/0"

    async def main() -> None:
        async with AsyncRedisCache(url, namespace="down") as cache:
            lock = cache._alock("k", 30)
            assert await lock.aacquire(wait=5) is True
            assert await lock.arelease() is False
        async with AsyncRedisCache(url, namespace="down", fail_open=False) as strict:
            with pytest.raises(CacheUnavailableError):
                await strict._alock("k", 30).aacquire()

    asyncio.run(main())
