"""Tests of utils.core.redis on real Redis servers: the shared one and private ones for faults.

Faults (stopped, frozen, out-of-memory, read-only, ACL-restricted servers) are only ever
provoked on a private ``redis-server`` of the test's own; the shared server is only read and
written under a unique key namespace.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
import redis.exceptions as rex
from redis.backoff import NoBackoff

from utils.core import (
    ConfigError,
    OperationTimeoutError,
    ValidationError,
    deadline,
    is_transient,
)
from utils.core.redis import (
    DEFAULT_TIMEOUT,
    REFUSED_ERRORS,
    UNAVAILABLE_ERRORS,
    Command,
    RedisScript,
    aexecute,
    check_client,
    classify,
    execute,
    fail_fast_client,
    is_async_client,
    is_transient_error,
)
from utils.core.testing import PrivateRedis, find_free_port, private_redis

T = TypeVar("T")

GET_KEY = "return redis.call('GET', KEYS[1])"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def raised(call: Callable[[], object]) -> BaseException:
    """The exception ``call()`` raises (the test fails when it returns)."""
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no exception was raised")


def stats(client: Any, section: str = "stats") -> dict[str, Any]:
    info: dict[str, Any] = client.info(section)
    return info


def calls(client: Any, command: str) -> int:
    entry = stats(client, "commandstats").get(f"cmdstat_{command}")
    return 0 if entry is None else int(entry["calls"])


def connections_received(client: Any) -> int:
    return int(stats(client)["total_connections_received"])


@pytest.fixture
def admin(utils_private_redis: PrivateRedis) -> Iterator[redis.Redis]:
    """A plain client of the private server, to configure and inspect it."""
    client = redis.Redis.from_url(utils_private_redis.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def limited_user(admin: redis.Redis) -> str:
    """An ACL user of the private server that may run everything but EVALSHA."""
    admin.acl_setuser(
        "limited",
        enabled=True,
        passwords=["+limited-pw"],
        keys=["*"],
        commands=["+@all", "-evalsha"],
    )
    return "limited"


# --- classify and is_transient on real errors ------------------------------------------------


def test_connection_refused_by_a_stopped_server(utils_private_redis: PrivateRedis) -> None:
    client = fail_fast_client(utils_private_redis.url)
    try:
        assert client.ping() is True
        utils_private_redis.stop()
        error = raised(client.ping)
    finally:
        client.close()
    assert isinstance(error, rex.ConnectionError)
    assert classify(error) == "unavailable"
    assert is_transient(error)


def test_timeout_from_a_frozen_server(utils_private_redis: PrivateRedis) -> None:
    client = fail_fast_client(utils_private_redis.url, timeout=0.2)
    try:
        assert client.ping() is True
        utils_private_redis.freeze()
        try:
            error = raised(lambda: client.get("k"))
        finally:
            utils_private_redis.thaw()
        assert client.ping() is True  # the server answers again once thawed
    finally:
        client.close()
    assert isinstance(error, rex.TimeoutError)
    assert classify(error) == "unavailable"
    assert is_transient(error)


def test_out_of_memory_refuses_writes_but_serves_reads(admin: redis.Redis) -> None:
    admin.set("kept", "v")
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        error = raised(lambda: admin.set("new", "x" * 100))
        assert admin.get("kept") == b"v"
    finally:
        admin.config_set("maxmemory", 0)
    assert isinstance(error, rex.OutOfMemoryError)
    assert classify(error) == "refused"
    assert not is_transient(error)  # waiting does not free memory


def test_read_only_replica_refuses_writes(admin: redis.Redis) -> None:
    admin.set("k", "v")
    with private_redis() as replica_server:
        replica = redis.Redis.from_url(replica_server.url)
        try:
            replica.replicaof("127.0.0.1", admin.connection_pool.connection_kwargs["port"])
            error = raised(lambda: replica.set("k", "w"))
        finally:
            replica.close()
    assert isinstance(error, rex.ReadOnlyError)
    assert classify(error) == "refused"
    assert is_transient(error)  # a failover completes, writes resume


def test_no_permission(utils_private_redis: PrivateRedis, limited_user: str) -> None:
    url = f"redis://{limited_user}:limited-pw@127.0.0.1:{utils_private_redis.port}/0"
    client = fail_fast_client(url)
    try:
        assert client.set("k", "v") is True  # everything else is allowed
        error = raised(lambda: RedisScript(GET_KEY).run(client, ["k"]))
    finally:
        client.close()
    assert isinstance(error, rex.NoPermissionError)
    assert "evalsha" in str(error)
    assert classify(error) == "error"
    assert not is_transient(error)


def test_wrong_password(utils_private_redis: PrivateRedis, limited_user: str) -> None:
    url = f"redis://{limited_user}:wrong@127.0.0.1:{utils_private_redis.port}/0"
    client = fail_fast_client(url)
    try:
        error = raised(client.ping)
    finally:
        client.close()
    assert isinstance(error, rex.AuthenticationError)
    assert isinstance(error, rex.ConnectionError)  # yet never an outage:
    assert classify(error) == "error"
    assert not is_transient(error)


def test_wrong_type(utils_redis: redis.Redis, utils_redis_namespace: str) -> None:
    key = f"{utils_redis_namespace}:list"
    utils_redis.rpush(key, "a")
    error = raised(lambda: utils_redis.incr(key))
    assert isinstance(error, rex.ResponseError)
    assert str(error).startswith("WRONGTYPE")
    assert classify(error) == "error"
    assert not is_transient(error)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (rex.BusyLoadingError("LOADING"), "unavailable"),
        (rex.ClusterDownError("CLUSTERDOWN"), "unavailable"),
        (rex.MasterDownError("MASTERDOWN"), "unavailable"),
        (rex.TryAgainError("TRYAGAIN"), "unavailable"),
        (asyncio.TimeoutError(), "unavailable"),
        (rex.NoScriptError("NOSCRIPT"), "error"),
        (rex.ResponseError("ERR syntax"), "error"),
        (rex.DataError("bad value"), "error"),
        (rex.AuthorizationError("denied"), "error"),
        (rex.AuthenticationWrongNumberOfArgsError("args"), "error"),
        (ValueError("not redis"), "error"),
    ],
)
def test_classify_table(error: BaseException, kind: str) -> None:
    assert classify(error) == kind


def test_error_groups() -> None:
    assert set(REFUSED_ERRORS) == {rex.ReadOnlyError, rex.OutOfMemoryError}
    assert set(REFUSED_ERRORS) <= set(UNAVAILABLE_ERRORS)
    for cls in (rex.ConnectionError, rex.TimeoutError, rex.ClusterDownError, rex.TryAgainError):
        assert cls in UNAVAILABLE_ERRORS


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (rex.ConnectionError(), True),
        (rex.TimeoutError(), True),
        (rex.BusyLoadingError(), True),
        (rex.ReadOnlyError(), True),
        (rex.TryAgainError(), True),
        (rex.MovedError("3999 127.0.0.1:6381"), True),
        (rex.WatchError(), True),
        (rex.OutOfMemoryError(), False),
        (rex.NoScriptError(), False),
        (rex.NoPermissionError(), False),
        (rex.AuthenticationError(), False),
        (rex.ResponseError(), False),
        (rex.DataError(), False),
        (ValueError(), None),
        (ConnectionResetError(), None),
    ],
)
def test_is_transient_error_table(error: BaseException, verdict: bool | None) -> None:
    assert is_transient_error(error) is verdict


def test_is_transient_error_never_raises() -> None:
    class Weird(Exception):
        @property  # type: ignore[misc]
        def __class__(self) -> type:  # isinstance() asks for it, and it raises
            raise RuntimeError("no class today")

    assert is_transient_error(Weird()) is None


# --- clients ---------------------------------------------------------------------------------


def test_is_async_client() -> None:
    sync_client = redis.Redis()
    async_client = redis.asyncio.Redis()
    try:
        assert is_async_client(sync_client) is False
        assert is_async_client(async_client) is True
        assert is_async_client(object()) is False
        assert is_async_client(None) is False
    finally:
        sync_client.close()
        run(async_client.aclose())


def test_check_client_messages() -> None:
    sync_client = redis.Redis()
    async_client = redis.asyncio.Redis()
    text_client = redis.Redis(decode_responses=True)
    try:
        check_client(sync_client, asynchronous=False, owner="RedisCache")
        check_client(async_client, asynchronous=True, owner="AsyncRedisCache")
        check_client(sync_client, asynchronous=False, owner="RedisCache", bytes_replies=True)
        check_client(text_client, asynchronous=False, owner="RateLimiter")  # text is fine here
        with pytest.raises(
            TypeError,
            match=r"^AsyncRedisCache needs a redis.asyncio.Redis client, got a redis.Redis one$",
        ):
            check_client(sync_client, asynchronous=True, owner="AsyncRedisCache")
        with pytest.raises(
            TypeError,
            match=r"^RedisCache needs a redis.Redis client, got a redis.asyncio.Redis one$",
        ):
            check_client(async_client, asynchronous=False, owner="RedisCache")
        with pytest.raises(
            TypeError,
            match=r"^RedisCache needs a redis client or a redis:// URL, got str "
            r"\(cluster clients are not supported\)$",
        ):
            check_client("redis://localhost", asynchronous=False, owner="RedisCache")
        with pytest.raises(TypeError, match="got object"):
            check_client(object(), asynchronous=False, owner="RedisCache")
        with pytest.raises(
            ValidationError,
            match=r"^RedisCache needs a client with decode_responses=False: it stores bytes$",
        ):
            check_client(text_client, asynchronous=False, owner="RedisCache", bytes_replies=True)
    finally:
        sync_client.close()
        text_client.close()
        run(async_client.aclose())


def test_check_client_refuses_a_cluster_like_object() -> None:
    class ClusterLike:  # execute_command but no connection_pool, like redis.RedisCluster
        def execute_command(self, *args: Any) -> None:
            return None

    with pytest.raises(TypeError, match="cluster clients are not supported"):
        check_client(ClusterLike(), asynchronous=False, owner="RedisCache")


# --- fail_fast_client ------------------------------------------------------------------------


def test_fail_fast_client_defaults() -> None:
    client = fail_fast_client("redis://127.0.0.1:6379/0")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert DEFAULT_TIMEOUT == 1.0
        assert kwargs["socket_timeout"] == 1.0
        assert kwargs["socket_connect_timeout"] == 1.0
        retry = client.get_retry()
        assert retry is not None
        assert retry.get_retries() == 0
        assert isinstance(retry._backoff, NoBackoff)
        assert not is_async_client(client)
    finally:
        client.close()


def test_fail_fast_async_client_defaults() -> None:
    client = fail_fast_client("redis://127.0.0.1:6379/0", asynchronous=True, timeout=0.5)
    try:
        assert is_async_client(client)
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5
        assert kwargs["socket_connect_timeout"] == 0.5
        assert kwargs["retry"].get_retries() == 0
    finally:
        run(client.aclose())


def test_url_options_win_and_keywords_pass_through() -> None:
    client = fail_fast_client(
        "redis://127.0.0.1:6379/3?socket_timeout=0.5&socket_connect_timeout=0.25",
        timeout=3.0,
        max_connections=7,
        client_name="worker",
    )
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5
        assert kwargs["socket_connect_timeout"] == 0.25
        assert kwargs["db"] == 3
        assert kwargs["client_name"] == "worker"
        assert client.connection_pool.max_connections == 7
    finally:
        client.close()
    only_one = fail_fast_client("redis://127.0.0.1:6379/0?socket_timeout=0.5", timeout=3.0)
    try:
        kwargs = only_one.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5
        assert kwargs["socket_connect_timeout"] == 3.0
    finally:
        only_one.close()
    # A keyword beats `timeout`; the URL beats both.
    keyword = fail_fast_client(
        "redis://127.0.0.1:6379/0?socket_connect_timeout=0.1",
        timeout=3.0,
        socket_timeout=0.7,
        socket_connect_timeout=0.9,
    )
    try:
        kwargs = keyword.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.7
        assert kwargs["socket_connect_timeout"] == 0.1
    finally:
        keyword.close()


def test_a_retry_of_ones_own_wins() -> None:
    from redis.retry import Retry

    mine = Retry(NoBackoff(), 2)
    client = fail_fast_client("redis://127.0.0.1:6379/0", retry=mine)
    try:
        retry = client.get_retry()
        assert retry is not None
        assert retry.get_retries() == 2
    finally:
        client.close()


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none",
        "unix:///tmp/utils-no-such.sock?db=2",
        "redis://127.0.0.1:6379/0?health_check_interval=10&max_connections=3",
    ],
)
def test_other_schemes_and_options_are_accepted(url: str) -> None:
    fail_fast_client(url).close()  # nothing connects until the first command


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tll=30", r"^unknown Redis URL option 'tll'; check the spelling"),
        ("tll=30&socket_timout=1", r"^unknown Redis URL option 'socket_timout' \(and 'tll'\)"),
        ("socket_timeout=abc", r"^invalid Redis URL: .*'socket_timeout'"),
        ("max_connections=many", r"^invalid Redis URL: .*'max_connections'"),
    ],
)
def test_bad_url_options_are_config_errors_naming_them(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fail_fast_client(f"redis://127.0.0.1:6379/0?{query}")


@pytest.mark.parametrize(
    "url",
    [
        "redis://app:s3cr3t-pw@127.0.0.1:6379/0?tll=30",
        "redis://app:s3cr3t-pw@127.0.0.1:6379/0?socket_timeout=abc",
        "redis://:s3cr3t-pw@127.0.0.1:6379/0?db=zero",
        "redis://app:s3cr3t-pw@127.0.0.1:port/0",
        "http://app:s3cr3t-pw@127.0.0.1:6379/0",
    ],
)
def test_a_password_in_the_url_never_reaches_the_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        fail_fast_client(url)
    assert "s3cr3t" not in str(info.value)
    assert "s3cr3t" not in repr(info.value.details)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="a Redis URL must be a string, got int"):
        fail_fast_client(6379)  # type: ignore[arg-type]
    for timeout in (0, -1, True, float("nan")):
        with pytest.raises(ValidationError, match=r"^timeout must be a finite number > 0"):
            fail_fast_client("redis://127.0.0.1:6379/0", timeout=timeout)


class ClosingServer:
    """A TCP port that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._address = self._sock.getsockname()
        self.url = f"redis://127.0.0.1:{self._address[1]}/0"
        self.accepted = 0
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            if self._closing:
                conn.close()
                return
            self.accepted += 1  # counted before the client can see the close
            conn.close()

    def close(self) -> None:
        self._closing = True
        socket.create_connection(self._address).close()  # wakes the blocked accept()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def closing_server() -> Iterator[ClosingServer]:
    server = ClosingServer()
    try:
        yield server
    finally:
        server.close()


