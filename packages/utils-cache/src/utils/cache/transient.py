"""Transient-error classifier for redis-py, registered in the ``utils.transient`` group.

:func:`utils.core.is_transient` asks it about every exception it does not already know, so
``@retry()`` from utils-resilience retries a raw ``redis.exceptions.ConnectionError`` without
either package importing the other. The answers:

- **True** (retrying is likely to help): connection loss and timeouts, a server still
  loading its dataset (``BusyLoadingError``), an exhausted connection pool, a replica that
  refuses writes during a failover (``ReadOnlyError``), cluster resharding and fail-over
  replies (``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN``, ``MOVED``/``ASK`` that outlived
  the client's own redirects, an uncovered slot) and an optimistic-transaction conflict
  (``WatchError``: re-running the ``WATCH``/``MULTI`` block is the documented fix).
- **False** (permanent until someone changes something): bad credentials or missing ACL
  permissions, ``NOSCRIPT`` (the same ``EVALSHA`` fails again until the script is loaded),
  ``OOM`` under ``maxmemory`` with ``noeviction``, any other error reply (``WRONGTYPE``,
  syntax), a data error raised by the client before sending, lock ownership errors.
- **None** (no opinion) for everything that does not come from redis-py.

The classifier never raises: :func:`utils.core.is_transient` must stay safe to call from
any ``except`` block.

Example:
    >>> import redis.exceptions as rex
    >>> classify_redis_error(rex.ConnectionError("Connection refused"))
    True
    >>> classify_redis_error(rex.AuthenticationError("invalid password"))
    False
    >>> classify_redis_error(ValueError("not redis")) is None
    True
"""

from __future__ import annotations

import redis.exceptions as rex

__all__ = ["classify_redis_error"]


def _classes(*names: str) -> tuple[type[BaseException], ...]:
    # Some names are newer than redis 5.0 (our lowest supported version): skip the missing.
    found = (getattr(rex, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


# Order matters: the first row whose classes match decides, and several "permanent" classes
# are subclasses of ConnectionError (AuthenticationError) or of ResponseError, whose
# transient children (ReadOnlyError, TryAgainError) must be tested before their parent.
_RULES: tuple[tuple[tuple[type[BaseException], ...], bool], ...] = (
    # Bad credentials / ACL: a retry sends the same credentials again.
    (
        _classes(
            "AuthenticationError",
            "AuthorizationError",
            "AuthenticationWrongNumberOfArgsError",
            "NoPermissionError",
        ),
        False,
    ),
    (
        _classes(
            "ConnectionError",  # also BusyLoadingError, MaxConnectionsError
            "TimeoutError",
            "ReadOnlyError",
            "TryAgainError",
            "ClusterDownError",  # also MasterDownError
            "AskError",  # also MovedError
            "SlotNotCoveredError",
            "WatchError",
        ),
        True,
    ),
    (_classes("RedisError", "RedisClusterException", "ChildDeadlockedError"), False),
)


def classify_redis_error(exc: BaseException) -> bool | None:
    """Return True (transient), False (permanent) or None (not a redis-py error).

    Example:
        >>> import redis.exceptions as rex
        >>> classify_redis_error(rex.ReadOnlyError("READONLY You can't write against a replica"))
        True
        >>> classify_redis_error(rex.ResponseError("WRONGTYPE Operation against a key"))
        False
    """
    try:
        for classes, verdict in _RULES:
            if isinstance(exc, classes):
                return verdict
    except Exception:  # pragma: no cover - isinstance on exotic metaclasses; never raise
        return None
    return None
