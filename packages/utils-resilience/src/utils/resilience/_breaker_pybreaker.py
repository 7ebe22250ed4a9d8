"""Everything that touches pybreaker's internals, in one place (pybreaker>=1.2,<2).

- :class:`PybreakerStorageAdapter`: our atomic storage interface over a plain pybreaker
  storage (``CircuitMemoryStorage``, ``CircuitRedisStorage``...);
- :class:`PyBreaker`: the real ``pybreaker.CircuitBreaker`` behind every
  :class:`~utils.resilience.CircuitBreaker` (``breaker.pybreaker``), whose calls and state
  changes go through the owning breaker, and which keeps pybreaker's listeners informed;
- the listener that turns state changes into ``breaker.*`` events and metrics.

No other module reads or writes a private attribute of pybreaker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pybreaker

from utils.core.report import Event
from utils.resilience import _forksafe
from utils.resilience._breaker_memory import LocalStateMachine, aware
from utils.resilience._breaker_state import (
    _CLOSED,
    _FROM_NAME,
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

if TYPE_CHECKING:
    from utils.resilience.breaker import CircuitBreaker

__all__ = ["OBSERVER", "PyBreaker", "PybreakerStorageAdapter"]


class PybreakerStorageAdapter(LocalStateMachine, BreakerStorage):
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
    ) -> PybreakerStorageAdapter:
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
        deadline = aware(opened_at) + timedelta(seconds=policy.reset_timeout)
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
# Observability: a pybreaker listener, so pybreaker's own transitions are reported too.

_LOGGER = "utils.resilience.breaker"
OPENED = Event("breaker.opened", logger=_LOGGER, level="warning", tags=("breaker",))
HALF_OPENED = Event("breaker.half_open", logger=_LOGGER, level="info", tags=("breaker",))
CLOSED = Event("breaker.closed", logger=_LOGGER, level="info", tags=("breaker",))
#: 0 closed, 1 half-open, 2 open: a gauge only.
STATE = Event("breaker.state", logger=_LOGGER, level=None, tags=("breaker",), metric="gauge")

_EVENTS = {
    pybreaker.STATE_OPEN: (OPENED, 2.0),
    pybreaker.STATE_HALF_OPEN: (HALF_OPENED, 1.0),
    pybreaker.STATE_CLOSED: (CLOSED, 0.0),
}


class _ObservingListener(pybreaker.CircuitBreakerListener):
    """Reports ``breaker.opened`` / ``breaker.half_open`` / ``breaker.closed`` and the gauge.

    Each state change is logged and counted under its event's name, and sets the gauge
    ``breaker.state`` (0 closed, 1 half-open, 2 open), all tagged ``breaker=<name>``.
    """

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        event, gauge = _EVENTS[new_state.name]
        name = cb.name or ""
        previous = _FROM_NAME[old_state.name].value if old_state is not None else None
        event.emit(breaker=name, previous=previous)
        STATE.emit(breaker=name, value=gauge)


OBSERVER = _ObservingListener()
_BASE_LISTENER = pybreaker.CircuitBreakerListener


def _overrides(listener: object, hook: str) -> bool:
    return getattr(type(listener), hook, None) is not getattr(_BASE_LISTENER, hook)


class PyBreaker(pybreaker.CircuitBreaker):
    """The pybreaker object behind a :class:`CircuitBreaker` (``breaker.pybreaker``).

    Its calls, ``calling()``, ``open()``, ``close()`` and ``half_open()`` go through the
    owning breaker, so code written against pybreaker gets the concurrent behaviour too.
    """

    #: The listeners that override ``before_call`` / ``success`` / ``failure``: only they
    #: cost anything per call.
    before_listeners: tuple[Any, ...]
    success_listeners: tuple[Any, ...]
    failure_listeners: tuple[Any, ...]

    def __init__(self, owner: CircuitBreaker, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(**kwargs)
        self._refresh_hooks()
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()  # pybreaker's own lock (listeners, exclusions)

    def _refresh_hooks(self) -> None:
        # Only listeners that override a per-call hook cost anything per call.
        listeners = tuple(self._listeners)
        self.before_listeners = tuple(x for x in listeners if _overrides(x, "before_call"))
        self.success_listeners = tuple(x for x in listeners if _overrides(x, "success"))
        self.failure_listeners = tuple(x for x in listeners if _overrides(x, "failure"))

    def is_excluded(self, exc: BaseException) -> bool:
        """Whether ``exc`` matches one of pybreaker's exclusions (types or predicates).

        A predicate that raises propagates: the caller decides what that means.
        """
        for exclusion in self._excluded_exceptions:
            if isinstance(exclusion, type):
                if isinstance(exc, exclusion):
                    return True
            elif exclusion(exc):
                return True
        return False

    def notify(
        self,
        transitions: tuple[Transition, ...],
        safely: Callable[..., None],
    ) -> None:
        """Tell pybreaker's listeners about ``transitions`` (each through ``safely``)."""
        for transition in transitions:
            new = self._create_new_state(transition.state.pybreaker_name)
            cached = self._state
            old = (
                cached
                if cached.name == transition.previous.pybreaker_name
                else self._create_new_state(transition.previous.pybreaker_name)
            )
            self._state = new
            for listener in tuple(self._listeners):
                safely(listener, "state_change", self, old, new)

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
