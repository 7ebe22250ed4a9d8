"""Argument checks shared by the whole family: one wording, one set of rules.

Every ``utils`` package validates its constructor arguments with these helpers, so the same
mistake gets the same :class:`~utils.core.ValidationError` everywhere. The rules:

- ``bool`` is never a number (``timeout(True)`` is a bug, not one second);
- NaN and negative values are refused where they make no sense;
- a duration is seconds (``int`` / ``float``) or a ``datetime.timedelta``; ``math.inf`` means
  "no limit" where a limit is optional, and a finite value beyond :data:`MAX_SECONDS` (ten
  years) is refused as absurd — it would overflow ``threading`` waits and Redis ``PX`` later,
  far from the line that asked for it;
- boolean words from the environment or a URL come from one table (:data:`TRUE_WORDS`,
  :data:`FALSE_WORDS`).

Example:
    >>> from datetime import timedelta
    >>> from utils.core.validate import duration, positive
    >>> duration(timedelta(minutes=1), "ttl")
    60.0
    >>> duration(float("inf"), "timeout") is None  # no limit
    True
    >>> positive(True, "rate")
    Traceback (most recent call last):
    ...
    utils.core.errors.ValidationError: rate must be a finite number > 0, got True
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import timedelta
from typing import Any, TypeVar

from utils.core.errors import ValidationError

__all__ = [
    "FALSE_WORDS",
    "MAX_SECONDS",
    "TRUE_WORDS",
    "duration",
    "flag",
    "non_negative",
    "non_negative_int",
    "one_of",
    "parse_bool",
    "positive",
    "positive_int",
]

T = TypeVar("T")

#: The longest finite duration accepted (ten years, in seconds). Longer finite values are
#: almost always a unit mistake, and would overflow thread waits and Redis expiries.
MAX_SECONDS = 10 * 365 * 24 * 3600.0

#: Words read as True (lower case): environment variables, URL query options.
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
#: Words read as False (lower case).
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f"})


def _refuse(what: str, rule: str, value: Any) -> ValidationError:
    return ValidationError(
        f"{what} must be {rule}, got {value!r}", details={"name": what, "value": repr(value)}
    )


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    # math.isfinite(10**400) raises OverflowError: an int too large for a float is refused.
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def positive(value: float, what: str) -> float:
    """``value`` as a float, if it is a finite number > 0.

    Example:
        >>> positive(2, "rate")
        2.0
    """
    if _real(value) and _finite(value) and value > 0:
        return float(value)
    raise _refuse(what, "a finite number > 0", _short(value))


def non_negative(value: float, what: str) -> float:
    """``value`` as a float, if it is a finite number >= 0.

    Example:
        >>> non_negative(0, "jitter")
        0.0
    """
    if _real(value) and _finite(value) and value >= 0:
        return float(value)
    raise _refuse(what, "a finite number >= 0", _short(value))


def positive_int(value: int, what: str) -> int:
    """``value``, if it is an ``int`` > 0 (not a bool).

    Example:
        >>> positive_int(3, "attempts")
        3
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _refuse(what, "an int > 0", value)


def non_negative_int(value: int, what: str) -> int:
    """``value``, if it is an ``int`` >= 0 (not a bool).

    Example:
        >>> non_negative_int(0, "version")
        0
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _refuse(what, "an int >= 0", value)


def duration(
    value: float | timedelta | None,
    what: str,
    *,
    allow_zero: bool = True,
    allow_none: bool = True,
    allow_infinite: bool = True,
) -> float | None:
    """Seconds as a float, from seconds or a ``timedelta``; None means "no limit".

    Args:
        value: The duration to check.
        what: The argument's name, for the error message.
        allow_zero: Whether 0 is acceptable (else the duration must be > 0).
        allow_none: Whether None ("no limit") is acceptable.
        allow_infinite: Whether ``math.inf`` is acceptable; it is returned as None.

    Returns:
        The seconds, or None for "no limit" (None, or ``math.inf`` when allowed).

    Raises:
        ValidationError: For a bool, NaN, a negative value, 0 when not allowed, anything
            that is not a number or ``timedelta``, or a finite value above ``MAX_SECONDS``.

    Example:
        >>> duration(1.5, "timeout")
        1.5
        >>> duration(10**400, "ttl")
        Traceback (most recent call last):
        ...
        utils.core.errors.ValidationError: ttl must be seconds or a timedelta, at most 315360000 s (10 years; math.inf means no limit), got 1000...
    """
    if value is None:
        if allow_none:
            return None
        raise _refuse(what, "seconds or a timedelta", value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif _real(value):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float: absurd, not a crash
            seconds = math.nan if value < 0 else MAX_SECONDS * 2
    else:
        raise _refuse(what, "seconds (a number) or a timedelta", value)
    if seconds == math.inf and allow_infinite:
        return None
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise _refuse(what, f"seconds {rule} or a timedelta", _short(value))
    if seconds > MAX_SECONDS:
        limit = "math.inf means no limit" if allow_infinite else "it cannot be unlimited"
        raise _refuse(
            what,
            f"seconds or a timedelta, at most {MAX_SECONDS:.0f} s (10 years; {limit})",
            _short(value),
        )
    return seconds


class _Short:
    """Shows a huge int by its first digits: ``repr(10**400)`` is 401 characters."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _short(value: Any) -> Any:
    if isinstance(value, int) and abs(value) > 10**30:
        return _Short(f"{str(value)[:4]}... ({len(str(abs(value)))} digits)")
    return value


def flag(value: bool, what: str) -> bool:
    """``value``, if it is exactly True or False (not 1, not "yes").

    Example:
        >>> flag(False, "fail_open")
        False
    """
    if value is True or value is False:
        return value
    raise _refuse(what, "True or False", value)


def parse_bool(text: str, what: str) -> bool:
    """Read a boolean word (``1/true/yes/on/y/t``, ``0/false/no/off/n/f``; any case).

    Example:
        >>> parse_bool("Yes", "UTILS_DEBUG")
        True
    """
    word = text.strip().lower() if isinstance(text, str) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _refuse(what, "a boolean word (true/false, yes/no, on/off, 1/0)", text)


def one_of(value: T, what: str, choices: Collection[T]) -> T:
    """``value``, if it is one of ``choices``.

    Example:
        >>> one_of("full", "jitter", ("full", "equal", "none"))
        'full'
    """
    try:
        if value in choices:
            return value
    except TypeError:  # an unhashable value and a set of choices: not one of them
        pass
    names = ", ".join(repr(choice) for choice in choices)
    raise _refuse(what, f"one of {names}", value)
