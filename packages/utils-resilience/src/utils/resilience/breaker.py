"""Circuit breaker on pybreaker: concurrent, async-aware, with shared state in Redis.

:class:`CircuitBreaker` stops calling a dependency that keeps failing, so callers fail fast
(with :class:`~utils.resilience.CircuitOpenError`) instead of piling up on timeouts, and the
dependency gets room to recover. It is built on a real :class:`pybreaker.CircuitBreaker`
(``breaker.pybreaker``): pybreaker storages and listeners keep working. Unlike
``pybreaker.CircuitBreaker.call``, no lock is held while your function runs (pybreaker#55),
``async def`` functions are supported (pybreaker#7), and only failures that say something
about the dependency are counted (a 404 never opens a breaker).

States and rules:

- **closed**: calls run. A *counted* failure (one matching ``on`` and not ``exclude``)
  increments a counter of consecutive failures; a success resets it; reaching ``fail_max``
  opens the circuit.
- **open**: calls are refused at once with ``CircuitOpenError`` whose ``retry_after`` is the
  time left until the breaker lets a trial call through (``reset_timeout`` after opening).
- **half-open**: exactly one trial call ("probe") runs at a time — across threads, tasks and,
  with :class:`~utils.resilience.RedisBreakerStorage`, processes. The probe holds a lease
  that expires after ``probe_timeout`` if it hangs. ``success_threshold`` consecutive
  successful probes close the circuit; a failed probe opens it again.

Outcomes and edge cases, decided once:

- An exception that is *not counted* (``on`` does not match, or ``exclude`` does) propagates
  unchanged and is neutral in the closed state (neither a failure nor a success). When it is
  the outcome of a *probe*, it counts as a successful probe: the dependency answered.
- A ``BaseException`` that is not an ``Exception`` (cancellation, ``KeyboardInterrupt``,
  ``SystemExit``) is never counted, never converted, and always releases the probe lease.
- Every state change starts a new *generation*. The outcome of a call admitted in an older
  generation is ignored: a slow call that started while closed cannot close (or re-open) a
  circuit that changed state meanwhile.
- The call that trips the breaker raises its own exception, never a replacement (pybreaker's
  ``throw_new_error_on_trip=False``); the next call gets ``CircuitOpenError``.

Example:
    >>> breaker = CircuitBreaker("payments", fail_max=2, reset_timeout=30)
    >>> def charge() -> str:
    ...     raise ConnectionError("payments API unreachable")
    >>> for _ in range(2):
    ...     try:
    ...         breaker.call(charge)
    ...     except ConnectionError:
    ...         pass
    >>> breaker.state
    <BreakerState.OPEN: 'open'>
    >>> try:
    ...     breaker.call(charge)
    ... except CircuitOpenError as error:
    ...     print(error.code, error.retry_after <= 30)
    circuit_open True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

import pybreaker

from utils.core import UnavailableError, ValidationError, deprecated
from utils.core.report import Event
from utils.core.validate import duration, positive_int
from utils.resilience._breaker_classify import check_exclusions, counts_as_failure, make_predicate
from utils.resilience._breaker_memory import MemoryBreakerStorage
from utils.resilience._breaker_pybreaker import OBSERVER, PyBreaker, PybreakerStorageAdapter
from utils.resilience._breaker_state import (
    _CLOSED,
    _HALF_OPEN,
    _OPEN,
    Admission,
    BreakerOn,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    BreakerStorage,
    Clock,
    Exclusion,
    Outcome,
    Transition,
    _default_clock,
)
from utils.resilience._strategy import Strategy
from utils.resilience._validation import Problems
from utils.resilience.errors import ResilienceError


class CircuitOpenError(ResilienceError, UnavailableError, pybreaker.CircuitBreakerError):
    """The circuit is open: the call was refused without running.

    ``retry_after`` is the time until the breaker lets a trial call through. It is also a
    ``pybreaker.CircuitBreakerError``, so code written against pybreaker keeps working.

    Example:
        >>> err = CircuitOpenError("circuit 'payments' is open", retry_after=12.5)
        >>> err.code, err.retryable, isinstance(err, pybreaker.CircuitBreakerError)
        ('circuit_open', True, True)
    """

    default_code = "circuit_open"


__all__ = [
    "Admission",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStorage",
    "CircuitBreaker",
    "CircuitOpenError",
    "MemoryBreakerStorage",
    "Outcome",
    "Transition",
    "counts_as_failure",
]

P = ParamSpec("P")
R = TypeVar("R")

_LOGGER = "utils.resilience.breaker"
REJECTED = Event("breaker.rejected", logger=_LOGGER, level=None, tags=("breaker",))
PREDICATE_FAILED = Event(
    "breaker.predicate_failed", logger=_LOGGER, level="warning", tags=("breaker",)
)
LISTENER_FAILED = Event(
    "breaker.listener_failed", logger=_LOGGER, level="warning", tags=("breaker",)
)
# ----------------------------------------------------------------------------------------
# The breaker


def _block() -> None:
    """Stands for the body of a ``with breaker:`` block in listeners' ``before_call``."""


