"""Rate limiting with GCRA (the generic cell rate algorithm), in memory or in Redis.

A :class:`RateLimiter` allows ``rate`` requests per ``per`` seconds, with bursts of up to
``burst`` requests at once. It is immutable configuration; the only state is one number
per key — the key's *theoretical arrival time* (TAT) — kept by a storage:
:class:`MemoryRateLimitStorage` (the default, per process) or
:class:`~utils.resilience.RedisRateLimitStorage` (shared by every process, one atomic Lua
script per decision).

The algorithm, precisely. Let ``T = per / rate`` (the *emission interval*: one request
every ``T`` seconds on average) and ``tau = T * (burst - 1)`` (the *tolerance*). A request
of ``cost`` cells for a key at time ``now`` computes ``new_tat = max(tat, now) + cost * T``
and is allowed iff ``new_tat - now <= tau + T`` (that is ``<= burst * T``); when allowed the
key's TAT becomes ``new_tat``, when refused nothing changes. Consequences:

- after being idle a key admits exactly ``burst`` requests at once (``burst`` = how many
  requests may arrive together after idle), then one every ``T`` seconds;
- over *any* time window of length ``w``, the cells admitted for one key never exceed
  ``burst + w / T`` (the tests prove this with hypothesis);
- a refused request gets ``retry_after``, the exact time after which the same request
  would be allowed (if nothing else is admitted for that key meanwhile);
- a key whose TAT is in the past is indistinguishable from a key never seen, so storages
  may forget it: that is what bounds memory.

Example:
    >>> clock = iter([0.0, 0.0, 0.0, 0.5]).__next__  # a fake clock, for the example
    >>> limiter = RateLimiter(2, per=1.0, clock=clock)  # 2 per second, bursts of 2
    >>> limiter.try_acquire("alice")
    Decision(allowed=True, retry_after=0.0, remaining=1)
    >>> limiter.try_acquire("alice")
    Decision(allowed=True, retry_after=0.0, remaining=0)
    >>> limiter.try_acquire("alice")
    Decision(allowed=False, retry_after=0.5, remaining=0)
    >>> limiter.try_acquire("alice").allowed  # half a second later
    True
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import FrozenInstanceError
from datetime import timedelta
from itertools import islice
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar, runtime_checkable

from utils.core import UnavailableError, ValidationError, get_metrics_sink, remaining
from utils.resilience import _timing
from utils.resilience._ratelimit_redis import RedisRateLimitStorage
from utils.resilience._strategy import Strategy
from utils.resilience._timing import AsyncSleep, Clock, Sleep
from utils.resilience.errors import RateLimitExceeded, RateLimitStorageError

__all__ = [
    "Decision",
    "MemoryRateLimitStorage",
    "RateLimitStorage",
    "RateLimitStorageError",
    "RateLimiter",
    "RedisRateLimitStorage",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The key used when none is given (and by the limiter's own ``call`` / decorator).
DEFAULT_KEY = "default"

# Float arithmetic on absolute monotonic times carries rounding errors of ~1e-10 s; a
# request that is allowed in exact arithmetic must not be refused for that. One nanosecond
# of slack is far below any meaningful rate and far above the rounding.
_SLACK = 1e-9
# ``remaining`` is a count of whole requests: absorb rounding when converting to it.
_COUNT_SLACK = 1e-6
# Other storages (Redis: TIME has microsecond resolution) may be a microsecond off.
_STORAGE_RESOLUTION = 1e-6
# Allowed decisions are precomputed for these many ``remaining`` values (bounded memory for
# huge bursts; beyond it a Decision is built per call).
_CACHED_DECISIONS = 1024


# --------------------------------------------------------------------------------------
# Decision


class Decision:
    """The answer of a rate limiter: may this request go ahead now?

    Immutable and slotted. ``bool(decision)`` is ``decision.allowed``, so
    ``if limiter.try_acquire(key): ...`` reads naturally.

    Attributes:
        allowed: Whether the request was admitted (and counted).
        retry_after: Seconds after which the same request would be admitted (``0.0`` when
            allowed). Exact: retrying after that long succeeds unless someone else used the
            key meanwhile. Suitable for an HTTP ``Retry-After`` header (round up).
        remaining: How many more requests of cost 1 would be admitted right now, after this
            one (suitable for ``RateLimit-Remaining``).

    Example:
        >>> decision = Decision(False, retry_after=0.25, remaining=0)
        >>> bool(decision), decision.retry_after
        (False, 0.25)
        >>> decision.allowed = True
        Traceback (most recent call last):
        ...
        dataclasses.FrozenInstanceError: Decision is immutable
    """

    __slots__ = ("allowed", "remaining", "retry_after")

    allowed: bool
    retry_after: float
    remaining: int

    def __init__(self, allowed: bool, retry_after: float = 0.0, remaining: int = 0) -> None:
        _set_allowed(self, allowed)
        _set_retry_after(self, retry_after)
        _set_remaining(self, remaining)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise FrozenInstanceError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise FrozenInstanceError(f"{type(self).__name__} is immutable")

    def __bool__(self) -> bool:
        return self.allowed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.allowed, self.retry_after, self.remaining) == (
            other.allowed,
            other.retry_after,
            other.remaining,
        )

    def __hash__(self) -> int:
        return hash((self.allowed, self.retry_after, self.remaining))

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed!r}, retry_after={self.retry_after!r}, "
            f"remaining={self.remaining!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Decision, (self.allowed, self.retry_after, self.remaining))


# The slot descriptors' own setters: fast, and they bypass the frozen __setattr__.
_set_allowed: Callable[[Decision, bool], None] = vars(Decision)["allowed"].__set__
_set_retry_after: Callable[[Decision, float], None] = vars(Decision)["retry_after"].__set__
_set_remaining: Callable[[Decision, int], None] = vars(Decision)["remaining"].__set__


# --------------------------------------------------------------------------------------
# Storages


@runtime_checkable
class RateLimitStorage(Protocol):
    """Where a rate limiter keeps each key's theoretical arrival time (TAT).

    One call is one decision, made atomically by the storage (one lock, or one Redis
    round trip). With ``now`` the storage's time and ``tat`` the key's stored TAT (``now``
    for a key never seen or forgotten), the storage computes
    ``new_tat = max(tat, now) + cost * emission_interval`` and admits the request iff
    ``new_tat - now <= tolerance + emission_interval`` (plus a rounding slack far below any
    meaningful rate); if admitted it stores ``new_tat``, otherwise it changes nothing.

    It returns ``(allowed, backlog)`` where ``backlog`` is how far the key's TAT is ahead of
    ``now`` after the decision (``new_tat - now`` if allowed, ``max(tat - now, 0)`` if not).
    The limiter derives ``retry_after`` and ``remaining`` from it.

    A storage that cannot decide (its backend is down) either answers as if the key were
    fresh (fail open: ``(True, cost * emission_interval)``) or raises a
    :class:`~utils.core.UnavailableError` (fail closed, e.g. :class:`RateLimitStorageError`)
    with ``retry_after`` set; the limiter turns that into a refusal. Both methods must be
    safe to call from many threads and tasks at once.

    Example:
        >>> isinstance(MemoryRateLimitStorage(), RateLimitStorage)
        True
    """

    def update(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Decide one request and record it if allowed; ``clock`` is the caller's clock.

        A storage with its own notion of time (Redis ``TIME``) ignores ``clock``.
        """
        ...

    async def aupdate(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """The async twin of :meth:`update`."""
        ...


class MemoryRateLimitStorage:
    """Per-process storage: a dict of key -> TAT (one float per key) behind one short lock.

    The lock covers only the GCRA arithmetic and the dict update. Memory is bounded by
    ``max_keys``: when an insertion goes above it, the storage first forgets every key
    whose TAT is in the past — such a key is equivalent to a fresh one, so forgetting it
    never changes a decision — and, if still above 90% of ``max_keys``, forgets the
    oldest-inserted keys until it is at 90%. Forgetting a key whose TAT is still ahead can
    only make the limiter *more permissive* for that key (it gets a fresh burst), never
    stricter; size ``max_keys`` above the number of keys active within one refill period
    (``burst * per / rate``) and it never happens. The sweep runs outside the lock on a
    snapshot, about once per ``max_keys / 10`` new keys (amortised O(1) per request).

    One storage may be shared by several limiters if each has its own ``name`` (it
    namespaces the keys); ``max_keys`` then bounds them all together.

    Args:
        max_keys: The most keys kept at once (>= 1).

    Example:
        >>> storage = MemoryRateLimitStorage(max_keys=1000)
        >>> limiter = RateLimiter(5, per=1.0, storage=storage, name="api")
        >>> limiter.try_acquire("bob").allowed, len(storage)
        (True, 1)
    """

    __slots__ = ("_lock", "_low_water", "_max_keys", "_sweep_lock", "_tats")

    def __init__(self, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValidationError(
                f"max_keys must be an int >= 1, got {max_keys!r}",
                details={"max_keys": repr(max_keys)},
            )
        self._max_keys = max_keys
        self._low_water = max_keys - max(1, max_keys // 10)
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sweep_lock = threading.Lock()

    @property
    def max_keys(self) -> int:
        """The most keys kept at once.

        Example:
            >>> MemoryRateLimitStorage(max_keys=10).max_keys
            10
        """
        return self._max_keys

    def __len__(self) -> int:
        return len(self._tats)

    def __repr__(self) -> str:
        return f"MemoryRateLimitStorage(max_keys={self._max_keys}, keys={len(self._tats)})"

    def update(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Decide one request (see :class:`RateLimitStorage`).

        Example:
            >>> storage = MemoryRateLimitStorage()
            >>> storage.update("k", 0.5, 0.5, 1, lambda: 100.0)  # T=0.5 s, burst 2
            (True, 0.5)
            >>> storage.update("k", 0.5, 0.5, 2, lambda: 100.0)  # needs 2 cells, has 1
            (False, 0.5)
        """
        now = clock()
        tats = self._tats
        self._lock.acquire()
        try:
            tat = max(tats.get(key, now), now)
            new_tat = tat + cost * emission_interval
            if new_tat - now > tolerance + emission_interval + _SLACK:
                return False, tat - now
            tats[key] = new_tat
            size = len(tats)
        finally:
            self._lock.release()
        if size > self._max_keys:
            self._sweep(now)
        return True, new_tat - now

    async def aupdate(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Same as :meth:`update` (no I/O, never blocks the event loop).

        Example:
            >>> import asyncio
            >>> asyncio.run(MemoryRateLimitStorage().aupdate("k", 1.0, 0.0, 1, lambda: 5.0))
            (True, 1.0)
        """
        return self.update(key, emission_interval, tolerance, cost, clock)

    def _decider(
        self,
        namespace: str,
        interval: float,
        tolerance: float,
        clock: Clock | None,
        decisions: tuple[Decision, ...],
        refused: Callable[[float, int], Decision],
        check_cost: Callable[[int], None],
    ) -> Callable[[str, int], Decision]:
        """The in-memory hot path of one limiter: :meth:`update` and the Decision, inlined.

        Everything constant is bound in the closure; an allowed request allocates nothing
        but a few floats and returns a precomputed :class:`Decision`.
        """
        tats = self._tats
        get = tats.get
        acquire = self._lock.acquire
        release = self._lock.release
        max_keys = self._max_keys
        sweep = self._sweep
        limit = tolerance + interval + _SLACK
        inverse = 1.0 / interval
        # remaining = floor((tolerance + interval - backlog) / interval), i.e. this:
        whole = (tolerance + interval) * inverse + _COUNT_SLACK
        timing = _timing
        cached = len(decisions)

        def decide(key: str = DEFAULT_KEY, cost: int = 1) -> Decision:
            if cost != 1:
                check_cost(cost)
            if namespace:
                key = namespace + key
            now = (clock or timing.clock)()
            acquire()
            try:
                tat = get(key)
                if tat is None:  # a new key: is there room for it?
                    full = len(tats) >= max_keys
                    tat = now
                else:
                    full = False
                    if tat < now:  # noqa: PLR1730 - cheaper than a call to max()
                        tat = now
                new_tat = tat + cost * interval
                backlog = new_tat - now
                allowed = backlog <= limit
                if allowed:
                    tats[key] = new_tat
            finally:
                release()
            if not allowed:
                return refused(tat - now, cost)
            if full:
                sweep(now)
            count = int(whole - backlog * inverse)
            if count < cached:
                return decisions[count]
            return Decision(True, 0.0, count)  # a burst above the cache size

        return decide

    def _sweep(self, now: float) -> None:
        """Bring the table back to the low-water mark (see the class docstring)."""
        if not self._sweep_lock.acquire(blocking=False):
            return  # another thread is sweeping; the table may briefly exceed max_keys
        try:
            with self._lock:
                if len(self._tats) <= self._max_keys:
                    return
                snapshot = self._tats.copy()
            # The O(n) scan runs outside the lock; decisions go on meanwhile.
            expired = [key for key, tat in snapshot.items() if tat <= now]
            del snapshot
            with self._lock:
                tats = self._tats
                for key in expired:
                    tat = tats.get(key)
                    if tat is not None and tat <= now:  # not refreshed meanwhile
                        del tats[key]
                excess = len(tats) - self._low_water
                if excess > 0:
                    for key in list(islice(tats, excess)):  # oldest-inserted first
                        del tats[key]
        finally:
            self._sweep_lock.release()


# --------------------------------------------------------------------------------------
# The limiter


def _positive_seconds(value: float | timedelta, what: str) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = math.nan
    if not (0.0 < seconds < math.inf):
        raise ValidationError(
            f"{what} must be a positive, finite number of seconds or a timedelta, got {value!r}",
            details={what: repr(value)},
        )
    return seconds


def _check_limit(
    rate: float, per: float | timedelta, burst: int | None, name: str | None
) -> tuple[float, int]:
    """Validate a limiter's numbers; return ``per`` in seconds and the burst."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
        raise ValidationError(
            f"rate must be a positive, finite number of requests, got {rate!r}",
            details={"rate": repr(rate)},
        )
    per_seconds = _positive_seconds(per, "per")
    if burst is None:
        burst = max(1, math.floor(rate))
    elif isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValidationError(
            f"burst must be an int >= 1 (requests allowed at once), got {burst!r}",
            details={"burst": repr(burst)},
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise ValidationError(f"name must be a non-empty string, got {name!r}")
    return per_seconds, burst


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (
        isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0
    ):
        raise ValidationError(
            f"timeout must be a number of seconds >= 0 or None, got {timeout!r}",
            details={"timeout": repr(timeout)},
        )


class RateLimiter(Strategy):
    """Allow ``rate`` requests per ``per`` seconds and key, in bursts of up to ``burst``.

    Uses GCRA (see the module docstring for the exact rule). The limiter is immutable
    configuration and safe to share across threads and asyncio tasks; per-key state lives
    in the storage. No lock is held while user code runs or across an ``await``, and
    waiting holds no reservation (a cancelled or interrupted wait leaves nothing behind).

    Args:
        rate: Requests allowed per ``per`` (a positive number; may be fractional).
        per: The period, in seconds or as a ``timedelta``.
        burst: Requests that may arrive at once after the key was idle (an int >= 1;
            default ``rate`` rounded down, at least 1). ``burst=1`` spaces requests
            evenly, one every ``per / rate`` seconds.
        storage: Where per-key state lives: ``None`` (default) for a private
            :class:`MemoryRateLimitStorage`, or a shared storage such as
            :class:`~utils.resilience.RedisRateLimitStorage` — then ``name`` is required,
            since it namespaces the keys (and must be the same in every process).
        name: Names the limiter in errors and metrics, and namespaces its keys in a shared
            storage.
        clock: Seconds on a monotonic clock for the in-memory storage and for ``timeout``
            accounting (default: ``time.monotonic``, looked up at call time). Redis uses
            its server's clock for decisions.
        sleep: How :meth:`acquire` waits (default ``time.sleep``, looked up at call time).
        asleep: How :meth:`aacquire` waits (default ``asyncio.sleep``).

    Metrics: every refusal counts ``ratelimit.rejected`` (tag ``limiter``); the allowed path
    logs and measures nothing.

    Example:
        >>> api = RateLimiter(100, per=60, burst=10, name="api")
        >>> decision = api.try_acquire("user:42")
        >>> decision.allowed, decision.remaining
        (True, 9)
        >>> @api.limit(key=lambda user_id: f"user:{user_id}")
        ... def profile(user_id: int) -> str:
        ...     return f"profile {user_id}"
        >>> profile(7)
        'profile 7'
    """

    # __dict__ holds only the per-instance fast try_acquire of in-memory limiters.
    __slots__ = (
        "__dict__",
        "_adecide",
        "_adecide_quiet",
        "_asleep",
        "_burst",
        "_capacity",
        "_clock",
        "_decide",
        "_decide_quiet",
        "_interval",
        "_inverse",
        "_name",
        "_per",
        "_rate",
        "_sleep",
        "_storage",
        "_tags",
        "_whole",
    )

    def __init__(
        self,
        rate: float,
        per: float | timedelta = 1.0,
        *,
        burst: int | None = None,
        storage: RateLimitStorage | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        asleep: AsyncSleep | None = None,
    ) -> None:
        per_seconds, burst = _check_limit(rate, per, burst, name)
        if storage is None:
            storage = MemoryRateLimitStorage()
            namespace = ""
        elif not isinstance(storage, RateLimitStorage):
            raise ValidationError(
                "storage must implement update() and aupdate() (RateLimitStorage), "
                f"got {type(storage).__name__}"
            )
        elif name is None:
            raise ValidationError(
                "a RateLimiter with a storage= needs a name=: it namespaces the keys in the "
                "shared storage (use the same name in every process sharing the limit)"
            )
        else:
            namespace = name + ":"
        interval = per_seconds / rate
        if not 0.0 < interval * burst < math.inf:
            raise ValidationError(
                f"rate {rate!r} per {per!r} with burst {burst!r} cannot be represented"
            )
        for what, value in (("clock", clock), ("sleep", sleep), ("asleep", asleep)):
            if value is not None and not callable(value):
                raise ValidationError(f"{what} must be callable or None, got {value!r}")
        self._rate = rate
        self._per = per_seconds
        self._burst = burst
        self._name = name
        self._storage = storage
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._interval = interval
        tolerance = interval * (burst - 1)
        self._capacity = tolerance + interval
        self._inverse = 1.0 / interval
        memory = storage if type(storage) is MemoryRateLimitStorage else None
        fast = memory is not None
        # remaining = floor((capacity - backlog) / interval) = int(whole - backlog * inverse)
        slack = _COUNT_SLACK if fast else min(0.5, _COUNT_SLACK + _STORAGE_RESOLUTION / interval)
        self._whole = self._capacity * self._inverse + slack
        self._tags = {"limiter": name or "ratelimiter"}
        decisions = tuple(
            Decision(True, 0.0, count) for count in range(min(burst, _CACHED_DECISIONS))
        )
        if memory is not None:
            # The hot path: update + Decision inlined in one closure over the storage's dict,
            # installed as this instance's try_acquire (saving a Python call per request).
            self._decide = fast_decide = memory._decider(
                namespace,
                interval,
                tolerance,
                clock,
                decisions,
                self._refused_counted,
                self._check_cost,
            )
            self._decide_quiet = memory._decider(
                namespace, interval, tolerance, clock, decisions, self._refused, self._check_cost
            )
            self._adecide = self._adecide_quiet = None
            for attribute in ("__doc__", "__name__", "__qualname__"):
                setattr(fast_decide, attribute, getattr(RateLimiter.try_acquire, attribute))
            self.__dict__["try_acquire"] = fast_decide
        else:
            self._decide, self._adecide = self._deciders(
                storage, namespace, tolerance, decisions, self._refused_counted
            )
            self._decide_quiet, self._adecide_quiet = self._deciders(
                storage, namespace, tolerance, decisions, self._refused
            )

    def _deciders(
        self,
        storage: RateLimitStorage,
        namespace: str,
        tolerance: float,
        decisions: tuple[Decision, ...],
        refused: Callable[[float, int], Decision],
    ) -> tuple[Callable[[str, int], Decision], Callable[[str, int], Awaitable[Decision]]]:
        """Sync and async decision functions for any :class:`RateLimitStorage`.

        A storage passed in always comes with a name, so ``namespace`` is never empty.
        """
        update = storage.update
        aupdate = storage.aupdate
        interval = self._interval
        clock = self._clock
        timing = _timing
        allowed_decision = self._allowed

        def decide(key: str, cost: int) -> Decision:
            allowed, backlog = update(
                namespace + key, interval, tolerance, cost, clock or timing.clock
            )
            if allowed:
                return allowed_decision(backlog, decisions)
            return refused(backlog, cost)

        async def adecide(key: str, cost: int) -> Decision:
            allowed, backlog = await aupdate(
                namespace + key, interval, tolerance, cost, clock or timing.clock
            )
            if allowed:
                return allowed_decision(backlog, decisions)
            return refused(backlog, cost)

        return decide, adecide

    # -- configuration (read-only) -----------------------------------------------------

    @property
    def rate(self) -> float:
        """Requests allowed per :attr:`per` seconds.

        Example:
            >>> RateLimiter(10, per=60).rate
            10
        """
        return self._rate

    @property
    def per(self) -> float:
        """The period, in seconds.

        Example:
            >>> RateLimiter(10, per=timedelta(minutes=1)).per
            60.0
        """
        return self._per

    @property
    def burst(self) -> int:
        """Requests that may arrive at once after a key was idle.

        Example:
            >>> RateLimiter(10, per=60).burst, RateLimiter(10, per=60, burst=3).burst
            (10, 3)
        """
        return self._burst

    @property
    def emission_interval(self) -> float:
        """Seconds between requests at the sustained rate (``per / rate``).

        Example:
            >>> RateLimiter(4, per=1.0).emission_interval
            0.25
        """
        return self._interval

    @property
    def name(self) -> str | None:
        """The limiter's name (``None`` if not given).

        Example:
            >>> RateLimiter(1, name="login").name
            'login'
        """
        return self._name

    @property
    def storage(self) -> RateLimitStorage:
        """Where the per-key state lives.

        Example:
            >>> type(RateLimiter(1).storage).__name__
            'MemoryRateLimitStorage'
        """
        return self._storage

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self._rate!r}, per={self._per!r}, burst={self._burst!r}, "
            f"name={self._name!r}, storage={type(self._storage).__name__})"
        )

    def _describe(self) -> str:
        return f"RateLimiter({self._tags['limiter']!r})"

    # -- decisions ---------------------------------------------------------------------

    def _check_cost(self, cost: int) -> None:
        if not isinstance(cost, int) or cost < 1:
            raise ValidationError(
                f"cost must be an int >= 1, got {cost!r}", details={"cost": repr(cost)}
            )
        if cost > self._burst:
            raise ValidationError(
                f"cost {cost} exceeds the burst of rate limiter {self._tags['limiter']!r} "
                f"({self._burst}): such a request could never be allowed",
                details={"cost": cost, "burst": self._burst, "limiter": self._tags["limiter"]},
            )

    def _allowed(self, backlog: float, decisions: tuple[Decision, ...]) -> Decision:
        count = int(self._whole - backlog * self._inverse)
        if count < len(decisions):
            return decisions[count]
        return Decision(True, 0.0, count)  # a burst above the cache size

    def _refused(self, backlog: float, cost: int) -> Decision:
        retry_after = backlog + cost * self._interval - self._capacity
        count = int(self._whole - backlog * self._inverse)
        return Decision(False, retry_after if retry_after > 0.0 else 0.0, max(count, 0))

    def _refused_counted(self, backlog: float, cost: int) -> Decision:
        get_metrics_sink().increment("ratelimit.rejected", 1.0, self._tags)
        return self._refused(backlog, cost)

    def _unavailable(self, error: UnavailableError) -> Decision:
        get_metrics_sink().increment("ratelimit.rejected", 1.0, self._tags)
        return Decision(False, error.retry_after or 0.0, 0)

    def _exceeded(self, decision: Decision, cause: BaseException | None = None) -> NoReturn:
        name = self._tags["limiter"]
        reason = "its storage is unavailable" if cause is not None else "limit reached"
        raise RateLimitExceeded(
            f"rate limiter {name!r} refused the request: {reason}",
            retry_after=decision.retry_after,
            details={"limiter": name, "rate": self._rate, "per": self._per},
        ) from cause

    def try_acquire(self, key: str = DEFAULT_KEY, cost: int = 1) -> Decision:
        """Decide now, without waiting: admit (and count) the request, or refuse it.

        Args:
            key: Whose budget to use (a user id, an IP, an API route...). Keys are never
                put in error messages or logs.
            cost: Cells this request uses (an int from 1 to ``burst``).

        Returns:
            The :class:`Decision`; a refusal has ``retry_after`` > 0. If a fail-closed
            storage is unavailable, the request is refused with the storage's
            ``retry_after``.

        Raises:
            ValidationError: ``cost`` is not an int in ``1..burst`` (a cost above the burst
                could never be allowed).

        Example:
            >>> limiter = RateLimiter(3, per=1.0, clock=lambda: 0.0)
            >>> limiter.try_acquire(cost=2)
            Decision(allowed=True, retry_after=0.0, remaining=1)
            >>> limiter.try_acquire(cost=2).allowed
            False
        """
        if cost != 1:
            self._check_cost(cost)
        try:
            return self._decide(key, cost)
        except UnavailableError as error:
            return self._unavailable(error)

    async def atry_acquire(self, key: str = DEFAULT_KEY, cost: int = 1) -> Decision:
        """The async twin of :meth:`try_acquire`.

        Example:
            >>> import asyncio
            >>> asyncio.run(RateLimiter(1).atry_acquire("carol")).allowed
            True
        """
        if cost != 1:
            self._check_cost(cost)
        try:
            if self._adecide is None:  # in memory: nothing to await
                return self._decide(key, cost)
            return await self._adecide(key, cost)
        except UnavailableError as error:
            return self._unavailable(error)

    def _wait_budget(self, timeout: float | None, started: float, clock: Clock) -> float | None:
        """Seconds we may still wait: what is left of ``timeout`` and of the deadline."""
        left = None if timeout is None else timeout - (clock() - started)
        deadline_left = remaining()
        if deadline_left is not None and (left is None or deadline_left < left):
            left = deadline_left
        return left

    def acquire(
        self, key: str = DEFAULT_KEY, cost: int = 1, timeout: float | None = None
    ) -> Decision:
        """Wait until the request is admitted; give up when the wait would be too long.

        Waits by sleeping exactly the ``retry_after`` of each refusal (no polling) and
        holds nothing while waiting.

        Args:
            key: Whose budget to use.
            cost: Cells this request uses (an int from 1 to ``burst``).
            timeout: The longest total wait in seconds; ``None`` waits as long as needed,
                ``0`` never waits. The :func:`utils.core.deadline` caps it too.

        Returns:
            The allowed :class:`Decision`.

        Raises:
            RateLimitExceeded: The next chance is beyond ``timeout`` or the deadline
                (``retry_after`` says when it is), or a fail-closed storage is
                unavailable (the storage's error is the ``__cause__``).
            ValidationError: Bad ``cost`` or ``timeout``.

        Example:
            >>> limiter = RateLimiter(1, per=10.0, clock=lambda: 0.0)
            >>> limiter.acquire("dave").allowed
            True
            >>> limiter.acquire("dave", timeout=0)
            Traceback (most recent call last):
            ...
            utils.resilience.errors.RateLimitExceeded: rate limiter 'ratelimiter' refused the request: limit reached (retry after 10s)
        """
        if cost != 1:
            self._check_cost(cost)
        if timeout is not None:
            _check_timeout(timeout)
        decide = self._decide_quiet
        started: float | None = None
        while True:
            try:
                decision = decide(key, cost)
            except UnavailableError as error:
                self._exceeded(self._unavailable(error), error)
            if decision.allowed:
                return decision
            clock = self._clock or _timing.clock
            if started is None:
                started = clock()
            left = self._wait_budget(timeout, started, clock)
            if left is not None and decision.retry_after > left:
                get_metrics_sink().increment("ratelimit.rejected", 1.0, self._tags)
                self._exceeded(decision)
            (self._sleep or _timing.sleep)(decision.retry_after)

    async def aacquire(
        self, key: str = DEFAULT_KEY, cost: int = 1, timeout: float | None = None
    ) -> Decision:
        """The async twin of :meth:`acquire`; waits with ``await`` (cancellation-safe).

        Example:
            >>> import asyncio
            >>> asyncio.run(RateLimiter(5).aacquire("erin", cost=2)).remaining
            3
        """
        if cost != 1:
            self._check_cost(cost)
        if timeout is not None:
            _check_timeout(timeout)
        decide = self._decide_quiet
        adecide = self._adecide_quiet
        started: float | None = None
        while True:
            try:
                decision = decide(key, cost) if adecide is None else await adecide(key, cost)
            except UnavailableError as error:
                self._exceeded(self._unavailable(error), error)
            if decision.allowed:
                return decision
            clock = self._clock or _timing.clock
            if started is None:
                started = clock()
            left = self._wait_budget(timeout, started, clock)
            if left is not None and decision.retry_after > left:
                get_metrics_sink().increment("ratelimit.rejected", 1.0, self._tags)
                self._exceeded(decision)
            await (self._asleep or _timing.asleep)(decision.retry_after)

    # -- as a strategy and decorator ---------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if key ``"default"`` has room now; else raise at once.

        This is the limiter's role in a :func:`~utils.resilience.pipeline` and as a bare
        decorator (``@limiter``). Use :meth:`limit` for per-key limits, costs and waiting.

        Raises:
            RateLimitExceeded: The limit is reached (with ``retry_after``).

        Example:
            >>> RateLimiter(1).call(len, "abc")
            3
        """
        self.acquire(DEFAULT_KEY, 1, 0)
        return fn(*args, **kwargs)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """The async twin of :meth:`call`.

        Example:
            >>> import asyncio
            >>> async def double(x: int) -> int:
            ...     return 2 * x
            >>> asyncio.run(RateLimiter(1).acall(double, 21))
            42
        """
        await self.aacquire(DEFAULT_KEY, 1, 0)
        return await fn(*args, **kwargs)

    def limit(
        self,
        key: str | Callable[..., str] = DEFAULT_KEY,
        *,
        cost: int = 1,
        timeout: float | None = 0,
    ) -> Strategy:
        """A decorator (and pipeline stage) that acquires from this limiter before each call.

        Works on sync and async functions and keeps their signatures for type checkers;
        generator functions are refused with ``TypeError``.

        Args:
            key: The key, or a function called with the decorated function's arguments
                that returns it (``key=lambda user_id, **_: f"user:{user_id}"``).
            cost: Cells each call uses (an int from 1 to ``burst``), checked now.
            timeout: How long a call may wait for room: ``0`` (default) refuses at once
                with :class:`~utils.resilience.RateLimitExceeded`, ``None`` waits as long
                as needed.

        Example:
            >>> limiter = RateLimiter(1, per=60, clock=lambda: 0.0)
            >>> @limiter.limit(key=lambda tenant: tenant)
            ... def report(tenant: str) -> str:
            ...     return f"report for {tenant}"
            >>> report("acme"), report("globex")
            ('report for acme', 'report for globex')
            >>> report("acme")
            Traceback (most recent call last):
            ...
            utils.resilience.errors.RateLimitExceeded: rate limiter 'ratelimiter' refused the request: limit reached (retry after 60s)
        """
        if not (isinstance(key, str) or callable(key)):
            raise ValidationError(f"key must be a str or a callable, got {key!r}")
        self._check_cost(cost)
        _check_timeout(timeout)
        return _LimitGuard(self, key, cost, timeout)


class _LimitGuard(Strategy):
    """What :meth:`RateLimiter.limit` returns: acquire ``key``/``cost``, then call."""

    __slots__ = ("_cost", "_key", "_limiter", "_timeout")

    def __init__(
        self,
        limiter: RateLimiter,
        key: str | Callable[..., str],
        cost: int,
        timeout: float | None,
    ) -> None:
        self._limiter = limiter
        self._key = key
        self._cost = cost
        self._timeout = timeout

    def _describe(self) -> str:
        return f"{self._limiter._describe()}.limit()"

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Acquire (waiting up to the timeout), then run ``fn``."""
        key = self._key if isinstance(self._key, str) else self._key(*args, **kwargs)
        self._limiter.acquire(key, self._cost, self._timeout)
        return fn(*args, **kwargs)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Acquire (awaiting up to the timeout), then await ``fn``."""
        key = self._key if isinstance(self._key, str) else self._key(*args, **kwargs)
        await self._limiter.aacquire(key, self._cost, self._timeout)
        return await fn(*args, **kwargs)
