"""The service's settings, read from ``ORDERS_*`` environment variables.

Every problem (a missing variable, a value of the wrong type) is reported at once, at
start-up, by :meth:`utils.core.Settings.from_env`; secrets are :class:`~utils.core.Secret`
and never show in a repr or a log line.

Example:
    >>> settings = ServiceSettings.from_env({
    ...     "ORDERS_DATABASE_URL": "postgresql://orders:s3cret@db/shop",
    ...     "ORDERS_PRICING_URL": "http://pricing.internal",
    ...     "ORDERS_API_KEYS": "key-one,key-two",
    ...     "ORDERS_RATE_LIMIT": "20",
    ... })
    >>> settings.rate_limit, settings.request_timeout
    (20.0, 5.0)
    >>> "s3cret" in repr(settings)
    False
"""

from __future__ import annotations

import hashlib

from utils.core import Secret, Settings

__all__ = ["ServiceSettings", "client_id"]


class ServiceSettings(Settings, env_prefix="ORDERS_"):
    """What the service needs to run (environment prefix ``ORDERS_``).

    Example:
        >>> ServiceSettings.env_name("redis_url")
        'ORDERS_REDIS_URL'
    """

    #: PostgreSQL DSN (URL or ``key=value``); the schema of ``schema.sql`` applied.
    database_url: Secret
    #: Base URL of the upstream pricing service (``GET /prices/{sku}``).
    pricing_url: str
    #: The API keys allowed to call the service, comma-separated.
    api_keys: Secret
    redis_url: Secret = Secret("redis://127.0.0.1:6379/0")
    #: Prefix of every Redis key and pub/sub channel of this service.
    redis_namespace: str = "orders"
    #: Socket timeout of Redis calls: an outage costs this much, once per probe interval.
    redis_timeout: float = 0.25
    db_pool_size: int = 10
    #: The whole budget of one request: every database, Redis and upstream call inside it.
    request_timeout: float = 5.0
    #: The budget of one pricing lookup, its retries included (capped by the request's).
    pricing_timeout: float = 2.0
    #: One attempt of a pricing lookup.
    pricing_attempt_timeout: float = 0.5
    pricing_attempts: int = 3
    #: Consecutive failed attempts that open the pricing circuit, and for how long.
    pricing_breaker_fail_max: int = 5
    pricing_breaker_reset: float = 30.0
    #: Requests per ``rate_limit_per`` seconds and API key, in bursts of ``rate_limit_burst``.
    rate_limit: float = 10.0
    rate_limit_per: float = 1.0
    rate_limit_burst: int = 20
    #: While Redis is down: True admits every request (the limit is lost, the service is
    #: not); False refuses them with 429 and ``Retry-After: 1``.
    rate_limit_fail_open: bool = True
    #: Seconds a product stays in the cache (Redis), and at most in a process's memory.
    product_ttl: float = 300.0
    product_l1_ttl: float = 10.0
    #: Seconds a probe answer is reused (keep it below the probes' ``periodSeconds``).
    probe_max_age: float = 1.0
    log_level: str = "INFO"
    host: str = "0.0.0.0"
    port: int = 8000

    def allowed_clients(self) -> frozenset[str]:
        """The :func:`client_id` of every configured API key.

        Example:
            >>> settings = ServiceSettings(
            ...     database_url=Secret("postgresql://db/shop"),
            ...     pricing_url="http://pricing",
            ...     api_keys=Secret(" a , b "),
            ... )
            >>> len(settings.allowed_clients())
            2
        """
        keys = self.api_keys.get_secret_value().split(",")
        return frozenset(client_id(key.strip()) for key in keys if key.strip())


def client_id(api_key: str) -> str:
    """A stable, non-reversible name for an API key: for rate-limit keys, orders and logs.

    The key itself is a credential: it never goes to Redis, the database or a log line.

    Example:
        >>> client_id("key-one")
        'c-9b346041bc9a4957'
        >>> client_id("key-one") == client_id("key-one") != client_id("key-two")
        True
    """
    return "c-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
