"""RedisRateLimitStorage against real Redis servers: semantics, atomicity, NOSCRIPT, outages.

The shared server (``utils_redis_url``) is never stopped: fault tests use a private
``redis-server`` started for this module.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("redis")

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from utils.core import ValidationError
from utils.core.metrics import InMemorySink
from utils.core.testing import PrivateRedis, find_free_port, private_redis
from utils.resilience._ratelimit_redis import GCRA_SHA
from utils.resilience.errors import RateLimitExceeded
from utils.resilience.ratelimit import (
    Decision,
    RateLimiter,
    RateLimitStorage,
    RateLimitStorageError,
    RedisRateLimitStorage,
)

pytestmark = pytest.mark.redis

LONG = 3600.0  # a period so long that nothing refills while a test runs


@pytest.fixture
def name(utils_redis_url: str) -> Iterator[str]:
    """A limiter name unique to the test; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(utils_redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def client(utils_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(utils_redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateRedis]:
    """A redis-server of our own, which the fault tests stop and restart."""
    with private_redis() as server:
        yield server


@pytest.fixture
def server(private_server: PrivateRedis) -> Iterator[PrivateRedis]:
    private_server.start()  # whatever the previous test did
    yield private_server
    private_server.start()


def quick_client(url: str, **kwargs: Any) -> redis.Redis:
    """A client that fails fast when the server is down (no retries)."""
    return redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), **kwargs
    )


