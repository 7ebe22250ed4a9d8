"""Argument checks that report every problem of a constructor at once.

The rules themselves are :mod:`utils.core.validate`'s (the family's one validation module):
bools are never numbers, ``math.inf`` is "no limit" where a limit is meant, and a finite
duration above ten years is refused. This only collects their messages, so a caller with
three bad arguments learns about all three from one ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from utils.core import ValidationError

T = TypeVar("T")


class Problems:
    """Collects the ``ValidationError`` messages of several checks.

    Example:
        >>> from utils.core.validate import positive_int
        >>> problems = Problems()
        >>> problems.check(positive_int, 0, "attempts")
        >>> problems.messages
        ['attempts must be an int > 0, got 0']
    """

    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages: list[str] = []

    def check(self, rule: Callable[..., T], value: Any, what: str, **options: Any) -> T | None:
        """``rule(value, what, **options)``, or None (and the message kept) when it refuses."""
        try:
            return rule(value, what, **options)
        except ValidationError as error:
            self.messages.append(str(error))
            return None

    def add(self, message: str) -> None:
        """Record a problem found by other means."""
        self.messages.append(message)

    def raise_if_any(self, prefix: str) -> None:
        """Raise one ``ValidationError`` naming every problem, if there were any."""
        if self.messages:
            raise ValidationError(f"{prefix}: " + "; ".join(self.messages))
