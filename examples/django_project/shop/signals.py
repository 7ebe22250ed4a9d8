"""Keep the product cache coherent: a saved or deleted product leaves the cache on commit."""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from shop.catalog import forget_product
from shop.models import Product

__all__ = ["product_changed"]


@receiver(post_save, sender=Product)
@receiver(post_delete, sender=Product)
def product_changed(sender: type[Product], instance: Product, **kwargs: Any) -> None:
    """Forget the product once the change is committed (at once outside a transaction)."""
    transaction.on_commit(functools.partial(forget_product, instance.sku))
