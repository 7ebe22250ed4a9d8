"""The app's configuration: connects the signals that keep the product cache coherent."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ShopConfig"]


class ShopConfig(AppConfig):
    """The ``shop`` app."""

    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from shop import signals  # noqa: F401 - connects the receivers
