"""Deprecated: utils.core classifies redis-py errors itself.

:func:`utils.core.is_transient` recognises redis-py errors without any plugin (utils-core's
Redis layer, :func:`utils.core.redis.is_transient_error`), so utils-cache no longer
registers a ``utils.transient`` classifier. :func:`classify_redis_error` stays, as a
deprecated alias, until 0.2.0.

Example:
    >>> import warnings
    >>> import redis.exceptions as rex
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     classify_redis_error(rex.ConnectionError("Connection refused"))
    True
"""

from __future__ import annotations

from collections.abc import Callable

from utils.core import deprecated
from utils.core.redis import is_transient_error

__all__ = ["classify_redis_error"]

classify_redis_error: Callable[[BaseException], bool | None] = deprecated(
    since="0.1.0",
    removed_in="0.2.0",
    instead="utils.core.is_transient (or utils.core.redis.is_transient_error)",
    name="utils.cache.transient.classify_redis_error",
)(is_transient_error)
