"""The circuit breaker's vocabulary: states, policy, admissions and the storage interface.

Private: everything here is re-exported by :mod:`utils.resilience.breaker`, the public home
of these names. Imports pybreaker (whose storage interface :class:`BreakerStorage` extends).
"""

from __future__ import annotations

import asyncio
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from enum import Enum
from typing import Literal, NamedTuple, TypeAlias

import pybreaker

from utils.core import ValidationError
from utils.resilience import _timing

__all__ = [
    "Admission",
    "BreakerOn",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStorage",
    "Clock",
    "Exclusion",
    "FailurePredicate",
    "Outcome",
    "Transition",
]

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
        >>> from utils.resilience import CircuitBreaker
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
        self.allowed: bool = allowed
        self.state: BreakerState = state
        self.generation: int = generation
        self.probe: bool = probe
        self.token: object = token
        self.retry_after: float = retry_after
        self.transitions: tuple[Transition, ...] = transitions
        self.clean: bool = clean
        self.error: BaseException | None = error
        #: Refused or transitioned — the caller has more to do than run the function.
        self.notable: bool = not allowed or bool(transitions)

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
        >>> from utils.resilience import CircuitBreaker, MemoryBreakerStorage
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
