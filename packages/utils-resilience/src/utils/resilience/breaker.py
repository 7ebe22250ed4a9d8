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

import asyncio
import contextlib
import itertools
import math
import threading
from abc import ABCMeta, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from types import TracebackType
from typing import Any, Literal, NamedTuple, ParamSpec, TypeAlias, TypeVar, cast

import pybreaker

from utils.core import (
    OperationTimeoutError,
    UnavailableError,
    ValidationError,
    get_logger,
    is_transient,
)
from utils.core.metrics import get_metrics_sink
from utils.resilience import _timing
from utils.resilience._strategy import Strategy
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

Clock: TypeAlias = Callable[[], float]
Outcome: TypeAlias = Literal["success", "failure", "release"]
"""What a finished call reports to the storage; ``"release"`` only gives the probe lease back."""
FailurePredicate: TypeAlias = Callable[[BaseException], bool]
BreakerOn: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""What ``on=`` accepts — an exception type, a tuple of them, or a predicate."""
Exclusion: TypeAlias = type[BaseException] | Callable[[BaseException], bool]
"""What ``exclude=`` items are — an exception type or a predicate (as in pybreaker)."""

_log = get_logger("utils.resilience.breaker")
_UTC = timezone.utc


def _default_clock() -> float:
    # Looked up at call time, so a test (or instant_retries) can swap _timing.clock.
    return _timing.clock()


class BreakerState(str, Enum):
    """The three states of a circuit; compares equal to its string value.

    Example:
        >>> BreakerState.HALF_OPEN == "half_open", str(BreakerState.OPEN)
        (True, 'open')
        >>> BreakerState.from_pybreaker("half-open")
        <BreakerState.HALF_OPEN: 'half_open'>
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return str(self.value).__format__(format_spec)

    @property
    def pybreaker_name(self) -> str:
        """The name pybreaker uses for this state (``"half-open"`` with a dash).

        Example:
            >>> BreakerState.HALF_OPEN.pybreaker_name
            'half-open'
        """
        return _TO_PYBREAKER[self]

    @classmethod
    def from_pybreaker(cls, name: str) -> BreakerState:
        """Parse a pybreaker state name (or one of ours).

        Example:
            >>> BreakerState.from_pybreaker("closed")
            <BreakerState.CLOSED: 'closed'>
        """
        try:
            return _FROM_NAME[name]
        except KeyError:
            raise ValidationError(
                f"unknown circuit breaker state {name!r}; use closed, open or half_open"
            ) from None


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_TO_PYBREAKER = {
    _CLOSED: pybreaker.STATE_CLOSED,
    _OPEN: pybreaker.STATE_OPEN,
    _HALF_OPEN: pybreaker.STATE_HALF_OPEN,
}
_FROM_NAME = {
    pybreaker.STATE_CLOSED: _CLOSED,
    pybreaker.STATE_OPEN: _OPEN,
    pybreaker.STATE_HALF_OPEN: _HALF_OPEN,
    "half_open": _HALF_OPEN,
}


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The immutable thresholds of a breaker, handed to its storage on every operation.

    Example:
        >>> BreakerPolicy(fail_max=3, reset_timeout=10.0, success_threshold=1, probe_timeout=10.0)
        BreakerPolicy(fail_max=3, reset_timeout=10.0, success_threshold=1, probe_timeout=10.0)
    """

    fail_max: int
    reset_timeout: float
    success_threshold: int
    probe_timeout: float


class Transition(NamedTuple):
    """A state change made by a storage operation; ``generation`` is the new generation.

    Example:
        >>> Transition(BreakerState.CLOSED, BreakerState.OPEN, 1).state
        <BreakerState.OPEN: 'open'>
    """

    previous: BreakerState
    state: BreakerState
    generation: int


class BreakerSnapshot(NamedTuple):
    """A consistent view of a breaker's shared state.

    ``retry_after`` is the time until an open breaker admits a probe, or until the current
    probe's lease expires in half-open; 0 otherwise.

    Example:
        >>> CircuitBreaker("docs-snapshot").snapshot().failures
        0
    """

    state: BreakerState
    failures: int
    successes: int
    generation: int
    retry_after: float


class Admission:
    """A storage's answer to "may this call run?", handed back when recording its outcome.

    Attributes:
        allowed: Whether the call may run.
        state: The state the decision was made in (after any transition it made).
        generation: The generation the call belongs to; outcomes of older generations are
            ignored. Negative when the storage could not be asked (fail-open).
        probe: This call holds the half-open probe lease.
        token: Identifies the lease holder (storage-specific).
        retry_after: For a refusal, seconds until a call may be admitted.
        transitions: State changes this admission made (open -> half-open).
        clean: The closed breaker had no failures counted: a success need not be recorded.
        error: Why the storage could not decide (fail-closed refusals), if so.

    Example:
        >>> Admission(allowed=True, state=BreakerState.CLOSED, generation=0).notable
        False
    """

    __slots__ = (
        "allowed",
        "clean",
        "error",
        "generation",
        "notable",
        "probe",
        "retry_after",
        "state",
        "token",
        "transitions",
    )

    def __init__(
        self,
        *,
        allowed: bool,
        state: BreakerState,
        generation: int,
        probe: bool = False,
        token: object = None,
        retry_after: float = 0.0,
        transitions: tuple[Transition, ...] = (),
        clean: bool = False,
        error: BaseException | None = None,
    ) -> None:
        self.allowed = allowed
        self.state = state
        self.generation = generation
        self.probe = probe
        self.token = token
        self.retry_after = retry_after
        self.transitions = transitions
        self.clean = clean
        self.error = error
        #: Refused or transitioned — the caller has more to do than run the function.
        self.notable = not allowed or bool(transitions)

    def __repr__(self) -> str:
        return (
            f"Admission(allowed={self.allowed}, state={self.state.value!r}, "
            f"generation={self.generation}, probe={self.probe}, "
            f"retry_after={self.retry_after:g})"
        )


_NO_TRANSITIONS: tuple[Transition, ...] = ()


class BreakerStorage(pybreaker.CircuitBreakerStorage, metaclass=ABCMeta):
    """Where a breaker keeps its state: pybreaker's storage interface plus atomic operations.

    :class:`CircuitBreaker` drives a storage only through :meth:`admit`, :meth:`record`,
    :meth:`force` and :meth:`snapshot` (and their async twins), each *one* atomic step — one
    lock acquisition in memory, one Lua script in Redis. The pybreaker interface (``state``,
    ``counter``, ``success_counter``, ``opened_at``, ``increment_counter``, ...) is
    implemented too, so ``breaker.pybreaker`` reads the same truth.

    A storage object passed to several breakers is a *namespace*: :meth:`attach` returns the
    per-name state, and breakers with the same name (in this process, or in every process
    for :class:`~utils.resilience.RedisBreakerStorage`) share it.

    Example:
        >>> storage = MemoryBreakerStorage()
        >>> a = CircuitBreaker("search", storage=storage)
        >>> b = CircuitBreaker("search", storage=storage)
        >>> a.open()
        >>> b.state
        <BreakerState.OPEN: 'open'>
    """

    #: True when :meth:`admit` and :meth:`record` never block (no I/O), so ``acall`` may run
    #: them directly instead of awaiting :meth:`aadmit` / :meth:`arecord`.
    nonblocking: bool = False

    @abstractmethod
    def attach(
        self, name: str, *, policy: BreakerPolicy, clock: Clock | None = None
    ) -> BreakerStorage:
        """Return the storage holding the state of breaker ``name`` (shared per name).

        ``policy`` is what pybreaker's interface (which passes none) applies; ``clock`` is
        the monotonic clock of in-process storages (None: ``time.monotonic``).
        """

    @abstractmethod
    def admit(self, policy: BreakerPolicy) -> Admission:
        """Decide atomically whether a call may run (taking the probe lease in half-open)."""

    @abstractmethod
    def record(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """Record atomically how an admitted call ended; return the transitions made."""

    @abstractmethod
    def force(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        """Move to ``state`` now (a new generation, counters reset, lease released)."""

    @abstractmethod
    def snapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """Return the current state and counters."""

    async def aadmit(self, policy: BreakerPolicy) -> Admission:
        """:meth:`admit` for async code (by default in a worker thread when it may block)."""
        if self.nonblocking:
            return self.admit(policy)
        return await asyncio.to_thread(self.admit, policy)

    async def arecord(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """:meth:`record` for async code (by default in a worker thread when it may block)."""
        if self.nonblocking:
            return self.record(admission, outcome, policy)
        return await asyncio.to_thread(self.record, admission, outcome, policy)

    async def aforce(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        """:meth:`force` for async code (by default in a worker thread when it may block)."""
        if self.nonblocking:
            return self.force(state, policy)
        return await asyncio.to_thread(self.force, state, policy)

    async def asnapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """:meth:`snapshot` for async code (by default in a worker thread when it may block)."""
        if self.nonblocking:
            return self.snapshot(policy)
        return await asyncio.to_thread(self.snapshot, policy)


class _LocalStateMachine:
    """The in-process state machine shared by the memory storage and the pybreaker adapter.

    Subclasses store the state; this class owns the rules. Every method ending in
    ``_locked`` runs with ``self._lock`` held.
    """

    _lock: threading.Lock
    _clock: Clock
    _generation: int
    _lease: int
    _lease_expires: float
    _closed_admission: Admission
    _tokens: Iterator[int]

    def _init_machine(self, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._generation = 0
        self._lease = 0  # the token of the probe holding the lease; 0 = free
        self._lease_expires = 0.0
        self._closed_admission = Admission(allowed=True, state=_CLOSED, generation=0)
        self._tokens = itertools.count(1)

    # -- what subclasses store ------------------------------------------------------------

    def _current(self) -> BreakerState:
        raise NotImplementedError

    def _open_remaining(self, policy: BreakerPolicy, now: float) -> float:
        raise NotImplementedError

    def _failures_now(self) -> int:
        raise NotImplementedError

    def _count_failure(self) -> int:
        raise NotImplementedError

    def _reset_failures(self) -> None:
        raise NotImplementedError

    def _count_success(self) -> int:
        raise NotImplementedError

    def _write_state(self, old: BreakerState, new: BreakerState, now: float) -> None:
        raise NotImplementedError

    def _successes_now(self) -> int:
        raise NotImplementedError

    # -- the rules --------------------------------------------------------------------------

    def _enter_locked(self, new: BreakerState, now: float) -> Transition:
        old = self._current()
        self._generation += 1
        generation = self._generation
        self._lease = 0
        if new is _CLOSED:
            # Published before the state, so a lock-free reader that sees "closed" gets an
            # admission of the new generation.
            self._closed_admission = Admission(allowed=True, state=_CLOSED, generation=generation)
        self._write_state(old, new, now)
        return Transition(old, new, generation)

    def _take_lease_locked(self, policy: BreakerPolicy, now: float) -> int:
        token = next(self._tokens)
        self._lease = token
        self._lease_expires = now + policy.probe_timeout
        return token

    def _admit_locked(self, policy: BreakerPolicy) -> Admission:
        state = self._current()
        if state is _CLOSED:
            return self._closed_admission
        now = self._clock()
        if state is _OPEN:
            remaining = self._open_remaining(policy, now)
            if remaining > 0:
                return Admission(
                    allowed=False, state=_OPEN, generation=self._generation, retry_after=remaining
                )
            transition = self._enter_locked(_HALF_OPEN, now)
            token = self._take_lease_locked(policy, now)
            return Admission(
                allowed=True,
                state=_HALF_OPEN,
                generation=self._generation,
                probe=True,
                token=token,
                transitions=(transition,),
            )
        if self._lease and now < self._lease_expires:
            return Admission(
                allowed=False,
                state=_HALF_OPEN,
                generation=self._generation,
                retry_after=self._lease_expires - now,
            )
        token = self._take_lease_locked(policy, now)
        return Admission(
            allowed=True, state=_HALF_OPEN, generation=self._generation, probe=True, token=token
        )

    def _record_locked(  # noqa: PLR0911 - one return per rule of the state machine
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        if admission.generation != self._generation:
            return _NO_TRANSITIONS  # a call of an older generation: too late to matter
        state = self._current()
        if state is _CLOSED:
            if outcome == "failure":
                if self._count_failure() >= policy.fail_max:
                    return (self._enter_locked(_OPEN, self._clock()),)
            elif outcome == "success" and self._failures_now():
                self._reset_failures()
            return _NO_TRANSITIONS
        if state is not _HALF_OPEN or not admission.probe:
            return _NO_TRANSITIONS
        if self._lease and self._lease != admission.token:
            return _NO_TRANSITIONS  # the lease expired and another probe took it over
        self._lease = 0
        if outcome == "failure":
            return (self._enter_locked(_OPEN, self._clock()),)
        if outcome == "success" and self._count_success() >= policy.success_threshold:
            return (self._enter_locked(_CLOSED, self._clock()),)
        return _NO_TRANSITIONS

    def _snapshot_locked(self, policy: BreakerPolicy) -> BreakerSnapshot:
        state = self._current()
        retry_after = 0.0
        if state is _OPEN:
            retry_after = max(0.0, self._open_remaining(policy, self._clock()))
        elif state is _HALF_OPEN and self._lease:
            retry_after = max(0.0, self._lease_expires - self._clock())
        return BreakerSnapshot(
            state, self._failures_now(), self._successes_now(), self._generation, retry_after
        )


class MemoryBreakerStorage(_LocalStateMachine, BreakerStorage):
    """In-process breaker state: the default storage, thread- and task-safe.

    Each breaker created without ``storage=`` gets its own. Pass one instance to several
    breakers to make those with the same name share state within the process. Admission in
    the closed state reads two attributes and takes no lock.

    Example:
        >>> storage = MemoryBreakerStorage()
        >>> CircuitBreaker("inventory", storage=storage).call(len, "abc")
        3
    """

    nonblocking = True

    def __init__(self) -> None:
        super().__init__("memory")
        self._init_machine(_default_clock)
        self._cells: dict[str, MemoryBreakerStorage] = {}
        self._cells_lock = threading.Lock()
        self._bound_to: str | None = None
        self._state = _CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._opened_at_wall: datetime | None = None

    def attach(
        self, name: str, *, policy: BreakerPolicy, clock: Clock | None = None
    ) -> MemoryBreakerStorage:
        """Return the state of breaker ``name`` in this storage (created on first use).

        Example:
            >>> storage = MemoryBreakerStorage()
            >>> policy = BreakerPolicy(5, 30.0, 1, 30.0)
            >>> storage.attach("a", policy=policy) is storage.attach("a", policy=policy)
            True
        """
        if self._bound_to is not None:
            if name != self._bound_to:
                raise ValidationError(
                    f"this storage holds the state of breaker {self._bound_to!r}; "
                    f"pass the MemoryBreakerStorage() itself to breaker {name!r}"
                )
            return self
        with self._cells_lock:
            cell = self._cells.get(name)
            if cell is None:
                cell = self._cells[name] = MemoryBreakerStorage()
                cell._bound_to = name
                cell._clock = clock or _default_clock
        return cell

    # -- the atomic interface ----------------------------------------------------------------

    def admit(self, policy: BreakerPolicy) -> Admission:
        """Admit a call: lock-free when closed; see :class:`BreakerStorage`.

        Example:
            >>> storage = MemoryBreakerStorage()
            >>> storage.admit(BreakerPolicy(5, 30.0, 1, 30.0)).allowed
            True
        """
        if self._state is _CLOSED:
            return self._closed_admission
        with self._lock:
            return self._admit_locked(policy)

    def record(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """Record an outcome: lock-free for a success with nothing to reset.

        Example:
            >>> storage, policy = MemoryBreakerStorage(), BreakerPolicy(1, 30.0, 1, 30.0)
            >>> storage.record(storage.admit(policy), "failure", policy)[0].state
            <BreakerState.OPEN: 'open'>
        """
        if outcome == "success":
            if admission is self._closed_admission and not self._failures:
                return _NO_TRANSITIONS
        elif outcome == "release" and not admission.probe:
            return _NO_TRANSITIONS
        with self._lock:
            return self._record_locked(admission, outcome, policy)

    def force(self, state: BreakerState, policy: BreakerPolicy | None = None) -> Transition:
        """Move to ``state`` now.

        Example:
            >>> MemoryBreakerStorage().force(BreakerState.OPEN).previous
            <BreakerState.CLOSED: 'closed'>
        """
        with self._lock:
            return self._enter_locked(state, self._clock())

    def snapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """Return the current state and counters.

        Example:
            >>> MemoryBreakerStorage().snapshot(BreakerPolicy(5, 30.0, 1, 30.0)).state
            <BreakerState.CLOSED: 'closed'>
        """
        with self._lock:
            return self._snapshot_locked(policy)

    # -- storage of the state machine --------------------------------------------------------

    def _current(self) -> BreakerState:
        return self._state

    def _open_remaining(self, policy: BreakerPolicy, now: float) -> float:
        return self._opened_at + policy.reset_timeout - now

    def _failures_now(self) -> int:
        return self._failures

    def _successes_now(self) -> int:
        return self._successes

    def _count_failure(self) -> int:
        self._failures += 1
        return self._failures

    def _reset_failures(self) -> None:
        self._failures = 0

    def _count_success(self) -> int:
        self._successes += 1
        return self._successes

    def _write_state(self, old: BreakerState, new: BreakerState, now: float) -> None:
        self._successes = 0
        if new is _OPEN:
            self._opened_at = now
            self._opened_at_wall = datetime.now(_UTC)
        else:
            self._failures = 0
        self._state = new

    # -- pybreaker's CircuitBreakerStorage interface -----------------------------------------

    @property
    def state(self) -> str:
        """The state in pybreaker's spelling (``"closed"``, ``"open"``, ``"half-open"``)."""
        return _TO_PYBREAKER[self._state]

    @state.setter
    def state(self, state: str) -> None:
        self.force(BreakerState.from_pybreaker(state))

    @property
    def counter(self) -> int:
        """Consecutive counted failures (pybreaker's ``fail_counter``)."""
        return self._failures

    @property
    def success_counter(self) -> int:
        """Consecutive successful probes in half-open."""
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit last opened (UTC), for pybreaker; timing uses the monotonic clock."""
        return self._opened_at_wall

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        with self._lock:
            self._opened_at_wall = value
            # Keep pybreaker's meaning: the timeout counts from this wall-clock instant.
            elapsed = (datetime.now(_UTC) - _aware(value)).total_seconds()
            self._opened_at = self._clock() - elapsed

    def increment_counter(self) -> None:
        """Add one counted failure."""
        with self._lock:
            self._failures += 1

    def reset_counter(self) -> None:
        """Forget the counted failures."""
        with self._lock:
            self._failures = 0

    def increment_success_counter(self) -> None:
        """Add one successful probe."""
        with self._lock:
            self._successes += 1

    def reset_success_counter(self) -> None:
        """Forget the successful probes."""
        with self._lock:
            self._successes = 0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


class _PybreakerStorageAdapter(_LocalStateMachine, BreakerStorage):
    """Our atomic interface over a plain pybreaker storage (CircuitMemoryStorage, ...).

    Atomic within this process only (a lock around the storage's primitive operations);
    another process sharing a ``CircuitRedisStorage`` can interleave. Changes made by
    others are noticed (the generation moves on) and their ``opened_at`` (wall clock) is
    honoured. Use :class:`~utils.resilience.RedisBreakerStorage` for real multi-process
    state.
    """

    def __init__(self, wrapped: pybreaker.CircuitBreakerStorage) -> None:
        super().__init__(wrapped.name)
        self.wrapped = wrapped
        self.nonblocking = isinstance(wrapped, pybreaker.CircuitMemoryStorage)
        self._init_machine(_default_clock)
        self._seen = _FROM_NAME.get(wrapped.state, _CLOSED)
        self._opened_local: float | None = None

    def attach(
        self, name: str, *, policy: BreakerPolicy, clock: Clock | None = None
    ) -> _PybreakerStorageAdapter:
        self._clock = clock or _default_clock
        return self

    def _sync_locked(self) -> BreakerState:
        current = _FROM_NAME.get(self.wrapped.state, _CLOSED)
        if current is not self._seen:
            # Someone else (another process, or code using the storage directly) moved it.
            self._generation += 1
            self._seen = current
            self._opened_local = None
            self._lease = 0
            if current is _CLOSED:
                self._closed_admission = Admission(
                    allowed=True, state=_CLOSED, generation=self._generation
                )
        return current

    def admit(self, policy: BreakerPolicy) -> Admission:
        if self._seen is _CLOSED and self.wrapped.state == pybreaker.STATE_CLOSED:
            return self._closed_admission
        with self._lock:
            self._sync_locked()
            return self._admit_locked(policy)

    def record(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        if outcome == "release" and not admission.probe:
            return _NO_TRANSITIONS
        with self._lock:
            self._sync_locked()
            return self._record_locked(admission, outcome, policy)

    def force(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        with self._lock:
            self._sync_locked()
            return self._enter_locked(state, self._clock())

    def snapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        with self._lock:
            self._sync_locked()
            return self._snapshot_locked(policy)

    def _current(self) -> BreakerState:
        return self._seen

    def _open_remaining(self, policy: BreakerPolicy, now: float) -> float:
        if self._opened_local is not None:
            return self._opened_local + policy.reset_timeout - now
        opened_at = self.wrapped.opened_at
        if opened_at is None:
            return 0.0
        deadline = _aware(opened_at) + timedelta(seconds=policy.reset_timeout)
        return (deadline - datetime.now(_UTC)).total_seconds()

    def _failures_now(self) -> int:
        return self.wrapped.counter

    def _successes_now(self) -> int:
        return self.wrapped.success_counter

    def _count_failure(self) -> int:
        self.wrapped.increment_counter()
        return self.wrapped.counter

    def _reset_failures(self) -> None:
        self.wrapped.reset_counter()

    def _count_success(self) -> int:
        self.wrapped.increment_success_counter()
        return self.wrapped.success_counter

    def _write_state(self, old: BreakerState, new: BreakerState, now: float) -> None:
        wrapped = self.wrapped
        wrapped.reset_success_counter()
        if new is _OPEN:
            wrapped.opened_at = datetime.now(_UTC)
            self._opened_local = now
        else:
            wrapped.reset_counter()
        wrapped.state = _TO_PYBREAKER[new]
        self._seen = new

    # pybreaker's interface: the wrapped storage answers (pybreaker itself is given it).
    @property
    def state(self) -> str:
        return self.wrapped.state

    @state.setter
    def state(self, state: str) -> None:
        self.wrapped.state = state

    @property
    def counter(self) -> int:
        return self.wrapped.counter

    @property
    def success_counter(self) -> int:
        return self.wrapped.success_counter

    @property
    def opened_at(self) -> datetime | None:
        return self.wrapped.opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.wrapped.opened_at = value


# ----------------------------------------------------------------------------------------
# Classification


_TIMEOUTS = (OperationTimeoutError, TimeoutError, asyncio.TimeoutError)


def counts_as_failure(exc: BaseException) -> bool:
    """The default ``on`` of :class:`CircuitBreaker`: transient errors and timeouts.

    :func:`utils.core.is_transient` (connection errors, 5xx/throttling of installed drivers,
    ``UnavailableError``...) plus every timeout, including
    :class:`~utils.core.OperationTimeoutError`, which is not retryable but says the
    dependency is too slow — exactly what a breaker is for. A ``NotFoundError`` or a
    ``ValueError`` says nothing about the dependency's health and is not counted.

    Example:
        >>> from utils.core import NotFoundError
        >>> counts_as_failure(ConnectionResetError()), counts_as_failure(NotFoundError("x"))
        (True, False)
        >>> counts_as_failure(OperationTimeoutError("deadline exceeded"))
        True
    """
    return isinstance(exc, _TIMEOUTS) or is_transient(exc)


def _make_predicate(on: object) -> FailurePredicate:
    if on is None:
        return counts_as_failure
    if isinstance(on, type) and issubclass(on, BaseException):
        exc_type: type[BaseException] = on

        def is_instance(exc: BaseException) -> bool:
            return isinstance(exc, exc_type)

        return is_instance
    if isinstance(on, tuple) and on:
        if all(isinstance(item, type) and issubclass(item, BaseException) for item in on):
            exc_types: tuple[type[BaseException], ...] = on

            def is_any(exc: BaseException) -> bool:
                return isinstance(exc, exc_types)

            return is_any
    elif callable(on):
        return cast("FailurePredicate", on)
    raise ValidationError(
        f"on= takes an exception type, a non-empty tuple of them, or a predicate "
        f"(exception -> bool), got {on!r}"
    )


def _check_exclusions(exclude: Iterable[object]) -> list[Exclusion]:
    checked: list[Exclusion] = []
    for item in exclude:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise ValidationError(
                    f"exclude= takes exception types or predicates, got {item!r}"
                )
            checked.append(item)
        elif callable(item):
            checked.append(item)
        else:
            raise ValidationError(f"exclude= takes exception types or predicates, got {item!r}")
    return checked


# ----------------------------------------------------------------------------------------
# Observability: a pybreaker listener, so pybreaker's own transitions are reported too.

_EVENTS = {
    pybreaker.STATE_OPEN: ("breaker.opened", "warning", 2.0),
    pybreaker.STATE_HALF_OPEN: ("breaker.half_open", "info", 1.0),
    pybreaker.STATE_CLOSED: ("breaker.closed", "info", 0.0),
}


class _ObservingListener(pybreaker.CircuitBreakerListener):
    """Logs ``breaker.opened`` / ``breaker.half_open`` / ``breaker.closed`` and feeds metrics.

    Metrics: a counter of the event's name and the gauge ``breaker.state`` (0 closed,
    1 half-open, 2 open), both tagged ``breaker=<name>``.
    """

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        event, level, gauge = _EVENTS[new_state.name]
        name = cb.name or ""
        previous = _FROM_NAME[old_state.name].value if old_state is not None else None
        getattr(_log, level)(event, breaker=name, previous=previous)
        tags = {"breaker": name}
        sink = get_metrics_sink()
        sink.increment(event, tags=tags)
        sink.gauge("breaker.state", gauge, tags=tags)


_OBSERVER = _ObservingListener()
_BASE_LISTENER = pybreaker.CircuitBreakerListener


def _overrides(listener: object, hook: str) -> bool:
    return getattr(type(listener), hook, None) is not getattr(_BASE_LISTENER, hook)


class _PyBreaker(pybreaker.CircuitBreaker):
    """The pybreaker object behind a :class:`CircuitBreaker` (``breaker.pybreaker``).

    Its calls, ``calling()``, ``open()``, ``close()`` and ``half_open()`` go through the
    owning breaker, so code written against pybreaker gets the concurrent behaviour too.
    """

    _before: tuple[Any, ...]
    _success: tuple[Any, ...]
    _failure: tuple[Any, ...]

    def __init__(self, owner: CircuitBreaker, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(**kwargs)
        self._refresh_hooks()

    def _refresh_hooks(self) -> None:
        # Only listeners that override a per-call hook cost anything per call.
        listeners = tuple(self._listeners)
        self._before = tuple(x for x in listeners if _overrides(x, "before_call"))
        self._success = tuple(x for x in listeners if _overrides(x, "success"))
        self._failure = tuple(x for x in listeners if _overrides(x, "failure"))

    def add_listener(self, listener: Any) -> None:
        """Register a listener (see pybreaker)."""
        super().add_listener(listener)
        self._refresh_hooks()

    def remove_listener(self, listener: Any) -> None:
        """Unregister a listener (see pybreaker)."""
        super().remove_listener(listener)
        self._refresh_hooks()

    @property
    def state(self) -> Any:
        """The pybreaker state object, synced with the storage without side effects.

        pybreaker's own getter would reset the shared failure counter when it notices
        another process's change (pybreaker#26); this one only refreshes the cached object.
        """
        current = self.current_state
        cached = self._state
        if current != cached.name:
            cached = self._state = self._create_new_state(current, prev_state=cached)
        return cached

    @state.setter
    def state(self, state_str: str) -> None:
        pybreaker.CircuitBreaker.state.fset(self, state_str)  # type: ignore[attr-defined]

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``func`` through the owning :class:`CircuitBreaker`."""
        return self._owner.call(func, *args, **kwargs)

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """The owning breaker as a ``with`` block."""
        with self._owner:
            yield

    def open(self) -> bool:
        """Open the circuit now (see :meth:`CircuitBreaker.open`)."""
        self._owner.open()
        return self._throw_new_error_on_trip

    def half_open(self) -> None:
        """Half-open the circuit now (see :meth:`CircuitBreaker.half_open`)."""
        self._owner.half_open()

    def close(self) -> None:
        """Close the circuit now (see :meth:`CircuitBreaker.close`)."""
        self._owner.close()


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
        problems = []
        if isinstance(fail_max, bool) or not isinstance(fail_max, int) or fail_max < 1:
            problems.append(f"fail_max must be an int >= 1, got {fail_max!r}")
        if not _non_negative(reset_timeout):
            problems.append(f"reset_timeout must be a finite number >= 0, got {reset_timeout!r}")
        if (
            isinstance(success_threshold, bool)
            or not isinstance(success_threshold, int)
            or success_threshold < 1
        ):
            problems.append(f"success_threshold must be an int >= 1, got {success_threshold!r}")
        if probe_timeout is None:
            probe_timeout = max(float(reset_timeout), 1.0) if not problems else 1.0
        elif not (_non_negative(probe_timeout) and probe_timeout > 0):
            problems.append(f"probe_timeout must be a finite number > 0, got {probe_timeout!r}")
        if problems:
            raise ValidationError(f"invalid circuit breaker {name!r}: " + "; ".join(problems))
        self._name = name
        self._policy = BreakerPolicy(
            fail_max, float(reset_timeout), success_threshold, float(probe_timeout)
        )
        self._counts = _make_predicate(on)
        exclusions = _check_exclusions(exclude)
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
            store = _PybreakerStorageAdapter(storage).attach(
                name, policy=self._policy, clock=clock
            )
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
        self._pb = _PyBreaker(
            self,
            fail_max=fail_max,
            reset_timeout=float(reset_timeout),
            success_threshold=success_threshold,
            exclude=exclusions,
            listeners=[_OBSERVER, *listeners],
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

    async def aclose(self) -> None:
        """:meth:`close` for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").aclose())
        """
        self._forced(await self._store.aforce(_CLOSED, self._policy))

    async def areset(self) -> None:
        """:meth:`reset` for async code.

        Example:
            >>> import asyncio
            >>> asyncio.run(CircuitBreaker("mail").areset())
        """
        await self.aclose()

    def _forced(self, transition: Transition) -> None:
        if transition.previous is not transition.state:
            self._notify_transitions((transition,))

    # -- calls ------------------------------------------------------------------------------------

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
        if admission.notable:
            self._admitted(admission)
        pb = self._pb
        if pb._before:
            self._before_call(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            outcome = self._classify(admission, exc)
            transitions = store.record(admission, outcome, policy) if outcome else ()
            self._finished(outcome, exc, transitions)
            raise
        except BaseException:
            if admission.probe:
                store.record(admission, "release", policy)
            raise
        transitions = store.record(admission, "success", policy)
        if transitions or pb._success:
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
        policy = self._policy
        store = self._store
        direct = store.nonblocking
        admission = store.admit(policy) if direct else await store.aadmit(policy)
        if admission.notable:
            self._admitted(admission)
        pb = self._pb
        if pb._before:
            self._before_call(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            outcome = self._classify(admission, exc)
            transitions: tuple[Transition, ...] = ()
            if outcome:
                transitions = (
                    store.record(admission, outcome, policy)
                    if direct
                    else await store.arecord(admission, outcome, policy)
                )
            self._finished(outcome, exc, transitions)
            raise
        except BaseException:
            if admission.probe:
                if direct:
                    store.record(admission, "release", policy)
                else:
                    # If this await is interrupted too, the lease simply expires.
                    await store.arecord(admission, "release", policy)
            raise
        transitions = (
            store.record(admission, "success", policy)
            if direct
            else await store.arecord(admission, "success", policy)
        )
        if transitions or pb._success:
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
        admission = self._store.admit(self._policy)
        self._entered(admission)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        admission = self._exited()
        outcome: Outcome | None
        if exc is None:
            outcome = "success"
        elif isinstance(exc, Exception):
            outcome = self._classify(admission, exc)
        else:
            outcome = "release" if admission.probe else None
        transitions = self._store.record(admission, outcome, self._policy) if outcome else ()
        self._finished(outcome, exc, transitions)

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
        admission = await self._store.aadmit(self._policy)
        self._entered(admission)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        admission = self._exited()
        outcome: Outcome | None
        if exc is None:
            outcome = "success"
        elif isinstance(exc, Exception):
            outcome = self._classify(admission, exc)
        else:
            outcome = "release" if admission.probe else None
        transitions: tuple[Transition, ...] = ()
        if outcome:
            transitions = await self._store.arecord(admission, outcome, self._policy)
        self._finished(outcome, exc, transitions)

    def _entered(self, admission: Admission) -> None:
        if admission.notable:
            self._admitted(admission)
        if self._pb._before:
            self._before_call(_block, (), {})
        self._context.set((*self._context.get(), admission))

    def _exited(self) -> Admission:
        stack = self._context.get()
        if not stack:
            raise RuntimeError(f"{self._describe()} exited a block it did not enter")
        self._context.set(stack[:-1])
        return stack[-1]

    # -- slow paths shared by every way of calling ---------------------------------------------

    def _admitted(self, admission: Admission) -> None:
        if admission.transitions:
            self._notify_transitions(admission.transitions)
        if not admission.allowed:
            self._refuse(admission)

    def _refuse(self, admission: Admission) -> None:
        get_metrics_sink().increment("breaker.rejected", tags={"breaker": self._name})
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

    def _classify(self, admission: Admission, exc: Exception) -> Outcome | None:
        if self._is_counted(exc):
            return "failure"
        # Not counted: neutral when closed; for a probe, the dependency answered.
        return "success" if admission.probe else None

    def _is_counted(self, exc: Exception) -> bool:
        try:
            if not self._counts(exc):
                return False
            for exclusion in self._pb._excluded_exceptions:
                if isinstance(exclusion, type):
                    if isinstance(exc, exclusion):
                        return False
                elif exclusion(exc):
                    return False
        except Exception as error:  # a broken predicate must not hide the call's own error
            self._report_once("predicate", "breaker.predicate_failed", error)
            return True
        return True

    def _finished(
        self,
        outcome: Outcome | None,
        exc: BaseException | None,
        transitions: tuple[Transition, ...],
    ) -> None:
        pb = self._pb
        if outcome == "failure":
            for listener in pb._failure:
                self._safely(listener, "failure", pb, exc)
        elif outcome == "success":
            for listener in pb._success:
                self._safely(listener, "success", pb)
        if transitions:
            self._notify_transitions(transitions)

    def _before_call(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        pb = self._pb
        for listener in pb._before:
            self._safely(listener, "before_call", pb, fn, *args, **kwargs)

    def _notify_transitions(self, transitions: tuple[Transition, ...]) -> None:
        pb = self._pb
        for transition in transitions:
            new = pb._create_new_state(transition.state.pybreaker_name)
            cached = pb._state
            old = (
                cached
                if cached.name == transition.previous.pybreaker_name
                else pb._create_new_state(transition.previous.pybreaker_name)
            )
            pb._state = new
            for listener in tuple(pb._listeners):
                self._safely(listener, "state_change", pb, old, new)

    def _safely(self, listener: Any, hook: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(listener, hook)(*args, **kwargs)
        except Exception as error:
            self._report_once(f"{id(listener)}:{hook}", "breaker.listener_failed", error)

    def _report_once(self, key: str, event: str, error: Exception) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        _log.warning(
            event, breaker=self._name, error=f"{type(error).__name__}: {error}", where=key
        )


def _non_negative(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
