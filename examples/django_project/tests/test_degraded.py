"""Redis unreachable: the API keeps answering from PostgreSQL, ``/readyz`` says why it is unready."""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings
from django.test import TestCase
from django.test.utils import override_settings
from shop.models import Product
from shop_project.health import register_checks

from utils.core import wsgi_health_app
from utils.core.testing import find_free_port, serve_wsgi


def unreachable_caches() -> dict[str, Any]:
    """``CACHES`` with every alias pointed at a loopback port where nothing listens."""
    location = f"redis://127.0.0.1:{find_free_port()}/0"
    return {alias: {**entry, "LOCATION": location} for alias, entry in settings.CACHES.items()}


class RedisDownTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        Product.objects.create(sku="blue-mug", name="Blue mug", stock=7)

    def test_reads_fall_back_to_postgres_and_readyz_is_503(self) -> None:
        try:
            with override_settings(CACHES=unreachable_caches()):
                register_checks()  # the redis check now pings the unreachable server
                with self.assertNumQueries(1):
                    first = self.client.get("/products/blue-mug/")
                second = self.client.get("/products/blue-mug/")
                # A probe app of the test's own: answers are not reused (max_age 0).
                with serve_wsgi(wsgi_health_app(entry_points=False, max_age=0)) as url:
                    ready = httpx.get(f"{url}/readyz")
                    live = httpx.get(f"{url}/livez")
        finally:
            register_checks()  # back to the real cache
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == {"sku": "blue-mug", "name": "Blue mug", "stock": 7}
        assert ready.status_code == 503
        checks = {check["name"]: check for check in ready.json()["checks"]}
        assert checks["postgres"]["ok"] is True
        assert checks["redis"]["ok"] is False
        assert "CacheUnavailableError" in checks["redis"]["detail"], checks["redis"]
        assert live.status_code == 200  # a dependency never fails liveness: no restart storm
