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
``cache.error`` (tags ``cache``, ``op``, ``reason``). Caching resumes by itself.

Failing fast. Once Redis was found unreachable, calls stop going to it: they answer at
once as the policy says (a miss, a dropped write, a granted lock), but for one call per
``probe_interval`` (1 s) — the probe — whose success ends the outage. An unresponsive
server thus costs one socket timeout per interval, not one per round trip. Refused writes
(``READONLY``, ``OOM``) are answered at once by the server: they are not failed fast. With
``fail_open=False`` the same calls raise
:class:`~utils.cache.errors.CacheUnavailableError` (cause: the redis error; ``retry_after``:
the time to the next probe when failing fast). Other redis
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
values are bytes) or a URL; a URL builds a client with
:func:`utils.core.redis.fail_fast_client` — 1 s socket and connect timeouts and no retries
(redis-py 6+ otherwise retries three times with backoff, which turns every call of an
outage into seconds) — that :meth:`RedisCache.close` closes. URL query options
(``?socket_timeout=0.2``) win; an unknown or malformed one is a
:class:`~utils.core.ConfigError` naming it. Commands run through
:func:`utils.core.redis.execute` / ``aexecute``.

Structure. Both classes are thin I/O shells over
:class:`~utils.cache._redis_core.RedisCore`, which plans each method's round trips and
reads the replies (httpx's ``BaseClient`` model): the logic is written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
import redis.exceptions

from utils.cache._compute import AsyncGetOrSet, GetOrSet
from utils.cache._redis_core import (
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_SOCKET_TIMEOUT,
    RedisCore,
    Steps,
)
from utils.cache._redis_lock import AsyncRedisLock, RedisLock
from utils.cache.protocol import TTL
from utils.core import (
    OperationTimeoutError,
)
from utils.core.redis import aexecute, execute

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["DEFAULT_PROBE_INTERVAL", "DEFAULT_SOCKET_TIMEOUT", "AsyncRedisCache", "RedisCache"]

T = TypeVar("T")


class RedisCache(GetOrSet, RedisCore[redis.Redis]):
    """A cache in Redis for sync code (redis-py ``redis.Redis``); see the module docs.

    A thin I/O shell over :class:`~utils.cache._redis_core.RedisCore`, which plans every
    method's round trips and reads their replies: this class only runs them.

    Args:
        client_or_url: A ``redis.Redis`` (``decode_responses=False``) or a ``redis://`` /
            ``rediss://`` / ``unix://`` URL (the cache then owns the client: close it).
        namespace: Every key lives under it (non-empty, no ``#``).
        serializer: How values become bytes (default :class:`JsonSerializer`).
        ttl: Default TTL: seconds, ``timedelta``, None (no expiry) or 0 (store nothing).
        fail_open: True (the default): an unreachable Redis means misses and dropped
            writes; False: it raises :class:`~utils.cache.errors.CacheUnavailableError`.
        version: Bump to invalidate the whole namespace at once.
        name: Name in logs and metrics (default: the namespace).
        probe_interval: While Redis is unreachable, calls fail fast but for one probe per
            this many seconds (default 1).
        clock: The monotonic clock of those probes (``time.monotonic``), for tests.

    Example:
        >>> cache = RedisCache("redis://localhost:6379/0", namespace="doc-shop", ttl=300)
        >>> cache.set("user:42", {"name": "Ada"})
        >>> cache.get("user:42")
        {'name': 'Ada'}
        >>> cache.clear()
        >>> cache.close()
    """

    __slots__ = ()

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

        Returns the replies, or None when the call failed (or failed fast) and the cache
        fails open.
        """
        outage = self._outage
        if outage.down and self._blocked(op):
            return None
        try:
            replies = execute(self._client, commands, transaction=transaction)
        except passthrough:
            raise
        except (redis.exceptions.RedisError, OperationTimeoutError) as error:
            self._failed(error, op, write)
            return None
        if outage.down or (write and self._refusing.down):
            self._healthy(write)
        return replies

    def _drive(self, steps: Steps[T]) -> T:
        """Run a planned method: each of its round trips, then its result."""
        replies: list[Any] | None = None
        try:
            while True:
                op, commands, write, transaction = steps.send(replies)
                replies = self._run(op, commands, write=write, transaction=transaction)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # -- the Cache protocol --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss (pass MISSING to tell None apart).

        Example:
            >>> cache = RedisCache("redis://localhost", namespace="doc")
            >>> cache.get("nothing-here", default="miss")
            'miss'
        """
        return self._got(self._run("get", self._get_command(key), write=False), default)

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (None: the default; 0: do not store).

        Example:
            >>> from datetime import timedelta
            >>> cache = RedisCache("redis://localhost", namespace="doc")
            >>> cache.set("greeting", "hello", ttl=timedelta(minutes=5))
        """
        self._drive(self._store_steps(key, value, ttl))

    def _store(self, key: str, value: Any, ttl: TTL) -> bool:
        """:meth:`set`, telling whether Redis took the write (False: dropped, fail-open)."""
        return self._drive(self._store_steps(key, value, ttl))

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        return self._drive(self._delete_steps([f"{self._prefix}{key}"], "delete")) > 0

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a value (False when Redis is unreachable and failing open)."""
        return self._drive(self._exists_steps(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one, in one ``MGET`` (misses are left out)."""
        wanted = list(keys)
        if not wanted:
            return {}
        return self._found(
            wanted, self._run("get_many", self._get_many_command(wanted), write=False)
        )

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in one round trip (every value is serialized before any I/O)."""
        self._drive(self._store_many_steps(mapping, ttl))

    def _store_many(self, mapping: Mapping[str, Any], ttl: TTL) -> bool:
        """:meth:`set_many`, telling whether Redis took the writes (False: dropped)."""
        return self._drive(self._store_many_steps(mapping, ttl))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys in one ``UNLINK``; return how many existed."""
        names = [f"{self._prefix}{key}" for key in keys]
        return self._drive(self._delete_steps(names, "delete_many"))

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` (missing counts as 0); return the sum.

        A counter this call creates gets the cache's default TTL; an existing one keeps its
        TTL. Failing open while Redis is unreachable returns ``delta``.

        Raises:
            CacheValueError: the value under ``key`` is not an integer.
        """
        return self._drive(self._incr_steps(key, delta))

    def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None when it has no expiry or does not exist."""
        return self._drive(self._ttl_steps(key))

    def clear(self, *, all_versions: bool = False) -> None:
        """Remove this namespace's entries (``SCAN`` + ``UNLINK`` in batches; never FLUSHDB).

        ``all_versions=True`` removes the keys of every version of the namespace (and their
        stampede locks), e.g. after bumping ``version``.
        """
        self._drive(self._clear_steps(all_versions))

    # -- hooks for get_or_set, @cached and TieredCache -------------------------------------------

    def _lock(self, key: str, ttl: float) -> RedisLock:
        """A cross-process stampede lock for ``key`` held at most ``ttl`` seconds."""
        return RedisLock(self, f"{self._lock_prefix}{key}", ttl)

    def _get_with_ttl(self, key: str, default: Any) -> tuple[Any, float | None]:
        """The value and its remaining TTL in seconds (None: no expiry), in one round trip."""
        return self._drive(self._get_with_ttl_steps(key, default))

    def _get_many_with_ttl(self, keys: list[str]) -> dict[str, tuple[Any, float | None]]:
        """Values and remaining TTLs of the keys that hold one: MGET + PTTLs, one round trip."""
        return self._drive(self._get_many_with_ttl_steps(keys))


class AsyncRedisCache(AsyncGetOrSet, RedisCore[redis.asyncio.Redis]):
    """The async twin of :class:`RedisCache` on ``redis.asyncio.Redis``: the same methods, awaited.

    ``stats()`` and the constructor do no I/O; :meth:`aclose` closes a client made from a
    URL (or use ``async with``). Used from another event loop than before (a second
    ``asyncio.run()``), it drops the pooled connections of the old loop and opens new ones.

    Example:
        >>> async def main() -> None:
        ...     async with AsyncRedisCache("redis://localhost", namespace="doc-shop") as cache:
        ...         await cache.set("user:42", {"name": "Ada"}, ttl=60)
        ...         print(await cache.get("user:42"))
        ...         await cache.clear()
        >>> import asyncio
        >>> asyncio.run(main())
        {'name': 'Ada'}
    """

    __slots__ = ()

    _is_async = True

    def _follow_loop(self) -> None:
        """The cache is used from another event loop than before (a second ``asyncio.run()``).

        redis.asyncio connections belong to the loop that opened them and fail on any other:
        forget the pooled ones (their loop is gone or busy elsewhere); new ones open here.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            self._client.connection_pool.reset()
        self._loop = loop

    async def aclose(self) -> None:
        """Close the client if the cache made it from a URL (a client you passed stays open)."""
        if self._owns_client:
            if self._loop is not asyncio.get_running_loop():
                self._follow_loop()  # connections of a finished loop cannot be closed here
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
        if self._loop is not asyncio.get_running_loop():
            self._follow_loop()
        outage = self._outage
        if outage.down and self._blocked(op):
            return None
        try:
            replies = await aexecute(self._client, commands, transaction=transaction)
        except passthrough:
            raise
        except (redis.exceptions.RedisError, OperationTimeoutError, asyncio.TimeoutError) as error:
            self._failed(error, op, write)
            return None
        if outage.down or (write and self._refusing.down):
            self._healthy(write)
        return replies

    async def _adrive(self, steps: Steps[T]) -> T:
        """Run a planned method: each of its round trips, awaited, then its result."""
        replies: list[Any] | None = None
        try:
            while True:
                op, commands, write, transaction = steps.send(replies)
                replies = await self._arun(op, commands, write=write, transaction=transaction)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # -- the AsyncCache protocol -------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss."""
        return self._got(await self._arun("get", self._get_command(key), write=False), default)

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (None: the default; 0: do not store)."""
        await self._adrive(self._store_steps(key, value, ttl))

    async def _store(self, key: str, value: Any, ttl: TTL) -> bool:
        """:meth:`set`, telling whether Redis took the write."""
        return await self._adrive(self._store_steps(key, value, ttl))

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        return await self._adrive(self._delete_steps([f"{self._prefix}{key}"], "delete")) > 0

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        return await self._adrive(self._exists_steps(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one, in one ``MGET``."""
        wanted = list(keys)
        if not wanted:
            return {}
        replies = await self._arun("get_many", self._get_many_command(wanted), write=False)
        return self._found(wanted, replies)

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in one round trip."""
        await self._adrive(self._store_many_steps(mapping, ttl))

    async def _store_many(self, mapping: Mapping[str, Any], ttl: TTL) -> bool:
        """:meth:`set_many`, telling whether Redis took the writes."""
        return await self._adrive(self._store_many_steps(mapping, ttl))

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys in one ``UNLINK``; return how many existed."""
        names = [f"{self._prefix}{key}" for key in keys]
        return await self._adrive(self._delete_steps(names, "delete_many"))

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key``; see :meth:`RedisCache.incr`."""
        return await self._adrive(self._incr_steps(key, delta))

    async def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None without expiry or when missing."""
        return await self._adrive(self._ttl_steps(key))

    async def clear(self, *, all_versions: bool = False) -> None:
        """Remove this namespace's entries; see :meth:`RedisCache.clear`."""
        await self._adrive(self._clear_steps(all_versions))

    # -- hooks for get_or_set, @cached and AsyncTieredCache --------------------------------------

    def _alock(self, key: str, ttl: float) -> AsyncRedisLock:
        """A cross-process stampede lock for ``key`` held at most ``ttl`` seconds."""
        return AsyncRedisLock(self, f"{self._lock_prefix}{key}", ttl)

    async def _get_with_ttl(self, key: str, default: Any) -> tuple[Any, float | None]:
        """The value and its remaining TTL in seconds, in one round trip."""
        return await self._adrive(self._get_with_ttl_steps(key, default))

    async def _get_many_with_ttl(self, keys: list[str]) -> dict[str, tuple[Any, float | None]]:
        """Values and remaining TTLs of the keys that hold one, in one round trip."""
        return await self._adrive(self._get_many_with_ttl_steps(keys))
