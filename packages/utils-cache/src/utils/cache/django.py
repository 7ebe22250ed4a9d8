"""Django cache backends: the two-tier cache (and a plain Redis cache) behind ``django.core.cache``.

:class:`TieredCacheBackend` puts a per-process memory L1 in front of Redis, kept coherent
across processes by pub/sub invalidation (see :mod:`utils.cache.tiered`);
:class:`RedisCacheBackend` is the same without L1. Both implement Django's whole cache API —
``get``/``set``/``add``/``delete``/``get_many``/``set_many``/``delete_many``/``incr``/``decr``/
``touch``/``has_key``/``clear``/``get_or_set``/``incr_version``, their ``a``-prefixed async
twins, versions, ``KEY_PREFIX`` and ``KEY_FUNCTION`` — with Django's semantics::

    CACHES = {
        "default": {
            "BACKEND": "utils.cache.django.TieredCacheBackend",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"namespace": "shop", "l1_maxsize": 10_000, "l1_ttl": 30},
        }
    }

**Keys.** Django makes the key (``KEY_FUNCTION(key, KEY_PREFIX, version)``, by default
``"prefix:version:key"``, with its memcached portability warnings); the cache stores it under
its namespace: key ``"k"`` of version 1 is the Redis key ``django#0::1:k``.

**Timeouts.** Django's: ``DEFAULT_TIMEOUT`` (no argument) is ``TIMEOUT``; ``None`` never
expires; ``0`` or a negative number expires at once — ``set`` and ``set_many`` *delete* the
keys, ``add`` stores nothing and answers whether the key was absent, ``touch`` deletes. (The
utils caches read ``ttl=0`` as "do not store, change nothing": the backend maps Django's
meaning explicitly.) A finite timeout above ten years is a
:class:`~utils.core.ValidationError` (a unit mistake): pass ``None`` for "forever".

**Atomic operations.** ``add`` is one ``SET NX``; ``incr``/``decr`` one Lua script that adds
only to an existing key (a missing key raises :class:`ValueError`, as Django requires, and
the key keeps its expiry); ``touch`` one ``PEXPIRE`` (``PERSIST`` in ``MULTI`` for ``None``)
and answers whether the key exists. On the tiered backend each of them drops the key from
this process's L1 and, when it changed something, from every other process's L1.

**Serialization.** Django caches pickle, and applications cache model instances, querysets'
results and forms. The default serializer is therefore
:class:`~utils.cache.serializers.PickleSerializer` — pickle *signed* with HMAC-SHA256 under a
key derived from ``settings.SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` are accepted while you
rotate it), so bytes that someone else wrote into Redis are refused, never unpickled.
``OPTIONS["serializer"] = "json"`` picks :class:`~utils.cache.serializers.JsonSerializer`
(readable by other languages, refuses arbitrary objects when they are stored); a
:class:`~utils.cache.serializers.Serializer` object or its dotted path is used as given.
Integers are stored as decimal text by both, so ``incr`` works on a value ``set`` wrote.

**When Redis is down** (``OPTIONS["fail_open"]``, default True), reads are misses
(``get`` returns the default, ``has_key`` False), writes are dropped (``add`` and ``touch``
answer False, ``set_many`` returns every key as failed) and ``incr`` raises
:class:`ValueError` as for a missing key; the outage is logged once. With ``fail_open``
False the calls raise :class:`~utils.cache.errors.CacheUnavailableError`.

**One cache per process.** Django makes a backend object per thread (and per async
context); the caches behind them — Redis clients, the L1, the invalidation subscriber
thread — are made once per configuration and shared by all of them. ``close()``, which
Django calls after every request, therefore keeps them open; :func:`shutdown` (or
:func:`ashutdown`) closes them, for tests and clean exits. The next call makes new ones.

**Async.** The ``a``-methods are native: they talk to Redis through an
:class:`~utils.cache.redis_cache.AsyncRedisCache` of the running event loop (one per loop,
so threads that each run a loop — ``async_to_sync`` under WSGI — never share a
connection), while the tiered backend's L1 and subscriber are the process's one: an L1 hit
costs no await, and a write in a sync view is seen at once by an async one.

**Clearing.** ``clear()`` removes the namespace (``SCAN`` + ``UNLINK``), never the whole
database (Django's own Redis backend runs ``FLUSHDB``): every ``KEY_PREFIX`` and version
in that namespace, nothing else. Give each ``CACHES`` alias a namespace of its own.

Example:
    >>> cache = TieredCacheBackend(
    ...     "redis://localhost:6379/0",
    ...     {"KEY_PREFIX": "doc", "OPTIONS": {"namespace": "doc-django", "serializer": "json"}},
    ... )
    >>> cache.clear()
    >>> cache.set("greeting", "hello", timeout=60)
    >>> cache.get("greeting"), cache.add("greeting", "other"), cache.add("visits", 0)
    ('hello', False, True)
    >>> cache.incr("visits"), cache.decr("visits", 5)
    (1, -4)
    >>> cache.incr("nothing")
    Traceback (most recent call last):
    ...
    ValueError: Key 'nothing' not found
    >>> cache.clear()
    >>> shutdown()
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from typing import Any, Final, TypeAlias

import redis.exceptions
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache  # type: ignore[import-untyped,unused-ignore]

from utils.cache._django_shared import Engine, engine_for, parse_config, take_engines
from utils.cache._plan import Plan
from utils.cache.redis_cache import RedisCache
from utils.cache.tiered import TieredCache
from utils.core import ValidationError
from utils.core.redis import RedisScript
from utils.core.validate import duration

__all__ = ["RedisCacheBackend", "TieredCacheBackend", "ashutdown", "shutdown"]

#: ``_seconds()`` for "expire at once" (Django's timeout 0 or negative). Never passed to a
#: utils cache as a TTL: there, 0 means "do not store" and would keep the old value.
_NOW: Final = 0.0

#: Django's incr: add to an existing integer only (a missing key is an error there), in one
#: atomic step; INCRBY keeps the key's expiry.
_INCR_EXISTING = RedisScript(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "return redis.call('INCRBY', KEYS[1], ARGV[1])"
)
_NOSCRIPT = (redis.exceptions.NoScriptError,)

#: One round trip of a backend plan: ``(op, commands, write, transaction)``.
Step: TypeAlias = tuple[str, list[tuple[Any, ...]], bool, bool]
#: A planned backend method: yields round trips, receives replies (None: failed open).
Steps: TypeAlias = Generator[Step, Any, Any]


def shutdown() -> None:
    """Close every cache the backends of this process made: subscriber threads, clients.

    Django calls a backend's ``close()`` after every request, so that keeps the shared
    caches open; call this at exit or between tests. Backends stay usable: their next call
    makes new caches (with an empty L1). Connections opened on an event loop close when
    that loop ends (or at once with :func:`ashutdown`, on the loop that opened them).

    Example:
        >>> backend = RedisCacheBackend("redis://localhost", {"OPTIONS": {"serializer": "json"}})
        >>> shutdown()
        >>> backend.get("anything", "miss")  # a new client, made on demand
        'miss'
        >>> shutdown()
    """
    for engine in take_engines():
        engine.close()


async def ashutdown() -> None:
    """:func:`shutdown`, closing the connections opened on the running event loop too.

    Example:
        >>> import asyncio
        >>> async def main() -> None:
        ...     backend = RedisCacheBackend("redis://localhost", {"OPTIONS": {"serializer": "json"}})
        ...     print(await backend.aget("anything", "miss"))
        ...     await ashutdown()
        >>> asyncio.run(main())
        miss
    """
    for engine in take_engines():
        await engine.aclose()


# --------------------------------------------------------------------------------------------
# The backends
# --------------------------------------------------------------------------------------------


class RedisCacheBackend(BaseCache):  # type: ignore[misc,unused-ignore]
    """Django's cache API on a :class:`~utils.cache.redis_cache.RedisCache` (no L1).

    ``LOCATION`` is one Redis URL (URL options such as ``?socket_timeout=0.2`` apply;
    timeouts default to 1 s, without retries). ``OPTIONS``: ``namespace`` (``"django"``),
    ``serializer`` (``"pickle"`` signed with a key derived from ``SECRET_KEY``, ``"json"``,
    a dotted path or a serializer object), ``fail_open`` (True), ``probe_interval`` (1 s).
    Anything else is a :class:`~utils.core.ConfigError` naming it. See the module docs
    for the semantics.

    Example:
        >>> cache = RedisCacheBackend(
        ...     "redis://localhost:6379/0",
        ...     {"TIMEOUT": 60, "OPTIONS": {"namespace": "doc-django", "serializer": "json"}},
        ... )
        >>> cache.clear()
        >>> cache.set_many({"a": 1, "b": (1, 2)})
        []
        >>> cache.get_many(["a", "b", "c"])
        {'a': 1, 'b': (1, 2)}
        >>> cache.set("a", 1, timeout=0)  # Django: a timeout of 0 expires at once
        >>> cache.has_key("a"), cache.touch("b", None), cache.touch("a")
        (False, True, False)
        >>> cache.clear()
    """

    _tiered = False

    def __init__(self, location: Any, params: dict[str, Any]) -> None:
        # Checked before BaseCache reads OPTIONS (it would fail on a non-dict obscurely).
        self._config = parse_config(
            location, params.get("OPTIONS") or {}, tiered=self._tiered, kind=type(self).__name__
        )
        super().__init__(params)
        self._shared = engine_for(self._config)

    @property
    def _engine(self) -> Engine:
        engine = self._shared
        if engine.closed:  # shutdown() ran: carry on with new caches
            engine = self._shared = engine_for(self._config)
        return engine

    @property
    def cache(self) -> RedisCache | TieredCache:
        """The utils cache behind this backend, shared by the process (``stats()``, health).

        Example:
            >>> backend = RedisCacheBackend("redis://localhost", {"OPTIONS": {"serializer": "json"}})
            >>> backend.cache.namespace
            'django'
        """
        return self._engine.cache

    def _seconds(self, timeout: Any) -> float | None:
        """Django's timeout in seconds: None never expires, :data:`_NOW` expires at once."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout <= 0:
            return _NOW
        return duration(timeout, "Django cache timeout", allow_zero=False)

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value under ``key``, or ``default``."""
        return self._engine.cache.get(self.make_and_validate_key(key, version=version), default)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The async :meth:`get`."""
        name = self.make_and_validate_key(key, version=version)
        return await self._engine.acache().get(name, default)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """The values of the keys that hold one, in one round trip (L1 first when tiered)."""
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = self._engine.cache.get_many(list(names))
        return {names[name]: value for name, value in found.items()}

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """The async :meth:`get_many`."""
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = await self._engine.acache().get_many(list(names))
        return {names[name]: value for name, value in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """True when ``key`` holds a value (one ``EXISTS``, or an L1 hit)."""
        return self._engine.cache.exists(self.make_and_validate_key(key, version=version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """The async :meth:`has_key`."""
        name = self.make_and_validate_key(key, version=version)
        return await self._engine.acache().exists(name)

    # -- writes ------------------------------------------------------------------------------

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value``; a timeout of 0 or less deletes ``key`` instead."""
        name = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        cache = self._engine.cache
        if seconds == _NOW:
            cache.delete(name)
        else:
            cache.set(name, value, seconds)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """The async :meth:`set`."""
        name = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        cache = self._engine.acache()
        if seconds == _NOW:
            await cache.delete(name)
        else:
            await cache.set(name, value, seconds)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item in one round trip; return the keys that were not stored.

        That list is empty, or every key when Redis could not take the write (failing open).
        """
        mapping, seconds = self._many(data, timeout, version)
        if not mapping:
            return []
        engine = self._engine
        if seconds == _NOW:
            engine.cache.delete_many(list(mapping))
            return []
        return [] if engine.store_many(mapping, seconds) else list(data)

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """The async :meth:`set_many`."""
        mapping, seconds = self._many(data, timeout, version)
        if not mapping:
            return []
        cache = self._engine.acache()
        if seconds == _NOW:
            await cache.delete_many(list(mapping))
            return []
        return [] if await cache._store_many(mapping, seconds) else list(data)

    def _many(
        self, data: Mapping[Any, Any], timeout: Any, version: int | None
    ) -> tuple[dict[str, Any], float | None]:
        mapping = {self.make_and_validate_key(k, version=version): v for k, v in data.items()}
        return mapping, self._seconds(timeout)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` holds none (atomic: ``SET NX``); True if stored.

        With a timeout of 0 or less nothing is stored; the answer is whether ``key`` was
        absent (as Django's backends answer).
        """
        return bool(self._drive(self._add_steps(key, value, timeout, version)))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """The async :meth:`add`."""
        return bool(await self._adrive(self._add_steps(key, value, timeout, version)))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout (None: never expires; 0: expire now); False if missing."""
        return bool(self._drive(self._touch_steps(key, timeout, version)))

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """The async :meth:`touch`."""
        return bool(await self._adrive(self._touch_steps(key, timeout, version)))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` atomically; return the new value.

        Raises:
            ValueError: ``key`` holds nothing (Django's contract; also while Redis is
                unreachable and the cache fails open: a miss).
            CacheValueError: the value under ``key`` is not an integer.
        """
        return int(self._drive(self._incr_steps(key, delta, version)))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """The async :meth:`incr` (``adecr`` goes through it)."""
        return int(await self._adrive(self._incr_steps(key, delta, version)))

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``; True when it existed."""
        return self._engine.cache.delete(self.make_and_validate_key(key, version=version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """The async :meth:`delete`."""
        name = self.make_and_validate_key(key, version=version)
        return await self._engine.acache().delete(name)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove the keys in one ``UNLINK``."""
        names = [self.make_and_validate_key(key, version=version) for key in keys]
        if names:
            self._engine.cache.delete_many(names)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """The async :meth:`delete_many`."""
        names = [self.make_and_validate_key(key, version=version) for key in keys]
        if names:
            await self._engine.acache().delete_many(names)

    def clear(self) -> None:
        """Remove every key of the namespace (all prefixes and versions); never FLUSHDB."""
        self._engine.cache.clear()

    async def aclear(self) -> None:
        """The async :meth:`clear`."""
        await self._engine.acache().clear()

    def close(self, **kwargs: Any) -> None:
        """Nothing: Django calls this after every request, and the caches are shared.

        :func:`shutdown` closes them.
        """

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing, like :meth:`close`; :func:`ashutdown` closes the shared caches."""

    # -- the planned operations, run by _drive (sync) and _adrive (async) ---------------------

    def _drive(self, steps: Steps) -> Any:
        run = self._engine.l2._run
        plan = Plan(steps)
        while not plan.done:
            op, commands, write, transaction = plan.step
            try:
                replies = run(
                    op, commands, write=write, transaction=transaction, passthrough=_NOSCRIPT
                )
            except BaseException as exc:  # the plan decides (L1 first), then it raises
                plan.advance(None, exc)
                continue
            plan.advance(replies)
        return plan.result

    async def _adrive(self, steps: Steps) -> Any:
        cache = self._engine.acache()
        plan = Plan(steps)
        while not plan.done:
            op, commands, write, transaction = plan.step
            try:
                replies = await cache._arun(
                    op, commands, write=write, transaction=transaction, passthrough=_NOSCRIPT
                )
            except BaseException as exc:  # the plan decides (L1 first), then it raises
                plan.advance(None, exc)
                continue
            plan.advance(replies)
        return plan.result

    def _write_steps(
        self, name: str, op: str, commands: list[tuple[Any, ...]], transaction: bool = False
    ) -> Steps:
        """One write round trip; the tiered backend then drops ``name`` from this L1.

        Dropped whatever happened: after a failure the value in Redis is unknown.
        """
        tiered = self._engine.tiered
        try:
            return (yield (op, commands, True, transaction))
        finally:
            if tiered is not None:
                tiered._coherence.drop([name])

    def _published_steps(self, name: str) -> Steps:
        """Tell the other processes' L1 to drop ``name`` (tiered backend only)."""
        tiered = self._engine.tiered
        if tiered is not None:
            yield ("publish", tiered._publish_command([name]), False, False)

    def _add_steps(self, key: Any, value: Any, timeout: Any, version: int | None) -> Steps:
        name = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        engine = self._engine
        redis_key = engine.l2.redis_key(name)
        if seconds == _NOW:
            replies = yield ("add", [("EXISTS", redis_key)], False, False)
            return replies is not None and not replies[0]
        command: tuple[Any, ...] = ("SET", redis_key, engine.serializer.dumps(value), "NX")
        if seconds is not None:
            command += ("PX", _ms(seconds))
        replies = yield from self._write_steps(name, "add", [command])
        added = bool(replies and replies[0])
        if added:
            yield from self._published_steps(name)
        return added

    def _touch_steps(self, key: Any, timeout: Any, version: int | None) -> Steps:
        name = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        redis_key = self._engine.l2.redis_key(name)
        transaction = False
        commands: list[tuple[Any, ...]]
        if seconds is None:
            # PERSIST answers 0 for a key that exists without expiry: ask EXISTS, atomically.
            commands = [("EXISTS", redis_key), ("PERSIST", redis_key)]
            transaction = True
        elif seconds == _NOW:
            commands = [("UNLINK", redis_key)]
        else:
            commands = [("PEXPIRE", redis_key, _ms(seconds))]
        replies = yield from self._write_steps(name, "touch", commands, transaction)
        touched = bool(replies and replies[0])
        if touched:
            yield from self._published_steps(name)
        return touched

    def _incr_steps(self, key: Any, delta: int, version: int | None) -> Steps:
        name = self.make_and_validate_key(key, version=version)
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValidationError(f"incr delta must be an int, got {delta!r}")
        redis_key = self._engine.l2.redis_key(name)
        try:
            command = _INCR_EXISTING.command([redis_key], [delta])
            replies = yield from self._write_steps(name, "incr", [command])
        except _NOSCRIPT:  # Redis restarted or failed over: send the script itself
            command = ("EVAL", _INCR_EXISTING.source, 1, redis_key, delta)
            replies = yield from self._write_steps(name, "incr", [command])
        if replies is None or replies[0] is None:
            raise ValueError(f"Key {key!r} not found")
        yield from self._published_steps(name)
        return int(replies[0])


class TieredCacheBackend(RedisCacheBackend):
    """Django's cache API on a :class:`~utils.cache.tiered.TieredCache`: memory L1, Redis L2.

    The options of :class:`RedisCacheBackend`, plus ``l1_maxsize`` (10 000 entries),
    ``l1_ttl`` (30 s: the longest a process serves a value deleted elsewhere while it cannot
    hear invalidations; None: only the L2 TTL bounds it) and ``channel`` (the invalidation
    channel, ``"{namespace}:invalidate"``). Every process running the same configuration
    shares invalidations; :attr:`cache` is the process's :class:`TieredCache`.

    Example:
        >>> cache = TieredCacheBackend(
        ...     "redis://localhost:6379/0",
        ...     {"OPTIONS": {"namespace": "doc-django-tiered", "serializer": "json", "l1_ttl": 5}},
        ... )
        >>> cache.cache.wait_subscribed(5)
        True
        >>> cache.set("user:1", {"name": "Ada"})
        >>> cache.get("user:1")  # from L1 now
        {'name': 'Ada'}
        >>> cache.delete("user:1"), cache.get("user:1", "gone")
        (True, 'gone')
        >>> shutdown()
    """

    _tiered = True


def _ms(seconds: float) -> int:
    """Milliseconds for ``PX``/``PEXPIRE`` (at least 1: 0 would mean "now" or be refused)."""
    return max(1, round(seconds * 1000.0))
