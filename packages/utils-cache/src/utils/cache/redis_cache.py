"""Caches in Redis: :class:`RedisCache` (``redis.Redis``) and :class:`AsyncRedisCache` (``redis.asyncio``).

Keys. Every cache key lives under the prefix ``{namespace}#{version}:`` — cache key
``"user:42"`` of namespace ``"shop"`` is the Redis key ``shop#0:user:42``. A namespace is any
non-empty string without ``#``, so the first ``#`` of a Redis key always ends its namespace
and no two namespaces can ever share a key or a ``clear()``. Bumping ``version`` (an int
>= 0) moves the whole namespace to fresh keys at once; the old version's keys are left to
their TTLs (or removed with ``clear(all_versions=True)``). Stampede locks live beside the
values, at ``{namespace}#{version}#lock:{key}``, so ``clear()`` never removes a lock that a
computation holds.

Round trips. ``get`` is one ``GET``, ``get_many`` one ``MGET``, ``set_many`` one pipeline
(``SET ... PX`` per key, or one ``MSET`` without TTL), ``delete_many`` one ``UNLINK``,
``ttl`` one ``PTTL``, ``incr`` one ``INCRBY`` (inside ``MULTI``/``EXEC`` with
``SET key 0 NX PX`` when the cache has a default TTL, so a counter it creates expires like
any other entry). ``clear()`` walks ``SCAN MATCH <prefix>* COUNT 500`` and unlinks
each batch: never ``FLUSHDB``.

TTLs. ``ttl=None`` is the cache's default (itself ``None``: no expiry), ``ttl=0`` does not
store (the call is a no-op), seconds or a ``timedelta`` otherwise, rounded to milliseconds
(at least 1 ms).

Integers. The default :class:`~utils.cache.serializers.JsonSerializer` writes an int as its
decimal text, which is exactly what Redis ``INCRBY`` reads and writes: ``set(k, 5)`` then
``incr(k)`` gives 6, and ``get`` of a counter made by ``incr`` returns an int.
:class:`~utils.cache.serializers.PickleSerializer` stores ints the same way.

Failures. When Redis cannot be reached or is too slow (``ConnectionError``,
``TimeoutError``, ``BusyLoadingError``, cluster down, ``READONLY`` and ``OOM`` write
refusals), a ``fail_open=True`` cache (the default) turns reads into misses and drops
writes; ``exists`` answers False, ``delete`` 0/False, ``incr`` returns ``delta`` (as for a
missing key) and a stampede lock is granted without Redis. The outage is logged once:
``cache.unavailable`` (warning) when it starts and ``cache.recovered`` (info) when a call
succeeds again; every failed call adds to ``stats().errors`` and to the metric
``cache.error`` (tags ``cache``, ``op``, ``reason``). Caching resumes by itself. With
``fail_open=False`` the same calls raise
:class:`~utils.cache.errors.CacheUnavailableError` (cause: the redis error). Other redis
errors (``WRONGTYPE``, ``NOPERM``...) always raise :class:`~utils.cache.errors.CacheError`.
A write dropped during an outage cannot be replayed: when the server was unreachable but
kept its data, a value deleted during the outage is still there afterwards, so keep TTLs
bounded.

Deadlines. Inside :func:`utils.core.deadline`, no call waits on Redis longer than
:func:`utils.core.remaining`. redis-py has no per-command timeout, so the sync cache runs a
call made under a deadline on a connection it takes from the client's pool, with the
socket's timeout lowered to the time left (and put back afterwards); the async cache wraps
the call in ``asyncio.timeout`` (``asyncio.wait_for`` on Python 3.10). A spent deadline
makes a ``fail_open`` cache miss at once, without a round trip, and a strict cache raise
:class:`~utils.core.OperationTimeoutError`. Limits: opening a *new* connection inside the
pool still uses the client's ``socket_connect_timeout``, and clients made with
``single_connection_client=True`` or client-side caching keep their own timeouts (the
deadline is still checked before each call).

Clients. Pass a ``redis.Redis`` / ``redis.asyncio.Redis`` (not ``decode_responses=True``:
values are bytes) or a URL; a URL builds a client that fails fast — 1 s socket and connect
timeouts and no retries (``Retry(NoBackoff(), 0)``; redis-py 6+ otherwise retries three
times with backoff, which turns every call of an outage into seconds) — that
:meth:`RedisCache.close` closes. URL query options (``?socket_timeout=0.2``) win.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from utils.cache._compute import AsyncGetOrSet, GetOrSet
from utils.cache._redis_lock import AsyncRedisLock, RedisLock
from utils.cache._ttl import resolve_ttl
from utils.cache.errors import CacheError, CacheUnavailableError, CacheValueError
from utils.cache.protocol import TTL, CacheStats
from utils.cache.serializers import JsonSerializer, Serializer
from utils.core import OperationTimeoutError, ValidationError, get_logger, remaining
from utils.core.metrics import get_metrics_sink

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["AsyncRedisCache", "RedisCache"]

T = TypeVar("T")

_log = get_logger("utils.cache.redis")

#: Socket and connect timeouts (seconds) of the clients built from a URL.
DEFAULT_SOCKET_TIMEOUT = 1.0
#: How many keys one ``SCAN`` step of ``clear()`` asks for (and one ``UNLINK`` removes).
SCAN_COUNT = 500

_DEFAULT_SERIALIZER = JsonSerializer()

# Errors that mean "Redis cannot serve us right now", not "we asked something wrong".
# READONLY (a replica after a failover) and OOM (maxmemory with noeviction) refuse writes
# while reads still work: they are tracked apart so reads do not end that outage.
_REFUSED: tuple[type[Exception], ...] = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
    *_REFUSED,
)
_DOWN = 1  # reads and writes fail
_REFUSING = 2  # writes are refused
_ANY = _DOWN | _REFUSING

if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, seconds)


def _px(seconds: float | None) -> int | None:
    """Milliseconds for ``PX``: None = no expiry, 0 = do not store, else >= 1."""
    if seconds is None:
        return None
    if seconds == 0.0:
        return 0
    return max(1, round(seconds * 1000.0))


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in text)


def _connection_args(pool: Any) -> tuple[str, ...]:
    # redis-py < 5.3 requires a command name (ignored since); newer ones warn when given one.
    try:
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    except (TypeError, ValueError):  # pragma: no cover - an exotic pool
        return ()
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return ("GET",)  # pragma: no cover - redis-py < 5.3
    return ()


class _Core:
    """Configuration, counters and the failure policy shared by the sync and async caches."""

    __slots__ = (
        "_can_cap",
        "_client",
        "_connection_args",
        "_default_px",
        "_default_ttl",
        "_deletes",
        "_dumps",
        "_errors",
        "_fail_open",
        "_hits",
        "_loads",
        "_lock_prefix",
        "_misses",
        "_name",
        "_namespace",
        "_owns_client",
        "_pattern",
        "_pattern_all",
        "_prefix",
        "_serializer",
        "_sets",
        "_state_lock",
        "_trouble",
        "_version",
    )

    _is_async = False

    def __init__(
        self,
        client_or_url: Any,
        *,
        namespace: str,
        serializer: Serializer | None,
        ttl: TTL,
        fail_open: bool,
        version: int,
        name: str | None,
    ) -> None:
        kind = type(self).__name__
        if not isinstance(namespace, str) or not namespace or "#" in namespace:
            raise ValidationError(
                f"{kind} namespace must be a non-empty string without '#', got {namespace!r}"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValidationError(f"{kind} version must be an int >= 0, got {version!r}")
        if not isinstance(fail_open, bool):
            raise ValidationError(f"{kind} fail_open must be True or False, got {fail_open!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValidationError(f"{kind} name must be a non-empty string, got {name!r}")
        serializer = _DEFAULT_SERIALIZER if serializer is None else serializer
        if not isinstance(serializer, Serializer):
            raise ValidationError(
                f"{kind} serializer must have dumps() and loads(), got {type(serializer).__name__}"
            )
        self._default_ttl = resolve_ttl(ttl, None)
        self._default_px = _px(self._default_ttl)
        self._namespace = namespace
        self._version = version
        self._name = name or namespace
        self._fail_open = fail_open
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._prefix = f"{namespace}#{version}:"
        self._lock_prefix = f"{namespace}#{version}#lock:"
        self._pattern = f"{_glob_escape(self._prefix)}*"
        self._pattern_all = f"{_glob_escape(namespace)}#*"
        self._owns_client = isinstance(client_or_url, str)
        client = self._make_client(client_or_url) if self._owns_client else client_or_url
        self._check_client(client)
        self._client: Any = client
        pool = client.connection_pool
        self._can_cap = (
            getattr(client, "connection", None) is None
            and getattr(pool, "cache", None) is None
            and hasattr(pool, "get_connection")
        )
        self._connection_args = _connection_args(pool) if self._can_cap else ()
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._trouble = 0
        self._state_lock = threading.Lock()

    @staticmethod
    def _make_client(url: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_client(self, client: Any) -> None:
        kind = type(self).__name__
        execute = getattr(client, "execute_command", None)
        if execute is None or not hasattr(client, "connection_pool"):
            raise TypeError(
                f"{kind} needs a redis client or a redis:// URL, got {type(client).__name__} "
                "(cluster clients are not supported)"
            )
        if inspect.iscoroutinefunction(execute) != self._is_async:
            wanted = "redis.asyncio.Redis" if self._is_async else "redis.Redis"
            other = "RedisCache" if self._is_async else "AsyncRedisCache"
            raise TypeError(f"{kind} needs a {wanted} client (use {other} for the other kind)")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValidationError(
                f"{kind} needs a client with decode_responses=False: cached values are bytes"
            )

    # -- read-only configuration -------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace every key of this cache lives under."""
        return self._namespace

    @property
    def version(self) -> int:
        """The namespace version (bump it to invalidate every entry at once)."""
        return self._version

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key of this cache: ``{namespace}#{version}:``."""
        return self._prefix

    @property
    def name(self) -> str:
        """The name in logs and metrics (the namespace unless given)."""
        return self._name

    @property
    def default_ttl(self) -> float | None:
        """Seconds an entry lives when ``ttl`` is not given (None: no expiry)."""
        return self._default_ttl

    @property
    def fail_open(self) -> bool:
        """Whether an unreachable Redis means misses (True) or errors (False)."""
        return self._fail_open

    @property
    def serializer(self) -> Serializer:
        """How values become bytes."""
        return self._serializer

    @property
    def client(self) -> Any:
        """The redis-py client (for pub/sub, health checks, or commands of your own)."""
        return self._client

    def redis_key(self, key: str) -> str:
        """The Redis key that holds cache key ``key``.

        Example:
            >>> RedisCache("redis://localhost", namespace="shop", version=2).redis_key("u:1")
            'shop#2:u:1'
        """
        return f"{self._prefix}{key}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self._namespace!r}, version={self._version}, "
            f"ttl={self._default_ttl!r}, fail_open={self._fail_open!r})"
        )

    def stats(self) -> CacheStats:
        """Counters since creation (approximate under heavy threading; never I/O).

        ``size`` is None: counting a namespace would need a full ``SCAN``.

        Example:
            >>> RedisCache("redis://localhost", namespace="shop").stats().hits
            0
        """
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            sets=self._sets,
            deletes=self._deletes,
            errors=self._errors,
        )

    def _ttl_px(self, ttl: TTL) -> int | None:
        return self._default_px if ttl is None else _px(resolve_ttl(ttl, self._default_ttl))

    # -- the failure policy --------------------------------------------------------------------

    def _count_error(self, op: str, reason: str) -> None:
        self._errors += 1
        get_metrics_sink().increment(
            "cache.error", 1.0, {"cache": self._name, "op": op, "reason": reason}
        )

    def _deadline_spent(self, op: str, error: BaseException | None = None) -> None:
        """Count a call the deadline cut short; return when failing open, raise otherwise."""
        self._count_error(op, "deadline")
        if self._fail_open:
            return
        raise OperationTimeoutError(
            f"deadline exceeded during cache {op} on {self._name!r}",
            details={"cache": self._name, "op": op},
        ) from error

    def _failed(self, error: BaseException, op: str, write: bool) -> None:
        """Count a failed call; return when failing open, raise otherwise."""
        if isinstance(error, asyncio.TimeoutError) or (
            isinstance(error, redis.exceptions.TimeoutError) and remaining() == 0.0
        ):
            self._deadline_spent(op, error)
            return
        if isinstance(error, _UNAVAILABLE):
            self._count_error(op, "unavailable")
            bit = _REFUSING if isinstance(error, _REFUSED) else _DOWN
            if not self._trouble & bit:
                self._went_down(bit, error)
            if self._fail_open:
                return
            raise CacheUnavailableError(
                f"cache {self._name!r} cannot reach Redis ({type(error).__name__}: {error}) "
                "and does not fail open",
                details={"cache": self._name, "op": op, "error": type(error).__name__},
            ) from error
        self._count_error(op, "error")
        details = {"cache": self._name, "op": op, "error": type(error).__name__}
        if op == "incr" and "not an integer" in str(error):
            raise CacheValueError(
                f"cache {self._name!r} cannot incr: the value is not an integer",
                details=details,
            ) from error
        raise CacheError(
            f"Redis refused cache {op} on {self._name!r}: {type(error).__name__}: {error}",
            details=details,
        ) from error

    def _went_down(self, bit: int, error: BaseException) -> None:
        with self._state_lock:
            started = not self._trouble & bit
            self._trouble |= bit
        if started:
            _log.warning(
                "cache.unavailable",
                cache=self._name,
                namespace=self._namespace,
                scope="writes" if bit == _REFUSING else "all",
                fail_open=self._fail_open,
                error=f"{type(error).__name__}: {error}",
            )

    def _healthy(self, mask: int) -> None:
        """A call succeeded: end the outages that ``mask`` covers (reads cannot end REFUSING)."""
        if not self._trouble & mask:
            return
        with self._state_lock:
            ended = self._trouble & mask
            self._trouble &= ~mask
        for bit in (_DOWN, _REFUSING):
            if ended & bit:
                _log.info(
                    "cache.recovered",
                    cache=self._name,
                    namespace=self._namespace,
                    scope="writes" if bit == _REFUSING else "all",
                )

    def _decode(self, data: bytes) -> Any:
        try:
            return self._loads(data)
        except CacheError:
            self._count_error("get", "decode")
            raise

    @staticmethod
    def _pttl_seconds(pttl: int) -> float | None:
        return None if pttl < 0 else pttl / 1000.0

    def _incr_commands(self, name: str, delta: int) -> tuple[list[tuple[Any, ...]], bool]:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValidationError(f"incr delta must be an int, got {delta!r}")
        px = self._default_px
        if px is None:
            return [("INCRBY", name, delta)], False
        # Create the counter with the default TTL, atomically with the increment.
        return [("SET", name, 0, "NX", "PX", px), ("INCRBY", name, delta)], True

    @staticmethod
    def _set_commands(items: list[tuple[str, bytes]], px: int | None) -> list[tuple[Any, ...]]:
        if px is None:
            return [("MSET", *[part for item in items for part in item])]
        return [("SET", name, data, "PX", px) for name, data in items]