def test_no_retries_one_connection_attempt_per_call(closing_server: ClosingServer) -> None:
    # redis-py's own default would retry ten times with backoff; the fail-fast client once.
    default = redis.Redis(port=find_free_port())
    default_retry = default.get_retry()
    default.close()
    assert default_retry is not None
    assert default_retry.get_retries() > 0
    client = fail_fast_client(closing_server.url)
    try:
        assert isinstance(raised(client.ping), rex.ConnectionError)
        assert closing_server.accepted == 1
        error = raised(lambda: execute(client, [("GET", "a"), ("GET", "b")]))
        assert isinstance(error, rex.ConnectionError)
        assert closing_server.accepted == 2
    finally:
        client.close()

    async def main() -> BaseException:
        aclient = fail_fast_client(closing_server.url, asynchronous=True)
        try:
            return raised_async(await _capture(aclient.ping()))
        finally:
            await aclient.aclose()

    error = run(main())
    assert isinstance(error, rex.ConnectionError)
    assert closing_server.accepted == 3


async def _capture(awaitable: Awaitable[Any]) -> BaseException | None:
    try:
        await awaitable
    except Exception as exc:
        return exc
    return None


def raised_async(error: BaseException | None) -> BaseException:
    assert error is not None, "no exception was raised"
    return error


