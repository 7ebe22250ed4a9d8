"""Test helpers for code that uses utils.cache.

Pytest fixtures (``pytest11`` entry point, imported lazily): ``utils_memory_cache`` (a fresh
:class:`~utils.cache.MemoryCache`) and ``utils_redis_cache`` (a :class:`~utils.cache.RedisCache`
on the test Redis — see utils-core's service policy — in a unique namespace that is cleared
afterwards).

Example:
    >>> ns = unique_namespace()
    >>> ns.startswith("test-")
    True
"""

from __future__ import annotations

import uuid

__all__ = ["unique_namespace"]


def unique_namespace(prefix: str = "test") -> str:
    """A namespace no other test uses, so tests can share one Redis.

    Example:
        >>> unique_namespace("a") != unique_namespace("a")
        True
    """
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
