"""The upstream pricing call: retries honouring Retry-After, the breaker, timeouts, the deadline."""

from __future__ import annotations

import time

from tests.support import Service, ServiceFactory, new_product_id, put_product

from utils.resilience.testing import instant_retries


def order(service: Service, product_id: int) -> tuple[int, dict[str, str], dict[str, object]]:
    with service.client(timeout=30) as client:
        reply = client.post("/orders", json={"product_id": product_id, "quantity": 1})
    return reply.status_code, dict(reply.headers), reply.json()


def test_a_503_with_retry_after_is_retried_after_that_long(service: Service) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id)
    service.upstream.then((503, {"Retry-After": "1"}))
    with instant_retries() as waits:  # the waits are recorded, not slept
        status, _, body = order(service, product_id)
    assert status == 201, body
    assert len(service.upstream.calls) == 2
    assert waits == [1.0]  # the header's second, not the 0.05 s backoff


def test_a_retry_after_beyond_the_budget_is_passed_on_at_once(service: Service) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id)
    service.upstream.then((503, {"Retry-After": "120"}))
    with instant_retries() as waits:
        status, headers, body = order(service, product_id)
    assert status == 503
    assert headers["retry-after"] == "120"
    assert headers["content-type"] == "application/problem+json"
    assert body["code"] == "pricing_unavailable"
    assert body["retry_after"] == 120
    assert service.upstream.url.split("//")[1] not in str(body)  # no upstream address
    assert waits == []
    assert len(service.upstream.calls) == 1


def test_the_breaker_opens_and_spares_the_upstream(make_service: ServiceFactory) -> None:
    with make_service(pricing_attempts=1, pricing_breaker_fail_max=2) as service:
        product_id = new_product_id()
        with service.client() as client:
            put_product(client, product_id)
        service.upstream.then((500, {}), (500, {}))
        assert order(service, product_id)[0] == 503
        assert order(service, product_id)[0] == 503
        status, headers, body = order(service, product_id)  # the circuit is open now
    assert status == 503
    assert body["code"] == "circuit_open"
    assert int(headers["retry-after"]) >= 1
    assert len(service.upstream.calls) == 2  # the third order never reached it


def test_a_hung_attempt_times_out_and_the_retry_succeeds(make_service: ServiceFactory) -> None:
    with make_service(pricing_attempt_timeout=0.2) as service:
        product_id = new_product_id()
        with service.client() as client:
            put_product(client, product_id)
        service.upstream.then("hang")
        status, _, body = order(service, product_id)
    assert status == 201, body
    assert len(service.upstream.calls) == 2


def test_the_request_deadline_bounds_everything(make_service: ServiceFactory) -> None:
    # A generous pricing budget, but the request's own deadline is 0.3 s.
    with make_service(
        request_timeout=0.3, pricing_timeout=10.0, pricing_attempt_timeout=10.0
    ) as service:
        product_id = new_product_id()
        with service.client() as client:
            put_product(client, product_id)
        service.upstream.then("hang")
        started = time.monotonic()
        status, _, body = order(service, product_id)
        elapsed = time.monotonic() - started
    assert status == 504, body
    assert body["title"] == "Gateway Timeout"
    assert elapsed < 3.0  # the deadline (0.3 s), not the pricing budget (10 s)


def test_a_bad_answer_from_the_upstream_is_a_503_not_a_500(service: Service) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id)
    service.upstream.price = -5  # a 200 with a price that cannot be right
    with instant_retries():
        status, _, body = order(service, product_id)
    assert status == 503
    assert body["code"] == "pricing_unavailable"
    assert body["detail"] == "The service is temporarily unavailable; retry later."  # fixed
    assert len(service.upstream.calls) == 3  # retried like any upstream failure
