"""``CacheSettings``: the cache configuration read from ``UTILS_CACHE_*`` variables.

Example:
    >>> settings = CacheSettings.from_env({"UTILS_CACHE_URL": "redis://cache:6379/0",
    ...                                    "UTILS_CACHE_TTL": "5m"})
    >>> settings.ttl, settings.namespace
    (datetime.timedelta(seconds=300), 'app')
"""

from __future__ import annotations

from datetime import timedelta

from utils.core import Secret, Settings

__all__ = ["CacheSettings"]


class CacheSettings(Settings, env_prefix="UTILS_CACHE_"):
    """Where the cache lives and how it behaves, from the environment.

    ``url`` is a :class:`~utils.core.Secret` because Redis URLs carry passwords.

    Example:
        >>> CacheSettings.from_env({}).url
        Secret('***')
        >>> CacheSettings.from_env({}).url.get_secret_value()
        'memory://'
    """

    #: ``memory://?maxsize=1000`` or ``redis://[:password@]host:port/db`` (``rediss://`` too).
    url: Secret = Secret("memory://")
    #: Prefix of every key (Redis) and name in logs and metrics.
    namespace: str = "app"
    #: Default TTL (``30``, ``5m``, ``1h``); unset = no expiry.
    ttl: timedelta | None = None
    #: When Redis is down: reads miss and writes are dropped (True) or errors are raised.
    fail_open: bool = True
    #: Entries kept by a memory cache.
    maxsize: int = 10_000
