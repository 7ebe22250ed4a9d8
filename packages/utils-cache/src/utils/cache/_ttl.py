"""TTL semantics shared by every cache: seconds or timedelta; None = default; 0 = don't store.

``math.inf`` means "no expiry"; a finite TTL above :data:`utils.core.validate.MAX_SECONDS`
(ten years) is a :class:`~utils.core.ValidationError` — it is a unit mistake, and would
overflow Redis ``PX`` far from the line that asked for it.
"""

from __future__ import annotations

from datetime import timedelta

from utils.core.validate import duration

#: Returned by :func:`resolve_ttl` for "do not store".
DO_NOT_STORE = 0.0


def resolve_ttl(ttl: float | timedelta | None, default: float | None) -> float | None:
    """Return the TTL in seconds: None = no expiry, 0.0 = do not store.

    ``ttl=None`` means the cache's default (which may itself be None: no expiry).

    Example:
        >>> resolve_ttl(None, 60.0), resolve_ttl(timedelta(minutes=1), None), resolve_ttl(0, 60)
        (60.0, 60.0, 0.0)
        >>> resolve_ttl(float("inf"), 60.0) is None  # no expiry
        True
    """
    if ttl is None:
        return default
    return duration(ttl, "ttl")