def test_a_stopped_server_fails_in_one_attempt(utils_private_redis: PrivateRedis) -> None:
    admin = redis.Redis.from_url(utils_private_redis.url)
    client = fail_fast_client(utils_private_redis.url)
    try:
        assert client.ping() is True
        assert admin.ping() is True
        utils_private_redis.stop()
        assert client.get_retry().get_retries() == 0
        error = raised(lambda: client.get("k"))
        assert classify(error) == "unavailable"
        utils_private_redis.start()
        assert client.get("k") is None  # reconnects by itself once the server is back
    finally:
        client.close()
        admin.close()


# --- execute / aexecute ----------------------------------------------------------------------


def _setup(client: Any, namespace: str) -> list[Command]:
    """Fresh keys, and the commands whose replies must not depend on the path taken."""
    keys = [f"{namespace}:{name}" for name in ("k", "n", "h", "z", "missing")]
    k, n, h, z, missing = keys
    client.delete(*keys)
    sha = client.script_load(GET_KEY)
    return [
        ("SET", k, "v"),
        ("SET", k, "v", "PX", 60_000),
        ("PERSIST", k),
        ("GET", k),
        ("MGET", k, missing),
        ("EXISTS", k, missing),
        ("PTTL", k),
        ("PTTL", missing),
        ("INCRBY", n, 5),
        ("HSET", h, "f", "1"),
        ("HGETALL", h),
        ("ZADD", z, 1.5, "a"),
        ("ZRANGE", z, 0, -1, "WITHSCORES"),
        ("EVALSHA", sha, 1, k),
        (b"GET", k),  # a bytes command name gets the same reply handling
        ("TYPE", k),
        ("PING",),
        ("DEL", n),
    ]


