"""The answer of a rate limiter, and the interface of the storages that decide it.

Private: :class:`Decision` and :class:`RateLimitStorage` are public through
:mod:`utils.resilience.ratelimit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, runtime_checkable

from utils.core.validate import MAX_SECONDS
from utils.resilience._timing import Clock

if TYPE_CHECKING:
    from utils.resilience.ratelimit import RateLimiter

__all__ = ["DEFAULT_KEY", "Decision", "RateLimitStorage"]

#: The key used when none is given (and by the limiter's own ``call`` / decorator).
DEFAULT_KEY = "default"

# Float arithmetic on absolute monotonic times carries rounding errors of ~1e-10 s; a
# request that is allowed in exact arithmetic must not be refused for that. One nanosecond
# of slack is far below any meaningful rate and far above the rounding.
_SLACK = 1e-9
# ... but the rounding grows with the clock's value: ``(tat + cost * T) - now`` is off by up
# to an ulp of the times, ~2.2e-16 of their size (2e-9 s once a monotonic clock reads 1e7 s,
# about four months of uptime). Two ulps more slack, checked only before refusing.
_RELATIVE_SLACK = 4.5e-16
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

    :meth:`headers` turns it into the HTTP rate-limit response headers.

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

    def headers(self, limiter: RateLimiter) -> dict[str, str]:
        """The HTTP response headers announcing this decision of ``limiter``.

        The fields of the IETF draft "RateLimit header fields for HTTP" as revision 06 names
        them — the names deployed clients and gateways read (revisions 08 and later merge
        them into ``RateLimit`` / ``RateLimit-Policy`` structured fields, not yet settled).
        For a GCRA limiter the quota is the burst, refilled at one request per
        ``emission_interval``:

        - ``RateLimit-Limit``: ``limiter.burst``, the most requests admitted at once;
        - ``RateLimit-Remaining``: :attr:`remaining`;
        - ``RateLimit-Reset``: seconds until the full burst is available again, rounded up
          (an upper bound: ``(burst - remaining) * emission_interval``, and never before
          ``Retry-After``);
        - ``RateLimit-Policy``: ``"<burst>;w=<seconds to refill it>"`` (window rounded up),
          e.g. ``10;w=6`` for 100 requests per minute in bursts of 10;
        - ``Retry-After`` (only when refused): :attr:`retry_after` in whole seconds, rounded
          up so that a client waiting that long is never early, and at least 1 so that
          a refused client never retries at once.

        Seconds are rounded up ignoring float noise below a nanosecond: a window that
        computes as ``6.000000000000001`` is announced as 6, not 7.

        Args:
            limiter: The :class:`~utils.resilience.RateLimiter` that made the decision.

        Example:
            >>> from utils.resilience import RateLimiter
            >>> limiter = RateLimiter(100, per=60, burst=10, clock=lambda: 0.0)
            >>> limiter.try_acquire("ann").headers(limiter)
            {'RateLimit-Limit': '10', 'RateLimit-Remaining': '9', 'RateLimit-Reset': '1', 'RateLimit-Policy': '10;w=6'}
            >>> for _ in range(9):
            ...     _ = limiter.try_acquire("ann")
            >>> refused = limiter.try_acquire("ann")
            >>> round(refused.retry_after, 3), refused.headers(limiter)["Retry-After"]
            (0.6, '1')
            >>> refused.headers(limiter)["RateLimit-Reset"]
            '6'
        """
        limit = limiter.burst
        interval = limiter.emission_interval
        left = self.remaining if self.remaining < limit else limit
        reset = (limit - left) * interval
        retry_after = 0
        if not self.allowed:
            retry_after = max(1, _whole_seconds(self.retry_after))
            reset = max(reset, retry_after)
        headers = {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(left),
            "RateLimit-Reset": str(_whole_seconds(reset)),
            "RateLimit-Policy": f"{limit};w={_whole_seconds(limit * interval)}",
        }
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        return headers


# The slot descriptors' own setters: fast, and they bypass the frozen __setattr__.
_set_allowed: Callable[[Decision, bool], None] = vars(Decision)["allowed"].__set__
_set_retry_after: Callable[[Decision, float], None] = vars(Decision)["retry_after"].__set__
_set_remaining: Callable[[Decision, int], None] = vars(Decision)["remaining"].__set__


def _whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to an int for an HTTP header, ignoring sub-nanosecond noise.

    ``10 * 0.6`` may compute as ``6.000000000000001``: that is 6 seconds, not 7. Waiting
    the rounded value is never early by more than the limiter's own slack, so the retry is
    admitted. A header must always be writable: NaN counts as 0 and anything beyond ten
    years (a fail-closed storage's ``inf``) as ten years.
    """
    if seconds < MAX_SECONDS:
        return math.ceil(seconds - _SLACK) if seconds > 0.0 else 0
    return 0 if math.isnan(seconds) else int(MAX_SECONDS)


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
