"""``get_or_set``: compute a missing value once, store it, serve stale values while refreshing.

What happens on a miss (:func:`get_or_set`, :func:`aget_or_set`, and ``@cached``):

1. **Once per process.** Concurrent callers of one key join one flight (see
   :mod:`utils.cache._flight`): one computes, the others wait and get its value — or its
   exception, and then nothing is cached. A factory asking for its own key raises
   :class:`~utils.cache.errors.ReentrantComputeError` instead of deadlocking.
2. **Once across processes** (``lock=True`` on a cache whose ``_lock`` / ``_alock`` hook
   returns a lock — Redis and tiered caches; a memory cache needs none). The computing caller
   takes the lock, waiting at most :data:`LOCK_WAIT` seconds (never past
   :func:`utils.core.remaining`) and looking at the cache between attempts, since the holder
   is filling it. If the wait runs out the caller computes anyway (``cache.lock_timeout`` is
   counted, and logged at most every :data:`LOCK_WARNING_EVERY` seconds): a slow or killed
   holder delays others by a bounded time, and its lock expires after :data:`LOCK_TTL`.
3. The caller looks at the cache once more (someone may have stored the value just before
   the flight started), then calls the factory and stores the result: ``None`` with
   ``negative_ttl`` when given, not at all with ``cache_none=False``.

**Stale-while-revalidate** (``stale_ttl``): the value is stored as the envelope
``["__utils_cache_swr__", fresh_until, value]`` (``fresh_until`` in ``time.time()`` seconds,
since processes share it; ``None`` = never stale) for ``ttl + stale_ttl`` seconds. A read
after ``fresh_until`` returns the stale value at once and starts one background refresh per
key (a daemon thread carrying the caller's context — log context and deadline — or a
task), which takes the cross-process lock without waiting: if another process holds it,
that process is already refreshing. A failed refresh is logged (``cache.refresh_failed``) and the stale value keeps
being served until it expires.

Factory errors propagate unchanged; cache errors propagate as the cache raises them (a
fail-open Redis cache does not raise on outages).

Example:
    >>> from utils.cache.memory import MemoryCache
    >>> cache = MemoryCache()
    >>> calls = []
    >>> def load() -> str:
    ...     calls.append(1)
    ...     return "value"
    >>> get_or_set(cache, "k", load, ttl=60), get_or_set(cache, "k", load, ttl=60), len(calls)
    ('value', 'value', 1)
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from utils.cache._flight import RETRY, TASKS, THREADS, Flight
from utils.cache._ttl import DO_NOT_STORE, resolve_ttl
from utils.cache.protocol import MISSING, TTL
from utils.core import get_logger, remaining, with_current_context
from utils.core.metrics import get_metrics_sink

__all__ = [
    "LOCK_TTL",
    "LOCK_WAIT",
    "SWR_MARK",
    "AsyncGetOrSet",
    "GetOrSet",
    "Policy",
    "aget_or_set",
    "get_or_set",
]

_log = get_logger("utils.cache")

#: First item of a stale-while-revalidate envelope.
SWR_MARK: Final = "__utils_cache_swr__"
#: Longest wait for another process's computation before computing anyway (seconds).
LOCK_WAIT = 5.0
#: Lifetime of the cross-process lock: bounds how long a killed holder blocks others.
LOCK_TTL = 10.0
#: At most one ``cache.lock_timeout`` warning per this many seconds (each one is counted).
LOCK_WARNING_EVERY = 10.0
#: First pause between lock attempts, doubled up to the maximum while waiting.
_FIRST_SLICE = 0.05
_MAX_SLICE = 0.5

#: Wall clock of the envelopes (shared between processes); replaceable in tests.
wall_clock: Callable[[], float] = time.time

_SKIPPED: Final = object()  # a refresh found another process already refreshing
_last_lock_warning = -math.inf
#: Background refresh tasks, referenced until they finish (the loop keeps only weak refs).
_background: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True, slots=True)
class Policy:
    """The options of one ``get_or_set`` call or one ``@cached`` function, validated once.

    Example:
        >>> Policy.make(ttl=60, stale_ttl=30).stale_ttl
        30.0
    """

    ttl: TTL = None
    lock: bool = True
    stale_ttl: float | None = None
    negative_ttl: TTL = None
    cache_none: bool = True

    @classmethod
    def make(
        cls,
        ttl: TTL = None,
        *,
        lock: bool = True,
        stale_ttl: TTL = None,
        negative_ttl: TTL = None,
        cache_none: bool = True,
    ) -> Policy:
        """Validate the options (``ValidationError`` for a bad TTL) and build the policy."""
        resolve_ttl(ttl, None)
        if negative_ttl is not None:
            resolve_ttl(negative_ttl, None)
        stale: float | None = None
        if stale_ttl is not None:
            stale = resolve_ttl(stale_ttl, None)
            if stale is None:  # infinite: serve stale values until evicted
                stale = math.inf
            elif stale == 0.0:  # nothing to serve stale: plain caching
                stale = None
        return cls(ttl, lock, stale, negative_ttl, cache_none)


def _name(cache: Any) -> str:
    return str(getattr(cache, "name", None) or getattr(cache, "namespace", None) or "cache")


def _fresh(value: Any) -> Any:
    """The payload of a stored value if it is fresh, else MISSING (a stale envelope)."""
    if type(value) is list and len(value) == 3 and value[0] == SWR_MARK:
        fresh_until = value[1]
        if fresh_until is not None and wall_clock() >= fresh_until:
            return MISSING
        return value[2]
    return value


def _stale(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 3
        and value[0] == SWR_MARK
        and value[1] is not None
        and wall_clock() >= value[1]
    )


def _to_store(cache: Any, result: Any, policy: Policy) -> tuple[Any, TTL] | None:
    """What to store for ``result`` and for how long; None to store nothing."""
    if result is None:
        if not policy.cache_none:
            return None
        if policy.negative_ttl is not None:
            return None, policy.negative_ttl
    if policy.stale_ttl is None:
        return result, policy.ttl
    seconds = resolve_ttl(policy.ttl, getattr(cache, "default_ttl", None))
    if seconds == DO_NOT_STORE:
        return result, DO_NOT_STORE
    if seconds is None:
        return [SWR_MARK, None, result], math.inf
    return [SWR_MARK, wall_clock() + seconds, result], seconds + policy.stale_ttl


def _lock_timed_out(cache: Any, key: str, waited: float) -> None:
    global _last_lock_warning  # noqa: PLW0603 - one process-wide rate limit for the warning
    name = _name(cache)
    get_metrics_sink().increment("cache.lock_timeout", tags={"cache": name})
    now = time.monotonic()
    if now - _last_lock_warning >= LOCK_WARNING_EVERY:
        _last_lock_warning = now
        _log.warning("cache.lock_timeout", cache=name, key=key, waited=round(waited, 3))


def _refresh_failed(cache: Any, key: str, exc: BaseException) -> None:
    name = _name(cache)
    get_metrics_sink().increment("cache.refresh_error", tags={"cache": name})
    _log.warning("cache.refresh_failed", cache=name, key=key, exc_info=exc)


def _lock_budget() -> float:
    left = remaining()
    return LOCK_WAIT if left is None or left > LOCK_WAIT else left


# -- sync ---------------------------------------------------------------------------------


def get_or_set(
    cache: Any,
    key: str,
    factory: Callable[[], Any],
    ttl: TTL = None,
    *,
    lock: bool = True,
    stale_ttl: TTL = None,
    negative_ttl: TTL = None,
    cache_none: bool = True,
) -> Any:
    """The value under ``key``, or ``factory()`` computed once and stored for ``ttl``.

    Args:
        cache: A sync cache (``MemoryCache``, ``RedisCache``, ``TieredCache``...).
        key: The key.
        factory: Called without arguments on a miss; its exceptions propagate unchanged
            (to every concurrent caller waiting for it) and nothing is cached.
        ttl: TTL of the stored value (None: the cache's default; 0: do not store).
        lock: Also compute once across processes when the cache offers a lock.
        stale_ttl: Keep serving the value this long after ``ttl`` while one caller
            refreshes it in the background.
        negative_ttl: TTL of a ``None`` result (None: like any value).
        cache_none: False never stores a ``None`` result.

    Example:
        >>> from utils.cache.memory import MemoryCache
        >>> cache = MemoryCache()
        >>> get_or_set(cache, "missing-user", lambda: None, cache_none=False) is None
        True
        >>> cache.exists("missing-user")
        False
    """
    policy = Policy.make(
        ttl, lock=lock, stale_ttl=stale_ttl, negative_ttl=negative_ttl, cache_none=cache_none
    )
    return lookup(cache, key, factory, (), {}, policy)


def lookup(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """Read ``key``; on a miss compute ``fn(*args, **kwargs)`` once (see the module doc)."""
    value = cache.get(key, MISSING)
    if value is MISSING:
        return fill(cache, key, fn, args, kwargs, policy)
    return on_hit(cache, key, value, fn, args, kwargs, policy)


def on_hit(
    cache: Any,
    key: str,
    value: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """The payload of a stored ``value``, starting a background refresh when it is stale."""
    if type(value) is list and len(value) == 3 and value[0] == SWR_MARK:
        if _stale(value):
            refresh(cache, key, fn, args, kwargs, policy)
        return value[2]
    return value


def fill(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """Compute a missing value once per process (and across processes with a lock)."""
    me = threading.get_ident()
    while True:
        flight, owner = THREADS.join(cache, key, me)
        if owner:
            return _run(flight, cache, key, fn, args, kwargs, policy, refresh=False)
        outcome = flight.wait()
        if outcome is not RETRY:
            return outcome


def _run(
    flight: Flight,
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
    *,
    refresh: bool,
) -> Any:
    try:
        value = _compute(cache, key, fn, args, kwargs, policy, refresh=refresh)
    except Exception as exc:
        THREADS.finish(flight, error=exc)
        raise
    except BaseException:
        THREADS.finish(flight, abandoned=True)
        raise
    if value is _SKIPPED:
        THREADS.finish(flight, abandoned=True)
    else:
        THREADS.finish(flight, value=value)
    return value


def _peek(cache: Any, key: str) -> Any:
    """Read without counting a second miss when the cache can (MemoryCache)."""
    peek = getattr(cache, "_peek", None)
    return cache.get(key, MISSING) if peek is None else peek(key, MISSING)


def _compute(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
    *,
    refresh: bool,
) -> Any:
    hook = getattr(cache, "_lock", None) if policy.lock else None
    held = hook(key, LOCK_TTL) if hook is not None else None
    if held is not None:
        if refresh:
            if not held.acquire(0.0):
                return _SKIPPED  # another process holds the lock: it is refreshing
        else:
            found = _wait_for_lock(cache, key, held)
            if found is not MISSING:
                return found
            # else: acquired, or waited long enough (then releasing is a no-op)
    try:
        current = _peek(cache, key)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            _refuse_awaitable(fn, result)
        stored = _to_store(cache, result, policy)
        if stored is not None:
            cache.set(key, stored[0], stored[1])
        return result
    finally:
        if held is not None:
            _release(cache, key, held.release)


def _refuse_awaitable(fn: Callable[..., Any], result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:  # a coroutine: close it, or Python warns it was never awaited
        close()
    raise TypeError(
        f"{getattr(fn, '__qualname__', fn)!r} returned an awaitable on a sync cache path: "
        "an awaited result cannot be cached from sync code. Declare it `async def` (or use "
        "aget_or_set with an async cache)."
    )


def _release(cache: Any, key: str, release: Callable[[], Any]) -> None:
    try:
        release()
    except Exception as exc:  # the value is computed: a failed unlock must not lose it
        _log.warning("cache.unlock_failed", cache=_name(cache), key=key, error=repr(exc))


def _wait_for_lock(cache: Any, key: str, held: Any) -> Any:
    """Acquire ``held`` (then MISSING), or return the value its holder stored meanwhile.

    After :data:`LOCK_WAIT` without the lock, returns MISSING too: compute anyway.
    """
    budget = _lock_budget()
    started = time.monotonic()
    pause = _FIRST_SLICE
    while True:
        waited = time.monotonic() - started
        if held.acquire(min(pause, max(budget - waited, 0.0))):
            return MISSING
        current = _peek(cache, key)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        waited = time.monotonic() - started
        if waited >= budget:
            _lock_timed_out(cache, key, waited)
            return MISSING
        pause = min(pause * 2.0, _MAX_SLICE)


def refresh(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> bool:
    """Start recomputing ``key`` in a daemon thread unless it is being computed already."""
    flight = THREADS.start_background(cache, key)
    if flight is None:
        return False
    worker = threading.Thread(
        target=with_current_context(_refresh_worker),
        args=(flight, cache, key, fn, args, kwargs, policy),
        name="utils-cache-refresh",
        daemon=True,
    )
    try:
        worker.start()
    except RuntimeError as exc:  # interpreter shutting down, or out of threads
        THREADS.finish(flight, abandoned=True)
        _refresh_failed(cache, key, exc)
        return False
    return True


def _refresh_worker(
    flight: Flight,
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> None:
    flight.owner = threading.get_ident()
    try:
        _run(flight, cache, key, fn, args, kwargs, policy, refresh=True)
    except Exception as exc:
        _refresh_failed(cache, key, exc)


# -- async --------------------------------------------------------------------------------


async def aget_or_set(
    cache: Any,
    key: str,
    factory: Callable[[], Any],
    ttl: TTL = None,
    *,
    lock: bool = True,
    stale_ttl: TTL = None,
    negative_ttl: TTL = None,
    cache_none: bool = True,
) -> Any:
    """The async twin of :func:`get_or_set`, for an async cache; ``factory`` may be async.

    Concurrent tasks (of any event loop) missing one key await one computation. A sync
    factory is called in the event loop: wrap blocking work with
    :func:`utils.core.run_in_thread`.

    Example:
        >>> import asyncio
        >>> from utils.cache.memory import MemoryCache
        >>> cache = MemoryCache().as_async()
        >>> async def load() -> int:
        ...     await asyncio.sleep(0.01)
        ...     return 7
        >>> async def main() -> list[int]:
        ...     return await asyncio.gather(*(aget_or_set(cache, "k", load) for _ in range(5)))
        >>> asyncio.run(main())
        [7, 7, 7, 7, 7]
    """
    policy = Policy.make(
        ttl, lock=lock, stale_ttl=stale_ttl, negative_ttl=negative_ttl, cache_none=cache_none
    )
    return await alookup(cache, key, factory, (), {}, policy)


async def alookup(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """The async twin of :func:`lookup`."""
    value = await cache.get(key, MISSING)
    if value is MISSING:
        return await afill(cache, key, fn, args, kwargs, policy)
    return aon_hit(cache, key, value, fn, args, kwargs, policy)


def aon_hit(
    cache: Any,
    key: str,
    value: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """The twin of :func:`on_hit`: the refresh runs as a task of the running loop."""
    if type(value) is list and len(value) == 3 and value[0] == SWR_MARK:
        if _stale(value):
            arefresh(cache, key, fn, args, kwargs, policy)
        return value[2]
    return value


async def afill(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> Any:
    """The async twin of :func:`fill`."""
    me = asyncio.current_task()
    while True:
        flight, future = TASKS.join_task(cache, key, me)
        if future is None:
            return await _arun(flight, cache, key, fn, args, kwargs, policy, refresh=False)
        outcome = await flight.await_(future)
        if outcome is not RETRY:
            return outcome


async def _arun(
    flight: Flight,
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
    *,
    refresh: bool,
) -> Any:
    try:
        value = await _acompute(cache, key, fn, args, kwargs, policy, refresh=refresh)
    except Exception as exc:
        TASKS.finish(flight, error=exc)
        raise
    except BaseException:  # cancelled: the waiters try again
        TASKS.finish(flight, abandoned=True)
        raise
    if value is _SKIPPED:
        TASKS.finish(flight, abandoned=True)
    else:
        TASKS.finish(flight, value=value)
    return value


async def _apeek(cache: Any, key: str) -> Any:
    peek = getattr(cache, "_peek", None)
    return await (cache.get(key, MISSING) if peek is None else peek(key, MISSING))


async def _acompute(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
    *,
    refresh: bool,
) -> Any:
    hook = getattr(cache, "_alock", None) if policy.lock else None
    held = hook(key, LOCK_TTL) if hook is not None else None
    if held is not None:
        if refresh:
            if not await held.aacquire(0.0):
                return _SKIPPED
        else:
            found = await _await_lock(cache, key, held)
            if found is not MISSING:
                return found
    try:
        current = await _apeek(cache, key)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        stored = _to_store(cache, result, policy)
        if stored is not None:
            await cache.set(key, stored[0], stored[1])
        return result
    finally:
        if held is not None:
            await _arelease(cache, key, held)


async def _arelease(cache: Any, key: str, held: Any) -> None:
    try:
        await held.arelease()
    except Exception as exc:
        _log.warning("cache.unlock_failed", cache=_name(cache), key=key, error=repr(exc))


async def _await_lock(cache: Any, key: str, held: Any) -> Any:
    """The async twin of :func:`_wait_for_lock`."""
    budget = _lock_budget()
    started = time.monotonic()
    pause = _FIRST_SLICE
    while True:
        waited = time.monotonic() - started
        if await held.aacquire(min(pause, max(budget - waited, 0.0))):
            return MISSING
        current = await _apeek(cache, key)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        waited = time.monotonic() - started
        if waited >= budget:
            _lock_timed_out(cache, key, waited)
            return MISSING
        pause = min(pause * 2.0, _MAX_SLICE)


def arefresh(
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> bool:
    """Start recomputing ``key`` in a task of the running loop unless already computing."""
    flight = TASKS.start_background(cache, key)
    if flight is None:
        return False
    task = asyncio.get_running_loop().create_task(
        _arefresh_worker(flight, cache, key, fn, args, kwargs, policy)
    )
    _background.add(task)
    task.add_done_callback(_background.discard)
    return True


async def _arefresh_worker(
    flight: Flight,
    cache: Any,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: Policy,
) -> None:
    flight.owner = asyncio.current_task()
    try:
        await _arun(flight, cache, key, fn, args, kwargs, policy, refresh=True)
    except Exception as exc:
        _refresh_failed(cache, key, exc)


class GetOrSet:
    """Mixin giving a sync cache its ``get_or_set`` method (one implementation for all)."""

    __slots__ = ()

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        *,
        lock: bool = True,
        stale_ttl: TTL = None,
        negative_ttl: TTL = None,
        cache_none: bool = True,
    ) -> Any:
        """The cached value, or ``factory()`` computed once and stored.

        Concurrent callers in the process wait for one computation; with ``lock=True`` on a
        cross-process cache (Redis, tiered), other processes wait too (bounded). See
        :func:`get_or_set` for the options.

        Example:
            >>> from utils.cache.memory import MemoryCache
            >>> cache = MemoryCache()
            >>> cache.get_or_set("answer", lambda: 42), cache.get_or_set("answer", lambda: 0)
            (42, 42)
        """
        return get_or_set(
            self,
            key,
            factory,
            ttl,
            lock=lock,
            stale_ttl=stale_ttl,
            negative_ttl=negative_ttl,
            cache_none=cache_none,
        )


class AsyncGetOrSet:
    """Mixin giving an async cache its ``get_or_set`` method (sync or async factories)."""

    __slots__ = ()

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        *,
        lock: bool = True,
        stale_ttl: TTL = None,
        negative_ttl: TTL = None,
        cache_none: bool = True,
    ) -> Any:
        """The cached value, or ``await factory()`` (sync or async) computed once and stored.

        Example:
            >>> import asyncio
            >>> from utils.cache.memory import MemoryCache
            >>> async def answer() -> int:
            ...     return 42
            >>> asyncio.run(MemoryCache().as_async().get_or_set("answer", answer))
            42
        """
        return await aget_or_set(
            self,
            key,
            factory,
            ttl,
            lock=lock,
            stale_ttl=stale_ttl,
            negative_ttl=negative_ttl,
            cache_none=cache_none,
        )
