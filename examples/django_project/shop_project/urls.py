"""URL routes. ``/livez`` and ``/readyz`` are answered in front of Django (see wsgi.py)."""

from __future__ import annotations

from django.urls import path
from shop import views

urlpatterns = [
    path("products/<slug:sku>/", views.product, name="product"),
    path("products/<slug:sku>/price/", views.price, name="price"),
]
