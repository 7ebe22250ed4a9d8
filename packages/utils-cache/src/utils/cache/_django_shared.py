"""The configuration and the per-process caches behind :mod:`utils.cache.django`.

Split out of that module so it holds only what users touch (the backends and
:func:`~utils.cache.django.shutdown`): here ``CACHES`` entries are checked into a hashable
:class:`Config`, and each distinct configuration gets one :class:`Engine` — its Redis
clients, L1 and invalidation subscriber — shared by every backend object of the process
(Django makes one per thread and async context). Nothing here is public API. It imports
Django, so only :mod:`utils.cache.django` imports it (``import utils.cache`` must not).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped,unused-ignore]

from utils.cache._plan import Plan
from utils.cache.memory import MemoryCache
from utils.cache.protocol import MISSING
from utils.cache.redis_cache import AsyncRedisCache, RedisCache
from utils.cache.serializers import JsonSerializer, PickleSerializer, Serializer
from utils.cache.tiered import TieredCache, TieredSteps
from utils.core import ConfigError, ValidationError
from utils.core.validate import duration, positive

__all__ = ["Config", "Engine", "engine_for", "parse_config", "take_engines"]

_DEFAULT_NAMESPACE = "django"
_DEFAULT_L1_MAXSIZE = 10_000
_DEFAULT_L1_TTL = 30.0
_OPTIONS = frozenset({"namespace", "serializer", "fail_open", "probe_interval"})
_TIERED_OPTIONS = frozenset({"l1_maxsize", "l1_ttl", "channel"})
#: The purpose the pickle signing key is derived for (so it signs nothing else). It names
#: the public module on purpose: changing it would change the key and refuse stored values.
_KEY_SALT = "utils.cache.django.PickleSerializer"

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One ``CACHES`` entry, checked: equal configurations share one :class:`Engine`."""

    tiered: bool
    location: str = field(repr=False)  # may hold a password
    namespace: str
    #: ``("pickle", key, fallbacks)``, ``("json",)``, ``("path", dotted)``, ``("object", obj)``.
    serializer: tuple[Any, ...] = field(repr=False)
    fail_open: bool
    probe_interval: float
    l1_maxsize: int
    l1_ttl: float | None
    channel: str | None


def _location(location: Any, kind: str) -> str:
    servers = list(location) if isinstance(location, list | tuple) else [location]
    url = servers[0] if len(servers) == 1 else None
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"{kind} LOCATION must be one Redis URL (redis://, rediss:// or unix://), "
            f"got {type(location).__name__} of {len(servers)} item(s)"
        )
    if url.count("://") > 1:
        # Django's RedisCache reads "url1;url2" as a primary and replicas: not supported
        # here (the URL itself is not shown: it may hold a password).
        raise ConfigError(
            f"{kind} LOCATION must be one Redis URL: read replicas are not supported; "
            "point it at the primary"
        )
    return url


def _derived_key(secret: str | bytes) -> bytes:
    from django.utils.crypto import salted_hmac  # type: ignore[import-untyped,unused-ignore]

    signer = salted_hmac(_KEY_SALT, "pickle-signing", secret=secret, algorithm="sha256")
    return bytes(signer.digest())