class RedisCache(GetOrSet, _Core):
    """A cache in Redis for sync code (redis-py ``redis.Redis``); see the module docs.

    Args:
        client_or_url: A ``redis.Redis`` (``decode_responses=False``) or a ``redis://`` /
            ``rediss://`` / ``unix://`` URL (the cache then owns the client: close it).
        namespace: Every key lives under it (non-empty, no ``#``).
        serializer: How values become bytes (default :class:`JsonSerializer`).
        ttl: Default TTL: seconds, ``timedelta``, None (no expiry) or 0 (store nothing).
        fail_open: True: an unreachable Redis means misses and dropped writes; False: it
            raises :class:`~utils.cache.errors.CacheUnavailableError`.
        version: Bump to invalidate the whole namespace at once.
        name: Name in logs and metrics (default: the namespace).

    Example:
        >>> cache = RedisCache("redis://localhost:6379/0", namespace="shop", ttl=300)
        >>> cache.set("user:42", {"name": "Ada"})  # doctest: +SKIP
        >>> cache.get("user:42")  # doctest: +SKIP
        {'name': 'Ada'}
        >>> cache.close()
    """

    __slots__ = ()

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        namespace: str,
        serializer: Serializer | None = None,
        ttl: TTL = None,
        fail_open: bool = True,
        version: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(
            client_or_url,
            namespace=namespace,
            serializer=serializer,
            ttl=ttl,
            fail_open=fail_open,
            version=version,
            name=name,
        )

    @staticmethod
    def _make_client(url: str) -> Any:
        return redis.Redis.from_url(
            url,
            socket_timeout=DEFAULT_SOCKET_TIMEOUT,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )

    def close(self) -> None:
        """Close the client if the cache made it from a URL (a client you passed stays open)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- running commands --------------------------------------------------------------------

    def _run(
        self,
        op: str,
        commands: Sequence[tuple[Any, ...]],
        *,
        write: bool,
        transaction: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> list[Any] | None:
        """Run ``commands`` in one round trip under the deadline and failure policy.

        Returns the replies, or None when the call failed and the cache fails open.
        """
        left = remaining()
        try:
            if left is None:
                replies = self._plain(commands, transaction)
            elif left > 0.0:
                replies = self._capped(commands, transaction, left)
            else:
                self._deadline_spent(op)
                return None
        except passthrough:
            raise
        except redis.exceptions.RedisError as error:
            self._failed(error, op, write)
            return None
        if self._trouble:
            self._healthy(_ANY if write else _DOWN)
        return replies

    def _plain(self, commands: Sequence[tuple[Any, ...]], transaction: bool) -> list[Any]:
        client = self._client
        if len(commands) == 1 and not transaction:
            return [client.execute_command(*commands[0])]
        pipe = client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())

    def _capped(
        self, commands: Sequence[tuple[Any, ...]], transaction: bool, left: float
    ) -> list[Any]:
        """Run ``commands`` on one pooled connection whose socket timeout is capped at ``left``.

        Replies are raw (no redis-py response callbacks): callers read them the same way.
        """
        if not self._can_cap:
            return self._plain(commands, transaction)
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        pool = self._client.connection_pool
        conn = pool.get_connection(*self._connection_args)
        error: redis.exceptions.ResponseError | None = None
        replies: list[Any] = []
        try:
            if conn._sock is None:  # pragma: no cover - the pool hands out connected ones
                conn.connect()
            sock = conn._sock
            limit = conn.socket_timeout
            sock.settimeout(left if limit is None or left < limit else limit)
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.exceptions.ResponseError as exc:  # the reply was read whole
                        replies.append(exc)
                        error = error or exc
            finally:
                if conn._sock is sock:  # errors disconnect: nothing to restore then
                    sock.settimeout(limit)
        finally:
            pool.release(conn)
        if error is not None:
            raise error
        if transaction:
            replies = replies[-1]  # EXEC: the results of the queued commands
            for reply in replies:
                if isinstance(reply, redis.exceptions.ResponseError):
                    raise reply
        return replies

    # -- the Cache protocol --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss (pass MISSING to tell None apart).

        Example:
            >>> cache = RedisCache("redis://localhost", namespace="doc")
            >>> cache.get("nothing-here", default="miss")  # doctest: +SKIP
            'miss'
        """
        if remaining() is None:  # the hot path: one GET, one loads
            try:
                data = self._client.get(f"{self._prefix}{key}")
            except redis.exceptions.RedisError as error:
                self._failed(error, "get", False)
                self._misses += 1
                return default
            if self._trouble:
                self._healthy(_DOWN)
        else:
            replies = self._run("get", [("GET", f"{self._prefix}{key}")], write=False)
            if replies is None:
                self._misses += 1
                return default
            data = replies[0]
        if data is None:
            self._misses += 1
            return default
        self._hits += 1
        try:
            return self._loads(data)
        except CacheError:
            self._count_error("get", "decode")
            raise

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (None: the default; 0: do not store).

        Example:
            >>> from datetime import timedelta
            >>> cache = RedisCache("redis://localhost", namespace="doc")
            >>> cache.set("greeting", "hello", ttl=timedelta(minutes=5))  # doctest: +SKIP
        """
        px = self._default_px if ttl is None else _px(resolve_ttl(ttl, self._default_ttl))
        if px == 0:
            return
        data = self._dumps(value)
        name = f"{self._prefix}{key}"
        if remaining() is None:
            try:
                self._client.set(name, data, px=px)
            except redis.exceptions.RedisError as error:
                self._failed(error, "set", True)
                return
            if self._trouble:
                self._healthy(_ANY)
        else:
            command = ("SET", name, data) if px is None else ("SET", name, data, "PX", px)
            if self._run("set", [command], write=True) is None:
                return
        self._sets += 1

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        replies = self._run("delete", [("UNLINK", f"{self._prefix}{key}")], write=True)
        removed = int(replies[0]) if replies else 0
        self._deletes += removed
        return removed > 0

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a value (False when Redis is unreachable and failing open)."""
        replies = self._run("exists", [("EXISTS", f"{self._prefix}{key}")], write=False)
        return bool(replies and replies[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one, in one ``MGET`` (misses are left out)."""
        keys = list(keys)
        if not keys:
            return {}
        prefix = self._prefix
        names = [f"{prefix}{key}" for key in keys]
        if remaining() is None:
            try:
                values = self._client.mget(names)
            except redis.exceptions.RedisError as error:
                self._failed(error, "get_many", False)
                self._misses += len(keys)
                return {}
            if self._trouble:
                self._healthy(_DOWN)
        else:
            replies = self._run("get_many", [("MGET", *names)], write=False)
            if replies is None:
                self._misses += len(keys)
                return {}
            values = replies[0]
        loads = self._loads
        try:
            found = {
                key: loads(data)
                for key, data in zip(keys, values, strict=False)
                if data is not None
            }
        except CacheError:
            self._count_error("get_many", "decode")
            raise
        self._hits += len(found)
        self._misses += len(keys) - len(found)
        return found

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in one round trip (every value is serialized before any I/O)."""
        px = self._ttl_px(ttl)
        if px == 0 or not mapping:
            return
        prefix, dumps = self._prefix, self._dumps
        items = [(f"{prefix}{key}", dumps(value)) for key, value in mapping.items()]
        if self._run("set_many", self._set_commands(items, px), write=True) is not None:
            self._sets += len(items)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys in one ``UNLINK``; return how many existed."""
        names = [f"{self._prefix}{key}" for key in keys]
        if not names:
            return 0
        replies = self._run("delete_many", [("UNLINK", *names)], write=True)
        removed = int(replies[0]) if replies else 0
        self._deletes += removed
        return removed

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` (missing counts as 0); return the sum.

        A counter this call creates gets the cache's default TTL; an existing one keeps its
        TTL. Failing open while Redis is unreachable returns ``delta``.

        Raises:
            CacheValueError: the value under ``key`` is not an integer.
        """
        commands, transaction = self._incr_commands(f"{self._prefix}{key}", delta)
        if self._default_px == 0:
            return delta
        replies = self._run("incr", commands, write=True, transaction=transaction)
        return delta if replies is None else int(replies[-1])

    def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None when it has no expiry or does not exist."""
        replies = self._run("ttl", [("PTTL", f"{self._prefix}{key}")], write=False)
        return None if replies is None else self._pttl_seconds(int(replies[0]))

    def clear(self, *, all_versions: bool = False) -> None:
        """Remove this namespace's entries (``SCAN`` + ``UNLINK`` in batches; never FLUSHDB).

        ``all_versions=True`` removes the keys of every version of the namespace (and their
        stampede locks), e.g. after bumping ``version``.
        """
        pattern = self._pattern_all if all_versions else self._pattern
        cursor: Any = 0
        while True:
            replies = self._run(
                "clear", [("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)], write=False
            )
            if replies is None:
                return
            cursor, names = int(replies[0][0]), replies[0][1]
            if names and self._run("clear", [("UNLINK", *names)], write=True) is None:
                return
            if cursor == 0:
                return

    # -- hooks for get_or_set, @cached and TieredCache -------------------------------------------

    def _lock(self, key: str, ttl: float) -> RedisLock:
        """A cross-process stampede lock for ``key`` held at most ``ttl`` seconds."""
        return RedisLock(self, f"{self._lock_prefix}{key}", ttl)

    def _get_with_ttl(self, key: str, default: Any) -> tuple[Any, float | None]:
        """The value and its remaining TTL in seconds (None: no expiry), in one round trip."""
        name = f"{self._prefix}{key}"
        replies = self._run("get", [("GET", name), ("PTTL", name)], write=False)
        if replies is None or replies[0] is None:
            self._misses += 1
            return default, None
        self._hits += 1
        pttl = int(replies[1])
        return self._decode(replies[0]), (0.0 if pttl == -2 else self._pttl_seconds(pttl))


class AsyncRedisCache(AsyncGetOrSet, _Core):
    """The async twin of :class:`RedisCache` on ``redis.asyncio.Redis``: the same methods, awaited.

    ``stats()`` and the constructor do no I/O; :meth:`aclose` closes a client made from a
    URL (or use ``async with``).

    Example:
        >>> async def main() -> None:
        ...     async with AsyncRedisCache("redis://localhost", namespace="shop") as cache:
        ...         await cache.set("user:42", {"name": "Ada"}, ttl=60)
        ...         print(await cache.get("user:42"))
        >>> import asyncio
        >>> asyncio.run(main())  # doctest: +SKIP
        {'name': 'Ada'}
    """

    __slots__ = ()

    _is_async = True

    def __init__(
        self,
        client_or_url: redis.asyncio.Redis | str,
        *,
        namespace: str,
        serializer: Serializer | None = None,
        ttl: TTL = None,
        fail_open: bool = True,
        version: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(
            client_or_url,
            namespace=namespace,
            serializer=serializer,
            ttl=ttl,
            fail_open=fail_open,
            version=version,
            name=name,
        )

    @staticmethod
    def _make_client(url: str) -> Any:
        return redis.asyncio.Redis.from_url(
            url,
            socket_timeout=DEFAULT_SOCKET_TIMEOUT,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        )

    async def aclose(self) -> None:
        """Close the client if the cache made it from a URL (a client you passed stays open)."""
        if self._owns_client:
            close = getattr(self._client, "aclose", None) or self._client.close
            await close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- running commands --------------------------------------------------------------------

    async def _arun(
        self,
        op: str,
        commands: Sequence[tuple[Any, ...]],
        *,
        write: bool,
        transaction: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> list[Any] | None:
        """Run ``commands`` in one round trip under the deadline and failure policy."""
        left = remaining()
        try:
            if left is None:
                replies = await self._plain(commands, transaction)
            elif left > 0.0:
                replies = await _within(left, self._plain(commands, transaction))
            else:
                self._deadline_spent(op)
                return None
        except passthrough:
            raise
        except (redis.exceptions.RedisError, asyncio.TimeoutError) as error:
            self._failed(error, op, write)
            return None
        if self._trouble:
            self._healthy(_ANY if write else _DOWN)
        return replies

    async def _plain(self, commands: Sequence[tuple[Any, ...]], transaction: bool) -> list[Any]:
        client = self._client
        if len(commands) == 1 and not transaction:
            return [await client.execute_command(*commands[0])]
        pipe = client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    # -- the AsyncCache protocol -------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss."""
        if remaining() is None:  # the hot path: one GET, one loads
            try:
                data = await self._client.get(f"{self._prefix}{key}")
            except redis.exceptions.RedisError as error:
                self._failed(error, "get", False)
                self._misses += 1
                return default
            if self._trouble:
                self._healthy(_DOWN)
        else:
            replies = await self._arun("get", [("GET", f"{self._prefix}{key}")], write=False)
            if replies is None:
                self._misses += 1
                return default
            data = replies[0]
        if data is None:
            self._misses += 1
            return default
        self._hits += 1
        try:
            return self._loads(data)
        except CacheError:
            self._count_error("get", "decode")
            raise

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (None: the default; 0: do not store)."""
        px = self._default_px if ttl is None else _px(resolve_ttl(ttl, self._default_ttl))
        if px == 0:
            return
        data = self._dumps(value)
        name = f"{self._prefix}{key}"
        if remaining() is None:
            try:
                await self._client.set(name, data, px=px)
            except redis.exceptions.RedisError as error:
                self._failed(error, "set", True)
                return
            if self._trouble:
                self._healthy(_ANY)
        else:
            command = ("SET", name, data) if px is None else ("SET", name, data, "PX", px)
            if await self._arun("set", [command], write=True) is None:
                return
        self._sets += 1

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        replies = await self._arun("delete", [("UNLINK", f"{self._prefix}{key}")], write=True)
        removed = int(replies[0]) if replies else 0
        self._deletes += removed
        return removed > 0

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        replies = await self._arun("exists", [("EXISTS", f"{self._prefix}{key}")], write=False)
        return bool(replies and replies[0])

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one, in one ``MGET``."""
        keys = list(keys)
        if not keys:
            return {}
        prefix = self._prefix
        names = [f"{prefix}{key}" for key in keys]
        if remaining() is None:
            try:
                values = await self._client.mget(names)
            except redis.exceptions.RedisError as error:
                self._failed(error, "get_many", False)
                self._misses += len(keys)
                return {}
            if self._trouble:
                self._healthy(_DOWN)
        else:
            replies = await self._arun("get_many", [("MGET", *names)], write=False)
            if replies is None:
                self._misses += len(keys)
                return {}
            values = replies[0]
        loads = self._loads
        try:
            found = {
                key: loads(data)
                for key, data in zip(keys, values, strict=False)
                if data is not None
            }
        except CacheError:
            self._count_error("get_many", "decode")
            raise
        self._hits += len(found)
        self._misses += len(keys) - len(found)
        return found

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in one round trip."""
        px = self._ttl_px(ttl)
        if px == 0 or not mapping:
            return
        prefix, dumps = self._prefix, self._dumps
        items = [(f"{prefix}{key}", dumps(value)) for key, value in mapping.items()]
        if await self._arun("set_many", self._set_commands(items, px), write=True) is not None:
            self._sets += len(items)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys in one ``UNLINK``; return how many existed."""
        names = [f"{self._prefix}{key}" for key in keys]
        if not names:
            return 0
        replies = await self._arun("delete_many", [("UNLINK", *names)], write=True)
        removed = int(replies[0]) if replies else 0
        self._deletes += removed
        return removed

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key``; see :meth:`RedisCache.incr`."""
        commands, transaction = self._incr_commands(f"{self._prefix}{key}", delta)
        if self._default_px == 0:
            return delta
        replies = await self._arun("incr", commands, write=True, transaction=transaction)
        return delta if replies is None else int(replies[-1])

    async def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None without expiry or when missing."""
        replies = await self._arun("ttl", [("PTTL", f"{self._prefix}{key}")], write=False)
        return None if replies is None else self._pttl_seconds(int(replies[0]))

    async def clear(self, *, all_versions: bool = False) -> None:
        """Remove this namespace's entries; see :meth:`RedisCache.clear`."""
        pattern = self._pattern_all if all_versions else self._pattern
        cursor: Any = 0
        while True:
            replies = await self._arun(
                "clear", [("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)], write=False
            )
            if replies is None:
                return
            cursor, names = int(replies[0][0]), replies[0][1]
            if names and await self._arun("clear", [("UNLINK", *names)], write=True) is None:
                return
            if cursor == 0:
                return

    # -- hooks for get_or_set, @cached and AsyncTieredCache --------------------------------------

    def _alock(self, key: str, ttl: float) -> AsyncRedisLock:
        """A cross-process stampede lock for ``key`` held at most ``ttl`` seconds."""
        return AsyncRedisLock(self, f"{self._lock_prefix}{key}", ttl)

    async def _get_with_ttl(self, key: str, default: Any) -> tuple[Any, float | None]:
        """The value and its remaining TTL in seconds, in one round trip."""
        name = f"{self._prefix}{key}"
        replies = await self._arun("get", [("GET", name), ("PTTL", name)], write=False)
        if replies is None or replies[0] is None:
            self._misses += 1
            return default, None
        self._hits += 1
        pttl = int(replies[1])
        return self._decode(replies[0]), (0.0 if pttl == -2 else self._pttl_seconds(pttl))
