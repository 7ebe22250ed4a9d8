"""The ``redis-cache`` health check (entry-point group ``utils.health``), run by ``utils doctor``.

It reads the cache configuration (:class:`~utils.cache.CacheSettings`: ``UTILS_CACHE_URL``)
and PINGs the Redis server behind it with a short timeout, capped by the doctor's deadline.
A ``memory://`` cache has nothing to reach, so the check passes and says so.

The detail never shows credentials: the server is named by host, port and database only.

Example:
    >>> redis_ping(url="memory://?maxsize=100")
    'memory cache: nothing to check'
    >>> describe_url("redis://app:hunter2@cache.internal:6380/2?namespace=shop")
    'cache.internal:6380/2'
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.exceptions

from utils.cache.errors import CacheUnavailableError
from utils.core import ConfigError, check_deadline, clamp_timeout
from utils.core.redis import fail_fast_client

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["configured_cache", "describe_url", "redis_client", "redis_ping"]

#: Seconds allowed for connecting and for the PING reply (capped by the caller's deadline).
DEFAULT_TIMEOUT = 2.0

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_MEMORY_SCHEME = "memory"


def configured_cache(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """Return ``(url, namespace)`` of the configured cache (``UTILS_CACHE_*`` variables).

    Example:
        >>> configured_cache({"UTILS_CACHE_URL": "redis://r:6379/0", "UTILS_CACHE_NAMESPACE": "shop"})
        ('redis://r:6379/0', 'shop')
        >>> configured_cache({})
        ('memory://', 'app')
    """
    try:
        from utils.cache.settings import CacheSettings
    except ImportError:  # pragma: no cover - the settings module ships with the package
        source = os.environ if environ is None else environ
        return source.get("UTILS_CACHE_URL") or "memory://", (
            source.get("UTILS_CACHE_NAMESPACE") or "app"
        )
    settings = CacheSettings.from_env(environ)
    url: Any = settings.url
    # A URL may carry a password: accept a Secret as well as a str.
    url = url.get_secret_value() if hasattr(url, "get_secret_value") else url
    return str(url), str(settings.namespace)


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    # "tiered+redis://": what must answer is the Redis part.
    return scheme.rsplit("+", 1)[-1]


def describe_url(url: str) -> str:
    """Name the server of ``url`` without credentials: ``host:port/db`` or the socket path.

    Example:
        >>> describe_url("rediss://:s3cret@10.0.0.5/0"), describe_url("unix:///run/redis.sock?db=1")
        ('10.0.0.5:6379/0', '/run/redis.sock?db=1')
    """
    parts = urlsplit(url)
    scheme = _scheme(url)
    if scheme == _MEMORY_SCHEME:
        return "memory"
    db = dict(parse_qsl(parts.query)).get("db")
    if scheme == "unix":
        return parts.path + (f"?db={db}" if db else "")
    path_db = parts.path.strip("/")
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db or path_db or '0'}"


#: Query options of a cache URL that are the cache's own, not redis-py's.
CACHE_OPTIONS = frozenset({"namespace", "ttl", "fail_open", "version"})


def redis_url_of(url: str) -> str:
    """The URL for redis-py: the cache's own query options (``namespace``, ``ttl``...) removed.

    Example:
        >>> redis_url_of("redis://h:6379/0?namespace=shop&ttl=5m&socket_timeout=0.5")
        'redis://h:6379/0?socket_timeout=0.5'
    """
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in CACHE_OPTIONS
    ]
    return urlunsplit((_scheme(url), parts.netloc, parts.path, urlencode(query), ""))


def redis_client(url: str, *, timeout: float | None = DEFAULT_TIMEOUT, **options: Any) -> Redis:
    """Build a fail-fast redis-py client for a cache URL (the cache's own options removed).

    ``timeout`` bounds connecting and every reply, capped by :func:`utils.core.remaining`.
    A mistyped or malformed redis-py option (``?tll=30``, ``?socket_timeout=abc``) is a
    :class:`~utils.core.ConfigError` naming it.

    Example:
        >>> client = redis_client("redis://127.0.0.1:6379/0?namespace=shop", timeout=0.5)
        >>> client.connection_pool.connection_kwargs["socket_timeout"]
        0.5
    """
    if _scheme(url) not in _REDIS_SCHEMES:
        raise ConfigError(
            f"not a Redis URL: {describe_url(url)!r} (expected redis://, rediss:// or unix://)"
        )
    limit = clamp_timeout(timeout)
    client: Redis = fail_fast_client(redis_url_of(url), **options)
    # The caller's (deadline-capped) limit wins over the URL's and the default.
    kwargs = client.connection_pool.connection_kwargs
    kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = limit
    return client


def redis_ping(url: str | None = None) -> str:
    """Health check: PING the configured Redis; return what answered and how fast.

    The latency shown is one PING round trip on an open connection. Returns a detail such as ``"redis 7.0.15 at 127.0.0.1:6379/0 (0.4 ms)"``, or
    ``"memory cache: nothing to check"`` for a ``memory://`` URL.

    Raises:
        CacheUnavailableError: the server did not answer in time (the original redis-py
            error is its ``__cause__``).
        ConfigError: the URL is neither a memory nor a Redis URL.

    Example:
        >>> redis_ping(url="memory://")
        'memory cache: nothing to check'
    """
    target = configured_cache()[0] if url is None else url
    if _scheme(target) == _MEMORY_SCHEME:
        return "memory cache: nothing to check"
    where = describe_url(target)
    check_deadline(f"PING redis at {where}")
    client = redis_client(target)
    try:
        client.ping()  # connects (and authenticates): not what the latency should show
        started = time.perf_counter()
        client.ping()
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            version = str(client.info("server").get("redis_version", "?"))
        except redis.exceptions.ResponseError:  # INFO renamed or denied by an ACL
            version = "?"
    except redis.exceptions.RedisError as exc:
        raise CacheUnavailableError(
            f"redis at {where} did not answer PING: {exc}", details={"server": where}
        ) from exc
    finally:
        client.close()
    return f"redis {version} at {where} ({elapsed_ms:.1f} ms)"
