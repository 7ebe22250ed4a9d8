"""The per-API-key rate limit in Redis: RateLimit-* headers, 429 problems with Retry-After."""

from __future__ import annotations

from tests.support import KEY, OTHER_KEY, ServiceFactory, new_product_id, put_product


def test_each_key_has_its_own_limit_and_a_refusal_is_a_429_problem(
    make_service: ServiceFactory,
) -> None:
    # 3 at once, then one per minute: the 4th request in a row is refused.
    with make_service(rate_limit=1.0, rate_limit_per=60.0, rate_limit_burst=3) as service:
        product_id = new_product_id()
        with service.client() as client:
            first = client.put(
                f"/products/{product_id}",
                json={"sku": f"SKU-{product_id}", "name": "P", "stock": 1},
            )
            assert first.status_code == 200
            second = client.get(f"/products/{product_id}")
            third = client.get(f"/products/{product_id}")
            refused = client.get(f"/products/{product_id}")
        with service.client(key=OTHER_KEY) as other:
            allowed = other.get(f"/products/{product_id}")
    assert [r.headers["RateLimit-Remaining"] for r in (first, second, third)] == ["2", "1", "0"]
    for reply in (first, second, third):
        assert reply.headers["RateLimit-Limit"] == "3"
        assert reply.headers["RateLimit-Policy"] == "3;w=180"
        assert "Retry-After" not in reply.headers
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert int(refused.headers["RateLimit-Reset"]) >= int(refused.headers["Retry-After"])
    body = refused.json()
    assert (body["status"], body["code"]) == (429, "rate_limited")
    assert body["retry_after"] == int(refused.headers["Retry-After"])
    assert allowed.status_code == 200  # another key, another budget
    assert allowed.headers["RateLimit-Remaining"] == "2"


def test_the_limit_is_shared_by_every_instance(make_service: ServiceFactory) -> None:
    options = {"rate_limit": 1.0, "rate_limit_per": 60.0, "rate_limit_burst": 2}
    with make_service(**options) as first, make_service(**options) as second:
        product_id = new_product_id()
        with first.client() as one, second.client() as two:
            put_product(one, product_id)  # the key's first request, on one pod
            assert two.get(f"/products/{product_id}").status_code == 200  # its second
            assert one.get(f"/products/{product_id}").status_code == 429
            assert two.get(f"/products/{product_id}").status_code == 429


def test_probes_and_metrics_are_not_limited(make_service: ServiceFactory) -> None:
    with make_service(rate_limit=1.0, rate_limit_per=60.0, rate_limit_burst=1) as service:
        with service.client(key=None) as client:
            replies = [client.get(path) for path in ("/livez", "/readyz", "/metrics") * 3]
        with service.client(key=KEY) as client:
            missing = client.get("/products/999999999")
    assert all(reply.status_code == 200 for reply in replies)
    assert missing.status_code == 404
    assert missing.headers["RateLimit-Remaining"] == "0"  # error answers carry them too
