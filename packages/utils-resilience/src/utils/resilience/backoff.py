"""Backoff schedules: how long to wait before retry number *n*.

Pure functions of the attempt number and a random source, so they are easy to test and
reason about. The jitter is applied *after* the cap: capped clients keep spreading out
instead of falling back into lock-step at the maximum (unlike stamina and tenacity's
``wait_exponential_jitter``, which add the jitter before capping, so once capped every
client waits exactly the maximum).

Example:
    >>> import random
    >>> backoff = Backoff(initial=0.1, maximum=10.0, multiplier=2.0, jitter="none")
    >>> [backoff.delay(n, previous=0.0, rng=random.Random(0)) for n in (1, 2, 3)]
    [0.1, 0.2, 0.4]
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, TypeAlias

from utils.core.validate import MAX_SECONDS, non_negative
from utils.resilience._validation import Problems

__all__ = ["Backoff", "Jitter"]

Jitter: TypeAlias = Literal["full", "equal", "decorrelated", "none"]
_JITTERS = ("full", "equal", "decorrelated", "none")


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a cap and a jitter strategy.

    Args:
        initial: The base delay before the first retry, in seconds.
        maximum: The cap, in seconds. No delay is ever longer.
        multiplier: Growth factor per attempt.
        jitter: ``"full"`` (uniform in ``[0, capped]``, the AWS recommendation),
            ``"equal"`` (half fixed, half random), ``"decorrelated"`` (uniform in
            ``[initial, previous * 3]``, capped) or ``"none"``.

    Example:
        >>> Backoff(initial=1.0, maximum=5.0, jitter="none").delay(10, 0.0, random.Random(1))
        5.0
    """

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        problems = Problems()
        problems.check(non_negative, self.initial, "initial")
        maximum = self.maximum
        if not (
            _real(maximum)
            and math.isfinite(maximum)
            and maximum <= MAX_SECONDS
            and (not _real(self.initial) or maximum >= self.initial)
        ):
            problems.add(
                f"maximum must be finite, at most {MAX_SECONDS:.0f} s and >= initial, "
                f"got {maximum!r}"
            )
        multiplier = self.multiplier
        if not (_real(multiplier) and math.isfinite(multiplier) and multiplier >= 1):
            problems.add(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        if self.jitter not in _JITTERS:
            problems.add(f"jitter must be one of {', '.join(_JITTERS)}, got {self.jitter!r}")
        problems.raise_if_any("invalid backoff")

    def capped(self, retry_number: int) -> float:
        """The delay before retry ``retry_number`` (1-based) without jitter, after the cap.

        Example:
            >>> Backoff(initial=0.5, maximum=3.0, jitter="none").capped(3)
            2.0
        """
        exponent = max(0, retry_number - 1)
        # Compare exponents, not values: multiplier ** exponent overflows for large n.
        if self.initial == 0:
            return 0.0
        # log(maximum) - log(initial), not log(maximum / initial): the quotient can overflow.
        if self.multiplier > 1 and exponent * math.log(self.multiplier) >= (
            math.log(self.maximum) - math.log(self.initial)
        ):
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier**exponent)

    def delay(self, retry_number: int, previous: float, rng: random.Random) -> float:
        """The jittered delay before retry ``retry_number`` (1-based).

        ``previous`` is the delay used before the previous retry (for decorrelated jitter).

        Example:
            >>> d = Backoff(initial=0.1, maximum=10.0).delay(3, 0.2, random.Random(7))
            >>> 0.0 <= d <= 0.4
            True
        """
        if self.jitter == "decorrelated":
            upper = max(self.initial, previous * 3.0)
            return min(self.maximum, rng.uniform(self.initial, upper))
        capped = self.capped(retry_number)
        if self.jitter == "full":
            return rng.uniform(0.0, capped)
        if self.jitter == "equal":
            return capped / 2.0 + rng.uniform(0.0, capped / 2.0)
        return capped
