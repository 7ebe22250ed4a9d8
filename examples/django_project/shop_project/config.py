"""The project's configuration: one typed :class:`~utils.core.Settings` class, from the environment.

``settings.py`` builds Django's settings from :class:`ShopSettings`, so a missing or invalid
variable stops the process at start-up with one :class:`~utils.core.ConfigError` naming every
problem, and secrets (the database and Redis URLs, ``SECRET_KEY``) are
:class:`~utils.core.Secret` values that never show in a log line or a traceback.
"""

from __future__ import annotations

from typing import Any, Literal

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from utils.core import ConfigError, Secret, Settings

__all__ = ["ShopSettings", "conninfo_of", "database_settings"]


class ShopSettings(Settings, env_prefix="SHOP_"):
    """Everything the project reads from the environment (``SHOP_*`` variables).

    Example:
        >>> shop = ShopSettings.from_env({"SHOP_SECRET_KEY": "k" * 50, "SHOP_DEBUG": "yes"})
        >>> shop.debug, shop.cache_namespace, shop.secret_key
        (True, 'shop', Secret('***'))
        >>> ShopSettings.from_env({})
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: invalid ShopSettings settings: SHOP_SECRET_KEY: missing (required, no default)
    """

    #: Django's ``SECRET_KEY``; it also signs the pickled values in the cache.
    secret_key: Secret
    debug: bool = False
    allowed_hosts: list[str] = ["localhost", "127.0.0.1"]  # noqa: RUF012 - copied per instance
    #: ``postgresql://user:password@host:port/dbname?sslmode=...``
    database_url: Secret = Secret("postgresql://postgres@127.0.0.1:5432/test")
    #: Seconds Django keeps a database connection open between requests (0: one per request).
    conn_max_age: int = 60
    redis_url: Secret = Secret("redis://127.0.0.1:6379/0")
    #: The cache's Redis namespace: ``clear()`` removes it and nothing else.
    cache_namespace: str = "shop"
    #: How long a product stays cached, in seconds.
    product_ttl: int = 300
    #: The pricing service the ``price`` view calls.
    pricing_url: str = "http://127.0.0.1:8081"
    #: Seconds one pricing request may take (each attempt of the retry).
    pricing_timeout: float = 2.0
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "json"


def database_settings(url: Secret | str, *, conn_max_age: int = 0) -> dict[str, Any]:
    """A ``DATABASES`` entry for Django's PostgreSQL backend (psycopg 3) from a URL.

    Query parameters (``sslmode``, ``application_name``...) become ``OPTIONS``, which Django
    passes to psycopg.

    Example:
        >>> entry = database_settings("postgresql://app:pw@db:5432/shop?sslmode=require")
        >>> {key: entry[key] for key in ("ENGINE", "NAME", "USER", "HOST", "PORT", "OPTIONS")}
        {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'shop', 'USER': 'app', 'HOST': 'db', 'PORT': '5432', 'OPTIONS': {'sslmode': 'require'}}
        >>> database_settings("mysql://root:s3cret@db/shop")
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: SHOP_DATABASE_URL must be a postgresql:// URL or a libpq 'key=value' string (e.g. postgresql://app:password@db:5432/shop)
    """
    text = url.get_secret_value() if isinstance(url, Secret) else url
    try:
        parts = conninfo_to_dict(text)
    except Exception:  # psycopg.ProgrammingError, whose message quotes the URL: password too
        raise ConfigError(
            "SHOP_DATABASE_URL must be a postgresql:// URL or a libpq 'key=value' string "
            "(e.g. postgresql://app:password@db:5432/shop)"
        ) from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.pop("dbname", ""),
        "USER": parts.pop("user", ""),
        "PASSWORD": parts.pop("password", ""),
        "HOST": parts.pop("host", ""),
        "PORT": parts.pop("port", ""),
        "CONN_MAX_AGE": conn_max_age,
        "CONN_HEALTH_CHECKS": True,  # a connection kept across requests is checked first
        "OPTIONS": parts,
    }


def conninfo_of(entry: dict[str, Any]) -> str:
    """The libpq connection string of a ``DATABASES`` entry (the reverse of the above).

    The health probe's pool uses it to reach the very database Django uses (under the test
    runner: the test database).

    Example:
        >>> conninfo_of(database_settings("postgresql://app@db:5432/shop?sslmode=require"))
        'dbname=shop user=app host=db port=5432 sslmode=require'
    """
    fields = {
        "dbname": entry.get("NAME"),
        "user": entry.get("USER"),
        "password": entry.get("PASSWORD"),
        "host": entry.get("HOST"),
        "port": entry.get("PORT"),
        **entry.get("OPTIONS", {}),
    }
    return make_conninfo(**{key: value for key, value in fields.items() if value})
