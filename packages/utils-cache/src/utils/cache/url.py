"""Build a cache from a URL: ``memory://?maxsize=1000`` or ``redis://host:6379/0?namespace=app``.

Example:
    >>> cache = cache_from_url("memory://?maxsize=100&ttl=30")
    >>> type(cache).__name__, cache.maxsize
    ('MemoryCache', 100)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from utils.core import ConfigError, Secret
from utils.core.config import parse_duration

__all__ = ["cache_from_settings", "cache_from_url"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"cache URL option {name}={text!r} is not a boolean (true/false)")


def _options(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def cache_from_url(url: str | Secret, **overrides: Any) -> Any:
    """Return a sync cache for ``url``; keyword ``overrides`` win over URL options.

    Schemes: ``memory://`` (options ``maxsize``, ``ttl``) and ``redis://`` / ``rediss://`` /
    ``unix://`` (options ``namespace`` (required), ``ttl``, ``fail_open``, ``version``; the rest
    of the URL, query included, goes to redis-py's ``Redis.from_url``). TTLs accept ``30``,
    ``500ms``, ``5m``.

    Raises:
        ConfigError: for an unknown scheme or an invalid option.

    Example:
        >>> cache_from_url("ftp://x")
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: unsupported cache URL scheme 'ftp'; use memory://, redis://, rediss:// or unix://
    """
    text = url.get_secret_value() if isinstance(url, Secret) else url
    parts = urlsplit(text)
    options = _options(parts.query)
    if parts.scheme == "memory":
        from utils.cache.memory import MemoryCache

        kwargs: dict[str, Any] = {}
        if "maxsize" in options:
            try:
                kwargs["maxsize"] = int(options.pop("maxsize"))
            except ValueError:
                raise ConfigError("cache URL option maxsize must be an integer") from None
        if "ttl" in options:
            kwargs["ttl"] = _duration("ttl", options.pop("ttl"))
        _reject_unknown(options, "memory://")
        return MemoryCache(**{**kwargs, **overrides})
    if parts.scheme in ("redis", "rediss", "unix"):
        from utils.cache.redis_cache import RedisCache

        kwargs = {}
        for name in ("namespace",):
            if name in options:
                kwargs[name] = options.pop(name)
        if "ttl" in options:
            kwargs["ttl"] = _duration("ttl", options.pop("ttl"))
        if "fail_open" in options:
            kwargs["fail_open"] = _bool("fail_open", options.pop("fail_open"))
        if "version" in options:
            try:
                kwargs["version"] = int(options.pop("version"))
            except ValueError:
                raise ConfigError("cache URL option version must be an integer") from None
        kwargs.update(overrides)
        if "namespace" not in kwargs:
            raise ConfigError(
                "a Redis cache URL needs a namespace: add ?namespace=<name> (every key lives "
                "under it, and clear() removes only it)"
            )
        remaining_query = "&".join(f"{key}={value}" for key, value in options.items())
        client_url = urlunsplit(parts._replace(query=remaining_query))
        return RedisCache(client_url, **kwargs)
    raise ConfigError(
        f"unsupported cache URL scheme {parts.scheme!r}; "
        "use memory://, redis://, rediss:// or unix://"
    )


def _duration(name: str, text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"cache URL option {name}: {exc}") from None


def _reject_unknown(options: dict[str, str], scheme: str) -> None:
    if options:
        raise ConfigError(
            f"unknown {scheme} cache URL options: {', '.join(sorted(options))}; "
            "supported: maxsize, ttl"
        )


def cache_from_settings(settings: Any = None, **overrides: Any) -> Any:
    """Build the cache described by :class:`~utils.cache.CacheSettings` (default: from env).

    Example:
        >>> from utils.cache.settings import CacheSettings
        >>> type(cache_from_settings(CacheSettings.from_env({}))).__name__
        'MemoryCache'
    """
    from utils.cache.settings import CacheSettings

    config = settings if settings is not None else CacheSettings.from_env()
    text = config.url.get_secret_value()
    base: dict[str, Any] = {}
    if config.ttl is not None:
        base["ttl"] = config.ttl.total_seconds()
    if text.startswith("memory:"):
        base["maxsize"] = config.maxsize
    else:
        base["namespace"] = config.namespace
        base["fail_open"] = config.fail_open
    return cache_from_url(text, **{**base, **overrides})