EXPECTED_SYNC = [
    True,
    True,
    True,
    b"v",
    [b"v", None],
    1,
    -1,
    -2,
    5,
    1,
    {b"f": b"1"},
    1,
    [[b"a", 1.5]],
    b"v",
    b"v",
    b"string",
    True,
    1,
]


def _sync_runs(client: Any, namespace: str) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {}
    for budget in (None, 30.0):
        with deadline(budget):
            commands = _setup(client, namespace)
            results[f"one by one, deadline={budget}"] = [
                execute(client, [command])[0] for command in commands
            ]
            commands = _setup(client, namespace)
            results[f"pipeline, deadline={budget}"] = execute(client, commands)
            commands = _setup(client, namespace)
            results[f"transaction, deadline={budget}"] = execute(
                client, commands, transaction=True
            )
    return results


def test_execute_replies_are_the_same_with_and_without_a_deadline(
    utils_redis: redis.Redis, utils_redis_namespace: str
) -> None:
    results = _sync_runs(utils_redis, utils_redis_namespace)
    for path, replies in results.items():
        assert replies == EXPECTED_SYNC, path


@pytest.mark.parametrize(
    "options", [{"decode_responses": True}, {"protocol": 3}], ids=["decoded", "resp3"]
)
def test_execute_replies_match_for_other_client_settings(
    utils_redis_url: str, utils_redis_namespace: str, options: dict[str, Any]
) -> None:
    client = fail_fast_client(utils_redis_url, **options)
    try:
        results = _sync_runs(client, utils_redis_namespace)
        reference = [
            client.execute_command(*command) for command in _setup(client, utils_redis_namespace)
        ]
    finally:
        client.close()
    for path, replies in results.items():
        assert replies == reference, path


