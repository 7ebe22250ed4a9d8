"""Redis health checks: for the application's own cache or client, and from the environment.

:func:`redis_check` takes the cache (or redis-py client) the application already uses and
returns a check for :func:`utils.core.health.register_check`: sync for ``redis.Redis`` and
sync caches, async for ``redis.asyncio.Redis`` and async caches, so the PING goes through
the same connection pool, credentials and TLS settings as the application's own commands.

The ``redis-cache`` entry-point check (group ``utils.health``, run by ``utils doctor`` and by
the probes' ``/readyz``) reads the cache configuration (:class:`~utils.cache.CacheSettings`:
``UTILS_CACHE_URL``) and PINGs the Redis server behind it with a short timeout, capped by the
check's deadline.
A ``memory://`` cache has nothing to reach, so the check passes and says so.

The detail never shows credentials: the server is named by host, port and database only.

Example:
    >>> from utils.cache import MemoryCache
    >>> redis_check(MemoryCache())()
    'memory cache: nothing to check'
    >>> redis_ping(url="memory://?maxsize=100")
    'memory cache: nothing to check'
    >>> describe_url("redis://app:hunter2@cache.internal:6380/2?namespace=shop")
    'cache.internal:6380/2'
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
import redis.exceptions

from utils.cache.errors import CacheUnavailableError
from utils.core import ConfigError, ValidationError, check_deadline, clamp_timeout
from utils.core.redis import aexecute, execute, fail_fast_client, is_async_client

if TYPE_CHECKING:
    from redis import Redis

    from utils.cache.memory import AsyncMemoryCache, MemoryCache
    from utils.cache.redis_cache import AsyncRedisCache, RedisCache
    from utils.cache.tiered import AsyncTieredCache, TieredCache

__all__ = [
    "configured_cache",
    "describe_client",
    "describe_url",
    "redis_check",
    "redis_client",
    "redis_ping",
]

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


_MEMORY_DETAIL = "memory cache: nothing to check"


def _is_redis_client(value: Any) -> bool:
    return hasattr(value, "execute_command") and hasattr(value, "connection_pool")


def _client_of(target: Any) -> Any:
    """The redis-py client behind ``target``, None for a memory cache; else ValidationError."""
    if _is_redis_client(target):
        return target
    # A RedisCache has .client; a TieredCache has .l2 (a RedisCache) and a memory .l1.
    for candidate in (
        getattr(target, "client", None),
        getattr(getattr(target, "l2", None), "client", None),
    ):
        if _is_redis_client(candidate):
            return candidate
    from utils.cache.memory import AsyncMemoryCache, MemoryCache

    if isinstance(target, MemoryCache | AsyncMemoryCache):
        return None
    raise ValidationError(
        "redis_check needs a redis-py client (redis.Redis, redis.asyncio.Redis) or a "
        f"utils.cache cache, got {type(target).__name__}",
        details={"name": "cache_or_client"},
    )


def describe_client(client: Any) -> str:
    """Name the server of a redis-py client without credentials: ``host:port/db`` or a socket.

    Example:
        >>> import redis
        >>> describe_client(redis.Redis.from_url("redis://app:hunter2@cache.internal:6380/2"))
        'cache.internal:6380/2'
    """
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"{kwargs['path']}?db={db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _unavailable(where: str, exc: Exception) -> CacheUnavailableError:
    return CacheUnavailableError(
        f"redis at {where} did not answer PING: {exc}", details={"server": where}
    )


@overload
def redis_check(
    cache_or_client: redis.asyncio.Redis | AsyncRedisCache | AsyncTieredCache,
) -> Callable[[], Awaitable[str]]: ...
@overload
def redis_check(
    cache_or_client: Redis | RedisCache | TieredCache | MemoryCache | AsyncMemoryCache,
) -> Callable[[], str]: ...
@overload
def redis_check(cache_or_client: Any) -> Callable[[], str | Awaitable[str]]: ...
def redis_check(cache_or_client: Any) -> Callable[[], str | Awaitable[str]]:
    """A health check that PINGs the Redis behind the application's own cache or client.

    Register it as a readiness check (it is a dependency)::

        register_check("redis", redis_check(cache), kind="readiness", timeout=0.5)

    Args:
        cache_or_client: A ``redis.Redis`` or ``redis.asyncio.Redis`` client, a
            :class:`~utils.cache.RedisCache` / :class:`~utils.cache.AsyncRedisCache`, a
            tiered cache (its Redis tier is checked), or a memory cache (nothing to check).

    Returns:
        A callable taking no arguments, async for an async client or cache: it returns
        ``"redis at host:port/db (0.4 ms)"`` and raises
        :class:`~utils.cache.CacheUnavailableError` (the redis-py error as its cause) when
        the server does not answer. The PING honours the check's deadline.

    Raises:
        ValidationError: ``cache_or_client`` is neither a redis-py client nor a cache.

    Example:
        >>> import redis
        >>> check = redis_check(redis.Redis.from_url("redis://127.0.0.1:6379/0"))
        >>> check()  # doctest: +ELLIPSIS
        'redis at 127.0.0.1:6379/0 (... ms)'
    """
    client = _client_of(cache_or_client)
    if client is None:
        return _memory_check
    where = describe_client(client)
    if is_async_client(client):

        async def aping() -> str:
            started = time.perf_counter()
            try:
                await aexecute(client, [("PING",)])
            except redis.exceptions.RedisError as exc:
                raise _unavailable(where, exc) from exc
            return f"redis at {where} ({(time.perf_counter() - started) * 1000:.1f} ms)"

        return aping

    def ping() -> str:
        started = time.perf_counter()
        try:
            execute(client, [("PING",)])
        except redis.exceptions.RedisError as exc:
            raise _unavailable(where, exc) from exc
        return f"redis at {where} ({(time.perf_counter() - started) * 1000:.1f} ms)"

    return ping


def _memory_check() -> str:
    return _MEMORY_DETAIL
