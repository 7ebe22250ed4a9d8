"""Pytest fixtures of utils-cache, registered through the ``pytest11`` entry point.

It lives outside ``utils.cache`` so that pytest start-up imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def memory_cache() -> Any:
    """A fresh MemoryCache for the test."""
    from utils.cache.memory import MemoryCache

    return MemoryCache(maxsize=1024)


@pytest.fixture
def redis_cache(utils_redis_url: str) -> Iterator[Any]:
    """A RedisCache on the test Redis in a unique namespace, cleared after the test."""
    from utils.cache.redis_cache import RedisCache
    from utils.cache.testing import unique_namespace

    cache = RedisCache(utils_redis_url, namespace=unique_namespace())
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()
