"""Orders: placement in one transaction, exact stock under 50 concurrent orders, 409 problems."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import psycopg
from tests.support import Service, ServiceFactory, new_product_id, put_product


def stock_of(conn: psycopg.Connection[Any], product_id: int) -> int:
    row = conn.execute("SELECT stock FROM products WHERE id = %s", [product_id]).fetchone()
    assert row is not None
    return int(row[0])


def test_place_order(service: Service, sql_conn: psycopg.Connection[Any]) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id, stock=5)
        assert client.get(f"/products/{product_id}").json()["stock"] == 5  # cached
        reply = client.post("/orders", json={"product_id": product_id, "quantity": 2})
        assert reply.status_code == 201, reply.text
        order = reply.json()
        assert order == {
            "id": order["id"],
            "product_id": product_id,
            "quantity": 2,
            "unit_price_cents": 1250,  # from the upstream
            "total_cents": 2500,
        }
        assert reply.headers["Location"] == f"/orders/{order['id']}"
        assert client.get(reply.headers["Location"]).json() == order
        # The order invalidated the cached product.
        assert client.get(f"/products/{product_id}").json()["stock"] == 3
    assert stock_of(sql_conn, product_id) == 3
    assert service.upstream.calls == [f"/prices/SKU-{product_id}"]


def test_insufficient_stock_is_a_409_problem_and_changes_nothing(
    service: Service, sql_conn: psycopg.Connection[Any]
) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id, stock=1)
        reply = client.post("/orders", json={"product_id": product_id, "quantity": 2})
    assert reply.status_code == 409
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": f"product {product_id} has 1 in stock, 2 requested",
        "code": "insufficient_stock",
        "instance": "/orders",
    }
    assert stock_of(sql_conn, product_id) == 1
    count = sql_conn.execute("SELECT count(*) FROM orders WHERE product_id = %s", [product_id])
    assert count.fetchone() == (0,)


def test_unknown_product_and_order_are_404(service: Service) -> None:
    with service.client() as client:
        assert client.post("/orders", json={"product_id": 987654321, "quantity": 1}).json()[
            "detail"
        ] == ("no product 987654321")
        assert client.get("/orders/987654321").status_code == 404
        bad = client.post("/orders", json={"product_id": 1, "quantity": 0})
    assert bad.status_code == 422
    assert [error["loc"] for error in bad.json()["errors"]] == ["body.quantity"]


def test_fifty_concurrent_orders_sell_exactly_the_stock(
    make_service: ServiceFactory, sql_conn: psycopg.Connection[Any]
) -> None:
    # The subject is the stock, not the upstream: 50 simultaneous price lookups on a busy
    # 2-core machine may take longer than the production budgets, so widen them here.
    with make_service(
        request_timeout=30.0,
        pricing_timeout=20.0,
        pricing_attempt_timeout=10.0,
        pricing_breaker_fail_max=1000,
    ) as service:
        run_fifty_orders(service, sql_conn)


def run_fifty_orders(service: Service, sql_conn: psycopg.Connection[Any]) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id, stock=40)

    async def order_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with service.async_client(limits=limits, timeout=30) as client:
            body = {"product_id": product_id, "quantity": 1}
            return await asyncio.gather(*(client.post("/orders", json=body) for _ in range(50)))

    replies = asyncio.run(order_all())
    statuses = Counter(reply.status_code for reply in replies)
    assert statuses == {201: 40, 409: 10}, [r.text for r in replies if r.status_code >= 500]
    assert stock_of(sql_conn, product_id) == 0
    row = sql_conn.execute(
        "SELECT count(*), sum(quantity) FROM orders WHERE product_id = %s", [product_id]
    ).fetchone()
    assert row == (40, 40)
    ids = [reply.json()["id"] for reply in replies if reply.status_code == 201]
    assert len(set(ids)) == 40
    with service.client() as client:  # and the cache agrees with the database
        assert client.get(f"/products/{product_id}").json()["stock"] == 0
