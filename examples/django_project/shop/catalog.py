"""Products read through the cache: Redis-backed, with a per-process L1 in front.

``caches["default"]`` is a :class:`utils.cache.django.TieredCacheBackend` (see settings.py):
a hit in this process's memory costs no network round trip, and a write anywhere drops the
key from every process's memory through Redis pub/sub. Values are plain dicts, not model
instances: what the API answers is what is cached.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache

from shop.models import Product
from utils.core import NotFoundError

__all__ = ["forget_product", "get_product", "product_key"]


def product_key(sku: str) -> str:
    """The cache key of a product (Django adds ``KEY_PREFIX`` and the version).

    Example:
        >>> product_key("blue-mug")
        'product:blue-mug'
    """
    return f"product:{sku}"


def get_product(sku: str) -> dict[str, Any]:
    """The product ``sku``, from the cache or else from PostgreSQL (then cached).

    Raises:
        NotFoundError: No such product (answered 404 by the problem middleware). Misses
            are not cached: a product created a moment later is found at once.
    """
    key = product_key(sku)
    found: dict[str, Any] | None = cache.get(key)
    if found is not None:
        return found
    try:
        product = Product.objects.get(sku=sku)
    except Product.DoesNotExist:
        raise NotFoundError(f"no product {sku!r}") from None
    found = product.as_dict()
    cache.set(key, found, timeout=settings.SHOP.product_ttl)
    return found


def forget_product(sku: str) -> None:
    """Drop a product from the cache, in Redis and in every process's L1.

    Called once the transaction that changed the product has committed (see
    :mod:`shop.signals`): dropped earlier, a concurrent request could cache the old row again
    before the new one is visible.
    """
    cache.delete(product_key(sku))
