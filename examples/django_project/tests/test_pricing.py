"""The price view: retries on a flaky upstream (real HTTP on loopback), errors as problem+json."""

from __future__ import annotations

import dataclasses
import json

from django.conf import settings
from django.test import SimpleTestCase
from django.test.utils import override_settings

from tests.upstream import pricing_upstream
from utils.core.testing import find_free_port
from utils.resilience.testing import instant_retries

PROBLEM = "application/problem+json"


class PriceTests(SimpleTestCase):
    def test_transient_failures_are_retried(self) -> None:
        with pricing_upstream() as upstream, instant_retries() as delays:
            upstream.fail(503, 502)
            response = self.client.get("/products/blue-mug/price/", {"currency": "USD"})
        assert response.status_code == 200
        assert response.json() == {"sku": "blue-mug", "currency": "USD", "amount": "12.50"}
        assert len(upstream.calls) == 3
        assert {call["currency"] for call in upstream.calls} == {"USD"}
        assert len(delays) == 2

    def test_retry_after_is_honoured(self) -> None:
        with pricing_upstream() as upstream, instant_retries() as delays:
            upstream.fail(429, retry_after="2")
            response = self.client.get("/products/blue-mug/price/")
        assert response.status_code == 200
        assert delays == [2.0]

    def test_an_upstream_that_stays_down_is_a_503_problem(self) -> None:
        with pricing_upstream() as upstream, instant_retries():
            upstream.fail(503, 503, 503)
            response = self.client.get("/products/blue-mug/price/")
        assert response.status_code == 503
        assert response["Content-Type"] == PROBLEM
        problem = json.loads(response.content)
        assert problem["status"] == 503
        assert problem["instance"] == "/products/blue-mug/price/"
        # A fixed sentence: nothing about the upstream (its URL, its answer) reaches the client.
        assert "127.0.0.1" not in response.content.decode()
        assert "prices" not in problem["detail"]
        assert len(upstream.calls) == 3  # attempts=3, not one more

    def test_an_unknown_product_is_a_404_problem_not_retried(self) -> None:
        with pricing_upstream() as upstream, instant_retries() as delays:
            response = self.client.get("/products/unknown/price/")
        assert response.status_code == 404
        assert response["Content-Type"] == PROBLEM
        assert json.loads(response.content)["detail"] == "no price for product 'unknown'"
        assert len(upstream.calls) == 1
        assert delays == []

    def test_a_bad_currency_is_a_422_problem_and_no_call(self) -> None:
        with pricing_upstream() as upstream:
            response = self.client.get("/products/blue-mug/price/", {"currency": "JPY"})
        assert response.status_code == 422
        problem = json.loads(response.content)
        assert problem["code"] == "validation_error"
        assert "currency must be one of 'EUR', 'USD', 'GBP'" in problem["detail"]
        assert upstream.calls == []

    def test_an_unreachable_upstream_is_a_503_problem(self) -> None:
        closed = f"http://127.0.0.1:{find_free_port()}"
        shop = dataclasses.replace(settings.SHOP, pricing_url=closed)
        with override_settings(SHOP=shop), instant_retries() as delays:
            response = self.client.get("/products/blue-mug/price/")
        assert response.status_code == 503
        assert response["Content-Type"] == PROBLEM
        assert closed not in response.content.decode()
        assert len(delays) == 2  # connection refused is transient: three attempts
