"""Errors raised by utils.cache: each is a ``CacheError`` and, where it fits, a core meaning-class.

Example:
    >>> from utils.core import UnavailableError
    >>> isinstance(CacheUnavailableError("redis is down"), UnavailableError)
    True
"""

from __future__ import annotations

from utils.core import UnavailableError, UtilsError, ValidationError

__all__ = [
    "CacheError",
    "CacheIntegrityError",
    "CacheUnavailableError",
    "CacheValueError",
    "ReentrantComputeError",
]


class CacheError(UtilsError):
    """Origin class of every error raised by ``utils.cache``.

    Example:
        >>> issubclass(CacheUnavailableError, CacheError)
        True
    """

    default_code = "cache_error"


class CacheUnavailableError(CacheError, UnavailableError):
    """The cache backend (Redis) cannot be reached and the cache does not fail open.

    Example:
        >>> CacheUnavailableError("redis is unreachable").retryable
        True
    """

    default_code = "cache_unavailable"


class CacheValueError(CacheError, ValidationError):
    """A value cannot be stored: the serializer cannot represent its type.

    Example:
        >>> CacheValueError("cannot serialize a 'socket'").code
        'cache_value_error'
    """

    default_code = "cache_value_error"


class CacheIntegrityError(CacheError):
    """Stored data failed its integrity check (unsigned or tampered pickle): never loaded.

    Example:
        >>> CacheIntegrityError("signature mismatch").code
        'cache_integrity_error'
    """

    default_code = "cache_integrity_error"


class ReentrantComputeError(CacheError, RuntimeError):
    """A cached function called itself for the key it is already computing.

    Waiting for ourselves would deadlock, so the inner call raises instead.

    Example:
        >>> ReentrantComputeError("f(1) is already being computed by this task").code
        'cache_reentrant_compute'
    """

    default_code = "cache_reentrant_compute"
