"""utils-cache: memory, Redis and two-tier caches, ``@cached``, stampede protection.

Every cache has the same methods (``get``, ``set``, ``delete``, ``get_many``, ``get_or_set``,
...), sync and async twins share names, ``ttl=None`` means the cache's default and ``ttl=0``
means "do not store".

Example:
    >>> from utils.cache import MemoryCache, cached
    >>> cache = MemoryCache(maxsize=1000, ttl=60)
    >>> @cached(cache, ttl=30)
    ... def price(sku: str) -> int:
    ...     return len(sku) * 100
    >>> price("abc"), price("abc")
    (300, 300)
"""

from __future__ import annotations

from utils.cache.decorator import AsyncCachedFunction, CachedFunction, cached
from utils.cache.errors import (
    CacheError,
    CacheIntegrityError,
    CacheUnavailableError,
    CacheValueError,
    ReentrantComputeError,
)
from utils.cache.memory import AsyncMemoryCache, MemoryCache
from utils.cache.protocol import MISSING, AsyncCache, Cache, CacheStats
from utils.cache.redis_cache import AsyncRedisCache, RedisCache
from utils.cache.serializers import JsonSerializer, PickleSerializer, Serializer
from utils.cache.settings import CacheSettings
from utils.cache.tiered import AsyncTieredCache, TieredCache
from utils.cache.url import cache_from_settings, cache_from_url

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "AsyncCache",
    "AsyncCachedFunction",
    "AsyncMemoryCache",
    "AsyncRedisCache",
    "AsyncTieredCache",
    "Cache",
    "CacheError",
    "CacheIntegrityError",
    "CacheSettings",
    "CacheStats",
    "CacheUnavailableError",
    "CacheValueError",
    "CachedFunction",
    "JsonSerializer",
    "MemoryCache",
    "PickleSerializer",
    "RedisCache",
    "ReentrantComputeError",
    "Serializer",
    "TieredCache",
    "__version__",
    "cache_from_settings",
    "cache_from_url",
    "cached",
]
