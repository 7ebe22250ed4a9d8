"""In-process breaker state: the state machine's rules and the default memory storage.

Private: :class:`MemoryBreakerStorage` is public through :mod:`utils.resilience.breaker`.
The rules (:class:`LocalStateMachine`) also serve the pybreaker storage adapter.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime

from utils.core import ValidationError
from utils.resilience import _forksafe
from utils.resilience._breaker_state import (
    _CLOSED,
    _HALF_OPEN,
    _NO_TRANSITIONS,
    _OPEN,
    _TO_PYBREAKER,
    _UTC,
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    BreakerStorage,
    Clock,
    Outcome,
    Transition,
    _default_clock,
)

__all__ = ["LocalStateMachine", "MemoryBreakerStorage", "aware"]


class LocalStateMachine:
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
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held it at the fork (see _forksafe).
        self._lock = threading.Lock()

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


class MemoryBreakerStorage(LocalStateMachine, BreakerStorage):
    """In-process breaker state: the default storage, thread- and task-safe.

    Each breaker created without ``storage=`` gets its own. Pass one instance to several
    breakers to make those with the same name share state within the process. Admission in
    the closed state reads two attributes and takes no lock.

    Example:
        >>> from utils.resilience import CircuitBreaker
        >>> storage = MemoryBreakerStorage()
        >>> CircuitBreaker("inventory", storage=storage).call(len, "abc")
        3
    """

    nonblocking = True

    def __init__(self) -> None:
        super().__init__("memory")
        self._init_machine(_default_clock)
        self._cells: dict[str, MemoryBreakerStorage] = {}
        self._cells_lock = threading.Lock()  # re-created after fork, as _lock
        self._bound_to: str | None = None
        self._state = _CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._opened_at_wall: datetime | None = None

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._cells_lock = threading.Lock()

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
            elapsed = (datetime.now(_UTC) - aware(value)).total_seconds()
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


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
