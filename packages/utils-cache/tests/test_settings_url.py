from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from utils.cache.settings import CacheSettings
from utils.cache.testing import unique_namespace
from utils.cache.url import cache_from_settings, cache_from_url
from utils.core import ConfigError, Secret


def test_settings_defaults_and_env() -> None:
    defaults = CacheSettings.from_env({})
    assert defaults.url.get_secret_value() == "memory://"
    assert defaults.namespace == "app"
    assert defaults.ttl is None
    assert defaults.fail_open is True
    settings = CacheSettings.from_env(
        {
            "UTILS_CACHE_URL": "redis://:s3cret@cache:6379/0",
            "UTILS_CACHE_TTL": "90s",
            "UTILS_CACHE_FAIL_OPEN": "no",
            "UTILS_CACHE_NAMESPACE": "shop",
        }
    )
    assert settings.ttl == timedelta(seconds=90)
    assert settings.fail_open is False
    assert "s3cret" not in repr(settings)


def test_memory_url_options() -> None:
    cache = cache_from_url("memory://?maxsize=7&ttl=500ms")
    assert type(cache).__name__ == "MemoryCache"
    assert cache.maxsize == 7
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert cache_from_url(Secret("memory://"), maxsize=3).maxsize == 3


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "unsupported cache URL scheme 'ftp'"),
        ("memory://?maxsize=big", "maxsize must be an integer"),
        ("memory://?ttl=soon", "cache URL option ttl"),
        ("memory://?colour=red", "unknown memory:// cache URL options: colour"),
        ("redis://127.0.0.1:6379/0", "needs a namespace"),
        ("redis://127.0.0.1:6379/0?namespace=a&fail_open=maybe", "not a boolean"),
        ("redis://127.0.0.1:6379/0?namespace=a&version=x", "version must be an integer"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cache_from_url(url)


def test_redis_url_builds_a_working_cache(utils_redis_url: str) -> None:
    namespace = unique_namespace()
    separator = "&" if "?" in utils_redis_url else "?"
    cache = cache_from_url(
        f"{utils_redis_url}{separator}namespace={namespace}&ttl=1m&fail_open=false&version=2"
    )
    try:
        assert type(cache).__name__ == "RedisCache"
        cache.set("k", {"a": 1})
        assert cache.get("k") == {"a": 1}
        ttl = cache.ttl("k")
        assert ttl is not None
        assert 0 < ttl <= 60
    finally:
        cache.clear()


def test_cache_from_settings(utils_redis_url: str) -> None:
    memory = cache_from_settings(CacheSettings.from_env({"UTILS_CACHE_MAXSIZE": "5"}))
    assert memory.maxsize == 5
    namespace = unique_namespace()
    settings = CacheSettings.from_env(
        {
            "UTILS_CACHE_URL": utils_redis_url,
            "UTILS_CACHE_NAMESPACE": namespace,
            "UTILS_CACHE_TTL": "30",
        }
    )
    cache = cache_from_settings(settings)
    try:
        cache.set("k", "v")
        assert cache.get("k") == "v"
    finally:
        cache.clear()


def test_cache_from_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTILS_CACHE_URL", "memory://")
    monkeypatch.setenv("UTILS_CACHE_MAXSIZE", "11")
    assert cache_from_settings().maxsize == 11


def test_unique_namespaces() -> None:
    assert unique_namespace() != unique_namespace()


def test_fixtures(utils_memory_cache: object, utils_redis_cache: object) -> None:
    assert type(utils_memory_cache).__name__ == "MemoryCache"
    assert type(utils_redis_cache).__name__ == "RedisCache"


def test_unprefixed_fixture_names_still_work_and_warn(request: pytest.FixtureRequest) -> None:
    with pytest.warns(DeprecationWarning, match="utils_memory_cache"):
        assert type(request.getfixturevalue("memory_cache")).__name__ == "MemoryCache"
    with pytest.warns(DeprecationWarning, match="utils_redis_cache"):
        assert type(request.getfixturevalue("redis_cache")).__name__ == "RedisCache"


def test_import_does_not_import_typer() -> None:
    code = "import sys, utils.cache; print('typer' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- regressions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("tll=30", "tll"),  # a typo of ttl: redis-py would pass it to the connection
        ("socket_timeout=abc", "socket_timeout"),
        ("health_check_interval=soon", "health_check_interval"),
    ],
)
def test_d12_bad_redis_options_are_config_errors_at_construction(
    utils_redis_url: str, query: str, option: str
) -> None:
    url = f"{utils_redis_url}?namespace={unique_namespace()}&{query}"
    with pytest.raises(ConfigError, match=option):
        cache_from_url(url)
    from utils.cache.redis_cache import AsyncRedisCache, RedisCache

    with pytest.raises(ConfigError, match=option):
        RedisCache(url.replace("namespace=", "x_ns="), namespace="x")
    with pytest.raises(ConfigError, match=option):
        AsyncRedisCache(url.replace("namespace=", "x_ns="), namespace="x")


def test_d12_the_health_check_reports_bad_options(utils_redis_url: str) -> None:
    from utils.cache.health import redis_ping

    with pytest.raises(ConfigError, match="tll"):
        redis_ping(f"{utils_redis_url}?namespace=x&tll=30")


def test_d12_good_redis_options_still_reach_redis_py(utils_redis_url: str) -> None:
    cache = cache_from_url(
        f"{utils_redis_url}?namespace={unique_namespace()}&socket_timeout=0.5&client_name=app"
        "&health_check_interval=5"
    )
    kwargs = cache.client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["client_name"]) == (0.5, "app")
    cache.set("k", 1)
    assert cache.get("k") == 1
    cache.clear()
    cache.close()
