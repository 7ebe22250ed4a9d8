"""Pytest fixtures of utils-cache, registered through the ``pytest11`` entry point.

It lives outside ``utils.cache`` so that pytest start-up imports nothing heavy. Fixture
names carry the family's ``utils_`` prefix; the old unprefixed names still work and warn.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def utils_memory_cache() -> Any:
    """A fresh MemoryCache for the test."""
    from utils.cache.memory import MemoryCache

    return MemoryCache(maxsize=1024)


@pytest.fixture
def utils_redis_cache(utils_redis_url: str) -> Iterator[Any]:
    """A RedisCache on the test Redis in a unique namespace, cleared after the test."""
    from utils.cache.redis_cache import RedisCache
    from utils.cache.testing import unique_namespace

    cache = RedisCache(utils_redis_url, namespace=unique_namespace())
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"the pytest fixture {old!r} is deprecated since utils-cache 0.1.0 and will be "
        f"removed in 0.2.0; use {new!r} instead",
        DeprecationWarning,
        stacklevel=2,
    )


@pytest.fixture
def memory_cache(utils_memory_cache: Any) -> Any:
    """Deprecated alias of ``utils_memory_cache``."""
    _renamed("memory_cache", "utils_memory_cache")
    return utils_memory_cache


@pytest.fixture
def redis_cache(utils_redis_cache: Any) -> Any:
    """Deprecated alias of ``utils_redis_cache``."""
    _renamed("redis_cache", "utils_redis_cache")
    return utils_redis_cache
