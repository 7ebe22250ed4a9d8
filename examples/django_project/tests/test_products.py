"""The product view on real PostgreSQL and Redis: cached reads, invalidation on commit."""

from __future__ import annotations

import json

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.test import TestCase
from shop.catalog import product_key
from shop.models import Product

from utils.cache.django import TieredCacheBackend
from utils.cache.tiered import TieredCache


class ProductTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        Product.objects.create(sku="blue-mug", name="Blue mug", stock=7)

    def setUp(self) -> None:
        cache.clear()  # this run's namespace only (the runner made it unique)

    def test_a_product_is_read_once_then_served_from_the_cache(self) -> None:
        with self.assertNumQueries(1):
            first = self.client.get("/products/blue-mug/")
        with self.assertNumQueries(0):
            second = self.client.get("/products/blue-mug/")
        expected = {"sku": "blue-mug", "name": "Blue mug", "stock": 7}
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == expected

    def test_the_cache_is_the_tiered_backend_on_real_redis(self) -> None:
        backend = caches["default"]  # `cache` is a proxy to it
        assert isinstance(backend, TieredCacheBackend)
        assert isinstance(backend.cache, TieredCache)
        self.client.get("/products/blue-mug/")
        namespace = settings.CACHES["default"]["OPTIONS"]["namespace"]
        assert "-test-" in namespace  # ShopTestRunner's: parallel runs never share keys
        client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
        try:
            keys = [key.decode() for key in client.scan_iter(match=f"{namespace}#*")]
        finally:
            client.close()
        assert [key for key in keys if key.endswith(product_key("blue-mug"))], keys

    def test_a_change_is_visible_once_committed(self) -> None:
        self.client.get("/products/blue-mug/")  # cached
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            product = Product.objects.get(sku="blue-mug")
            product.name = "Blue mug (new)"
            product.stock = 0
            product.save()
            # Not yet committed: the cached value stays until the commit.
            assert self.client.get("/products/blue-mug/").json()["name"] == "Blue mug"
        assert len(callbacks) == 1
        with self.assertNumQueries(1):
            response = self.client.get("/products/blue-mug/")
        assert response.json() == {"sku": "blue-mug", "name": "Blue mug (new)", "stock": 0}

    def test_a_deleted_product_leaves_the_cache(self) -> None:
        self.client.get("/products/blue-mug/")
        with self.captureOnCommitCallbacks(execute=True):
            Product.objects.get(sku="blue-mug").delete()
        assert cache.get(product_key("blue-mug")) is None
        assert self.client.get("/products/blue-mug/").status_code == 404

    def test_a_missing_product_is_a_404_problem_and_not_cached(self) -> None:
        response = self.client.get("/products/green-mug/")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert json.loads(response.content) == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "no product 'green-mug'",
            "code": "not_found",
            "instance": "/products/green-mug/",
        }
        Product.objects.create(sku="green-mug", name="Green mug")
        assert self.client.get("/products/green-mug/").status_code == 200

    def test_only_get_is_allowed(self) -> None:
        assert self.client.post("/products/blue-mug/").status_code == 405
