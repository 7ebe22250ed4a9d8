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
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from utils.cache._events import (
    LOCK_TIMEOUT,
    LOCK_TIMEOUT_COUNT,
    REFRESH_ERROR,
    REFRESH_FAILED,
    UNLOCK_FAILED,
)
from utils.cache._flight import RETRY, TASKS, THREADS, Flight, Flights
from utils.cache._plan import Plan
from utils.cache._ttl import DO_NOT_STORE, resolve_ttl
from utils.cache.protocol import MISSING, TTL
from utils.core import remaining, with_current_context

__all__ = [
    "LOCK_TTL",
    "LOCK_WAIT",
    "SWR_MARK",
    "AsyncGetOrSet",
    "GetOrSet",
    "Job",
    "Policy",
    "aget_or_set",
    "get_or_set",
]

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
    LOCK_TIMEOUT_COUNT.emit(cache=name)
    now = time.monotonic()
    if now - _last_lock_warning >= LOCK_WARNING_EVERY:
        _last_lock_warning = now
        LOCK_TIMEOUT.emit(cache=name, key=key, waited=round(waited, 3))


def _refresh_failed(cache: Any, key: str, exc: BaseException) -> None:
    name = _name(cache)
    REFRESH_FAILED.emit(cache=name, key=key, exc_info=exc)
    REFRESH_ERROR.emit(cache=name)  # the deprecated former metric name, until 0.2.0


def _lock_budget() -> float:
    left = remaining()
    return LOCK_WAIT if left is None or left > LOCK_WAIT else left


# -- the miss protocol, once, without I/O ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One miss to fill: where, which key, how to compute it, and under which policy."""

    cache: Any
    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    policy: Policy


# What the protocol asks its driver to do (the driver sends back the outcome):
_ACQUIRE = 0  # (held, wait) -> bool: take the cross-process lock within ``wait`` seconds
_PEEK = 1  # () -> the stored value or MISSING, without counting a second miss
_CALL = 2  # () -> the factory's result (awaited by the async driver when awaitable)
_STORE = 3  # (value, ttl) -> None
_RELEASE = 4  # (held,) -> None; never raises (a failed unlock is logged)

Step = tuple[Any, ...]


def _protocol(job: Job, held: Any, refresh: bool) -> Generator[Step, Any, Any]:
    """The miss protocol of the module doc (steps 2 and 3), as a plan of I/O steps.

    It decides everything and performs nothing: :func:`_drive` runs its steps with the sync
    cache, :func:`_adrive` awaits them on the async one. Returns the value (or ``_SKIPPED``).
    """
    if held is not None:
        if refresh:
            if not (yield (_ACQUIRE, held, 0.0)):
                return _SKIPPED  # another process holds the lock: it is refreshing
        else:
            found = yield from _wait_for_lock(job, held)
            if found is not MISSING:
                return found
            # else: acquired, or waited long enough (then releasing is a no-op)
    try:
        current = yield (_PEEK,)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        result = yield (_CALL,)
        stored = _to_store(job.cache, result, job.policy)
        if stored is not None:
            yield (_STORE, *stored)
        return result
    finally:
        if held is not None:
            yield (_RELEASE, held)


def _wait_for_lock(job: Job, held: Any) -> Generator[Step, Any, Any]:
    """Acquire ``held`` (then MISSING), or return the value its holder stored meanwhile.

    After :data:`LOCK_WAIT` without the lock, returns MISSING too: compute anyway.
    """
    budget = _lock_budget()
    started = time.monotonic()
    pause = _FIRST_SLICE
    while True:
        waited = time.monotonic() - started
        if (yield (_ACQUIRE, held, min(pause, max(budget - waited, 0.0)))):
            return MISSING
        current = yield (_PEEK,)
        if current is not MISSING:
            current = _fresh(current)
            if current is not MISSING:
                return current
        waited = time.monotonic() - started
        if waited >= budget:
            _lock_timed_out(job.cache, job.key, waited)
            return MISSING
        pause = min(pause * 2.0, _MAX_SLICE)


@contextmanager
def _outcome(table: Flights, flight: Flight) -> Iterator[None]:
    """Finish ``flight`` with the error of the block (or abandoned, when cancelled)."""
    try:
        yield
    except Exception as exc:
        table.finish(flight, error=exc)
        raise
    except BaseException:  # cancelled, KeyboardInterrupt: the waiters try again
        table.finish(flight, abandoned=True)
        raise


def _finish(table: Flights, flight: Flight, value: Any) -> Any:
    if value is _SKIPPED:
        table.finish(flight, abandoned=True)
    else:
        table.finish(flight, value=value)
    return value