def test_aexecute_replies_are_the_same_as_execute(
    utils_redis_url: str, utils_redis_namespace: str
) -> None:
    sync_client = fail_fast_client(utils_redis_url)

    async def main() -> dict[str, list[Any]]:
        client = fail_fast_client(utils_redis_url, asynchronous=True)
        results: dict[str, list[Any]] = {}
        try:
            for budget in (None, 30.0):
                async with deadline(budget):
                    commands = _setup(sync_client, utils_redis_namespace)
                    results[f"one by one, {budget}"] = [
                        (await aexecute(client, [command]))[0] for command in commands
                    ]
                    commands = _setup(sync_client, utils_redis_namespace)
                    results[f"pipeline, {budget}"] = await aexecute(client, commands)
                    commands = _setup(sync_client, utils_redis_namespace)
                    results[f"transaction, {budget}"] = await aexecute(
                        client, commands, transaction=True
                    )
        finally:
            await client.aclose()
        return results

    try:
        results = run(main())
    finally:
        sync_client.close()
    for path, replies in results.items():
        assert replies == EXPECTED_SYNC, path


def test_execute_with_a_single_connection_client(
    utils_redis_url: str, utils_redis_namespace: str
) -> None:
    # Such a client keeps its own connection: the deadline is checked, not applied to the socket.
    client = fail_fast_client(utils_redis_url, single_connection_client=True)
    key = f"{utils_redis_namespace}:single"
    try:
        with deadline(30):
            assert execute(client, [("SET", key, "1"), ("GET", key)]) == [True, b"1"]
            assert execute(client, [("INCR", key)]) == [2]
        with deadline(0), pytest.raises(OperationTimeoutError):
            execute(client, [("GET", key)])
    finally:
        client.close()


