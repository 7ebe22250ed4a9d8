"""Redis stops (a private server, never the shared one): the service degrades as documented.

- ``/readyz`` answers 503 naming the redis check, ``/livez`` stays 200 (no restart);
- the cache fails open: reads come from the database, writes still work and nothing stale
  is served afterwards;
- the rate limiter fails open (the default): requests are admitted; with
  ``ORDERS_RATE_LIMIT_FAIL_OPEN=false`` they are refused with 429 and ``Retry-After: 1``;
- when Redis is back, ``/readyz`` is 200 again, the cache caches and the limit holds again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import psycopg
import redis
from tests.support import OTHER_KEY, ServiceFactory, new_product_id, put_product

from utils.core import Secret
from utils.core.testing import PrivateRedis, wait_until


def readiness(client: httpx.Client) -> dict[str, bool]:
    reply = client.get("/readyz")
    checks = {check["name"]: check["ok"] for check in reply.json()["checks"]}
    assert (reply.status_code == 200) == all(checks.values())
    return checks


def test_cache_fails_open_and_recovers(
    make_service: ServiceFactory,
    utils_private_redis: PrivateRedis,
    sql_conn: psycopg.Connection[Any],
    utils_logs: list[dict[str, Any]],
) -> None:
    server = utils_private_redis
    product_id = new_product_id()
    path = f"/products/{product_id}"
    with make_service(redis_url=Secret(server.url)) as service, service.client() as client:
        put_product(client, product_id, stock=5)
        assert client.get(path).json()["stock"] == 5
        assert readiness(client) == {"postgres": True, "redis": True}

        server.stop()
        wait_until(lambda: readiness(client) == {"postgres": True, "redis": False})
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200  # not a reason to restart the pod
        assert client.get(path).json()["stock"] == 5  # served without Redis
        put_product(client, product_id, stock=8)  # a write during the outage...
        assert client.get(path).json()["stock"] == 8  # ...is never hidden by a stale copy
        order = client.post("/orders", json={"product_id": product_id, "quantity": 1})
        assert order.status_code == 201, order.text  # the limiter failed open
        assert client.get(path).json()["stock"] == 7

        server.start()
        wait_until(
            lambda: readiness(client) == {"postgres": True, "redis": True},
            message="/readyz did not recover",
        )
        probe = redis.Redis.from_url(server.url)
        try:
            # The cache uses Redis again (its outage gate lets a call through within 1 s).
            wait_until(
                lambda: (
                    client.get(path).status_code == 200
                    and any(probe.scan_iter(match=f"*product:{product_id}"))
                ),
                message="the product was never cached in Redis again",
            )
        finally:
            probe.close()
        sql_conn.execute("UPDATE products SET stock = 99 WHERE id = %s", [product_id])
        assert client.get(path).json()["stock"] == 7  # cached again
    # Each outage is logged once when it starts and once when it ends, never per request.
    events = Counter(event["event"] for event in utils_logs)
    for name in (
        "cache.unavailable",
        "cache.recovered",
        "ratelimit.storage_unavailable",
        "ratelimit.storage_recovered",
        "health.check_failed",
        "health.check_recovered",
    ):
        assert events[name] == 1, (name, events)


def test_rate_limit_fails_open_then_holds_again(
    make_service: ServiceFactory, utils_private_redis: PrivateRedis
) -> None:
    server = utils_private_redis
    options = {"rate_limit": 1.0, "rate_limit_per": 60.0, "rate_limit_burst": 2}
    with make_service(redis_url=Secret(server.url), **options) as service:
        product_id = new_product_id()
        with service.client() as client:
            put_product(client, product_id)
        with service.client(key=OTHER_KEY) as client:
            server.stop()
            wait_until(lambda: client.get("/readyz").status_code == 503)
            # Five requests on a burst of two: all admitted while Redis is away.
            replies = [client.get(f"/products/{product_id}") for _ in range(5)]
            assert [reply.status_code for reply in replies] == [200] * 5
            server.start()  # an empty Redis: every key starts afresh
            wait_until(lambda: client.get("/readyz").status_code == 200)

            def limited() -> bool:
                return client.get(f"/products/{product_id}").status_code == 429

            # Within the outage gate's interval the limiter may still admit; then it counts.
            wait_until(limited, message="the limit never held again")
            assert limited()


def test_a_fail_closed_limiter_refuses_while_redis_is_away(
    make_service: ServiceFactory, utils_private_redis: PrivateRedis
) -> None:
    server = utils_private_redis
    with (
        make_service(redis_url=Secret(server.url), rate_limit_fail_open=False) as service,
        service.client() as client,
    ):
        assert client.get("/products/1").status_code in {200, 404}
        server.stop()
        wait_until(lambda: client.get("/readyz").status_code == 503)
        refused = client.get("/products/1")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
