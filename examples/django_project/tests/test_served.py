"""The whole WSGI application (probes, request context, Django) under a real WSGI server."""

from __future__ import annotations

import httpx
from django.test import TransactionTestCase
from shop.models import Product

from tests.upstream import pricing_upstream
from utils.core.testing import serve_wsgi


class ServedTests(TransactionTestCase):
    """Requests over real sockets; data committed, as the server's threads need to see it."""

    def test_probes(self) -> None:
        from shop_project.wsgi import application

        with serve_wsgi(application) as url:
            live = httpx.get(f"{url}/livez")
            ready = httpx.get(f"{url}/readyz")
        assert live.status_code == 200
        assert ready.status_code == 200, ready.text
        checks = {check["name"]: check for check in ready.json()["checks"]}
        assert set(checks) == {"postgres", "redis"}
        assert all(check["ok"] for check in checks.values()), checks
        assert checks["postgres"]["detail"].startswith("PostgreSQL ")
        assert checks["redis"]["detail"].startswith("redis at ")
        assert "X-Request-ID" not in ready.headers  # probes stay out of the access log

    def test_request_id_is_echoed_and_sent_upstream(self) -> None:
        from shop_project.wsgi import application

        Product.objects.create(sku="red-mug", name="Red mug", stock=3)
        with pricing_upstream() as upstream, serve_wsgi(application) as url:
            product = httpx.get(f"{url}/products/red-mug/", headers={"X-Request-ID": "req-1"})
            price = httpx.get(f"{url}/products/red-mug/price/", headers={"X-Request-ID": "req-2"})
            made = httpx.get(f"{url}/products/red-mug/", headers={"X-Request-ID": "bad id"})
        assert product.status_code == 200
        assert product.json()["name"] == "Red mug"
        assert product.headers["X-Request-ID"] == "req-1"
        assert price.status_code == 200
        assert upstream.calls[0]["request_id"] == "req-2"  # one id across both services
        assert made.headers["X-Request-ID"] not in ("", "bad id")  # invalid: a fresh one
        assert len(made.headers["X-Request-ID"]) == 32