def test_the_socket_timeout_is_restored_after_a_capped_call(
    utils_redis_url: str, utils_redis_namespace: str
) -> None:
    client = fail_fast_client(utils_redis_url, timeout=5.0)
    key = f"{utils_redis_namespace}:k"
    try:
        with deadline(0.5):
            assert execute(client, [("SET", key, "v"), ("GET", key)]) == [True, b"v"]
        [connection] = client.connection_pool._available_connections
        assert connection._sock.gettimeout() == 5.0  # the next call gets the client's own
        with deadline(60):  # a deadline longer than the socket timeout does not raise it
            assert execute(client, [("GET", key)]) == [b"v"]
        assert connection._sock.gettimeout() == 5.0
    finally:
        client.close()


def test_error_mid_pipeline_under_a_deadline_keeps_the_connection(admin: redis.Redis) -> None:
    admin.rpush("list", "a")
    client = fail_fast_client(_url_of(admin))
    try:
        assert execute(client, [("PING",)]) == [True]  # one pooled connection
        before = connections_received(admin)
        for transaction in (False, True, False):
            with deadline(30), pytest.raises(rex.ResponseError, match=r"^WRONGTYPE"):
                execute(
                    client,
                    [("SET", "a", "1"), ("INCR", "list"), ("GET", "a")],
                    transaction=transaction,
                )
            with deadline(30):
                assert execute(client, [("GET", "a"), ("LLEN", "list")]) == [b"1", 1]
        # An error reply at queueing time aborts the transaction (EXECABORT): nothing is set.
        with deadline(30), pytest.raises(rex.ResponseError, match="wrong number of arguments"):
            execute(client, [("SET", "b", "1"), ("GET",)], transaction=True)
        with deadline(30):
            assert execute(client, [("EXISTS", "b")]) == [0]
        assert connections_received(admin) == before  # the same connection all along
        assert len(client.connection_pool._available_connections) == 1
    finally:
        client.close()


def test_error_mid_pipeline_under_a_deadline_async(admin: redis.Redis) -> None:
    admin.rpush("list", "a")

    async def main() -> list[Any]:
        client = fail_fast_client(_url_of(admin), asynchronous=True)
        seen: list[Any] = []
        try:
            for transaction in (False, True):
                async with deadline(30):
                    error = await _capture(
                        aexecute(
                            client,
                            [("SET", "a", "1"), ("INCR", "list"), ("GET", "a")],
                            transaction=transaction,
                        )
                    )
                    seen.append(type(error))
                    seen.append(await aexecute(client, [("GET", "a"), ("LLEN", "list")]))
        finally:
            await client.aclose()
        return seen

    assert run(main()) == [rex.ResponseError, [b"1", 1], rex.ResponseError, [b"1", 1]]


