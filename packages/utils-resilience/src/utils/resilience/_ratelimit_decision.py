"""The answer of a rate limiter, and the interface of the storages that decide it.

Private: :class:`Decision` and :class:`RateLimitStorage` are public through
:mod:`utils.resilience.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any, NoReturn, Protocol, runtime_checkable

from utils.resilience._timing import Clock

__all__ = ["DEFAULT_KEY", "Decision", "RateLimitStorage"]

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
# ``cost is not _ONE`` on the hot paths: as cheap as ``!= 1`` and, unlike it, refuses True.
_ONE = 1


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
        >>> from utils.resilience import MemoryRateLimitStorage
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