def _hit(job: Job, value: Any, start_refresh: Callable[[Job], bool]) -> Any:
    """The payload of a stored ``value``, starting a background refresh when it is stale."""
    if type(value) is list and len(value) == 3 and value[0] == SWR_MARK:
        if _stale(value):
            start_refresh(job)
        return value[2]
    return value


def _refuse_awaitable(fn: Callable[..., Any], result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:  # a coroutine: close it, or Python warns it was never awaited
        close()
    raise TypeError(
        f"{getattr(fn, '__qualname__', fn)!r} returned an awaitable on a sync cache path: "
        "an awaited result cannot be cached from sync code. Declare it `async def` (or use "
        "aget_or_set with an async cache)."
    )


def _unlock_failed(job: Job, exc: BaseException) -> None:
    # The value is computed: a failed unlock must not lose it.
    UNLOCK_FAILED.emit(cache=_name(job.cache), key=job.key, error=repr(exc))


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
    job = Job(
        cache,
        key,
        factory,
        (),
        {},
        Policy.make(
            ttl, lock=lock, stale_ttl=stale_ttl, negative_ttl=negative_ttl, cache_none=cache_none
        ),
    )
    value = cache.get(key, MISSING)
    return fill(job) if value is MISSING else on_hit(job, value)


def on_hit(job: Job, value: Any) -> Any:
    """The payload of a stored ``value``, refreshed in a daemon thread when it is stale."""
    return _hit(job, value, refresh)


def fill(job: Job) -> Any:
    """Compute a missing value once per process (and across processes with a lock)."""
    me = threading.get_ident()
    while True:
        flight, owner = THREADS.join(job.cache, job.key, me)
        if owner:
            return _run(flight, job, refresh=False)
        outcome = flight.wait()
        if outcome is not RETRY:
            return outcome


def _run(flight: Flight, job: Job, *, refresh: bool) -> Any:
    with _outcome(THREADS, flight):
        value = _compute(job, refresh=refresh)
    return _finish(THREADS, flight, value)


def _peek(cache: Any, key: str) -> Any:
    """Read without counting a second miss when the cache can (MemoryCache)."""
    peek = getattr(cache, "_peek", None)
    return cache.get(key, MISSING) if peek is None else peek(key, MISSING)


def _compute(job: Job, *, refresh: bool) -> Any:
    """Run the miss protocol with the sync cache."""
    hook = getattr(job.cache, "_lock", None) if job.policy.lock else None
    plan = Plan(_protocol(job, hook(job.key, LOCK_TTL) if hook else None, refresh))
    while not plan.done:
        _perform(plan, job)
    return plan.result


def _perform(plan: Plan, job: Job) -> None:
    step = plan.step
    try:
        outcome = _SYNC_STEPS[step[0]](job, *step[1:])
    except BaseException as exc:  # the protocol decides (it releases the lock, then raises)
        plan.advance(None, exc)
        return
    plan.advance(outcome)


def _step_call(job: Job) -> Any:
    result = job.fn(*job.args, **job.kwargs)
    if inspect.isawaitable(result):
        _refuse_awaitable(job.fn, result)
    return result


def _step_release(job: Job, held: Any) -> None:
    try:
        held.release()
    except Exception as exc:
        _unlock_failed(job, exc)


def _step_acquire(job: Job, held: Any, wait: float) -> bool:
    return bool(held.acquire(wait))


def _step_peek(job: Job) -> Any:
    return _peek(job.cache, job.key)


def _step_store(job: Job, value: Any, ttl: TTL) -> None:
    job.cache.set(job.key, value, ttl)


_SYNC_STEPS: tuple[Callable[..., Any], ...] = (
    _step_acquire,
    _step_peek,
    _step_call,
    _step_store,
    _step_release,
)


def refresh(job: Job) -> bool:
    """Start recomputing ``job.key`` in a daemon thread unless it is being computed already."""
    flight = THREADS.start_background(job.cache, job.key)
    if flight is None:
        return False
    worker = threading.Thread(
        target=with_current_context(_refresh_worker),
        args=(flight, job),
        name="utils-cache-refresh",
        daemon=True,
    )
    try:
        worker.start()
    except RuntimeError as exc:  # interpreter shutting down, or out of threads
        THREADS.finish(flight, abandoned=True)
        _refresh_failed(job.cache, job.key, exc)
        return False
    return True


def _refresh_worker(flight: Flight, job: Job) -> None:
    flight.owner = threading.get_ident()
    try:
        _run(flight, job, refresh=True)
    except Exception as exc:
        _refresh_failed(job.cache, job.key, exc)


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
    job = Job(cache, key, factory, (), {}, policy)
    value = await cache.get(key, MISSING)
    return await afill(job) if value is MISSING else aon_hit(job, value)


def aon_hit(job: Job, value: Any) -> Any:
    """The twin of :func:`on_hit`: the refresh runs as a task of the running loop."""
    return _hit(job, value, arefresh)


async def afill(job: Job) -> Any:
    """The async twin of :func:`fill`."""
    me = asyncio.current_task()
    while True:
        flight, future = TASKS.join_task(job.cache, job.key, me)
        if future is None:
            return await _arun(flight, job, refresh=False)
        outcome = await flight.await_(future)
        if outcome is not RETRY:
            return outcome


async def _arun(flight: Flight, job: Job, *, refresh: bool) -> Any:
    with _outcome(TASKS, flight):
        value = await _acompute(job, refresh=refresh)
    return _finish(TASKS, flight, value)


async def _apeek(cache: Any, key: str) -> Any:
    peek = getattr(cache, "_peek", None)
    return await (cache.get(key, MISSING) if peek is None else peek(key, MISSING))


async def _acompute(job: Job, *, refresh: bool) -> Any:
    """Run the miss protocol with the async cache (each step awaited)."""
    hook = getattr(job.cache, "_alock", None) if job.policy.lock else None
    plan = Plan(_protocol(job, hook(job.key, LOCK_TTL) if hook else None, refresh))
    while not plan.done:
        await _aperform(plan, job)
    return plan.result


async def _aperform(plan: Plan, job: Job) -> None:
    step = plan.step
    try:
        outcome = await _ASYNC_STEPS[step[0]](job, *step[1:])
    except BaseException as exc:  # the protocol decides (it releases the lock, then raises)
        plan.advance(None, exc)
        return
    plan.advance(outcome)


async def _astep_acquire(job: Job, held: Any, wait: float) -> bool:
    return bool(await held.aacquire(wait))


async def _astep_peek(job: Job) -> Any:
    return await _apeek(job.cache, job.key)


async def _astep_call(job: Job) -> Any:
    result = job.fn(*job.args, **job.kwargs)
    return (await result) if inspect.isawaitable(result) else result


async def _astep_store(job: Job, value: Any, ttl: TTL) -> None:
    await job.cache.set(job.key, value, ttl)


async def _astep_release(job: Job, held: Any) -> None:
    try:
        await held.arelease()
    except Exception as exc:
        _unlock_failed(job, exc)


_ASYNC_STEPS: tuple[Callable[..., Awaitable[Any]], ...] = (
    _astep_acquire,
    _astep_peek,
    _astep_call,
    _astep_store,
    _astep_release,
)


def arefresh(job: Job) -> bool:
    """Start recomputing ``job.key`` in a task of the running loop unless already computing."""
    flight = TASKS.start_background(job.cache, job.key)
    if flight is None:
        return False
    task = asyncio.get_running_loop().create_task(_arefresh_worker(flight, job))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return True


async def _arefresh_worker(flight: Flight, job: Job) -> None:
    flight.owner = asyncio.current_task()
    try:
        await _arun(flight, job, refresh=True)
    except Exception as exc:
        _refresh_failed(job.cache, job.key, exc)


class GetOrSet:
    """Mixin giving a sync cache its ``get_or_set`` method: :func:`get_or_set` itself.

    Concurrent callers in the process wait for one computation; with ``lock=True`` on a
    cross-process cache (Redis, tiered), other processes wait too (bounded).

    Example:
        >>> from utils.cache.memory import MemoryCache
        >>> cache = MemoryCache()
        >>> cache.get_or_set("answer", lambda: 42), cache.get_or_set("answer", lambda: 0)
        (42, 42)
    """

    __slots__ = ()

    #: The cached value, or ``factory()`` computed once and stored (see :func:`get_or_set`).
    get_or_set = get_or_set


class AsyncGetOrSet:
    """Mixin giving an async cache its ``get_or_set`` method: :func:`aget_or_set` itself.

    Example:
        >>> import asyncio
        >>> from utils.cache.memory import MemoryCache
        >>> async def answer() -> int:
        ...     return 42
        >>> asyncio.run(MemoryCache().as_async().get_or_set("answer", answer))
        42
    """

    __slots__ = ()

    #: The cached value, or ``await factory()`` computed once (see :func:`aget_or_set`).
    get_or_set = aget_or_set