def _url_of(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def test_the_same_error_without_a_deadline(
    utils_redis: redis.Redis, utils_redis_namespace: str
) -> None:
    key = f"{utils_redis_namespace}:list"
    utils_redis.rpush(key, "a")
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        execute(utils_redis, [("INCR", key)])
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        execute(utils_redis, [("LLEN", key), ("INCR", key)])
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        execute(utils_redis, [("LLEN", key), ("INCR", key)], transaction=True)
    assert execute(utils_redis, [("LLEN", key)]) == [1]


@pytest.mark.parametrize("budget", [None, 30.0], ids=["no deadline", "deadline"])
def test_aborted_transaction_is_a_watch_error(
    utils_redis_url: str, utils_redis_namespace: str, budget: float | None
) -> None:
    key = f"{utils_redis_namespace}:watched"
    client = fail_fast_client(utils_redis_url)
    other = fail_fast_client(utils_redis_url)
    try:
        with deadline(budget):
            # The pool hands the same (only) connection back: WATCH stays on it.
            execute(client, [("WATCH", key)])
            other.set(key, "theirs")
            with pytest.raises(rex.WatchError):
                execute(client, [("SET", key, "mine")], transaction=True)
        assert other.get(key) == b"theirs"
    finally:
        client.close()
        other.close()


def test_spent_deadline_raises_without_a_round_trip(admin: redis.Redis) -> None:
    client = fail_fast_client(_url_of(admin))
    aclient = fail_fast_client(_url_of(admin), asynchronous=True)
    try:
        gets = calls(admin, "get")
        connections = connections_received(admin)
        with deadline(0):
            for commands in ([("GET", "k")], [("GET", "k"), ("GET", "j")]):
                for transaction in (False, True):
                    with pytest.raises(OperationTimeoutError) as info:
                        execute(client, commands, transaction=transaction)
                    assert str(info.value) == "deadline exceeded before the Redis call"
                    assert info.value.details == {"dependency": "redis"}
                    with pytest.raises(OperationTimeoutError, match="before the Redis call"):
                        run(aexecute(aclient, commands, transaction=transaction))
            with pytest.raises(OperationTimeoutError, match="before the Redis call"):
                RedisScript(GET_KEY).run(client, ["k"])
        assert calls(admin, "get") == gets
        assert calls(admin, "evalsha") == 0
        assert connections_received(admin) == connections  # not even a connection was made
    finally:
        client.close()
        run(aclient.aclose())


def test_frozen_server_under_a_deadline_sync(utils_private_redis: PrivateRedis) -> None:
    client = fail_fast_client(utils_private_redis.url, timeout=5.0)
    try:
        assert execute(client, [("SET", "k", "v")]) == [True]  # a warm pooled connection
        utils_private_redis.freeze()
        try:
            started = time.monotonic()
            with deadline(0.3), pytest.raises(OperationTimeoutError) as info:
                execute(client, [("GET", "k"), ("GET", "k")])
            waited = time.monotonic() - started
        finally:
            utils_private_redis.thaw()
        assert waited < 2.0  # a correctness bound (the socket timeout is 5 s), not a benchmark
        assert str(info.value) == "deadline exceeded during the Redis call"
        assert isinstance(info.value.__cause__, rex.TimeoutError)
        assert classify(info.value.__cause__) == "unavailable"
        # The half-read connection was dropped; the next call gets a clean one.
        assert execute(client, [("GET", "k")]) == [b"v"]
        with deadline(30):
            assert execute(client, [("GET", "k")]) == [b"v"]
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 5.0
    finally:
        client.close()


def test_frozen_server_with_a_cold_pool_under_a_deadline_sync(
    utils_private_redis: PrivateRedis,
) -> None:
    # Known limit of the sync path: a *new* connection connects and shakes hands inside
    # redis-py's pool with the client's own timeouts, before the cap applies; the caller
    # still gets an OperationTimeoutError, after up to the socket timeout.
    client = fail_fast_client(utils_private_redis.url, timeout=0.5)
    try:
        utils_private_redis.freeze()
        try:
            with deadline(0.2), pytest.raises(OperationTimeoutError) as info:
                execute(client, [("GET", "k")])
        finally:
            utils_private_redis.thaw()
        assert isinstance(info.value.__cause__, rex.TimeoutError)
        assert execute(client, [("GET", "k")]) == [None]
    finally:
        client.close()


def test_socket_timeout_shorter_than_the_deadline_stays_a_redis_timeout(
    utils_private_redis: PrivateRedis,
) -> None:
    client = fail_fast_client(utils_private_redis.url, timeout=0.2)
    try:
        assert client.ping() is True
        utils_private_redis.freeze()
        try:
            with deadline(30):
                error = raised(lambda: execute(client, [("GET", "k")]))
        finally:
            utils_private_redis.thaw()
        assert type(error) is rex.TimeoutError  # the deadline is not spent: not ours to rename
    finally:
        client.close()


def test_frozen_server_under_a_deadline_async(utils_private_redis: PrivateRedis) -> None:
    async def main(warm: bool) -> tuple[BaseException | None, float, list[Any]]:
        client = fail_fast_client(utils_private_redis.url, asynchronous=True, timeout=5.0)
        try:
            if warm:
                assert await aexecute(client, [("SET", "k", "v")]) == [True]
            utils_private_redis.freeze()
            try:
                started = time.monotonic()
                async with deadline(0.3):
                    error = await _capture(aexecute(client, [("GET", "k"), ("GET", "k")]))
                waited = time.monotonic() - started
            finally:
                utils_private_redis.thaw()
            after = await aexecute(client, [("GET", "k")])
        finally:
            await client.aclose()
        return error, waited, after

    for warm in (True, False):  # a cold pool: even connecting is cancelled
        error, waited, after = run(main(warm))
        assert isinstance(error, OperationTimeoutError), warm
        assert str(error) == "deadline exceeded during the Redis call"
        assert isinstance(error.__cause__, TimeoutError)
        assert classify(error.__cause__) == "unavailable"
        assert waited < 2.0  # a correctness bound (the socket timeout is 5 s)
        assert after == [b"v"]


def test_async_socket_timeout_shorter_than_the_deadline(
    utils_private_redis: PrivateRedis,
) -> None:
    async def main() -> BaseException | None:
        client = fail_fast_client(utils_private_redis.url, asynchronous=True, timeout=0.2)
        try:
            assert await client.ping() is True
            utils_private_redis.freeze()
            try:
                async with deadline(30):
                    return await _capture(aexecute(client, [("GET", "k")]))
            finally:
                utils_private_redis.thaw()
        finally:
            await client.aclose()

    error = run(main())
    assert type(error) is rex.TimeoutError


# --- RedisScript -----------------------------------------------------------------------------


def test_script_shape() -> None:
    script = RedisScript("return 1")
    assert script.source == "return 1"
    assert script.sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    assert repr(script) == "<RedisScript e0e1f9fabfc9>"
    assert script.command(["k1", "k2"], [3, "x"]) == ("EVALSHA", script.sha, 2, "k1", "k2", 3, "x")
    assert script.command([], []) == ("EVALSHA", script.sha, 0)


def test_script_sha_is_the_one_redis_computes(utils_redis: redis.Redis) -> None:
    script = RedisScript(GET_KEY)
    assert utils_redis.script_load(GET_KEY) == script.sha


INCR_BY = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.mark.parametrize("budget", [None, 30.0], ids=["no deadline", "deadline"])
def test_script_run_loads_itself_after_noscript(admin: redis.Redis, budget: float | None) -> None:
    client = fail_fast_client(_url_of(admin))
    try:
        with deadline(budget):
            assert INCR_BY.run(client, ["n"], [2]) == 2  # NOSCRIPT, then EVAL
            assert (calls(admin, "evalsha"), calls(admin, "eval")) == (1, 1)
            assert INCR_BY.run(client, ["n"], [3]) == 5  # cached now: EVALSHA only
            assert (calls(admin, "evalsha"), calls(admin, "eval")) == (2, 1)
            admin.script_flush()  # what a restart or failover does
            assert INCR_BY.run(client, ["n"], [1]) == 6
            assert (calls(admin, "evalsha"), calls(admin, "eval")) == (3, 2)
            assert INCR_BY.run(client, ["n"], [1]) == 7
        assert len(client.connection_pool._available_connections) == 1
    finally:
        client.close()


def test_script_arun_loads_itself_after_noscript(admin: redis.Redis) -> None:
    async def main() -> list[Any]:
        client = fail_fast_client(_url_of(admin), asynchronous=True)
        try:
            first = await INCR_BY.arun(client, ["n"], [2])
            second = await INCR_BY.arun(client, ["n"], [3])
            admin.script_flush()
            async with deadline(30):
                third = await INCR_BY.arun(client, ["n"], [1])
                fourth = await INCR_BY.arun(client, ["n"], [1])
            return [first, second, third, fourth]
        finally:
            await client.aclose()

    assert run(main()) == [2, 5, 6, 7]
    assert (calls(admin, "evalsha"), calls(admin, "eval")) == (4, 2)


def test_script_errors_are_raised(admin: redis.Redis) -> None:
    admin.rpush("list", "a")
    client = fail_fast_client(_url_of(admin))
    try:
        for budget in (None, 30.0):
            with deadline(budget):
                error = raised(lambda: INCR_BY.run(client, ["list"], [1]))
            assert isinstance(error, rex.ResponseError)
            assert not isinstance(error, rex.NoScriptError)
            assert "WRONGTYPE" in str(error)
    finally:
        client.close()


def test_script_defaults_no_keys_no_args(utils_redis: redis.Redis, utils_redis_url: str) -> None:
    assert RedisScript("return 42").run(utils_redis) == 42

    async def main() -> Any:
        client = fail_fast_client(utils_redis_url, asynchronous=True)
        try:
            return await RedisScript("return 43").arun(client)
        finally:
            await client.aclose()

    assert run(main()) == 43
