"""The ``Cache`` and ``AsyncCache`` protocols, the stats record and the MISSING sentinel.

Every cache of the package — :class:`~utils.cache.MemoryCache`,
:class:`~utils.cache.RedisCache`, :class:`~utils.cache.TieredCache` and their async twins —
has these methods, with the same names and meaning; keys are ``str``; ``ttl`` is seconds or
a ``timedelta``, ``None`` means the cache's default and ``0`` means "do not store".

Example:
    >>> from utils.cache import MemoryCache
    >>> isinstance(MemoryCache(maxsize=10), Cache)
    True
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["MISSING", "TTL", "AsyncCache", "Cache", "CacheStats", "Missing"]

TTL = float | timedelta | None


class Missing(enum.Enum):
    """The type of :data:`MISSING`."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    __str__ = __repr__


#: "No value": pass it as ``default`` to tell a cached ``None`` from a miss.
MISSING: Final = Missing.MISSING


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache since it was created.

    Example:
        >>> CacheStats(hits=3, misses=1).hit_ratio
        0.75
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    evictions: int = 0
    errors: int = 0
    #: Entries held (None when the backend cannot tell cheaply).
    size: int | None = None

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


@runtime_checkable
class Cache(Protocol):
    """A synchronous cache."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss."""

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` (``ttl=0``: do not store)."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a value."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one (misses are left out)."""

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item of ``mapping``."""

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys; return how many existed."""

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` (missing counts as 0); return it."""

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; None without expiry or when missing."""

    def clear(self) -> None:
        """Remove every entry of this cache (only this cache's namespace)."""

    def stats(self) -> CacheStats:
        """Counters since creation."""


@runtime_checkable
class AsyncCache(Protocol):
    """The async twin of :class:`Cache`: the same methods, awaited."""

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` on a miss."""

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` (``ttl=0``: do not store)."""

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value."""

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one (misses are left out)."""

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item of ``mapping``."""

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys; return how many existed."""

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key``; return it."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; None without expiry or when missing."""

    async def clear(self) -> None:
        """Remove every entry of this cache's namespace."""

    def stats(self) -> CacheStats:
        """Counters since creation (not awaited: read locally)."""