class CircuitBreaker(Strategy):
    """A circuit breaker for sync and async calls; decorator, ``call``/``acall`` and ``with``.

    Args:
        name: Identifies the breaker in logs, metrics and errors, and keys its shared state.
        fail_max: Consecutive counted failures that open the circuit.
        reset_timeout: Seconds the circuit stays open before a probe may run.
        success_threshold: Consecutive successful probes needed to close again.
        exclude: Exception types or predicates that never count (pybreaker's ``exclude``;
            also editable through ``breaker.pybreaker.add_excluded_exception``).
        on: Which exceptions count as failures: a type, a tuple of types, or a predicate.
            Default :func:`counts_as_failure` (transient errors and timeouts).
        storage: Where the state lives: ``None`` (private, in memory), a
            :class:`MemoryBreakerStorage`, a :class:`~utils.resilience.RedisBreakerStorage`
            (shared by every process), or any pybreaker storage (atomic per process only).
        listeners: pybreaker ``CircuitBreakerListener`` objects; their ``before_call``,
            ``success``, ``failure`` and ``state_change`` are called as pybreaker would. A
            listener that raises is logged (``breaker.listener_failed``) and skipped.
        probe_timeout: How long a half-open probe may hold its lease before another probe is
            let through. Default: ``reset_timeout`` (at least one second).
        clock: Monotonic clock for in-memory timing (default ``time.monotonic``). Redis
            storage uses the Redis server's clock instead.

    Every state change logs ``breaker.opened`` (warning), ``breaker.half_open`` or
    ``breaker.closed`` (info) and counts in the metrics sink; the success path logs nothing.
    A refused call counts ``breaker.rejected``.

    Example:
        >>> breaker = CircuitBreaker("geo", fail_max=3)
        >>> @breaker
        ... def locate(ip: str) -> str:
        ...     return "FR"
        >>> locate("192.0.2.1"), breaker.state
        ('FR', <BreakerState.CLOSED: 'closed'>)
    """

    __slots__ = ("_context", "_counts", "_name", "_pb", "_policy", "_reported", "_store")

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        success_threshold: int = 1,
        exclude: Iterable[Exclusion] = (),
        on: BreakerOn | None = None,
        storage: pybreaker.CircuitBreakerStorage | None = None,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
        probe_timeout: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a circuit breaker needs a non-empty name, got {name!r}")
        problems = Problems()
        problems.check(positive_int, fail_max, "fail_max")
        # A period and a lease: "infinite" would mean "never", which no breaker wants.
        reset = problems.check(
            duration, reset_timeout, "reset_timeout", allow_none=False, allow_infinite=False
        )
        problems.check(positive_int, success_threshold, "success_threshold")
        probe = problems.check(
            duration, probe_timeout, "probe_timeout", allow_zero=False, allow_infinite=False
        )
        problems.raise_if_any(f"invalid circuit breaker {name!r}")
        assert reset is not None
        if probe is None:
            probe = max(reset, 1.0)
        self._name = name
        self._policy = BreakerPolicy(fail_max, reset, success_threshold, probe)
        self._counts = make_predicate(on)
        exclusions = check_exclusions(exclude)
        clock = clock or _default_clock

        pb_storage: pybreaker.CircuitBreakerStorage
        if storage is None:
            store: BreakerStorage = MemoryBreakerStorage().attach(
                name, policy=self._policy, clock=clock
            )
            pb_storage = store
        elif isinstance(storage, BreakerStorage):
            store = pb_storage = storage.attach(name, policy=self._policy, clock=clock)
        elif isinstance(storage, pybreaker.CircuitBreakerStorage):
            store = PybreakerStorageAdapter(storage).attach(name, policy=self._policy, clock=clock)
            pb_storage = storage
        else:
            raise ValidationError(
                "storage= takes a MemoryBreakerStorage, a RedisBreakerStorage or a pybreaker "
                f"CircuitBreakerStorage, got {storage!r}"
            )
        self._store = store
        self._reported: set[str] = set()
        self._context: ContextVar[tuple[Admission, ...]] = ContextVar(
            f"utils.resilience.breaker:{name}", default=()
        )
        self._pb = PyBreaker(
            self,
            fail_max=fail_max,
            reset_timeout=reset,
            success_threshold=success_threshold,
            exclude=exclusions,
            listeners=[OBSERVER, *listeners],
            state_storage=pb_storage,
            name=name,
            throw_new_error_on_trip=False,
        )

    # -- properties ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name.

        Example:
            >>> CircuitBreaker("billing").name
            'billing'
        """
        return self._name

    @property
    def pybreaker(self) -> pybreaker.CircuitBreaker:
        """The underlying :class:`pybreaker.CircuitBreaker`, sharing this breaker's state.

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> breaker.pybreaker.current_state, breaker.pybreaker.fail_max
            ('closed', 5)
        """
        return self._pb

    @property
    def policy(self) -> BreakerPolicy:
        """The thresholds this breaker applies.

        Example:
            >>> CircuitBreaker("mail", fail_max=2).policy.fail_max
            2
        """
        return self._policy

    @property
    def storage(self) -> BreakerStorage:
        """The storage holding this breaker's state (after :meth:`BreakerStorage.attach`).

        Example:
            >>> isinstance(CircuitBreaker("mail").storage, MemoryBreakerStorage)
            True
        """
        return self._store

    @property
    def state(self) -> BreakerState:
        """The current state (one storage round trip with Redis).

        An open breaker whose ``reset_timeout`` has elapsed still reports ``open`` until a
        call arrives and becomes the probe (as pybreaker does). With an *async* Redis client
        this is the state last seen by this process; use :meth:`astate`.

        Example:
            >>> CircuitBreaker("mail").state == "closed"
            True
        """
        return self._store.snapshot(self._policy).state

    async def astate(self) -> BreakerState:
        """The current state, for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").astate())
            <BreakerState.CLOSED: 'closed'>
        """
        return (await self._store.asnapshot(self._policy)).state

    def snapshot(self) -> BreakerSnapshot:
        """State, counters and ``retry_after`` in one consistent read.

        Example:
            >>> CircuitBreaker("mail").snapshot().state
            <BreakerState.CLOSED: 'closed'>
        """
        return self._store.snapshot(self._policy)

    async def asnapshot(self) -> BreakerSnapshot:
        """:meth:`snapshot` for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").asnapshot()).failures
            0
        """
        return await self._store.asnapshot(self._policy)

    def _describe(self) -> str:
        return f"CircuitBreaker({self._name!r})"

    def __repr__(self) -> str:
        p = self._policy
        return (
            f"CircuitBreaker({self._name!r}, fail_max={p.fail_max}, "
            f"reset_timeout={p.reset_timeout:g}, success_threshold={p.success_threshold}, "
            f"storage={type(self._store).__name__})"
        )

    # -- forcing the state ----------------------------------------------------------------------

    def open(self) -> None:
        """Open the circuit now; calls are refused for ``reset_timeout``.

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> breaker.open()
            >>> breaker.state
            <BreakerState.OPEN: 'open'>
        """
        self._forced(self._store.force(_OPEN, self._policy))

    def half_open(self) -> None:
        """Half-open the circuit now: the next call is a probe.

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> breaker.half_open()
            >>> breaker.state
            <BreakerState.HALF_OPEN: 'half_open'>
        """
        self._forced(self._store.force(_HALF_OPEN, self._policy))

    def close(self) -> None:
        """Close the circuit now and forget counted failures (same as :meth:`reset`).

        Its async twin is :meth:`areset` (``aclose`` would read as "release resources").

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> breaker.open()
            >>> breaker.close()
            >>> breaker.state
            <BreakerState.CLOSED: 'closed'>
        """
        self._forced(self._store.force(_CLOSED, self._policy))

    def reset(self) -> None:
        """Close the circuit and forget counted failures.

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> breaker.open()
            >>> breaker.reset()
            >>> breaker.state
            <BreakerState.CLOSED: 'closed'>
        """
        self.close()

    async def aopen(self) -> None:
        """:meth:`open` for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").aopen())
        """
        self._forced(await self._store.aforce(_OPEN, self._policy))

    async def ahalf_open(self) -> None:
        """:meth:`half_open` for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").ahalf_open())
        """
        self._forced(await self._store.aforce(_HALF_OPEN, self._policy))

    async def areset(self) -> None:
        """:meth:`reset` (and :meth:`close`) for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").areset())
        """
        self._forced(await self._store.aforce(_CLOSED, self._policy))

    # ``aclose()`` means "release resources" everywhere else (redis.asyncio,
    # contextlib.aclosing), never "close the circuit": the async twin of close() is areset().
    aclose: ClassVar[Callable[[CircuitBreaker], Coroutine[Any, Any, None]]] = deprecated(
        since="0.1.0",
        removed_in="0.2.0",
        instead="areset() (aclose() means 'release resources' everywhere else)",
        name="aclose",
    )(areset)

    def _forced(self, transition: Transition) -> None:
        if transition.previous is not transition.state:
            self._notify_transitions((transition,))

    # -- calls ------------------------------------------------------------------------------------
    # Every way of calling (call, acall, with, async with) is a thin shell: ask the storage,
    # run the code, tell the storage. Deciding what an outcome means (_outcome), what to do
    # with an admission (_started) and reporting (_finished) are shared and do no I/O. The
    # success path is kept inline: it is the cost of every guarded call.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` if the circuit admits it; record how it ended.

        Raises:
            CircuitOpenError: the circuit is open (or half-open with a probe running).

        Example:
            >>> CircuitBreaker("mail").call(divmod, 7, 2)
            (3, 1)
        """
        policy = self._policy
        store = self._store
        admission = store.admit(policy)
        pb = self._pb
        if admission.notable or pb.before_listeners:
            self._started(admission, fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(admission, exc)
            raise
        transitions = store.record(admission, "success", policy)
        if transitions or pb.success_listeners:
            self._finished("success", None, transitions)
        return result

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` if the circuit admits it; record how it ended.

        Raises:
            CircuitOpenError: the circuit is open (or half-open with a probe running).

        Example:
            >>> import asyncio
            >>> async def ping() -> str:
            ...     return "pong"
            >>> asyncio.run(CircuitBreaker("mail").acall(ping))
            'pong'
        """
        store = self._store
        # A storage without I/O is called directly: no coroutine per call in memory.
        direct = store.nonblocking
        admission = store.admit(self._policy) if direct else await store.aadmit(self._policy)
        pb = self._pb
        if admission.notable or pb.before_listeners:
            self._started(admission, fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            # If this await is interrupted too, a probe's lease simply expires.
            await self._asettle(admission, exc)
            raise
        if direct:
            transitions = store.record(admission, "success", self._policy)
        else:
            transitions = await store.arecord(admission, "success", self._policy)
        if transitions or pb.success_listeners:
            self._finished("success", None, transitions)
        return result

    # -- with / async with -------------------------------------------------------------------

    def __enter__(self) -> CircuitBreaker:
        """Admit the block (or raise ``CircuitOpenError``); its outcome is recorded on exit.

        Example:
            >>> breaker = CircuitBreaker("mail")
            >>> with breaker:
            ...     total = 1 + 1
            >>> total
            2
        """
        self._entered(self._store.admit(self._policy))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._settle(self._exited(), exc)

    async def __aenter__(self) -> CircuitBreaker:
        """``async with breaker:`` — like ``with``, with async storage round trips.

        Example:
            >>> import asyncio
            >>> async def main() -> str:
            ...     async with CircuitBreaker("mail"):
            ...         return "sent"
            >>> asyncio.run(main())
            'sent'
        """
        self._entered(await self._store.aadmit(self._policy))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._asettle(self._exited(), exc)

    def _entered(self, admission: Admission) -> None:
        self._started(admission, _block, (), {})
        self._context.set((*self._context.get(), admission))

    def _exited(self) -> Admission:
        stack = self._context.get()
        if not stack:
            raise RuntimeError(f"{self._describe()} exited a block it did not enter")
        self._context.set(stack[:-1])
        return stack[-1]

    # -- the I/O-free core shared by every way of calling ---------------------------------------

    def _started(
        self, admission: Admission, fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        """An admission came back: report its transitions, refuse, or run the hooks."""
        if admission.transitions:
            self._notify_transitions(admission.transitions)
        if not admission.allowed:
            self._refuse(admission)
        for listener in self._pb.before_listeners:
            self._safely(listener, "before_call", self._pb, fn, *args, **kwargs)

    def _outcome(self, admission: Admission, exc: BaseException | None) -> Outcome | None:
        """What the storage must record for a call that ended with ``exc`` (None: nothing)."""
        if exc is None:
            return "success"
        if not isinstance(exc, Exception):
            # Cancellation, KeyboardInterrupt...: never counted; a probe gives its lease back.
            return "release" if admission.probe else None
        if self._is_counted(exc):
            return "failure"
        # Not counted: neutral when closed; for a probe, the dependency answered.
        return "success" if admission.probe else None

    def _settle(self, admission: Admission, exc: BaseException | None) -> None:
        outcome = self._outcome(admission, exc)
        transitions = self._store.record(admission, outcome, self._policy) if outcome else ()
        self._finished(outcome, exc, transitions)

    async def _asettle(self, admission: Admission, exc: BaseException | None) -> None:
        outcome = self._outcome(admission, exc)
        transitions = (
            await self._store.arecord(admission, outcome, self._policy) if outcome else ()
        )
        self._finished(outcome, exc, transitions)

    def _refuse(self, admission: Admission) -> None:
        REJECTED.emit(breaker=self._name)
        if admission.error is not None:
            error = CircuitOpenError(
                f"circuit {self._name!r} refused the call: its shared state is unreachable "
                "and the storage fails closed",
                details={"breaker": self._name, "reason": "storage_unavailable"},
            )
            raise error from admission.error
        if admission.state is _OPEN:
            message = f"circuit {self._name!r} is open"
        else:
            message = f"circuit {self._name!r} is half-open and its trial call is running"
        raise CircuitOpenError(
            message,
            retry_after=max(0.0, admission.retry_after),
            details={"breaker": self._name, "state": admission.state.value},
        )

    def _is_counted(self, exc: Exception) -> bool:
        try:
            return bool(self._counts(exc)) and not self._pb.is_excluded(exc)
        except Exception as error:  # a broken predicate must not hide the call's own error
            self._report_once("predicate", PREDICATE_FAILED, error)
            return True

    def _finished(
        self,
        outcome: Outcome | None,
        exc: BaseException | None,
        transitions: tuple[Transition, ...],
    ) -> None:
        pb = self._pb
        if outcome == "failure":
            for listener in pb.failure_listeners:
                self._safely(listener, "failure", pb, exc)
        elif outcome == "success":
            for listener in pb.success_listeners:
                self._safely(listener, "success", pb)
        if transitions:
            self._notify_transitions(transitions)

    def _notify_transitions(self, transitions: tuple[Transition, ...]) -> None:
        self._pb.notify(transitions, self._safely)

    def _safely(self, listener: Any, hook: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(listener, hook)(*args, **kwargs)
        except Exception as error:
            self._report_once(f"{id(listener)}:{hook}", LISTENER_FAILED, error)

    def _report_once(self, key: str, event: Event, error: Exception) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        event.emit(breaker=self._name, error=f"{type(error).__name__}: {error}", where=key)