@asynccontextmanager
async def quick_async_client(url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        await client.aclose()


def ratelimit_events(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("ratelimit.")]


# --------------------------------------------------------------------------------------
# Construction


def test_construction_is_validated() -> None:
    client = redis.Redis()  # no I/O until a command runs
    assert RedisRateLimitStorage(client).fail_open is True  # the family's one default
    with pytest.raises(ValidationError, match="fail_open must be True or False"):
        RedisRateLimitStorage(client, fail_open="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="prefix"):
        RedisRateLimitStorage(client, fail_open=True, prefix="")
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        RedisRateLimitStorage(object(), fail_open=True)  # type: ignore[arg-type]
    storage = RedisRateLimitStorage(client, fail_open=False, prefix="svc")
    assert isinstance(storage, RateLimitStorage)
    assert (storage.fail_open, storage.prefix) == (False, "svc")
    assert repr(storage) == "RedisRateLimitStorage(sync client, prefix='svc', fail_open=False)"
    with pytest.raises(ValidationError, match="needs a name="):
        RateLimiter(5, storage=storage)
    async_storage = RedisRateLimitStorage(redis.asyncio.Redis(), fail_open=True)
    assert "async client" in repr(async_storage)


def test_keys_carry_a_hash_tag_per_limiter_key(client: redis.Redis, name: str) -> None:
    storage = RedisRateLimitStorage(client, fail_open=False)
    limiter = RateLimiter(5, per=LONG, storage=storage, name=name)
    limiter.try_acquire("user:42")
    key = storage.redis_key(f"{name}:user:42")
    assert key == f"utils:rl:{{{name}:user:42}}"
    assert client.exists(key) == 1
    assert key_slot(key.encode()) == key_slot(f"{name}:user:42".encode())
    assert list(client.scan_iter(match=f"*{name}*")) == [key.encode()]


# --------------------------------------------------------------------------------------
# Semantics


def test_decisions_match_the_memory_storage(client: redis.Redis, name: str) -> None:
    shared = RateLimiter(
        5, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name=name
    )
    local = RateLimiter(5, per=LONG, clock=lambda: 1000.0)
    steps = [("a", 1), ("a", 2), ("b", 5), ("a", 3), ("a", 1), ("a", 1), ("b", 1), ("a", 2)]
    for key, cost in steps:
        ours, reference = shared.try_acquire(key, cost), local.try_acquire(key, cost)
        assert (ours.allowed, ours.remaining) == (reference.allowed, reference.remaining)
        # Redis time moves on a little during the test; the local clock does not.
        assert ours.retry_after == pytest.approx(reference.retry_after, abs=1.0)
    assert not shared.try_acquire("b").allowed
    assert shared.try_acquire("b").retry_after == pytest.approx(720.0, abs=1.0)


def test_fresh_keys_count_exactly_even_for_fast_rates(client: redis.Redis, name: str) -> None:
    # T = 1 ms: server times (~1.7e9 s) must not blur a fresh key's backlog of cost * T.
    storage = RedisRateLimitStorage(client, fail_open=False)
    limiter = RateLimiter(1000, per=1.0, burst=10, storage=storage, name=name)
    for cost in range(1, 11):
        assert limiter.try_acquire(f"k{cost}", cost=cost).remaining == 10 - cost


def test_only_the_tat_is_stored_with_a_ttl_set_by_the_script(
    client: redis.Redis, name: str
) -> None:
    storage = RedisRateLimitStorage(client, fail_open=False)
    limiter = RateLimiter(5, per=LONG, storage=storage, name=name)  # T = 720 s
    limiter.try_acquire("k", cost=2)
    key = storage.redis_key(f"{name}:k")
    assert client.type(key) == b"string"
    seconds, micros = client.time()
    tat = client.get(key)
    assert tat is not None
    backlog = (float(tat) - (seconds * 1_000_000 + micros)) / 1e6  # stored in microseconds
    assert backlog == pytest.approx(1440.0, abs=1.0)
    # The key expires exactly when it becomes equivalent to a fresh one.
    assert client.pttl(key) == pytest.approx(1_440_000, abs=1000)
    limiter.try_acquire("k")
    assert client.pttl(key) == pytest.approx(2_160_000, abs=1000)
    assert not limiter.try_acquire("k", cost=3).allowed  # a refusal writes nothing
    assert client.pttl(key) == pytest.approx(2_160_000, abs=1000)


def test_client_clocks_do_not_matter(client: redis.Redis, name: str) -> None:
    storage = RedisRateLimitStorage(client, fail_open=False)
    past = RateLimiter(2, per=LONG, storage=storage, name=name, clock=lambda: -5e9)
    future = RateLimiter(2, per=LONG, storage=storage, name=name, clock=lambda: 5e9)
    assert past.try_acquire("k").allowed
    assert future.try_acquire("k").allowed
    assert not past.try_acquire("k").allowed
    assert not future.try_acquire("k").allowed


def test_limiters_with_other_names_do_not_interfere(client: redis.Redis, name: str) -> None:
    storage = RedisRateLimitStorage(client, fail_open=False)
    a = RateLimiter(1, per=LONG, storage=storage, name=f"{name}-a")
    b = RateLimiter(1, per=LONG, storage=storage, name=f"{name}-b")
    assert a.try_acquire("k").allowed
    assert b.try_acquire("k").allowed
    assert not a.try_acquire("k").allowed


def test_decode_responses_clients_work(utils_redis_url: str, name: str) -> None:
    client = redis.Redis.from_url(utils_redis_url, decode_responses=True)
    try:
        limiter = RateLimiter(
            2, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name=name
        )
        assert limiter.try_acquire("k") == Decision(True, 0.0, 1)
        assert limiter.acquire("k").remaining == 0
        with pytest.raises(RateLimitExceeded) as info:
            limiter.acquire("k", timeout=0)
        assert info.value.retry_after == pytest.approx(1800.0, abs=1.0)
    finally:
        client.close()


def test_a_cost_above_the_burst_never_reaches_redis(utils_metrics: InMemorySink) -> None:
    dead = quick_client(f"redis://127.0.0.1:{find_free_port()}/0")
    limiter = RateLimiter(
        5, per=LONG, storage=RedisRateLimitStorage(dead, fail_open=False), name="n"
    )
    with pytest.raises(ValidationError, match="exceeds the burst"):
        limiter.try_acquire("k", cost=6)
    assert utils_metrics.measurements == []


def test_the_sync_and_async_apis_need_the_matching_client() -> None:
    sync_limiter = RateLimiter(
        1, storage=RedisRateLimitStorage(redis.Redis(), fail_open=True), name="s"
    )
    async_limiter = RateLimiter(
        1, storage=RedisRateLimitStorage(redis.asyncio.Redis(), fail_open=True), name="a"
    )
    with pytest.raises(TypeError, match=r"wraps a sync redis\.Redis client"):
        asyncio.run(sync_limiter.atry_acquire("k"))
    with pytest.raises(TypeError, match=r"wraps a redis\.asyncio client"):
        async_limiter.try_acquire("k")


def test_async_client(utils_redis_url: str, name: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(utils_redis_url)
        try:
            limiter = RateLimiter(
                3, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name=name
            )
            assert (await limiter.atry_acquire("k", cost=2)) == Decision(True, 0.0, 1)
            assert (await limiter.aacquire("k")).remaining == 0
            refused = await limiter.atry_acquire("k")
            assert not refused.allowed
            assert refused.retry_after == pytest.approx(1200.0, abs=1.0)

            @limiter.limit(key=lambda user: user)
            async def handler(user: str) -> str:
                return f"hello {user}"

            assert await handler("ann") == "hello ann"
            with pytest.raises(RateLimitExceeded):
                await limiter.acall(handler, "k")
        finally:
            await client.aclose()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# One script, one round trip; NOSCRIPT


def evalsha_and_eval_calls(client: redis.Redis) -> tuple[int, int, int]:
    stats = client.info("commandstats")

    def calls(command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    return calls("evalsha"), calls("eval"), calls("script|load")


def test_one_round_trip_per_decision_and_noscript_recovery(server: PrivateRedis) -> None:
    client = quick_client(server.url)
    try:
        limiter = RateLimiter(
            100, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name="rt"
        )
        client.script_flush()
        assert limiter.try_acquire("k").allowed  # NOSCRIPT -> one EVAL reloads it
        assert client.script_exists(GCRA_SHA) == [True]
        client.config_resetstat()
        for _ in range(5):
            assert limiter.try_acquire("k").allowed
        assert evalsha_and_eval_calls(client) == (5, 0, 0)

        client.script_flush()  # as after a failover to a replica without the script
        client.config_resetstat()
        assert limiter.try_acquire("k").remaining == 93
        evalsha, eval_, load = evalsha_and_eval_calls(client)
        assert (eval_, load) == (1, 0)
        assert evalsha <= 1  # the refused EVALSHA (counted as rejected by Redis >= 7)
        assert limiter.try_acquire("k").remaining == 92
    finally:
        client.close()


def test_noscript_with_the_async_client(server: PrivateRedis) -> None:
    async def main() -> None:
        async with quick_async_client(server.url) as client:
            limiter = RateLimiter(
                10, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name="n"
            )
            await client.script_flush()
            assert (await limiter.atry_acquire("k")).remaining == 9
            assert (await limiter.atry_acquire("k")).remaining == 8

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Four processes, one key


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    import redis, redis.asyncio
    from utils.resilience.ratelimit import RateLimiter, RedisRateLimitStorage

    url, name, mode, attempts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def limiter(client):
        storage = RedisRateLimitStorage(client, fail_open=False)
        return RateLimiter(50, per=3600, storage=storage, name=name)

    control = redis.Redis.from_url(url)
    print("ready", flush=True)
    control.blpop([name + ":start"], timeout=60)
    if mode == "sync":
        shared = limiter(redis.Redis.from_url(url))
        admitted = sum(shared.try_acquire("shared").allowed for _ in range(attempts))
    else:
        async def main():
            client = redis.asyncio.Redis.from_url(url)
            shared = limiter(client)
            decisions = await asyncio.gather(
                *(shared.atry_acquire("shared") for _ in range(attempts))
            )
            await client.aclose()
            return sum(decision.allowed for decision in decisions)
        admitted = asyncio.run(main())
    print(admitted, flush=True)
    """
)


@pytest.mark.slow
def test_four_processes_never_admit_more_than_the_limit(
    utils_redis_url: str, client: redis.Redis, name: str
) -> None:
    modes = ["sync", "sync", "async", "async"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, utils_redis_url, name, mode, "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    try:
        for worker in workers:  # every process is connected and waiting
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        client.rpush(f"{name}:start", *["go"] * len(workers))  # start them together
        admitted = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            admitted.append(int(out.strip()))
    finally:
        for worker in workers:
            if worker.poll() is None:  # pragma: no cover - only when the test fails
                worker.kill()
    # 600 attempts at one key of "50 per hour": exactly 50 admitted, never one more.
    assert sum(admitted) == 50, admitted


# --------------------------------------------------------------------------------------
# Redis down: fail open / fail closed


def test_fail_open_allows_logs_the_outage_once_and_recovers(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    client = quick_client(server.url)
    try:
        limiter = RateLimiter(
            2, per=LONG, storage=RedisRateLimitStorage(client, fail_open=True), name="open"
        )
        assert limiter.try_acquire("k") == Decision(True, 0.0, 1)
        server.stop()
        # As if every key were fresh: allowed, with the burst's remaining count.
        assert [limiter.try_acquire("k") for _ in range(3)] == [Decision(True, 0.0, 1)] * 3
        assert limiter.acquire("k", cost=2) == Decision(True, 0.0, 0)
        assert ratelimit_events(utils_logs) == [("ratelimit.storage_unavailable", "warning")]
        warning = next(e for e in utils_logs if e["event"] == "ratelimit.storage_unavailable")
        assert warning["fail_open"] == "true"  # a tag of the event (utils.core.report)
        assert "ConnectionError" in warning["error"]
        assert utils_metrics.count("ratelimit.storage_error", fail_open="true") == 4
        assert utils_metrics.count("ratelimit.rejected") == 0

        server.start()  # a fresh server: no data, no scripts (NOSCRIPT on the next call)
        assert limiter.try_acquire("k") == Decision(True, 0.0, 1)
        assert limiter.try_acquire("k") == Decision(True, 0.0, 0)
        assert not limiter.try_acquire("k").allowed
        assert ratelimit_events(utils_logs) == [
            ("ratelimit.storage_unavailable", "warning"),
            ("ratelimit.storage_recovered", "info"),
        ]
        assert utils_metrics.count("ratelimit.storage_error") == 4
    finally:
        client.close()


def test_fail_closed_refuses_and_recovers(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    client = quick_client(server.url)
    try:
        limiter = RateLimiter(
            2, per=LONG, storage=RedisRateLimitStorage(client, fail_open=False), name="closed"
        )
        assert limiter.try_acquire("k").allowed
        server.stop()
        assert limiter.try_acquire("k") == Decision(False, 1.0, 0)
        with pytest.raises(RateLimitExceeded) as info:
            limiter.acquire("k", timeout=None)  # does not wait for Redis to come back
        error = info.value
        assert error.retry_after == 1.0
        assert "storage is unavailable" in str(error)
        cause = error.__cause__
        assert isinstance(cause, RateLimitStorageError)
        assert isinstance(cause.__cause__, redis.exceptions.ConnectionError)
        assert cause.details["error"] == "ConnectionError"
        with pytest.raises(RateLimitExceeded):
            limiter.call(print, "never runs")
        assert ratelimit_events(utils_logs) == [("ratelimit.storage_unavailable", "warning")]
        assert utils_metrics.count("ratelimit.storage_error", fail_open="false") == 3
        assert utils_metrics.count("ratelimit.rejected", limiter="closed") == 3

        server.start()
        assert limiter.try_acquire("k").allowed
        assert ratelimit_events(utils_logs)[-1] == ("ratelimit.storage_recovered", "info")
        assert len(ratelimit_events(utils_logs)) == 2
    finally:
        client.close()


def test_async_fail_open_and_fail_closed_with_redis_down(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    async def main() -> None:
        async with (
            quick_async_client(server.url) as open_client,
            quick_async_client(server.url) as closed_client,
        ):
            opened = RateLimiter(
                1,
                per=LONG,
                storage=RedisRateLimitStorage(open_client, fail_open=True),
                name="aopen",
            )
            closed = RateLimiter(
                1,
                per=LONG,
                storage=RedisRateLimitStorage(closed_client, fail_open=False),
                name="aclosed",
            )
            assert (await opened.atry_acquire("k")).allowed
            assert (await closed.atry_acquire("k")).allowed
            server.stop()
            assert await opened.atry_acquire("k") == Decision(True, 0.0, 0)
            assert (await opened.aacquire("k")).allowed
            assert await closed.atry_acquire("k") == Decision(False, 1.0, 0)
            with pytest.raises(RateLimitExceeded) as info:
                await closed.aacquire("k")
            assert isinstance(info.value.__cause__, RateLimitStorageError)
            server.start()
            assert (await opened.atry_acquire("k")).allowed
            assert (await closed.atry_acquire("k")).allowed

    asyncio.run(main())
    events = ratelimit_events(utils_logs)
    assert events.count(("ratelimit.storage_unavailable", "warning")) == 2  # one per storage
    assert events.count(("ratelimit.storage_recovered", "info")) == 2
    assert utils_metrics.count("ratelimit.storage_error") == 4


# --------------------------------------------------------------------------------------
# Errors that are not outages never switch the limit off


def _noscript_user(server: PrivateRedis) -> tuple[redis.Redis, str]:
    """An ACL user of the PRIVATE server that may not run scripts; returns (admin, url)."""
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser(
        "noscripts",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-evalsha", "-eval"],
    )
    return admin, server.url.replace("redis://", "redis://noscripts:pw@")


def test_noperm_is_an_error_even_when_failing_open(utils_private_redis: PrivateRedis) -> None:
    from utils.resilience import errors

    admin, url = _noscript_user(utils_private_redis)
    client = quick_client(url)
    limiter = RateLimiter(
        1, per=LONG, storage=RedisRateLimitStorage(client, fail_open=True), name="acl"
    )
    with pytest.raises(errors.StorageError) as info:
        limiter.try_acquire("k")
    assert isinstance(info.value, errors.ResilienceError)
    assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)
    assert not info.value.retryable
    with pytest.raises(errors.StorageError):
        limiter.acquire("k")
    admin.close()
    client.close()


def test_noperm_is_an_error_even_when_failing_open_async(
    utils_private_redis: PrivateRedis,
) -> None:
    from utils.resilience import errors

    admin, url = _noscript_user(utils_private_redis)

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        limiter = RateLimiter(
            1, per=LONG, storage=RedisRateLimitStorage(client, fail_open=True), name="acl"
        )
        try:
            with pytest.raises(errors.StorageError) as info:
                await limiter.atry_acquire("k")
            assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)
        finally:
            await client.aclose()

    asyncio.run(main())
    admin.close()


@pytest.mark.parametrize("fail_open", [True, False])
def test_wrongtype_is_an_error_whatever_fail_open_says(
    client: redis.Redis, name: str, fail_open: bool, utils_logs: list[dict[str, Any]]
) -> None:
    from utils.resilience import errors

    storage = RedisRateLimitStorage(client, fail_open=fail_open)
    client.hset(storage.redis_key(f"{name}:k"), "someone", "else")  # not a TAT
    limiter = RateLimiter(1, per=LONG, storage=storage, name=name)
    with pytest.raises(errors.StorageError) as info:
        limiter.try_acquire("k")
    assert isinstance(info.value.__cause__, redis.exceptions.ResponseError)
    assert "WRONGTYPE" in str(info.value.__cause__)
    assert ratelimit_events(utils_logs) == []  # not an outage


def test_oom_is_an_outage_and_fails_open(
    utils_private_redis: PrivateRedis, utils_logs: list[dict[str, Any]]
) -> None:
    admin = redis.Redis.from_url(utils_private_redis.url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    client = quick_client(utils_private_redis.url)
    limiter = RateLimiter(
        1, per=LONG, storage=RedisRateLimitStorage(client, fail_open=True), name="oom"
    )
    assert limiter.try_acquire("k").allowed
    assert limiter.try_acquire("k").allowed  # nothing was stored: fail open
    assert ratelimit_events(utils_logs) == [("ratelimit.storage_unavailable", "warning")]
    admin.config_set("maxmemory", 0)
    assert limiter.try_acquire("k").allowed
    assert not limiter.try_acquire("k").allowed
    assert ratelimit_events(utils_logs)[-1] == ("ratelimit.storage_recovered", "info")
    admin.close()
    client.close()


def test_a_url_builds_a_fail_fast_client(utils_redis_url: str, name: str) -> None:
    from utils.core import ConfigError

    storage = RedisRateLimitStorage(utils_redis_url, fail_open=False)
    limiter = RateLimiter(1, per=LONG, storage=storage, name=name)
    assert limiter.try_acquire("k").allowed
    assert not limiter.try_acquire("k").allowed
    with pytest.raises(ConfigError, match="socket_timout"):
        RedisRateLimitStorage(utils_redis_url + "?socket_timout=1", fail_open=True)
