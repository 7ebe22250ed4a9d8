"""Tests of the breaker's shared Redis state, against a real Redis server (never mocked)."""

from __future__ import annotations

import asyncio
import doctest
import functools
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pybreaker
import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from utils.core import UnavailableError, ValidationError
from utils.core.metrics import InMemorySink
from utils.core.testing import PrivateRedis, private_redis, wait_until
from utils.resilience import _breaker_redis
from utils.resilience._breaker_redis import RedisBreakerStorage
from utils.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from utils.resilience.errors import CircuitOpenError

pytestmark = pytest.mark.redis

Logs = list[dict[str, Any]]


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


class CountingRedis(redis.Redis):
    """A real client that counts the commands it sends (round trips, here)."""

    commands: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def boom() -> None:
    raise ConnectionError("dependency unreachable")


def trip(breaker: CircuitBreaker, times: int | None = None) -> None:
    for _ in range(times or breaker.policy.fail_max):
        with pytest.raises(ConnectionError):
            breaker.call(boom)


@pytest.fixture
def client(utils_redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(utils_redis_url)
    yield connection
    connection.close()


@pytest.fixture
def namespace(client: redis.Redis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(match=f"*{name}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def make(client: redis.Redis, namespace: str) -> Callable[..., CircuitBreaker]:
    storage = RedisBreakerStorage(client, namespace, fail_open=True)

    def make_breaker(name: str = "payments", **kwargs: Any) -> CircuitBreaker:
        kwargs.setdefault("storage", storage)
        return CircuitBreaker(name, **kwargs)

    return make_breaker


def state_key(namespace: str, name: str = "payments") -> str:
    return f"{{utils:cb:{namespace}:{name}}}:state"


def probe_key(namespace: str, name: str = "payments") -> str:
    return f"{{utils:cb:{namespace}:{name}}}:probe"


# --- shared state -------------------------------------------------------------------------


def test_two_breakers_with_the_same_name_share_state(make: Callable[..., CircuitBreaker]) -> None:
    a = make(fail_max=3, reset_timeout=30)
    b = make(fail_max=3, reset_timeout=30)
    other = make("orders", fail_max=3)
    trip(a, 2)
    trip(b, 1)
    assert a.state == b.state == "open"
    assert other.state == "closed"
    with pytest.raises(CircuitOpenError) as info:
        a.call(boom)
    assert info.value.retry_after is not None
    assert 29 < info.value.retry_after <= 30
    assert info.value.details == {"breaker": "payments", "state": "open"}


def test_a_new_breaker_never_resets_the_shared_counters(
    make: Callable[..., CircuitBreaker],
    client: redis.Redis,
    namespace: str,
) -> None:
    a = make(fail_max=5)
    trip(a, 3)
    before = client.hgetall(state_key(namespace))
    late = make(fail_max=5)  # think: a process that just started
    assert late.pybreaker.current_state == "closed"
    assert late.pybreaker.fail_counter == 3
    assert client.hgetall(state_key(namespace)) == before
    trip(late, 2)
    assert a.state == "open"


def test_a_success_anywhere_resets_the_consecutive_failures(
    make: Callable[..., CircuitBreaker],
) -> None:
    a, b = make(fail_max=3), make(fail_max=3)
    trip(a, 2)
    assert b.call(lambda: "ok") == "ok"
    assert a.pybreaker.fail_counter == 0


def test_keys_carry_one_hash_tag_and_a_ttl(
    make: Callable[..., CircuitBreaker],
    client: redis.Redis,
    namespace: str,
) -> None:
    breaker = make(fail_max=1, reset_timeout=30, probe_timeout=5)
    storage = breaker.storage
    assert isinstance(storage, RedisBreakerStorage)
    keys = storage.keys_for("payments")
    assert keys == (state_key(namespace), probe_key(namespace))
    assert key_slot(keys[0].encode()) == key_slot(keys[1].encode())
    trip(breaker)
    assert 0 < client.pttl(keys[0]) <= 86_400_000
    breaker.half_open()
    with breaker:  # the probe holds the lease
        assert 0 < client.pttl(keys[1]) <= 5000
        assert client.get(keys[1]) is not None
    assert client.exists(keys[1]) == 0  # released


def test_the_ttl_never_undercuts_the_timeouts(
    client: redis.Redis,
    namespace: str,
) -> None:
    storage = RedisBreakerStorage(client, namespace, ttl=1, fail_open=True)
    breaker = CircuitBreaker("payments", storage=storage, fail_max=1, reset_timeout=30)
    trip(breaker)
    assert client.pttl(state_key(namespace)) > 100_000  # 2 * (30 s + 30 s)


def test_a_closed_breaker_costs_one_round_trip_per_success(
    utils_redis_url: str,
    namespace: str,
    client: redis.Redis,
) -> None:
    counting = CountingRedis(connection_pool=redis.ConnectionPool.from_url(utils_redis_url))
    counting.commands = []
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(counting, namespace, fail_open=True)
    )
    counting.commands.clear()
    for _ in range(5):
        breaker.call(lambda: None)
    assert counting.commands == ["EVALSHA"] * 5
    assert client.exists(state_key(namespace)) == 0  # nothing to write: no key at all
    counting.commands.clear()
    trip(breaker, 1)
    assert counting.commands == ["EVALSHA"] * 2  # admission, then the failure
    counting.commands.clear()
    breaker.call(lambda: None)
    assert counting.commands == ["EVALSHA"] * 2  # admission, then resetting the count
    counting.close()


def test_a_decoding_client_works(utils_redis_url: str, namespace: str) -> None:
    text_client = redis.Redis.from_url(utils_redis_url, decode_responses=True)
    storage = RedisBreakerStorage(text_client, namespace, fail_open=True)
    breaker = CircuitBreaker("payments", storage=storage, fail_max=1, reset_timeout=0)
    trip(breaker)
    assert breaker.call(lambda: 2) == 2
    assert breaker.state == "closed"
    text_client.close()


# --- transitions by the server's clock ----------------------------------------------------


def test_open_to_half_open_to_closed_by_the_server_clock(
    make: Callable[..., CircuitBreaker],
    client: redis.Redis,
    namespace: str,
    utils_logs: Logs,
    utils_metrics: InMemorySink,
) -> None:
    a, b = make(fail_max=2, reset_timeout=30), make(fail_max=2, reset_timeout=30)
    trip(a)
    opened_at = int(client.hget(state_key(namespace), "opened_at") or 0)
    server_now = client.time()
    assert abs(opened_at - (server_now[0] * 1000 + server_now[1] // 1000)) < 5000
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    # 31 seconds pass on the Redis server's clock.
    client.hset(state_key(namespace), "opened_at", opened_at - 31_000)
    assert b.call(lambda: "probe") == "probe"
    assert a.state == "closed"
    events = [(e["event"], e["breaker"]) for e in utils_logs]
    assert events == [
        ("breaker.opened", "payments"),  # by a, which tripped it
        ("breaker.half_open", "payments"),  # by b, which moved it and ran the probe
        ("breaker.closed", "payments"),
    ]
    assert utils_metrics.count("breaker.opened", breaker="payments") == 1


def test_a_failed_probe_opens_again(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(fail_max=1, reset_timeout=0)
    trip(breaker)
    with pytest.raises(ConnectionError):
        breaker.call(boom)  # the probe fails
    assert breaker.snapshot().state == "open"
    assert breaker.pybreaker.current_state == "open"


def test_success_threshold_across_instances(make: Callable[..., CircuitBreaker]) -> None:
    a = make(fail_max=1, success_threshold=2, reset_timeout=30)
    b = make(fail_max=1, success_threshold=2, reset_timeout=30)
    trip(a)
    a.half_open()
    a.call(lambda: None)
    assert b.state == "half_open"
    assert b.pybreaker.success_counter == 1
    b.call(lambda: None)
    assert a.state == "closed"


def test_a_non_counted_error_is_neutral_when_closed_and_a_success_for_a_probe(
    make: Callable[..., CircuitBreaker],
) -> None:
    from utils.core import NotFoundError

    def missing() -> None:
        raise NotFoundError("no such payment")

    breaker = make(fail_max=2, reset_timeout=30)
    trip(breaker, 1)
    with pytest.raises(NotFoundError):
        breaker.call(missing)
    assert breaker.pybreaker.fail_counter == 1
    trip(breaker, 1)
    breaker.half_open()
    with pytest.raises(NotFoundError):
        breaker.call(missing)
    assert breaker.state == "closed"


# --- the probe lease ------------------------------------------------------------------------


def test_one_probe_at_a_time_across_instances(make: Callable[..., CircuitBreaker]) -> None:
    a = make(fail_max=1, reset_timeout=0, probe_timeout=20)
    b = make(fail_max=1, reset_timeout=0, probe_timeout=20)
    trip(a)
    with a:  # a's probe
        with pytest.raises(CircuitOpenError) as info:
            b.call(lambda: None)
        assert info.value.retry_after is not None
        assert 19 < info.value.retry_after <= 20
        assert info.value.details["state"] == "half_open"
        assert b.snapshot().retry_after > 19
    assert b.state == "closed"


def test_base_exceptions_release_the_shared_lease(make: Callable[..., CircuitBreaker]) -> None:
    a = make(fail_max=1, reset_timeout=0, probe_timeout=20)
    b = make(fail_max=1, reset_timeout=0, probe_timeout=20)
    trip(a)
    with pytest.raises(KeyboardInterrupt), a:
        raise KeyboardInterrupt
    assert a.state == "half_open"
    assert b.call(lambda: "next probe") == "next probe"
    assert a.state == "closed"


def test_an_expired_lease_lets_another_probe_in(
    make: Callable[..., CircuitBreaker],
    client: redis.Redis,
    namespace: str,
) -> None:
    a = make(fail_max=1, reset_timeout=30, probe_timeout=20)
    b = make(fail_max=1, reset_timeout=30, probe_timeout=20)
    trip(a)
    a.half_open()
    hung = a.storage.admit(a.policy)
    assert hung.probe
    client.pexpire(probe_key(namespace), 1)  # its lease runs out (PX on the server)
    wait_until(lambda: not client.exists(probe_key(namespace)))
    second = b.storage.admit(b.policy)
    assert second.allowed
    assert second.probe
    assert a.storage.record(hung, "failure", a.policy) == ()  # lease taken over: ignored
    assert a.state == "half_open"
    assert b.storage.record(second, "success", b.policy)[0].state == "closed"


def test_a_stale_outcome_is_ignored_across_instances(make: Callable[..., CircuitBreaker]) -> None:
    a = make(fail_max=1, reset_timeout=30)
    b = make(fail_max=1, reset_timeout=30)
    old = a.storage.admit(a.policy)
    assert old.generation == 0
    b.open()
    assert a.storage.record(old, "success", a.policy) == ()
    assert a.storage.record(old, "failure", a.policy) == ()
    assert a.state == "open"
    b.reset()
    stale = a.storage.admit(a.policy)
    b.open()
    b.half_open()
    assert a.storage.record(stale, "success", a.policy) == ()
    assert a.state == "half_open"
    # A refused admission has nothing to record either.
    b.open()
    refused = a.storage.admit(a.policy)
    assert not refused.allowed
    assert a.storage.record(refused, "failure", a.policy) == ()


@pytest.mark.slow
def test_exactly_one_probe_among_four_processes(
    utils_redis_url: str,
    client: redis.Redis,
    namespace: str,
    tmp_path: Path,
) -> None:
    processes, threads = 4, 4
    script = tmp_path / "contender.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import threading

            import redis

            from utils.resilience._breaker_redis import RedisBreakerStorage
            from utils.resilience.breaker import CircuitBreaker, CircuitOpenError

            url, namespace, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
            client = redis.Redis.from_url(url)
            breaker = CircuitBreaker(
                "payments",
                storage=RedisBreakerStorage(client, namespace, fail_open=True),
                fail_max=1,
                reset_timeout=0,
                probe_timeout=60,
            )

            def probe():
                client.rpush(namespace + ":admitted", "1")
                client.blpop(namespace + ":release", timeout=30)
                return "probe"

            results = []

            def contend():
                try:
                    results.append(breaker.call(probe))
                except CircuitOpenError:
                    client.rpush(namespace + ":refused", "1")
                    results.append("refused")

            workers = [threading.Thread(target=contend) for _ in range(threads)]
            print("ready", flush=True)
            sys.stdin.readline()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            print(",".join(results), flush=True)
            """
        )
    )
    breaker = CircuitBreaker(
        "payments",
        storage=RedisBreakerStorage(client, namespace, fail_open=True),
        fail_max=1,
        reset_timeout=0,
    )
    trip(breaker)  # open; with reset_timeout=0 the next admission is a probe
    children = [
        subprocess.Popen(
            [sys.executable, str(script), utils_redis_url, namespace, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        expected_refusals = processes * threads - 1
        wait_until(
            lambda: client.llen(f"{namespace}:refused") >= expected_refusals,
            30,
            message="the contenders did not finish",
        )
        assert client.llen(f"{namespace}:admitted") == 1  # the probe is still running
        client.rpush(f"{namespace}:release", "1")
        outputs = [child.communicate(timeout=30)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    results = ",".join(output.strip() for output in outputs).split(",")
    assert results.count("probe") == 1
    assert results.count("refused") == expected_refusals
    assert breaker.state == "closed"


# --- pybreaker's interface on the Redis storage ---------------------------------------------


def test_pybreaker_sees_the_shared_state(
    make: Callable[..., CircuitBreaker],
    client: redis.Redis,
    namespace: str,
) -> None:
    breaker = make(fail_max=3, reset_timeout=30)
    storage = breaker.storage
    pb = breaker.pybreaker
    assert pb.current_state == "closed"
    never_opened = storage.opened_at
    assert never_opened is None
    storage.increment_counter()
    storage.increment_counter()
    assert pb.fail_counter == 2
    storage.reset_counter()
    assert pb.fail_counter == 0
    storage.increment_success_counter()
    assert pb.success_counter == 1
    storage.reset_success_counter()
    assert pb.success_counter == 0
    assert pb.open() is False
    assert pb.current_state == "open"
    opened = storage.opened_at
    assert opened is not None
    assert abs((datetime.now(timezone.utc) - opened).total_seconds()) < 60
    storage.opened_at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=31)
    assert breaker.call(lambda: "probe") == "probe"
    storage.state = "half-open"
    assert pb.state.name == "half-open"
    assert breaker.state is BreakerState.HALF_OPEN
    assert int(client.hget(state_key(namespace), "generation") or 0) >= 4


def test_a_pybreaker_redis_storage_is_accepted_too(
    client: redis.Redis,
    namespace: str,
) -> None:
    def storage() -> pybreaker.CircuitRedisStorage:
        return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)

    a = CircuitBreaker("legacy", storage=storage(), fail_max=2, reset_timeout=30)
    b = CircuitBreaker("legacy", storage=storage(), fail_max=2, reset_timeout=30)
    assert not a.storage.nonblocking
    trip(a)
    assert client.get(f"{namespace}:pybreaker:state") == b"open"
    with pytest.raises(CircuitOpenError) as info:
        b.call(boom)  # b notices a's change, timed by pybreaker's wall-clock opened_at
    assert 25 < (info.value.retry_after or 0) <= 30
    client.set(f"{namespace}:pybreaker:opened_at", int(time.time()) - 31)
    assert b.call(lambda: 1) == 1
    assert a.state == "closed"


# --- async clients --------------------------------------------------------------------------


@async_test
async def test_an_async_client_drives_acall(utils_redis_url: str, namespace: str) -> None:
    client = redis.asyncio.Redis.from_url(utils_redis_url)
    storage = RedisBreakerStorage(client, namespace, fail_open=True)
    assert storage.is_async
    a = CircuitBreaker("payments", storage=storage, fail_max=2, reset_timeout=30)
    b = CircuitBreaker("payments", storage=storage, fail_max=2, reset_timeout=30)

    async def fail() -> None:
        raise ConnectionError

    async def ok() -> str:
        return "ok"

    assert await a.acall(ok) == "ok"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await a.acall(fail)
    assert await b.astate() == "open"
    assert b.state == "open"  # the state this process last saw
    assert a.pybreaker.current_state == "open"
    with pytest.raises(CircuitOpenError):
        await b.acall(ok)
    with pytest.raises(TypeError, match="async Redis client"):
        b.call(len, "x")
    with pytest.raises(TypeError, match="async Redis client"):
        b.open()
    await b.ahalf_open()
    async with a:  # a's probe
        with pytest.raises(CircuitOpenError):
            await b.acall(ok)
        with pytest.raises(CircuitOpenError):
            async with b:
                pass
    assert (await a.asnapshot()).state == "closed"
    await a.aopen()
    await a.areset()
    assert await b.astate() == "closed"
    await client.aclose()


@async_test
async def test_exactly_one_probe_among_tasks_with_an_async_client(
    utils_redis_url: str, namespace: str
) -> None:
    client = redis.asyncio.Redis.from_url(utils_redis_url)
    breaker = CircuitBreaker(
        "payments",
        storage=RedisBreakerStorage(client, namespace, fail_open=True),
        fail_max=1,
        reset_timeout=0,
    )
    await breaker.aopen()
    release = asyncio.Event()
    n = 30

    async def probe() -> str:
        await release.wait()
        return "probe"

    async def caller() -> str:
        try:
            return await breaker.acall(probe)
        except CircuitOpenError:
            return "refused"

    tasks = [asyncio.ensure_future(caller()) for _ in range(n)]
    deadline = time.monotonic() + 10
    while sum(task.done() for task in tasks) < n - 1:  # every caller but the probe returns
        assert time.monotonic() < deadline
        await asyncio.wait(tasks, timeout=0.01)
    release.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("probe") == 1
    assert outcomes.count("refused") == n - 1
    assert await breaker.astate() == "closed"
    await client.aclose()


@async_test
async def test_cancelling_a_probe_releases_the_shared_lease(
    utils_redis_url: str, namespace: str
) -> None:
    client = redis.asyncio.Redis.from_url(utils_redis_url)
    breaker = CircuitBreaker(
        "payments",
        storage=RedisBreakerStorage(client, namespace, fail_open=True),
        fail_max=1,
        reset_timeout=0,
    )
    await breaker.aopen()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(breaker.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.astate() == "half_open"
    assert await client.exists(probe_key(namespace)) == 0
    await client.aclose()


@async_test
async def test_a_sync_client_serves_acall_from_a_worker_thread(
    make: Callable[..., CircuitBreaker],
) -> None:
    breaker = make(fail_max=1, reset_timeout=0)

    async def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.acall(fail)
    assert await breaker.astate() == "open"
    assert await breaker.acall(asyncio.sleep, 0, "probe") == "probe"
    await breaker.aopen()
    assert (await breaker.asnapshot()).state == "open"


# --- Redis down -----------------------------------------------------------------------------


@pytest.fixture
def private() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


def test_fail_open_runs_calls_while_redis_is_down_and_logs_once(
    private: PrivateRedis, utils_logs: Logs, utils_metrics: InMemorySink
) -> None:
    client = redis.Redis.from_url(private.url, socket_connect_timeout=1, socket_timeout=1)
    breaker = CircuitBreaker(
        "payments",
        storage=RedisBreakerStorage(client, "ns", fail_open=True),
        fail_max=1,
        reset_timeout=30,
    )
    assert breaker.call(lambda: 1) == 1
    private.stop()
    assert breaker.call(lambda: 2) == 2  # unguarded, but running
    trip(breaker, 3)  # failures cannot be recorded anywhere: still admitted
    assert breaker.state == "closed"  # the last state seen
    assert breaker.pybreaker.current_state == "closed"
    assert breaker.pybreaker.fail_counter == 0
    with pytest.raises(UnavailableError) as info:
        breaker.open()
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    breaker.storage.increment_counter()  # pybreaker's writes: logged, never raised
    unavailable = [e for e in utils_logs if e["event"] == "breaker.storage_unavailable"]
    assert len(unavailable) == 1
    assert unavailable[0]["breaker"] == "payments"
    assert unavailable[0]["fail_open"] is True
    assert utils_metrics.total("breaker.storage_unavailable", breaker="payments") == 1
    private.start()
    trip(breaker, 1)
    assert breaker.state == "open"
    assert [e["event"] for e in utils_logs].count("breaker.storage_recovered") == 1
    client.close()


def test_fail_closed_refuses_calls_while_redis_is_down(private: PrivateRedis) -> None:
    client = redis.Redis.from_url(private.url, socket_connect_timeout=1, socket_timeout=1)
    storage = RedisBreakerStorage(client, "ns", fail_open=False)
    breaker = CircuitBreaker("payments", storage=storage)
    private.stop()
    ran: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ran.append, 1)
    assert ran == []
    assert info.value.details == {"breaker": "payments", "reason": "storage_unavailable"}
    assert info.value.retry_after is None
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    private.start()
    assert breaker.call(len, "ok") == 2
    client.close()


@async_test
async def test_an_async_client_with_redis_down(private: PrivateRedis, utils_logs: Logs) -> None:
    client = redis.asyncio.Redis.from_url(private.url, socket_connect_timeout=1)
    breaker = CircuitBreaker(
        "payments",
        storage=RedisBreakerStorage(client, "ns", fail_open=True),
        fail_max=1,
        reset_timeout=0,
    )
    await breaker.aopen()
    private.stop()

    async def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.acall(fail)  # admitted: fail open
    assert await breaker.astate() == "open"  # the last state seen
    with pytest.raises(UnavailableError):
        await breaker.areset()
    assert [e["event"] for e in utils_logs].count("breaker.storage_unavailable") == 1
    private.start()
    await breaker.areset()
    assert await breaker.astate() == "closed"
    await client.aclose()


def test_a_flushed_script_cache_is_reloaded(private: PrivateRedis) -> None:
    client = redis.Redis.from_url(private.url)
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, "ns", fail_open=True), fail_max=1
    )
    assert breaker.call(len, "abc") == 3
    client.script_flush()  # as after a failover to a server that never saw the script
    trip(breaker)
    assert breaker.state == "open"
    client.close()


# --- configuration ------------------------------------------------------------------------


def test_configuration_is_validated(client: redis.Redis) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        RedisBreakerStorage(client, "", fail_open=True)
    for ttl in (0, -1, float("inf"), True):
        with pytest.raises(ValidationError, match="ttl"):
            RedisBreakerStorage(client, "ns", ttl=ttl, fail_open=True)


def test_an_unattached_storage_says_how_to_use_it(
    client: redis.Redis,
) -> None:
    storage = RedisBreakerStorage(client, "ns", fail_open=True)
    assert storage.breaker_name is None
    assert repr(storage) == "RedisBreakerStorage(namespace='ns', breaker=None)"
    with pytest.raises(ValidationError, match="attach this storage"):
        storage.admit(BreakerPolicy(5, 30.0, 1, 30.0))
    bound = storage.attach("x", policy=BreakerPolicy(5, 30.0, 1, 30.0))
    assert repr(bound) == "RedisBreakerStorage(namespace='ns', breaker='x')"


def test_a_storage_may_receive_another_policy_per_call(
    make: Callable[..., CircuitBreaker],
) -> None:
    breaker = make(fail_max=5)
    strict = BreakerPolicy(1, 30.0, 1, 30.0)
    admission = breaker.storage.admit(strict)
    assert breaker.storage.record(admission, "failure", strict)[0].state == "open"


def test_unknown_script_operations_are_errors(make: Callable[..., CircuitBreaker]) -> None:
    storage = make().storage
    assert isinstance(storage, RedisBreakerStorage)
    with pytest.raises(redis.exceptions.ResponseError, match="unknown circuit breaker"):
        storage._run("explode", None)


def test_docstring_examples() -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(_breaker_redis, _breaker_redis.__name__):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    assert results.attempted > 3


def test_outcomes_are_dropped_when_redis_goes_down_mid_call(
    private: PrivateRedis, utils_logs: Logs
) -> None:
    client = redis.Redis.from_url(private.url, socket_connect_timeout=1, socket_timeout=1)
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, "ns", fail_open=True), fail_max=1
    )
    storage, policy = breaker.storage, breaker.policy
    admission = storage.admit(policy)
    private.stop()
    assert storage.record(admission, "failure", policy) == ()
    assert [e["event"] for e in utils_logs] == ["breaker.storage_unavailable"]
    client.close()


@async_test
async def test_async_outcomes_are_dropped_when_redis_goes_down_mid_call(
    private: PrivateRedis, utils_logs: Logs
) -> None:
    client = redis.asyncio.Redis.from_url(private.url, socket_connect_timeout=1)
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, "ns", fail_open=True), fail_max=1
    )
    storage, policy = breaker.storage, breaker.policy
    admission = await storage.aadmit(policy)
    private.stop()
    assert await storage.arecord(admission, "failure", policy) == ()
    assert [e["event"] for e in utils_logs] == ["breaker.storage_unavailable"]
    await client.aclose()


def test_opened_at_accepts_aware_datetimes(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(reset_timeout=30)
    breaker.open()
    breaker.storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=10)
    assert 19 < breaker.snapshot().retry_after <= 20.5


# --- errors that are not outages -------------------------------------------------------------


def _oom(server: PrivateRedis) -> redis.Redis:
    """Put the PRIVATE server at maxmemory with noeviction: every write answers OOM."""
    admin = redis.Redis.from_url(server.url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    return admin


def test_redis_oom_never_replaces_the_callers_own_error(
    utils_private_redis: PrivateRedis, utils_logs: Logs
) -> None:
    client = redis.Redis.from_url(utils_private_redis.url, socket_timeout=2)
    # fail_max=2: the first failure's script writes with HSET first, which OOM refuses
    # (once a script has written, Redis lets its later writes through).
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, "ns", fail_open=True), fail_max=2
    )
    assert breaker.call(len, "ab") == 2
    admin = _oom(utils_private_redis)
    with pytest.raises(ConnectionError) as info:  # the caller's own error, not Redis's OOM
        breaker.call(boom)
    assert not isinstance(info.value, redis.exceptions.RedisError)
    assert breaker.call(len, "abc") == 3  # fail open: still admitted
    events = [e["event"] for e in utils_logs if e["event"].startswith("breaker.storage")]
    assert events == ["breaker.storage_unavailable"]
    admin.config_set("maxmemory", 0)
    trip(breaker, 2)
    assert breaker.state == "open"
    events = [e["event"] for e in utils_logs if e["event"].startswith("breaker.storage")]
    assert events == ["breaker.storage_unavailable", "breaker.storage_recovered"]
    admin.close()
    client.close()


@async_test
async def test_redis_oom_never_replaces_the_callers_own_error_async(
    utils_private_redis: PrivateRedis,
) -> None:
    client = redis.asyncio.Redis.from_url(utils_private_redis.url, socket_timeout=2)
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, "ns", fail_open=True), fail_max=2
    )

    async def fail() -> None:
        raise ConnectionError("dependency unreachable")

    await breaker.areset()
    admin = _oom(utils_private_redis)
    with pytest.raises(ConnectionError) as info:
        await breaker.acall(fail)
    assert not isinstance(info.value, redis.exceptions.RedisError)
    admin.close()
    await client.aclose()


def test_a_wrong_type_at_the_breaker_key_is_an_error_not_an_outage(
    client: redis.Redis, namespace: str, utils_logs: Logs
) -> None:
    from utils.resilience import errors

    client.set(state_key(namespace), "not a hash")  # someone else's key, or a bug
    storage = RedisBreakerStorage(client, namespace, fail_open=True)
    ran: list[int] = []
    with pytest.raises(errors.StorageError) as info:  # at construction (it reads the state)
        CircuitBreaker("payments", storage=storage).call(ran.append, 1)
    assert ran == []
    assert isinstance(info.value, errors.ResilienceError)
    assert isinstance(info.value.__cause__, redis.exceptions.ResponseError)
    assert "WRONGTYPE" in str(info.value.__cause__)
    assert not info.value.retryable
    assert not [e for e in utils_logs if e["event"] == "breaker.storage_unavailable"]


def test_an_acl_refusal_is_an_error_not_an_outage(utils_private_redis: PrivateRedis) -> None:
    from utils.resilience import errors

    admin = redis.Redis.from_url(utils_private_redis.url)
    admin.acl_setuser(
        "noscripts", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-evalsha"]
    )
    client = redis.Redis.from_url(utils_private_redis.url, username="noscripts", password="pw")
    storage = RedisBreakerStorage(client, "ns", fail_open=True)
    with pytest.raises(errors.StorageError) as info:
        CircuitBreaker("payments", storage=storage).call(len, "x")
    assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)
    admin.close()
    client.close()


def test_fail_open_defaults_to_true_like_every_redis_component(client: redis.Redis) -> None:
    assert RedisBreakerStorage(client, "ns").fail_open is True
    with pytest.raises(ValidationError, match="fail_open must be True or False"):
        RedisBreakerStorage(client, "ns", fail_open="no")  # type: ignore[arg-type]


# --- deadlines ------------------------------------------------------------------------------


def test_admission_honours_the_deadline(make: Callable[..., CircuitBreaker]) -> None:
    from utils.core import OperationTimeoutError, deadline

    breaker = make()
    ran: list[int] = []
    with deadline(0), pytest.raises(OperationTimeoutError):
        breaker.call(ran.append, 1)
    assert ran == []


def test_a_failure_is_recorded_even_when_the_deadline_ran_out_during_the_call(
    make: Callable[..., CircuitBreaker],
) -> None:
    from utils.core import deadline, remaining

    breaker = make(fail_max=1)

    def slow_failure() -> None:
        wait_until(lambda: remaining() == 0.0)
        raise TimeoutError("too slow")

    with deadline(0.05), pytest.raises(TimeoutError):
        breaker.call(slow_failure)
    assert breaker.state == "open"  # counted: the spent deadline did not stop the record


@async_test
async def test_an_async_failure_is_recorded_even_when_the_deadline_ran_out(
    utils_redis_url: str, namespace: str
) -> None:
    from utils.core import deadline, remaining

    client = redis.asyncio.Redis.from_url(utils_redis_url)
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(client, namespace, fail_open=True), fail_max=1
    )

    async def slow_failure() -> None:
        wait_until(lambda: remaining() == 0.0)  # blocks the loop: nothing else runs here
        raise TimeoutError("too slow")

    with deadline(0.05), pytest.raises(TimeoutError):
        await breaker.acall(slow_failure)
    assert await breaker.astate() == "open"
    await client.aclose()


def test_a_url_builds_a_fail_fast_client(utils_redis_url: str, namespace: str) -> None:
    breaker = CircuitBreaker(
        "payments", storage=RedisBreakerStorage(utils_redis_url, namespace, fail_open=False)
    )
    breaker.open()
    assert breaker.state == "open"
    options = breaker.storage.client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert options["socket_timeout"] == 1.0
