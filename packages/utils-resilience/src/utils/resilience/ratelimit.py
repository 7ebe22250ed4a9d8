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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import NoReturn, ParamSpec, TypeVar

from utils.core import UnavailableError, ValidationError, remaining
from utils.core.report import Event
from utils.core.validate import duration, positive, positive_int
from utils.resilience import _forksafe, _timing
from utils.resilience._ratelimit_decision import (
    _CACHED_DECISIONS,
    _COUNT_SLACK,
    _ONE,
    _STORAGE_RESOLUTION,
    DEFAULT_KEY,
    Decision,
    RateLimitStorage,
)
from utils.resilience._ratelimit_memory import MemoryRateLimitStorage
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

# Every refusal, metered only (the allowed path reports nothing).
REJECTED = Event(
    "ratelimit.rejected", logger="utils.resilience.ratelimit", level=None, tags=("limiter",)
)

# --------------------------------------------------------------------------------------
# The limiter


def _check_limit(
    rate: float, per: float | timedelta, burst: int | None, name: str | None
) -> tuple[float, int]:
    """Validate a limiter's numbers; return ``per`` in seconds and the burst."""
    positive(rate, "rate")
    per_seconds = duration(per, "per", allow_zero=False, allow_none=False, allow_infinite=False)
    assert per_seconds is not None
    if burst is None:
        burst = max(1, math.floor(rate))
    else:
        positive_int(burst, "burst")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValidationError(f"name must be a non-empty string, got {name!r}")
    return per_seconds, burst


def _check_timeout(timeout: float | None) -> float | None:
    """A wait limit in seconds; ``None`` or ``math.inf`` = as long as needed (None)."""
    return duration(timeout, "timeout")


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
        "__weakref__",
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
        "_namespace",
        "_per",
        "_rate",
        "_rejected",
        "_sleep",
        "_storage",
        "_tags",
        "_whole",
    )

    # The deciders: None for the async ones in memory (nothing to await there).
    _decide: Callable[[str, int], Decision]
    _decide_quiet: Callable[[str, int], Decision]
    _adecide: Callable[[str, int], Awaitable[Decision]] | None
    _adecide_quiet: Callable[[str, int], Awaitable[Decision]] | None

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
        self._namespace = namespace
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
        self._rejected = REJECTED.bind(**self._tags)
        decisions = tuple(
            Decision(True, 0.0, count) for count in range(min(burst, _CACHED_DECISIONS))
        )
        if memory is not None:
            self._bind_memory(memory, namespace, tolerance, decisions)
            # The closures bind the storage's lock: rebuilt after it is re-created in a
            # forked child (see _forksafe).
            _forksafe.register(self, rebind=True)
        else:
            self._decide, self._adecide = self._deciders(
                storage, namespace, tolerance, decisions, self._refused_counted
            )
            self._decide_quiet, self._adecide_quiet = self._deciders(
                storage, namespace, tolerance, decisions, self._refused
            )

    def _bind_memory(
        self,
        memory: MemoryRateLimitStorage,
        namespace: str,
        tolerance: float,
        decisions: tuple[Decision, ...],
    ) -> None:
        """Install the in-memory hot path: update + Decision inlined in one closure.

        It replaces this instance's ``try_acquire``, saving a Python call per request.
        """
        interval, clock = self._interval, self._clock
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

    def _after_fork_in_child(self) -> None:
        memory = self._storage
        assert isinstance(memory, MemoryRateLimitStorage)
        decisions = tuple(
            Decision(True, 0.0, count) for count in range(min(self._burst, _CACHED_DECISIONS))
        )
        tolerance = self._interval * (self._burst - 1)  # as in __init__, to the last bit
        self._bind_memory(memory, self._namespace, tolerance, decisions)

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
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
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
        self._rejected()
        return self._refused(backlog, cost)

    def _unavailable(self, error: UnavailableError) -> Decision:
        self._rejected()
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
        if cost is not _ONE:
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
        if cost is not _ONE:
            self._check_cost(cost)
        try:
            if self._adecide is None:  # in memory: nothing to await
                return self._decide(key, cost)
            return await self._adecide(key, cost)
        except UnavailableError as error:
            return self._unavailable(error)

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
        wait = _Wait(self, cost, timeout)
        while True:
            try:
                decision = self._decide_quiet(key, cost)
            except UnavailableError as error:
                wait.unavailable(error)
            if (delay := wait.delay(decision)) is None:
                return decision
            (self._sleep or _timing.sleep)(delay)

    async def aacquire(
        self, key: str = DEFAULT_KEY, cost: int = 1, timeout: float | None = None
    ) -> Decision:
        """The async twin of :meth:`acquire`; waits with ``await`` (cancellation-safe).

        Example:
            >>> import asyncio
            >>> asyncio.run(RateLimiter(5).aacquire("erin", cost=2)).remaining
            3
        """
        wait = _Wait(self, cost, timeout)
        adecide = self._adecide_quiet
        while True:
            try:
                if adecide is None:  # in memory: nothing to await
                    decision = self._decide_quiet(key, cost)
                else:
                    decision = await adecide(key, cost)
            except UnavailableError as error:
                wait.unavailable(error)
            if (delay := wait.delay(decision)) is None:
                return decision
            await (self._asleep or _timing.asleep)(delay)

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
        return _LimitGuard(self, key, cost, _check_timeout(timeout))


class _Wait:
    """The I/O-free part of one ``acquire`` / ``aacquire``: how long to sleep, or give up.

    The twins only decide, sleep and loop; every rule (the timeout, the deadline, the
    errors) is here, once.
    """

    __slots__ = ("_limiter", "_started", "_timeout")

    def __init__(self, limiter: RateLimiter, cost: int, timeout: float | None) -> None:
        if cost is not _ONE:
            limiter._check_cost(cost)
        self._limiter = limiter
        self._timeout = None if timeout is None else _check_timeout(timeout)
        self._started: float | None = None

    def delay(self, decision: Decision) -> float | None:
        """None when ``decision`` admits the request; else the sleep before asking again.

        Raises:
            RateLimitExceeded: The next chance is past the timeout or the deadline.
        """
        if decision.allowed:
            return None
        limiter = self._limiter
        clock = limiter._clock or _timing.clock
        if self._started is None:
            self._started = clock()
        left = None if self._timeout is None else self._timeout - (clock() - self._started)
        deadline_left = remaining()
        if deadline_left is not None and (left is None or deadline_left < left):
            left = deadline_left
        if left is not None and decision.retry_after > left:
            limiter._rejected()
            limiter._exceeded(decision)
        return decision.retry_after

    def unavailable(self, error: UnavailableError) -> NoReturn:
        """A fail-closed storage could not decide: refuse at once."""
        self._limiter._exceeded(self._limiter._unavailable(error), error)


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