def _pickle_spec(kind: str) -> tuple[Any, ...]:
    from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

    try:
        secret = settings.SECRET_KEY
        fallbacks = list(getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    except ImproperlyConfigured as exc:
        raise ConfigError(
            f"{kind} signs pickled values with a key derived from settings.SECRET_KEY, "
            f"which is not usable ({exc}); set SECRET_KEY, or OPTIONS['serializer'] = 'json'"
        ) from exc
    return ("pickle", _derived_key(secret), tuple(_derived_key(key) for key in fallbacks))


def _serializer_spec(value: Any, kind: str) -> tuple[Any, ...]:
    if value is None or value == "pickle":
        return _pickle_spec(kind)
    if value == "json":
        return ("json",)
    if isinstance(value, str):
        from django.utils.module_loading import import_string  # type: ignore[import-untyped,unused-ignore]

        try:
            found = import_string(value)
        except ImportError as exc:
            raise ConfigError(
                f"{kind} OPTIONS['serializer'] {value!r} cannot be imported: {exc}"
            ) from exc
        if not isinstance(found, type) and not isinstance(found, Serializer):
            raise ConfigError(
                f"{kind} OPTIONS['serializer'] {value!r} is neither a class nor an object "
                "with dumps() and loads()"
            )
        return ("path", value)
    if isinstance(value, Serializer) and not isinstance(value, type):
        return ("object", value)
    raise ConfigError(
        f"{kind} OPTIONS['serializer'] must be 'pickle', 'json', a dotted path or a "
        f"Serializer object, got {type(value).__name__}"
    )


def _checked(what: str, check: Callable[[], Any]) -> Any:
    """Run a utils validator, reporting its refusal as the ConfigError of a setting."""
    try:
        return check()
    except ValidationError as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def parse_config(location: Any, options: Any, *, tiered: bool, kind: str) -> Config:
    """Check one ``CACHES`` entry's ``LOCATION`` and ``OPTIONS``; errors name ``kind``."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{kind} OPTIONS must be a dict, got {type(options).__name__}")
    known = _OPTIONS | _TIERED_OPTIONS if tiered else _OPTIONS
    unknown = sorted(str(name) for name in options if name not in known)
    if unknown:
        hint = ""
        if {"MAX_ENTRIES", "CULL_FREQUENCY"} & set(unknown):
            hint = (
                "; MAX_ENTRIES and CULL_FREQUENCY do not apply: Redis evicts by its "
                "maxmemory-policy (the L1 of TieredCacheBackend is bounded by l1_maxsize)"
            )
        raise ConfigError(
            f"unknown {kind} OPTIONS: {', '.join(unknown)}; supported: "
            f"{', '.join(sorted(known))}{hint}"
        )
    namespace = options.get("namespace", _DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not namespace or "#" in namespace:
        raise ConfigError(
            f"{kind} OPTIONS['namespace'] must be a non-empty string without '#', "
            f"got {namespace!r}"
        )
    fail_open = options.get("fail_open", True)
    if not isinstance(fail_open, bool):
        raise ConfigError(f"{kind} OPTIONS['fail_open'] must be True or False, got {fail_open!r}")
    probe = options.get("probe_interval", 1.0)
    maxsize = options.get("l1_maxsize", _DEFAULT_L1_MAXSIZE)
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ConfigError(f"{kind} OPTIONS['l1_maxsize'] must be an int >= 1, got {maxsize!r}")
    l1_ttl = options.get("l1_ttl", _DEFAULT_L1_TTL)
    channel = options.get("channel")
    if channel is not None and (not isinstance(channel, str) or not channel):
        raise ConfigError(f"{kind} OPTIONS['channel'] must be a non-empty string or None")
    return Config(
        tiered=tiered,
        location=_location(location, kind),
        namespace=namespace,
        serializer=_serializer_spec(options.get("serializer"), kind),
        fail_open=fail_open,
        probe_interval=_checked(
            f"{kind} OPTIONS['probe_interval']", lambda: positive(probe, "probe_interval")
        ),
        l1_maxsize=maxsize,
        l1_ttl=_checked(
            f"{kind} OPTIONS['l1_ttl']",
            lambda: duration(l1_ttl, "l1_ttl", allow_zero=False),
        ),
        channel=channel,
    )


def _serializer(spec: tuple[Any, ...]) -> Serializer:
    if spec[0] == "pickle":
        return PickleSerializer(spec[1], fallback_keys=spec[2])
    if spec[0] == "json":
        return JsonSerializer()
    found = spec[1]
    if spec[0] == "path":
        from django.utils.module_loading import import_string  # type: ignore[import-untyped,unused-ignore]

        found = import_string(found)
        found = found() if isinstance(found, type) else found
    if not isinstance(found, Serializer):
        raise ConfigError(
            f"OPTIONS['serializer'] made a {type(found).__name__}, which lacks dumps()/loads()"
        )
    return found


# --------------------------------------------------------------------------------------------
# The shared caches of one configuration
# --------------------------------------------------------------------------------------------


def _watch(steps: TieredSteps, stored: list[bool]) -> TieredSteps:
    """Pass a tiered plan through, noting whether Redis took its write (``_store_many``)."""
    outcome: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(outcome) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        outcome, error = None, None
        try:
            outcome = yield step
        except BaseException as exc:  # the plan decides (it cleans L1 up), then it raises
            error = exc
            continue
        if step[0] == "_store_many":
            stored.append(bool(outcome))


class _AsyncTiered:
    """The tiered cache's plans run on an :class:`AsyncRedisCache` of one event loop.

    The L1, its coherence bookkeeping and the subscriber thread are the process's one
    :class:`TieredCache`: only the Redis I/O is awaited. (An ``AsyncTieredCache`` per loop
    would flush a shared L1 each time a new loop subscribes.)
    """

    __slots__ = ("_l1_get", "l2", "tiered")

    def __init__(self, tiered: TieredCache, l2: AsyncRedisCache) -> None:
        self.tiered = tiered
        self.l2 = l2
        self._l1_get = tiered.l1.get

    async def _drive(self, steps: TieredSteps) -> Any:
        plan = Plan(steps)
        l2 = self.l2
        while not plan.done:
            name, args = plan.step
            try:
                if name == "publish":
                    commands = self.tiered._publish_command(*args)
                    outcome = await l2._arun("publish", commands, write=False)
                else:
                    outcome = await getattr(l2, name)(*args)
            except BaseException as exc:  # the plan decides (L1 first), then it raises
                plan.advance(None, exc)
                continue
            plan.advance(outcome)
        return plan.result

    async def get(self, key: str, default: Any = None) -> Any:
        value = self._l1_get(key, MISSING)
        if value is not MISSING:
            return value
        return await self._drive(self.tiered._get_steps(key, default))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await self._drive(self.tiered._get_many_steps(keys))  # type: ignore[no-any-return]

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        await self._drive(self.tiered._set_steps({key: value}, ttl, one=True))

    async def _store_many(self, mapping: Mapping[str, Any], ttl: float | None) -> bool:
        stored: list[bool] = []
        await self._drive(_watch(self.tiered._set_steps(dict(mapping), ttl, one=False), stored))
        return all(stored)

    async def delete(self, key: str) -> bool:
        return bool(await self._drive(self.tiered._delete_steps([key], one=True)))

    async def delete_many(self, keys: Iterable[str]) -> int:
        return int(await self._drive(self.tiered._delete_steps(keys, one=False)))

    async def exists(self, key: str) -> bool:
        return bool(await self._drive(self.tiered._exists_steps(key)))

    async def clear(self) -> None:
        await self._drive(self.tiered._clear_steps())

    async def _arun(self, op: str, commands: Any, **kwargs: Any) -> list[Any] | None:
        return await self.l2._arun(op, commands, **kwargs)


class Engine:
    """The caches of one configuration, shared by every backend object of the process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed = False
        self.serializer = _serializer(config.serializer)
        # The L2 has no default TTL: every write passes Django's resolved timeout, where
        # ``ttl=None`` then means "never expires".
        self.l2 = RedisCache(
            config.location,
            namespace=config.namespace,
            serializer=self.serializer,
            fail_open=config.fail_open,
            probe_interval=config.probe_interval,
        )
        self.tiered: TieredCache | None = None
        self.cache: RedisCache | TieredCache = self.l2
        self.store_many: Callable[[Mapping[str, Any], float | None], bool] = self.l2._store_many
        if config.tiered:
            l1 = MemoryCache(maxsize=config.l1_maxsize, name=f"{config.namespace}-l1")
            self.tiered = TieredCache(l1, self.l2, l1_ttl=config.l1_ttl, channel=config.channel)
            self.cache = self.tiered
            self.store_many = self._tiered_store_many
        self._lock = threading.Lock()
        # One async cache per event loop: redis.asyncio connections belong to their loop,
        # and two threads running a loop each must not share (and reset) one pool.
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCache] = (
            weakref.WeakKeyDictionary()
        )

    def _tiered_store_many(self, mapping: Mapping[str, Any], ttl: float | None) -> bool:
        assert self.tiered is not None
        stored: list[bool] = []
        self.tiered._drive(_watch(self.tiered._set_steps(dict(mapping), ttl, one=False), stored))
        return all(stored)

    def acache(self) -> AsyncRedisCache | _AsyncTiered:
        """The async cache of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            with self._lock:
                found = self._by_loop.get(loop)
                if found is None:
                    found = self._by_loop[loop] = self._new_async(loop)
        return found.cache

    def _new_async(self, loop: asyncio.AbstractEventLoop) -> _LoopCache:
        config = self.config
        l2 = AsyncRedisCache(
            config.location,
            namespace=config.namespace,
            serializer=self.serializer,
            fail_open=config.fail_open,
            probe_interval=config.probe_interval,
        )
        entry = _LoopCache(l2 if self.tiered is None else _AsyncTiered(self.tiered, l2), l2)
        entry.guard = loop.create_task(self._close_with_loop(loop, entry))
        return entry

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, entry: _LoopCache) -> None:
        """Close ``entry``'s connections when its loop ends.

        ``asyncio.run()`` (and asgiref, and servers shutting down) cancel the tasks left
        when their loop ends: this one then closes the connections while the loop still
        runs — afterwards they could only be leaked.
        """
        try:
            await loop.create_future()  # never set: only the loop's end cancels it
        finally:
            if self._by_loop.get(loop) is entry:
                del self._by_loop[loop]
            await entry.aclose()

    def close(self) -> None:
        """Stop the subscriber and close the sync client (async ones close with their loop)."""
        self.closed = True
        if self.tiered is not None:
            self.tiered.close()
        self.l2.close()
        self._by_loop.clear()

    async def aclose(self) -> None:
        """:meth:`close`, also closing the connections opened on the running loop now."""
        found = self._by_loop.pop(asyncio.get_running_loop(), None)
        if found is not None:
            if found.guard is not None:
                found.guard.cancel()  # its work is done here, now
            await found.aclose()
        self.close()


class _LoopCache:
    """The async cache of one event loop, and the task that closes it with the loop."""

    __slots__ = ("cache", "closed", "guard", "l2")

    def __init__(self, cache: AsyncRedisCache | _AsyncTiered, l2: AsyncRedisCache) -> None:
        self.cache = cache
        self.l2 = l2
        self.guard: asyncio.Task[None] | None = None
        self.closed = False

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.l2.aclose()


_engines: dict[Config, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(config: Config) -> Engine:
    """The process's :class:`Engine` of ``config``, made on first use."""
    engine = _engines.get(config)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(config)
            if engine is None:
                engine = _engines[config] = Engine(config)
    return engine


def take_engines() -> list[Engine]:
    """Forget every engine (the next :func:`engine_for` makes new ones); return them to close."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    return engines
