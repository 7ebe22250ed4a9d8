"""Products: cached reads, invalidation on write (in this process and in another), errors."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.support import Service, ServiceFactory, new_product_id, put_product

from utils.core.testing import wait_until


def test_put_then_get(service: Service) -> None:
    product_id = new_product_id()
    with service.client() as client:
        created = put_product(client, product_id, stock=5)
        reply = client.get(f"/products/{product_id}")
    assert created == {
        "id": product_id,
        "sku": f"SKU-{product_id}",
        "name": f"Product {product_id}",
        "stock": 5,
    }
    assert reply.status_code == 200
    assert reply.json() == created
    assert reply.headers["X-Request-ID"]  # RequestContextMiddleware echoes the request id


def test_reads_are_cached_and_writes_invalidate(
    service: Service, sql_conn: psycopg.Connection[Any]
) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id, stock=5)
        assert client.get(f"/products/{product_id}").json()["stock"] == 5  # now cached
        # Behind the service's back: the cached copy is still what it serves...
        sql_conn.execute("UPDATE products SET stock = 99 WHERE id = %s", [product_id])
        assert client.get(f"/products/{product_id}").json()["stock"] == 5
        # ...until a write through the service drops it.
        reply = client.put(
            f"/products/{product_id}", json={"sku": f"SKU-{product_id}", "name": "New", "stock": 7}
        )
        assert reply.status_code == 200
        assert client.get(f"/products/{product_id}").json() == {
            "id": product_id,
            "sku": f"SKU-{product_id}",
            "name": "New",
            "stock": 7,
        }


def test_a_write_in_one_process_invalidates_the_others(make_service: ServiceFactory) -> None:
    product_id = new_product_id()
    # Two instances on one namespace, as two pods: each has its own memory tier.
    with (
        make_service() as first,
        make_service() as second,
        first.client() as one,
        second.client() as two,
    ):
        put_product(one, product_id, stock=5)
        assert one.get(f"/products/{product_id}").json()["stock"] == 5
        assert two.get(f"/products/{product_id}").json()["stock"] == 5
        put_product(two, product_id, stock=1)
        wait_until(
            lambda: one.get(f"/products/{product_id}").json()["stock"] == 1,
            message="the first instance never dropped its copy",
        )


def test_unknown_product_is_a_404_problem(service: Service) -> None:
    with service.client() as client:
        reply = client.get("/products/999999999?token=s3cret")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no product 999999999",
        "code": "not_found",
        "instance": "/products/999999999",
    }


def test_missing_or_unknown_api_key_is_a_401_problem(service: Service) -> None:
    for key in (None, "not-a-key"):
        with service.client(key=key) as client:
            reply = client.get("/products/1")
        assert reply.status_code == 401
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"'
        body = reply.json()
        assert (body["status"], body["title"], body["code"]) == (
            401,
            "Unauthorized",
            "unauthenticated",
        )
        assert "not-a-key" not in reply.text


def test_invalid_body_is_a_422_problem_naming_the_field(service: Service) -> None:
    with service.client() as client:
        reply = client.put("/products/1", json={"sku": "A", "name": "B", "stock": -1})
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == ["body.stock"]
    assert "body.stock" in body["detail"]


def test_duplicate_sku_is_a_409_problem_in_our_words(service: Service) -> None:
    first, second = new_product_id(), new_product_id()
    with service.client() as client:
        put_product(client, first)
        reply = client.put(
            f"/products/{second}", json={"sku": f"SKU-{first}", "name": "Copy", "stock": 1}
        )
    assert reply.status_code == 409
    assert reply.json()["detail"] == f"another product already has the SKU 'SKU-{first}'"
    assert "constraint" not in reply.text  # nothing of the driver's message


def test_unknown_route_is_a_problem_too(service: Service) -> None:
    with service.client() as client:
        reply = client.get("/nowhere")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["title"] == "Not Found"
