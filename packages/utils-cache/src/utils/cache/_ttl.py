"""TTL semantics shared by every cache: seconds or timedelta; None = default; 0 = don't store."""

from __future__ import annotations

import math
from datetime import timedelta

from utils.core import ValidationError

#: Returned by :func:`resolve_ttl` for "do not store".
DO_NOT_STORE = 0.0


def resolve_ttl(ttl: float | timedelta | None, default: float | None) -> float | None:
    """Return the TTL in seconds: None = no expiry, 0.0 = do not store.

    ``ttl=None`` means the cache's default (which may itself be None: no expiry).

    Example:
        >>> resolve_ttl(None, 60.0), resolve_ttl(timedelta(minutes=1), None), resolve_ttl(0, 60)
        (60.0, 60.0, 0.0)
    """
    if ttl is None:
        return default
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError(f"ttl must be seconds or a timedelta, got {ttl!r}")
    if math.isnan(seconds) or seconds < 0:
        raise ValidationError(f"ttl must be >= 0 seconds (0 = do not store), got {ttl!r}")
    if math.isinf(seconds):
        return None
    return float(seconds)
