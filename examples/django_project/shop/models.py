"""The one model: a product, looked up by its SKU."""

from __future__ import annotations

from typing import Any

from django.db import models

__all__ = ["Product"]


class Product(models.Model):
    """A product of the catalogue."""

    sku = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    stock = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("sku",)

    def __str__(self) -> str:
        return str(self.sku)

    def as_dict(self) -> dict[str, Any]:
        """What the API answers (and the cache stores: plain data, not the model)."""
        return {"sku": self.sku, "name": self.name, "stock": self.stock}
